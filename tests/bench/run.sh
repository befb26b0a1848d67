#!/usr/bin/env bash
# The full benchmark (docs/BENCHMARKS.md): builds meter_bench in Release in its
# own build directory and runs it with the database files on the real disk
# (a fresh directory under the build directory, removed afterwards). Extra
# arguments go to meter_bench (e.g. --durability normal, --preload 0).
# The Markdown table goes to stdout and to $BUILD_DIR/bench-results.md.
# power_loss (synchronous=FULL) runs 20,000 messages: each commit waits for an
# fsync (0.2-4 ms on this machine's shared disk), so 1M would take up to an hour.
set -euo pipefail

source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${METER_BENCH_BUILD_DIR:-$(dirname "$source_dir")/build-bench}

cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" --target meter_bench

data_dir=$(mktemp -d "$build_dir/bench-data.XXXXXX")
trap 'rm -rf "$data_dir"' EXIT

"$build_dir/tests/bench/meter_bench" --messages 1000000 --devices 1000 --preload 10000000 \
  --out-of-order 10 --repeats 5 --durability both --power-loss-messages 20000 \
  --dir "$data_dir" "$@" | tee "$build_dir/bench-results.md"
