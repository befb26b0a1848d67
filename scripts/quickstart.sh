#!/usr/bin/env bash
# Quick start: the whole system doing its main job, in one command. Installs what is missing
# (scripts/install-deps.sh), builds the agent and the dashboard, then starts a local mosquitto,
# `meter-agent run`, the central service on a throwaway PostgreSQL (central/tests/with_postgres.sh)
# serving the dashboard, creates a gateway token and a viewer token, points the agent's uplink at
# the central, lets the meter simulator (tests/sim/meter_sim.py) publish a few minutes of a small
# site at 10x speed, waits until the agent has uploaded everything, and prints the
# dashboard's address, the viewer token and one last line:
#
#   quickstart: M messages published, M acknowledged; R distinct readings expected, R in PostgreSQL
#
#   scripts/quickstart.sh                 everything, then stops what it started
#   scripts/quickstart.sh --keep-running  ... and keeps it all up (for a browser) until Ctrl-C
#                                         (SIGINT to its process group)
#
# Options: --meters N (default 12), --duration D (simulated time, default 5m), --seed S,
# --speed X (simulated seconds per real second, default 10: readings stamped on receipt stay
# apart, as a real site's are; 0 = as fast as QoS 1 allows),
# --faults SPEC (meter_sim.py's, default a visible mix), --fault-free N (meters kept free of
# faults, default 4, spread over the formats), --agent BINARY (use this build of
# meter-agent instead of building one), --no-dashboard (skip the dashboard's npm build),
# --then COMMAND (run COMMAND while everything is up, before the last line, with
# QUICKSTART_CENTRAL_URL, QUICKSTART_VIEWER_TOKEN, QUICKSTART_TRUTH (the simulator's JSON
# summary), QUICKSTART_STATE and DATABASE_URL set; for tests), --publish COMMAND (run COMMAND
# instead of the simulator, with QUICKSTART_MQTT_PORT set: it publishes and writes a summary in
# meter_sim.py's format (published, acknowledged, distinct_readings, faults) to QUICKSTART_TRUTH;
# for tests). Ports are free ones on 127.0.0.1
# (the central on 8080 when that is free). Everything it starts is stopped by PID in a trap, and
# the PIDs are listed in build/quickstart/pids. Exit status 0 when both pairs are equal.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$source_dir/build"
state_dir="$build_dir/quickstart"

meters=12
duration=5m
seed=1
speed=10
fault_free=4
faults="glitch=0.02,spike=0.01,reset=0.005,rollback=0.005,replace=0.003,silence=0.005,repeat=0.05,burst=0.005,malformed=0.02,skew=0.5,unsynced=0.3"
agent=""
keep_running=""
build_dashboard=yes
then_command=""
publish_command=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-running) keep_running=yes ;;
    --meters) meters=$2; shift ;;
    --duration) duration=$2; shift ;;
    --seed) seed=$2; shift ;;
    --speed) speed=$2; shift ;;
    --faults) faults=$2; shift ;;
    --fault-free) fault_free=$2; shift ;;
    --agent) agent=$2; shift ;;
    --no-dashboard) build_dashboard="" ;;
    --then) then_command=$2; shift ;;
    --publish) publish_command=$2; shift ;;
    --state-dir) state_dir=$2; shift ;;
    *) echo "usage: $0 [--keep-running] [--meters N] [--duration D] [--seed S] [--speed X] [--faults SPEC] [--fault-free N] [--agent BINARY] [--no-dashboard] [--then COMMAND] [--publish COMMAND] [--state-dir DIR]" >&2
       exit 2 ;;
  esac
  shift
done

log() { echo "== $*"; }

# Waits up to $1 seconds for the command that follows to succeed (polling, with a deadline).
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.2
  done
}
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- phase 2: inside with_postgres.sh (DATABASE_URL exported), everything else running --------
if [ "${QUICKSTART_PHASE:-}" = run ]; then
  cd "$source_dir"
  export PYTHONPATH="$source_dir${PYTHONPATH:+:$PYTHONPATH}"
  broker_pid="" agent_pid="" central_pid=""
  : >"$state_dir/pids"
  stop() {
    local rc=$?
    trap - EXIT INT TERM
    # The agent first (it finishes its batch and publishes `offline` while the broker is up).
    for pid in "$agent_pid" "$central_pid" "$broker_pid"; do
      [ -n "$pid" ] || continue
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
    exit "$rc"
  }
  trap stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  pg_pid=$(head -1 "$(dirname "$CENTRAL_TEST_PG_LOG")/data/postmaster.pid")
  echo "postgres $pg_pid" >>"$state_dir/pids"

  mqtt_port=$(free_port)
  log "mosquitto on 127.0.0.1:$mqtt_port (log: $state_dir/mosquitto.log)"
  # Persistence off: the broker lives as long as this run. max_queued_messages 0: no limit, so a
  # slow agent never loses a queued message (config/mosquitto/gateway.conf for real sites).
  cat >"$state_dir/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
