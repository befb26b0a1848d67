#!/usr/bin/env bash
# The soak of the whole system (issue #17): mosquitto, the agent (its buffer on the power-cut
# filesystem of tests/powercut), the central and a throwaway PostgreSQL, the meter simulator at
# a site's pace, and faults on a schedule drawn from the seed — agent kills and power cuts,
# central outages and kills, SIGHUP reloads, the disk budget reached and recovered,
# `meter-agent renormalize`. Ends with every reading checked in PostgreSQL exactly once and the
# agent's RSS, open fds and threads compared with their baseline; writes OUT/report.md and the
# plot OUT/soak.svg (tests/soak/soak.py says what is judged).
#
#   tests/soak/soak.sh [--minutes N] [--seed S] [--out DIR] [--meters M] [--warmup SECONDS]
#                      [--agent BINARY] [--mount-tool BINARY]
#
# Defaults: 60 minutes, seed 1, out build/soak, the binaries of build/ (meter-agent and
# tests/soak/soak_powercut_mount: `cmake --build build --target meter-agent soak_powercut_mount`).
# Needs /dev/fuse (root or a user allowed to mount FUSE). Exit 0 when every judged line passes.
# Everything it starts is stopped by PID; the filesystem is unmounted whatever happens.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
minutes=60 seed=1 out="$source_dir/build/soak" meters=24 warmup=""
agent="$source_dir/build/agent/meter-agent"
mount_tool="$source_dir/build/tests/soak/soak_powercut_mount"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift ;;
    --seed) seed=$2; shift ;;
    --out) out=$2; shift ;;
    --meters) meters=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --agent) agent=$2; shift ;;
    --mount-tool) mount_tool=$2; shift ;;
    *) echo "usage: $0 [--minutes N] [--seed S] [--out DIR] [--meters M] [--warmup SECONDS] [--agent BINARY] [--mount-tool BINARY]" >&2
       exit 2 ;;
  esac
  shift
done
for binary in "$agent" "$mount_tool"; do
  [ -x "$binary" ] || { echo "soak: no $binary (build it first)" >&2; exit 2; }
done
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
# SIGTERM/SIGINT go to soak.py (its PID in OUT/soak.pid), which stops what it started by PID;
# then with_postgres.sh stops PostgreSQL. Last, should soak.py itself have been killed, the
# filesystem is unmounted all the same.
unmount() { if mountpoint -q "$out/mnt" 2>/dev/null; then fusermount3 -u "$out/mnt" || true; fi; }
forward() { [ -s "$out/soak.pid" ] && kill -TERM "$(cat "$out/soak.pid")" 2>/dev/null || true; }
trap unmount EXIT
trap forward TERM INT
"$source_dir/central/tests/with_postgres.sh" /usr/bin/python3 "$source_dir/tests/soak/soak.py" \
  --minutes "$minutes" --seed "$seed" --out "$out" --meters "$meters" \
  ${warmup:+--warmup "$warmup"} --agent "$agent" --mount-tool "$mount_tool" &
child=$!
status=0
# `wait` returns early when a trapped signal arrives: wait again until the child has ended.
while true; do
  wait "$child" && status=0 || status=$?
  kill -0 "$child" 2>/dev/null || break
done
exit "$status"
