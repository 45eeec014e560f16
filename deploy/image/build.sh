#!/usr/bin/env bash
# The one build of what goes into the operator image, shared by the Dockerfile's build stage and
# the daemonless route (README, "Install"), so that both ship the same binary: sre-operator for
# x86_64-unknown-linux-musl (statically linked: the image has no libc), Cargo profile `dist`
# (release without a symbol table), --locked. It lays out the image's files under DIR:
#
#   DIR/usr/local/bin/sre-operator            the binary (the built-in plugins are embedded)
#   DIR/etc/ssl/certs/ca-certificates.crt     root certificates, for HTTPS to a model endpoint
#                                             and plugin egress (an empty base has none)
#
#   deploy/image/build.sh [DIR]     DIR defaults to target/image/rootfs; prints the binary's path
#
# Needs rustup (it adds the musl and wasm32-wasip2 targets) and a musl C compiler
# (x86_64-linux-musl-gcc, Debian's musl-tools): aws-lc-sys, kube's TLS backend, compiles C.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target=x86_64-unknown-linux-musl
profile=dist
dir="${1:-$repo/target/image/rootfs}"
certs=/etc/ssl/certs/ca-certificates.crt

command -v x86_64-linux-musl-gcc >/dev/null || command -v musl-gcc >/dev/null || {
    echo "build.sh: no musl C compiler (x86_64-linux-musl-gcc); install musl-tools" >&2
    exit 1
}
[[ -r "$certs" ]] || { echo "build.sh: $certs missing; install ca-certificates" >&2; exit 1; }
rustup target add "$target" wasm32-wasip2 >&2

cd "$repo"
cargo build --locked --profile "$profile" --target "$target" \
    --package sre-operator --bin sre-operator >&2
built="${CARGO_TARGET_DIR:-$repo/target}/$target/$profile/sre-operator"
install -D -m 0755 "$built" "$dir/usr/local/bin/sre-operator"
install -D -m 0644 "$certs" "$dir/etc/ssl/certs/ca-certificates.crt"
echo "$dir/usr/local/bin/sre-operator"
