#!/usr/bin/env bash
# Starts a Kubernetes control plane on loopback with kwok nodes for manual use, prints the
# kubeconfig path, and runs until Ctrl-C (which stops every process and removes its folder).
# The first run builds the binaries (several minutes, see build.sh); later runs start in seconds.
#
#   tests/cluster/up.sh                      # 2 nodes of 4 CPU, 8Gi, 110 Pods
#   tests/cluster/up.sh --nodes 3 --node-memory 16Gi --kubeconfig-out /tmp/sre.kubeconfig
#   tests/cluster/up.sh --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec cargo run --quiet --package sre-e2e --bin sre-e2e-cluster -- "$@"
