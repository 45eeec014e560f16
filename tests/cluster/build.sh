#!/usr/bin/env bash
# Builds the control plane the end-to-end tests run against, from the Go
# modules next to this script, into a cache folder outside the repository:
#
#   ${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}/control-plane/
#       k8s-<version>-etcd-<version>-kwok-<version>/bin/
#           kube-apiserver kube-scheduler kube-controller-manager kubectl etcd kwok
#
# The folder name is made from the versions pinned in go/*/go.mod, so a second
# run finds every binary and returns at once, and changing a version builds
# into a new folder. A binary is moved into place only once it is complete, so
# an interrupted build resumes where it stopped. Concurrent runs (parallel
# tests, two terminals) are serialised by a file lock: one builds, the others
# wait and then find the binaries.
#
# Progress goes to stderr; the last line on stdout is the bin folder.
#
#   tests/cluster/build.sh               build what is missing, print the bin folder
#   tests/cluster/build.sh --print-bin-dir  only print the bin folder
#
# Needs: go (1.26+, reaches the module proxy), bash, flock (util-linux).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The version a go.mod requires for a module, e.g. "v1.36.3".
required_version() {
    local gomod="$1" module="$2" v
    v="$(awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit }
                             $1 == "require" && $2 == m { print $3; exit }' "$gomod")"
    if [[ -z "$v" ]]; then
        echo "build.sh: $gomod does not require $module" >&2
        exit 1
    fi
    echo "$v"
}

k8s_version="$(required_version "$here/go/kubernetes/go.mod" k8s.io/kubernetes)"
etcd_version="$(required_version "$here/go/etcd/go.mod" go.etcd.io/etcd/server/v3)"
kwok_version="$(required_version "$here/go/kwok/go.mod" sigs.k8s.io/kwok)"

cache_root="${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}/control-plane"
key="k8s-${k8s_version}-etcd-${etcd_version}-kwok-${kwok_version}"
bin="$cache_root/$key/bin"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
    echo "$bin"
    exit 0
fi

binaries=(etcd kwok kube-apiserver kube-scheduler kube-controller-manager kubectl)

all_present() {
    local b
    for b in "${binaries[@]}"; do
        [[ -x "$bin/$b" ]] || return 1
    done
}

if all_present; then
    echo "build.sh: control plane $key already built in $bin" >&2
    echo "$bin"
    exit 0
fi

mkdir -p "$bin"
exec 9>"$cache_root/$key/.build.lock"
if ! flock -n 9; then
    echo "build.sh: another build of $key is running; waiting for it" >&2
    flock 9
    if all_present; then
        echo "build.sh: the other run built $key" >&2
        echo "$bin"
        exit 0
    fi
fi

command -v go >/dev/null || { echo "build.sh: go is not installed (Go 1.26 or newer is needed)" >&2; exit 1; }

# Kubernetes reports v0.0.0 unless its version variables are stamped.
k8s_minor="${k8s_version#v}"; k8s_minor="${k8s_minor#*.}"; k8s_minor="${k8s_minor%%.*}"
k8s_major="${k8s_version#v}"; k8s_major="${k8s_major%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$k8s_major"
    k8s_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath"

started_all=$SECONDS
built=0
build_one() {
    local name="$1" module_dir="$2" pkg="$3" ldflags="$4" t0=$SECONDS
    if [[ -x "$bin/$name" ]]; then
        echo "build.sh: $name: present" >&2
        return
    fi
    echo "build.sh: $name: building $pkg ..." >&2
    (cd "$here/go/$module_dir" && go build -ldflags "$ldflags" -o "$bin/.$name.partial" "$pkg")
    mv -f "$bin/.$name.partial" "$bin/$name"
    built=$((built + 1))
    echo "build.sh: $name: built in $((SECONDS - t0)) s" >&2
}

echo "build.sh: building control plane $key into $bin (go $(go env GOVERSION), CGO_ENABLED=0)" >&2
build_one etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build_one kwok kwok sigs.k8s.io/kwok/cmd/kwok "-s -w"
for name in kube-apiserver kube-scheduler kube-controller-manager kubectl; do
    build_one "$name" kubernetes "k8s.io/kubernetes/cmd/$name" "$k8s_ldflags"
done
echo "build.sh: $built binaries built in $((SECONDS - started_all)) s" >&2
echo "$bin"
