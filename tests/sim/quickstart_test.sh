#!/usr/bin/env bash
# CI's run of scripts/quickstart.sh, reduced (10 meters, half of them fault-free: one of each
# format, 2 simulated minutes, an agent already
# built, no dashboard build), checking what a user is promised:
# - the last line is `quickstart: M messages published, M acknowledged; R distinct readings
#   expected, R in PostgreSQL` with both pairs equal (and M, R > 0);
# - for the simulator's fault-free meters, the consumption API's total equals exactly the
#   register's last - first value (tests/sim/check_consumption.py, run while everything is up);
# - afterwards nothing it started is left running (every PID it listed is gone) and the
#   throwaway PostgreSQL's directory is deleted.
#
#   tests/sim/quickstart_test.sh [AGENT_BINARY]    (default: build/agent/meter-agent)
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
agent=${1:-$source_dir/build/agent/meter-agent}
[ -x "$agent" ] || { echo "quickstart_test: no agent binary at $agent" >&2; exit 2; }

state=$(mktemp -d /tmp/quickstart-test.XXXXXX)
trap 'rm -rf "$state"' EXIT
output="$state/output.txt"

set +e
"$source_dir/scripts/quickstart.sh" --agent "$agent" --meters 10 --fault-free 5 --duration 2m --seed 3 \
  --no-dashboard --state-dir "$state/run" \
  --then "/usr/bin/python3 '$source_dir/tests/sim/check_consumption.py'" >"$output" 2>&1
rc=$?
set -e
cat "$output"
failed=""
[ "$rc" -eq 0 ] || { echo "quickstart_test: quickstart.sh exited $rc"; failed=yes; }

last=$(tail -n 1 "$output")
pattern='^quickstart: ([0-9]+) messages published, ([0-9]+) acknowledged; ([0-9]+) distinct readings expected, ([0-9]+) in PostgreSQL$'
if [[ "$last" =~ $pattern ]]; then
  m1=${BASH_REMATCH[1]} m2=${BASH_REMATCH[2]} r1=${BASH_REMATCH[3]} r2=${BASH_REMATCH[4]}
  if [ "$m1" != "$m2" ] || [ "$r1" != "$r2" ] || [ "$m1" -eq 0 ] || [ "$r1" -eq 0 ]; then
    echo "quickstart_test: the pairs differ (or are zero): $last"
    failed=yes
  fi
else
  echo "quickstart_test: the last line is not the summary line: $last"
  failed=yes
fi
grep -q '^check_consumption: [1-9][0-9]* of [1-9]' "$output" ||
  { echo "quickstart_test: the consumption check did not run"; failed=yes; }

# Nothing left running: every PID the run listed is gone (mosquitto, agent, central, postgres).
# PostgreSQL's postmaster removes its PID file (which `pg_ctl stop -w` waits for) just before it
# exits, and a daemon's exit shows only once it is reaped: so each gets a deadline, and a zombie
# counts as gone.
running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$state" != Z* ]]
}
[ -s "$state/run/pids" ] || { echo "quickstart_test: no PID list"; failed=yes; }
while read -r name pid; do
  deadline=$((SECONDS + 10))
  while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if running "$pid"; then
    echo "quickstart_test: $name (PID $pid) is still running"
    failed=yes
    kill "$pid" 2>/dev/null || true
  fi
done <"$state/run/pids"
database_dir=$(grep -o 'central-pg\.[A-Za-z0-9]*' "$output" | head -1 || true)
if [ -n "$database_dir" ] && [ -e "/tmp/$database_dir" ]; then
  echo "quickstart_test: the throwaway PostgreSQL directory /tmp/$database_dir was left behind"
  failed=yes
fi

[ -z "$failed" ] && echo "quickstart_test: passed"
[ -z "$failed" ]
