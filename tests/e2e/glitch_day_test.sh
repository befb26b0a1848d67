#!/usr/bin/env bash
# Issue #14 end to end: one meter's UTC day with a glitch to 0 and a corrupt spike goes from MQTT
# (QoS 1, real mosquitto) through meter-agent to the central (real PostgreSQL), started by
# scripts/quickstart.sh itself (--publish replaces its simulator, --then runs the checks while
# everything is up). tests/e2e/glitch_day.py says what is published and asserted: the day's
# trusted total is exactly the register's last - first, flagged_energy 0, and both glitch
# readings are stored flagged `glitch` with no delta.
#
#   tests/e2e/glitch_day_test.sh [AGENT_BINARY]                (default: build/agent/meter-agent)
#   tests/e2e/glitch_day_test.sh --screenshot [AGENT_BINARY]   ... and builds the dashboard and
#       saves the device's day view with its glitch marker to docs/screenshots/device-glitch-e2e.png
#       (headless Debian Chromium, central/web/e2e/glitch-day.mjs)
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
screenshot=""
if [ "${1:-}" = --screenshot ]; then screenshot=yes; shift; fi
agent=${1:-$source_dir/build/agent/meter-agent}
[ -x "$agent" ] || { echo "glitch_day_test: no agent binary at $agent" >&2; exit 2; }

state=$(mktemp -d /tmp/glitch-day-test.XXXXXX)
trap 'rm -rf "$state"' EXIT
check="/usr/bin/python3 '$source_dir/tests/e2e/glitch_day.py' check"
dashboard=--no-dashboard
if [ -n "$screenshot" ]; then
  dashboard=""
  (cd "$source_dir/central/web" && { [ -d node_modules/playwright-core ] ||
    npm ci --no-audit --no-fund --loglevel=error; })
  check="$check && (cd '$source_dir/central/web' && CENTRAL_URL=\$QUICKSTART_CENTRAL_URL \
VIEWER_TOKEN=\$QUICKSTART_VIEWER_TOKEN SCREENSHOT='$source_dir/docs/screenshots/device-glitch-e2e.png' \
node e2e/glitch-day.mjs)"
fi

"$source_dir/scripts/quickstart.sh" --agent "$agent" $dashboard --state-dir "$state/run" \
  --publish "/usr/bin/python3 '$source_dir/tests/e2e/glitch_day.py' publish" --then "$check" \
  >"$state/output.txt" 2>&1 && rc=0 || rc=$?
cat "$state/output.txt"
grep -q '^glitch_day: passed' "$state/output.txt" || { echo "glitch_day_test: the checks did not pass"; exit 1; }
[ "$rc" -eq 0 ] || { echo "glitch_day_test: quickstart.sh exited $rc"; exit 1; }
echo "glitch_day_test: passed"