log_type notice
$( [ "$(id -u)" = 0 ] && echo "user root" )
CONF
  /usr/sbin/mosquitto -c "$state_dir/mosquitto.conf" >"$state_dir/mosquitto.log" 2>&1 &
  broker_pid=$!
  echo "mosquitto $broker_pid" >>"$state_dir/pids"
  wait_for 10 port_answers "$mqtt_port" || { cat "$state_dir/mosquitto.log"; exit 1; }

  log "central: migrate, a gateway and a viewer (throwaway PostgreSQL in $(dirname "$CENTRAL_TEST_PG_LOG"): $DATABASE_URL)"
  /usr/bin/python3 -m central migrate >"$state_dir/central-migrate.log" 2>&1 ||
    { cat "$state_dir/central-migrate.log"; exit 1; }
  gateway_token=$(/usr/bin/python3 -m central gateway create quickstart 2>>"$state_dir/central.log")
  viewer_token=$(/usr/bin/python3 -m central viewer create quickstart 2>>"$state_dir/central.log")
  central_port=8080
  port_answers "$central_port" && central_port=$(free_port)
  central_url="http://127.0.0.1:$central_port"
  /usr/bin/python3 -m central serve --no-migrate --host 127.0.0.1 --port "$central_port" \
    >>"$state_dir/central.log" 2>&1 &
  central_pid=$!
  echo "central $central_pid" >>"$state_dir/pids"
  # Ours, alive, answering (not another server that took the port in between).
  central_healthy() { kill -0 "$central_pid" 2>/dev/null && /usr/bin/python3 - "$central_url/healthz" <<'PY' 2>/dev/null
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
PY
  }
  wait_for 60 central_healthy || { cat "$state_dir/central.log"; exit 1; }
  log "central serving $central_url (log: $state_dir/central.log)"

  install -m 600 /dev/null "$state_dir/token"
  printf '%s\n' "$gateway_token" >"$state_dir/token"
  # The shipped presets, with plain numbers on plain/<device>/<metric> (meters/# is the seed's).
  cat >"$state_dir/agent.yaml" <<YAML
gateway_id: quickstart
buffer:
  path: buffer.db
  durability: normal
metrics:
  energy: {kind: counter, unit: kWh, jump_threshold: 10000}
  power: {kind: gauge, unit: kW}
presets_dir: $source_dir/config/presets
mappings:
  - preset: seed
  - preset: tasmota
  - preset: shelly_em
  - preset: zigbee2mqtt
  - preset: plain
    topic: "plain/+/+"
mqtt:
  host: 127.0.0.1
  port: $mqtt_port
uplink:
  url: $central_url
  token_file: $state_dir/token
  interval: 1s
  retry: {min: 1s, max: 5s}
YAML
  log "meter-agent run --config $state_dir/agent.yaml (log: $state_dir/agent.log)"
  "$agent" run --config "$state_dir/agent.yaml" >"$state_dir/agent.log" 2>&1 &
  agent_pid=$!
  echo "meter-agent $agent_pid" >>"$state_dir/pids"
  agent_subscribed() { grep -q "subscribed to 'plain/+/+'" "$state_dir/agent.log"; }
  wait_for 30 agent_subscribed || { cat "$state_dir/agent.log"; exit 1; }

  if [ -n "$publish_command" ]; then
    log "publishing: $publish_command"
    QUICKSTART_MQTT_PORT=$mqtt_port QUICKSTART_TRUTH=$state_dir/truth.json \
      bash -c "$publish_command" || { echo "quickstart: --publish command failed"; exit 1; }
  else
  log "meter simulator: $meters meters, $duration of readings ending now, seed $seed, published at ${speed}x"
  /usr/bin/python3 "$source_dir/tests/sim/meter_sim.py" --port "$mqtt_port" --seed "$seed" --speed "$speed" \
    --meters "$meters" --duration "$duration" --start now-duration --faults "$faults" \
    --fault-free "$fault_free" \
    --client-id quickstart-sim --summary "$state_dir/truth.json" --write "$state_dir/site.tsv" \
    >/dev/null || true
  fi
  [ -s "$state_dir/truth.json" ] || { echo "the simulator wrote no summary"; exit 1; }
  read -r published acknowledged expected faulted < <(/usr/bin/python3 - "$state_dir/truth.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(s["published"], s["acknowledged"], s["distinct_readings"],
      ",".join(f"{k} {v}" for k, v in s["faults"].items()) or "none")
