#!/usr/bin/env bash
# Builds the plugins written in Python and JavaScript into WebAssembly components:
#
#   plugins/log-signatures/  (Python, world `tool`)          -> log_signatures.wasm
#   plugins/business-hours/  (JavaScript, world `policy-filter`) -> business_hours.wasm
#
# with the Bytecode Alliance's toolchains, pinned next to the sources and installed from the
# package registries into a cache folder outside the repository:
#
#   ${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}/toolchains/
#       componentize-py-<version>/         a Python venv (plugins/log-signatures/requirements.txt)
#       componentize-js-<lock digest>/     an npm prefix (plugins/business-hours/package-lock.json)
#
# The components go to OUT (default: ${CARGO_TARGET_DIR:-<repo>/target}/polyglot-plugins). Each
# is rebuilt only when a digest of its inputs (its folder, the WIT package, the pinned toolchain
# and this script) differs from the one recorded beside it, so a second run returns at once.
# Components are moved into place only once complete, and concurrent runs (parallel tests, two
# terminals) are serialised by a file lock. Progress goes to stderr; the last line on stdout is
# OUT.
#
#   plugins/build-polyglot.sh [--out DIR] [log-signatures|business-hours ...]
#
# Needs: bash, python3 (3.9+, with venv) and pip reaching PyPI, node (18+) and npm reaching the
# npm registry, sha256sum and flock (coreutils, util-linux).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="${CARGO_TARGET_DIR:-$repo/target}/polyglot-plugins"
wanted=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --out=*) out="${1#--out=}"; shift ;;
        log-signatures|business-hours) wanted+=("$1"); shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "build-polyglot.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ ${#wanted[@]} -gt 0 ]] || wanted=(log-signatures business-hours)

cache="${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}"
toolchains="$cache/toolchains"
mkdir -p "$out" "$toolchains"
out="$(cd "$out" && pwd)"

log() { echo "build-polyglot.sh: $*" >&2; }

# A digest of files (paths relative to the repository, and contents), in a stable order.
digest_of() {
    (cd "$repo" && for f in "$@"; do
        if [[ -d "$f" ]]; then
            find "$f" -type f -not -path '*/__pycache__/*' -not -path '*/node_modules/*'
        else
            echo "$f"
        fi
    done | LC_ALL=C sort | while read -r f; do
        printf '%s\n' "$f"
        sha256sum <"$f"
    done) | sha256sum | cut -c1-16
}

py_version="$(sed -n 's/^componentize-py==\([^ ;]*\).*/\1/p' "$here/log-signatures/requirements.txt")"
js_lock_digest="$(digest_of plugins/business-hours/package.json plugins/business-hours/package-lock.json)"
py_env="$toolchains/componentize-py-$py_version"
js_prefix="$toolchains/componentize-js-$js_lock_digest"

inputs_of() {
    case "$1" in
        log-signatures) echo "py-$py_version-$(digest_of plugins/log-signatures wit plugins/build-polyglot.sh)" ;;
        business-hours) echo "js-$js_lock_digest-$(digest_of plugins/business-hours wit plugins/build-polyglot.sh)" ;;
    esac
}
file_of() { echo "${1//-/_}.wasm"; }

up_to_date() {
    local name="$1" file
    file="$out/$(file_of "$name")"
    [[ -f "$file" && -f "$file.inputs" && "$(cat "$file.inputs")" == "$(inputs_of "$name")" ]]
}

all_up_to_date() {
    local name
    for name in "${wanted[@]}"; do up_to_date "$name" || return 1; done
}

if all_up_to_date; then
    log "up to date in $out"
    echo "$out"
    exit 0
fi

exec 9>"$out/.build.lock"
if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
    if all_up_to_date; then
        log "the other run built them"
        echo "$out"
        exit 0
    fi
fi

