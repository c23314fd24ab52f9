#!/usr/bin/env bash
# /mutate throughput and latency of `coredog webhook` against a minimal axum + rustls server
# answering a fixed response (the ceiling), both over TLS with keep-alive on loopback, in the
# same run. Goal: >= 0.8x the ceiling's requests/s and p99 <= 5 ms.
#   bench/webhook.sh [--seconds 5] [--connections 8] [--rounds 3] [--probes]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked -p coredog -p coredog-bench
exec target/release/coredog-bench webhook --coredog target/release/coredog "$@"
