#!/usr/bin/env bash
# User-space instructions per /mutate request of `coredog webhook` and of the ceiling (the
# minimal axum + rustls server `bench/webhook.sh` measures against), counted by valgrind's
# callgrind: a figure that does not move with the machine's load, to follow the review's cost.
#   bench/webhook-instructions.sh [--requests 1000] [--warm-up 200]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v valgrind >/dev/null; then
  echo "valgrind is missing: apt-get install valgrind" >&2
  exit 1
fi
cargo build --release --locked -p coredog -p coredog-bench
exec target/release/coredog-bench webhook-instructions --coredog target/release/coredog "$@"
