#!/usr/bin/env bash
# Builds a Go program the tests run (helm, prometheus, alertmanager, jaeger) from the module pinned in
# go/<tool>/go.mod,
# into a cache folder outside the repository keyed by its version:
#
#   ${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}/<tool>/<tool>-<version>/bin/<tool>
#
# A second run finds it and returns at once; concurrent runs are serialised by a file lock; the
# binary is moved into place only once complete. The last line on stdout is its path.
#
#   tests/cluster/build-tool.sh TOOL               build it if missing, print its path
#   tests/cluster/build-tool.sh TOOL --print-path  only print its path
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tool="${1:-}"
# module, main package, the -X flag that stamps the version, and build tags, per tool.
tags=
case "$tool" in
    helm)
        module=helm.sh/helm/v4
        package=helm.sh/helm/v4/cmd/helm
        stamp=helm.sh/helm/v4/internal/version.version ;;
    prometheus)
        module=github.com/prometheus/prometheus
        package=github.com/prometheus/prometheus/cmd/prometheus
        stamp=github.com/prometheus/common/version.Version
        # The tests scrape static targets only: without the bundled service discoveries (AWS,
        # Azure, GCE, Kubernetes...) the cold build took 141 s instead of about 290 here.
        tags=remove_all_sd ;;
    alertmanager)
        module=github.com/prometheus/alertmanager
        package=github.com/prometheus/alertmanager/cmd/alertmanager
        stamp=github.com/prometheus/common/version.Version ;;
    jaeger)
        # Jaeger v2 (an OpenTelemetry Collector with Jaeger's storage and query extensions),
        # not v1's cmd/all-in-one: v2 listens only on what its YAML config names. Its UI is not
        # in the module; it serves a placeholder page by itself and the API as usual.
        # Cold (measured here): 316 modules, 1.2 GB, and about 10.5 CPU-minutes of compiling
        # (15 min of wall time on 2 busy cores); an 84 MB binary. v1's all-in-one took 7.2
        # CPU-minutes but binds 7 ports on every interface unless told otherwise and is past
        # its end of life.
        module=github.com/jaegertracing/jaeger
        package=github.com/jaegertracing/jaeger/cmd/jaeger
        stamp=github.com/jaegertracing/jaeger/internal/version.latestVersion ;;
    *)
        echo "usage: build-tool.sh helm|prometheus|alertmanager|jaeger [--print-path]" >&2
        exit 2 ;;
esac
version="$(awk -v m="$module" '$1 == "require" && $2 == m { print $3; exit }
                               $1 == m && $2 ~ /^v/ { print $2; exit }' "$here/go/$tool/go.mod")"
if [[ -z "$version" ]]; then
    echo "build-tool.sh: go/$tool/go.mod does not require $module" >&2
    exit 1
fi
root="${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}/$tool/$tool-$version"
binary="$root/bin/$tool"
if [[ "${2:-}" == "--print-path" || -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
mkdir -p "$root/bin"
exec 9>"$root/.build.lock"
flock 9
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
command -v go >/dev/null || { echo "build-tool.sh: go is not installed (Go 1.26 or newer is needed)" >&2; exit 1; }
t0=$SECONDS
echo "build-tool.sh: building $tool $version ..." >&2
dir="$here/go/$tool"
if [[ "$tool" == alertmanager ]]; then
    # Alertmanager embeds its web UI from ui/app/dist, which its release builds with npm and the
    # Go module does not ship. The tests use the API only: build the pinned module's own source
    # (with its own go.sum) with an empty UI in a scratch copy.
    src="$(cd "$dir" && go mod download -json "$module@$version" | awk -F'"' '$2 == "Dir" { print $4 }')"
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
    cp -r "$src/." "$dir/"
    chmod -R u+w "$dir"
    for ui in elm mantine; do
        mkdir -p "$dir/ui/app/dist/$ui"
        echo '<!doctype html><title>Alertmanager (built without its web UI)</title>' \
            >"$dir/ui/app/dist/$ui/index.html"
    done
    package=./cmd/alertmanager
fi
(cd "$dir" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath" \
    go build -tags "$tags" -ldflags "-s -w -X $stamp=$version" -o "$root/bin/.$tool.partial" "$package")
mv -f "$root/bin/.$tool.partial" "$binary"
echo "build-tool.sh: $tool $version built in $((SECONDS - t0)) s" >&2
echo "$binary"
