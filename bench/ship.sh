#!/usr/bin/env bash
# A real core (gdb's gcore of a process holding a realistic 1 GiB heap) shipped from close-write
# to durable in SeaweedFS (`weed mini`, SigV4, loopback) by `coredog watcher` with compression
# zstd and off, against s5cmd, rclone and the AWS CLI uploading the same raw file to the same
# server in the same run. Goals: watcher wall time <= 0.5x s5cmd with zstd and <= 1.1x without,
# peak RSS <= 64 MiB, close-write -> upload start <= 50 ms.
#   bench/ship.sh [--size-gib 1] [--rounds 3] [--perf DIR] [--contenders coredog-zstd,s5cmd,...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v gcore >/dev/null; then
  echo "gcore is missing: apt-get install gdb" >&2
  exit 1
fi
cargo build --release --locked -p coredog -p coredog-bench
tools_bin=$(.ci/tools)
bench_tools_bin=$(bench/tools)
exec target/release/coredog-bench ship --coredog target/release/coredog \
  --tools-bin "$tools_bin" --bench-tools-bin "$bench_tools_bin" "$@"