PY
  )
  log "published $published messages ($acknowledged acknowledged); faults: ${faulted//,/, }"

  # Done when the agent has every acknowledged message in its raw log, normalized, and nothing
  # left to upload; then PostgreSQL holds what it will hold.
  agent_status() { "$agent" status --json --config "$state_dir/agent.yaml" 2>/dev/null; }
  all_uploaded() {
    agent_status | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["raw_messages"] >= int(sys.argv[1]) and s["pending_normalization"] == 0
         and s["unsynced"] == 0 else 1)' "$acknowledged"
  }
  log "waiting for the agent to normalize and upload everything (at most 180 s)"
  wait_for 180 all_uploaded || { echo "the agent has not uploaded everything in time:"; agent_status; }
  in_postgres=$(psql "$DATABASE_URL" -Atc \
    "SELECT count(*) FROM normalized_measurements m JOIN gateways g ON g.id = m.gateway_id
      WHERE g.name = 'quickstart'")

  echo
  echo "meter-agent status:"
  "$agent" status --config "$state_dir/agent.yaml" | sed 's/^/  /'
  echo
  [ -n "$publish_command" ] ||
    echo "The truth per meter: $state_dir/truth.json; the stream: $state_dir/site.tsv"
  dashboard_note=""
  /usr/bin/python3 - "$central_url/" <<'PY' 2>/dev/null || dashboard_note="  (not built: the page says how)"
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=5).status == 200 else 1)
PY
  echo "Dashboard: $central_url/   viewer token: $viewer_token$dashboard_note"
  echo "API:       curl -H 'Authorization: Bearer $viewer_token' $central_url/api/v1/devices"
  if [ -n "$then_command" ]; then
    QUICKSTART_CENTRAL_URL=$central_url QUICKSTART_VIEWER_TOKEN=$viewer_token \
      QUICKSTART_TRUTH=$state_dir/truth.json QUICKSTART_STATE=$state_dir \
      bash -c "$then_command" || { echo "quickstart: --then command failed"; exit 1; }
  fi
  if [ -n "$keep_running" ]; then
    echo "Everything stays up until Ctrl-C (then it is stopped and the database deleted)."
  fi
  echo "quickstart: $published messages published, $acknowledged acknowledged; $expected distinct readings expected, $in_postgres in PostgreSQL"
  if [ -n "$keep_running" ]; then
    wait "$agent_pid" "$central_pid" "$broker_pid" || true
  fi
  [ "$published" = "$acknowledged" ] && [ "$expected" = "$in_postgres" ]
  exit
fi

# ---- phase 1: dependencies, builds, then phase 2 under a throwaway PostgreSQL ------------------
"$source_dir/scripts/install-deps.sh" --quickstart
if [ -z "$agent" ]; then
  log "building meter-agent (Release, in $build_dir; log: $build_dir/quickstart-build.log)"
  mkdir -p "$build_dir"
  # The compiler's output only when the build fails (g++ 12 at -O3 prints -Wrestrict false
  # positives from <string> that would only alarm a newcomer).
  if ! { cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETER_TESTS=OFF &&
    cmake --build "$build_dir" --target meter-agent; } >"$build_dir/quickstart-build.log" 2>&1; then
    grep -E -B2 -A8 'error|FAILED' "$build_dir/quickstart-build.log" | head -n 60
    echo "quickstart: the build failed (the whole log: $build_dir/quickstart-build.log)" >&2
    exit 1
  fi
  agent="$build_dir/agent/meter-agent"
fi
agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")
web="$source_dir/central/web"
if [ -n "$build_dashboard" ]; then
  if [ ! -f "$web/dist/index.html" ] || [ -n "$(find "$web/src" "$web/index.html" "$web/package-lock.json" -newer "$web/dist/index.html" -print -quit)" ]; then
    log "building the dashboard (central/web: npm ci, npm run build)"
    mkdir -p "$build_dir"   # also with --agent, which skips the agent's build
    if ! (cd "$web" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) >"$build_dir/dashboard-build.log" 2>&1; then
      tail -n 20 "$build_dir/dashboard-build.log"
      echo "quickstart: the dashboard did not build (above); the API works without it" >&2
    fi
  fi
fi
rm -rf "$state_dir"
mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
if [ "$(id -u)" = 0 ]; then chmod 755 "$state_dir"; fi
export QUICKSTART_PHASE=run
exec "$source_dir/central/tests/with_postgres.sh" /usr/bin/env \
  QUICKSTART_PHASE=run "$0" --meters "$meters" --duration "$duration" --seed "$seed" --speed "$speed" \
  --faults "$faults" --fault-free "$fault_free" --agent "$agent" --state-dir "$state_dir" \
  ${keep_running:+--keep-running} ${then_command:+--then "$then_command"} \
  ${publish_command:+--publish "$publish_command"}
