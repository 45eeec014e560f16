#!/usr/bin/env bash
# Builds helm, which the chart tests lint, render and install with, from the Go module pinned in
# go/helm/go.mod, into a cache folder outside the repository keyed by its version:
#
#   ${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}/helm/helm-<version>/bin/helm
#
# A second run finds it and returns at once; concurrent runs are serialised by a file lock; the
# binary is moved into place only once complete. The last line on stdout is its path.
#
#   tests/cluster/build-helm.sh               build it if missing, print its path
#   tests/cluster/build-helm.sh --print-path  only print its path
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(awk '$1 == "require" && $2 == "helm.sh/helm/v4" { print $3; exit }
                $1 == "helm.sh/helm/v4" && $2 ~ /^v/ { print $2; exit }' "$here/go/helm/go.mod")"
if [[ -z "$version" ]]; then
    echo "build-helm.sh: go/helm/go.mod does not require helm.sh/helm/v4" >&2
    exit 1
fi
root="${SRE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sre-operator}/helm/helm-$version"
helm="$root/bin/helm"
if [[ "${1:-}" == "--print-path" || -x "$helm" ]]; then
    echo "$helm"
    exit 0
fi
mkdir -p "$root/bin"
exec 9>"$root/.build.lock"
flock 9
if [[ -x "$helm" ]]; then
    echo "$helm"
    exit 0
fi
command -v go >/dev/null || { echo "build-helm.sh: go is not installed (Go 1.26 or newer is needed)" >&2; exit 1; }
t0=$SECONDS
echo "build-helm.sh: building helm $version ..." >&2
(cd "$here/go/helm" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath" \
    go build -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
    -o "$root/bin/.helm.partial" helm.sh/helm/v4/cmd/helm)
mv -f "$root/bin/.helm.partial" "$helm"
echo "build-helm.sh: helm $version built in $((SECONDS - t0)) s" >&2
echo "$helm"
