#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for SECONDS (default 300),
# FUZZ_JOBS of them at once (default: one per core).
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
seconds=${1:-300}
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${METER_FUZZ_BUILD_DIR:-$source_dir/build-fuzz}
work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

CXX=${CXX:-clang++-14} cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMETER_FUZZ=ON -DMETER_TESTS=ON >/dev/null
targets=(fuzz_decode fuzz_timestamp fuzz_mapping fuzz_inbox fuzz_ingest_channel fuzz_mqtt_wire)
cmake --build "$build_dir" --target "${targets[@]}" >/dev/null

# One target per core at a time (each is one single-threaded process); the
# reports are printed in the targets' order once each has ended.
fuzz() {
  local target=$1 corpus="$work_dir/$1" seeds="$source_dir/tests/fuzz/corpus/${1#fuzz_}"
  mkdir -p "$corpus"
  [ -d "$seeds" ] && cp "$seeds"/* "$corpus"/ 2>/dev/null || true
  if "$build_dir/tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
    -rss_limit_mb=2048 "$corpus" 2>"$work_dir/$target.log"; then
    touch "$work_dir/$target.clean"
  fi
}
jobs=${FUZZ_JOBS:-$(nproc)}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait; rm -rf "$work_dir"' EXIT
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  fuzz "$target" &
  pids+=("$!")
done
wait
failed=0
for target in "${targets[@]}"; do
  echo "== $target for ${seconds}s"
  if [ -f "$work_dir/$target.clean" ]; then
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" \
      "$work_dir/$target.log" || true
    echo "$target: clean"
  else
    tail -50 "$work_dir/$target.log"
    echo "$target FAILED"
    failed=1
  fi
done
exit "$failed"