install_python_toolchain() {
    if [[ -x "$py_env/bin/componentize-py" ]]; then
        return
    fi
    command -v python3 >/dev/null || { log "python3 is needed to install componentize-py"; exit 1; }
    local t0=$SECONDS partial="$py_env.partial"
    log "installing componentize-py $py_version into $py_env"
    rm -rf "$partial"
    python3 -m venv "$partial"
    "$partial/bin/pip" install --quiet --disable-pip-version-check --no-input \
        -r "$here/log-signatures/requirements.txt" >&2
    # The venv's scripts name their folder: move it, then rewrite nothing (pip is not used again).
    rm -rf "$py_env"
    mv "$partial" "$py_env"
    # Re-point the entry script's interpreter line at the final folder.
    sed -i "1s|^#!.*|#!$py_env/bin/python3|" "$py_env/bin/componentize-py"
    log "componentize-py installed in $((SECONDS - t0)) s"
}

install_js_toolchain() {
    if [[ -x "$js_prefix/node_modules/.bin/componentize-js" ]]; then
        return
    fi
    command -v npm >/dev/null || { log "node and npm are needed to install componentize-js"; exit 1; }
    local t0=$SECONDS partial="$js_prefix.partial"
    log "installing componentize-js (plugins/business-hours/package-lock.json) into $js_prefix"
    rm -rf "$partial"
    mkdir -p "$partial"
    cp "$here/business-hours/package.json" "$here/business-hours/package-lock.json" "$partial/"
    (cd "$partial" && npm ci --no-audit --no-fund --loglevel=error >&2)
    rm -rf "$js_prefix"
    mv "$partial" "$js_prefix"
    log "componentize-js installed in $((SECONDS - t0)) s"
}

build_log_signatures() {
    install_python_toolchain
    local dst="$1" partial="$1.partial" empty="$py_env/no-dependencies"
    log "log-signatures: unit tests"
    (cd "$here/log-signatures" && PYTHONDONTWRITEBYTECODE=1 "$py_env/bin/python3" -m unittest -q >&2 2>&1) \
        || { log "log-signatures: unit tests failed"; exit 1; }
    log "log-signatures: componentize-py (world tool)"
    # An empty site-packages: the component holds the app and the standard library only, not
    # whatever the machine's Python has installed.
    mkdir -p "$empty/lib/python3/site-packages"
    # From a scratch copy: componentize-py's own interpreter writes __pycache__ next to the
    # sources whatever PYTHONDONTWRITEBYTECODE says, and a write under plugins/ makes Cargo
    # rebuild every build of the operator (host/build.rs watches the folder): in CI, the
    # image's release build a second time.
    local src
    src="$(mktemp -d)"
    cp -r "$here/log-signatures/." "$src/"
    (cd "$src" && PYTHONDONTWRITEBYTECODE=1 VIRTUAL_ENV="$empty" \
        "$py_env/bin/componentize-py" --quiet -d "$repo/wit" -w tool componentize \
        -p "$src" app -o "$partial" >&2)
    rm -rf "$src"
    mv -f "$partial" "$dst"
}

build_business_hours() {
    install_js_toolchain
    local dst="$1" partial="$1.partial"
    log "business-hours: componentize-js (world policy-filter)"
    # -d http -d fetch-event: no wasi:http imports, which the operator does not provide.
    "$js_prefix/node_modules/.bin/componentize-js" "$here/business-hours/app.js" \
        --wit "$repo/wit" -n policy-filter -o "$partial" -d http -d fetch-event >&2
    mv -f "$partial" "$dst"
}

for name in "${wanted[@]}"; do
    if up_to_date "$name"; then
        log "$name: up to date"
        continue
    fi
    file="$out/$(file_of "$name")"
    inputs="$(inputs_of "$name")"
    t0=$SECONDS
    rm -f "$file.inputs"
    case "$name" in
        log-signatures) build_log_signatures "$file" ;;
        business-hours) build_business_hours "$file" ;;
    esac
    echo "$inputs" >"$file.inputs"
    log "$name: built $(file_of "$name") ($(du -k "$file" | cut -f1) KiB) in $((SECONDS - t0)) s"
done
echo "$out"
