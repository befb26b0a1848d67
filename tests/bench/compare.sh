#!/usr/bin/env bash
# This build against another checkout (e.g. the commit before a refactoring),
# on the same machine in the same run: RUNS alternating runs of each of
#   tests/bench/run.sh --messages 1000000 --preload 0 --durability normal
#     (meter_bench: normalized events/s)
#   tests/bench/run_mqtt.sh --messages 200000 --durability normal --modes drain
#     (bench_mqtt: the agent's backlog drain, acknowledged msgs/s)
# and a Markdown table of the medians with their ratio (this / baseline).
#   tests/bench/compare.sh BASELINE_SOURCE_DIR [RUNS]   (RUNS: 5)
# Both are built in Release in build directories beside this checkout.
# Alternating the two cancels most of the drift of a shared machine; the
# spread column shows what was left.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
baseline_dir=$(cd "${1:?usage: tests/bench/compare.sh BASELINE_SOURCE_DIR [RUNS]}" && pwd)
runs=${2:-5}
parent=$(dirname "$source_dir")
log=$(mktemp)
trap 'rm -f "$log"' EXIT

normalize_rate() {  # SOURCE BUILD -> normalized events/s of the first result row
  METER_BENCH_BUILD_DIR=$2 "$1/tests/bench/run.sh" --messages 1000000 --preload 0 \
    --durability normal 2>>"$log" |
    awk -F'|' '/^\| normal, empty/ { gsub(/[ ,]/, "", $7); print $7; exit }'
}
drain_rate() {  # SOURCE BUILD -> the agent's drain rate
  METER_BENCH_BUILD_DIR=$2 "$1/tests/bench/run_mqtt.sh" --messages 200000 \
    --durability normal --modes drain 2>>"$log" |
    awk -F'|' '/^\| backlog drain/ { gsub(/[ ,]/, "", $5); print $5; exit }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
spread() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f-%.0f", lo, hi }'; }

declare -A results
for bench in normalize drain; do
  for side in baseline this; do results[$bench.$side]=""; done
done
for ((i = 1; i <= runs; i++)); do
  for bench in normalize drain; do
    for side in baseline this; do
      if [ "$side" = baseline ]; then src=$baseline_dir; build=$parent/build-compare-baseline; else
        src=$source_dir; build=$parent/build-compare-this; fi
      rate=$("${bench}_rate" "$src" "$build")
      if [ -z "$rate" ]; then
        echo "compare: no $bench rate from $src (log follows)" >&2
        cat "$log" >&2
        exit 1
      fi
      echo "run $i/$runs $bench $side: $rate" >&2
      results[$bench.$side]+="$rate"$'\n'
    done
  done
done

echo
echo "- date: $(date -u +%FT%TZ); machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "- this: $(git -C "$source_dir" rev-parse --short HEAD); baseline: $(git -C "$baseline_dir" rev-parse --short HEAD 2>/dev/null || echo "$baseline_dir")"
echo "- $runs alternating runs each; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| benchmark | baseline median | this median | this / baseline | baseline runs (min-max) | this runs (min-max) |"
echo "|---|--:|--:|--:|--:|--:|"
for bench in normalize drain; do
  b=$(printf '%s' "${results[$bench.baseline]}" | median)
  t=$(printf '%s' "${results[$bench.this]}" | median)
  label="meter_bench normalized events/s (1M, --preload 0, normal)"
  [ "$bench" = drain ] && label="bench_mqtt agent drain msgs/s (200k, normal)"
  printf '| %s | %.0f | %.0f | %.2f× | %s | %s |\n' "$label" "$b" "$t" "$(awk -v t="$t" -v b="$b" 'BEGIN { print t / b }')" \
    "$(printf '%s' "${results[$bench.baseline]}" | spread)" "$(printf '%s' "${results[$bench.this]}" | spread)"
done
