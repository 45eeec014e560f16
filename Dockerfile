# syntax=docker/dockerfile:1
# The operator image: a static binary on an empty base (no shell, no package manager, no libc),
# run as 65532:65532. The built-in plugins (k8s-reader, patch-safety, policy-filter, prometheus)
# are compiled to WebAssembly by host/build.rs and embedded in the binary, so the image works
# without a plugin ConfigMap.
#
#   docker build -t sre-operator:0.1.0 .
#
# Without a daemon (README, "Install"): deploy/image/build.sh on the machine itself, then
#   podman build --build-context build=target/image -t sre-operator:0.1.0 .
# which takes the stage `build` below from target/image (the build stage does not run), so both
# routes build the binary with the same script and assemble the same final stage.

FROM rust:1.95-bookworm AS build
# aws-lc-sys (kube's TLS) compiles C for the musl target.
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    deploy/image/build.sh /rootfs

FROM scratch
ARG VERSION=0.1.0
# The binary and root certificates (for HTTPS to a model endpoint and plugin egress).
COPY --from=build /rootfs/ /
USER 65532:65532
# Compiled plugins are cached here (an emptyDir in deploy/: the root filesystem is read-only).
ENV SRE_OPERATOR_CACHE=/var/cache/sre-operator
EXPOSE 8080
LABEL org.opencontainers.image.title="sre-operator" \
      org.opencontainers.image.description="A Kubernetes operator that diagnoses failing Pods like an on-call SRE" \
      org.opencontainers.image.source="https://github.com/sre-operator/sre-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENTRYPOINT ["/usr/local/bin/sre-operator"]
CMD ["run"]
