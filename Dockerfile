# syntax=docker/dockerfile:1
# The operator image: built in a Rust image, run on distroless (glibc, no shell, non-root).
# The built-in plugins (k8s-reader, patch-safety, policy-filter) are compiled to WebAssembly by
# host/build.rs and embedded in the binary, so the image works without a plugin ConfigMap.
#
#   docker build -t sre-operator:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package sre-operator --bin sre-operator \
    && install -D target/release/sre-operator /out/sre-operator

# Debian 12 matches the builder's glibc.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sre-operator /usr/local/bin/sre-operator
USER 65532:65532
# Compiled plugins are cached here (an emptyDir in deploy/: the root filesystem is read-only).
ENV SRE_OPERATOR_CACHE=/var/cache/sre-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sre-operator"]
CMD ["run"]
