#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 300).
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
seconds=${1:-300}
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${METER_FUZZ_BUILD_DIR:-$source_dir/build-fuzz}
work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

CXX=${CXX:-clang++-14} cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMETER_FUZZ=ON -DMETER_TESTS=ON >/dev/null
cmake --build "$build_dir" --target fuzz_decode fuzz_timestamp fuzz_mapping fuzz_inbox fuzz_ingest_channel fuzz_mqtt_wire >/dev/null

for target in fuzz_decode fuzz_timestamp fuzz_mapping fuzz_inbox fuzz_ingest_channel fuzz_mqtt_wire; do
  corpus="$work_dir/$target"
  mkdir -p "$corpus"
  seeds="$source_dir/tests/fuzz/corpus/${target#fuzz_}"
  [ -d "$seeds" ] && cp "$seeds"/* "$corpus"/ 2>/dev/null || true
  echo "== $target for ${seconds}s"
  "$build_dir/tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
    -rss_limit_mb=2048 "$corpus" 2>"$work_dir/$target.log" || {
      tail -50 "$work_dir/$target.log"; echo "$target FAILED"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$work_dir/$target.log" || true
  echo "$target: clean"
done
