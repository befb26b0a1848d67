#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the agent's main job
# for real: a local mosquitto (started here if none answers on localhost:1883),
# `meter-agent run` with config/agent.example.yaml, sample readings published
# the way meters publish them (the seed's JSON, Tasmota, Shelly, Zigbee2MQTT),
# then what arrived: `meter-agent status` and `meter-agent export`.
# Everything it starts, it stops.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$source_dir/build"
state_dir="$build_dir/quickstart"
config="$source_dir/config/agent.example.yaml"

"$source_dir/scripts/install-deps.sh"
cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETER_TESTS=OFF >/dev/null
cmake --build "$build_dir" --target meter-agent

agent="$build_dir/agent/meter-agent"
mkdir -p "$state_dir"
rm -f "$state_dir"/buffer.db*
options=(--config "$config" --buffer "$state_dir/buffer.db")

broker_pid=""
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  true
}
trap cleanup EXIT

# Waits up to $1 seconds for the command that follows to succeed.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.2
  done
}
broker_answers() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }

if broker_answers; then
  echo "== using the MQTT broker already listening on localhost:1883"
else
  echo "== starting mosquitto on localhost:1883 (log: $state_dir/mosquitto.log)"
  cat >"$state_dir/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
log_dest stderr
CONF
  mosquitto -c "$state_dir/mosquitto.conf" >"$state_dir/mosquitto.log" 2>&1 &
  broker_pid=$!
  wait_for 10 broker_answers || { cat "$state_dir/mosquitto.log"; exit 1; }
fi

echo "== meter-agent run --config config/agent.example.yaml (log: $state_dir/agent.log)"
"$agent" run "${options[@]}" >"$state_dir/agent.log" 2>&1 &
agent_pid=$!
agent_subscribed() { grep -q "subscribed to 'zigbee2mqtt/#'" "$state_dir/agent.log"; }
wait_for 20 agent_subscribed || { cat "$state_dir/agent.log"; exit 1; }

messages="$source_dir/config/samples/mqtt-messages.tsv"
count=$(wc -l <"$messages")
echo "== publishing $count sample messages at QoS 1 (config/samples/mqtt-messages.tsv)"
while IFS=$'\t' read -r topic payload; do
  mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t "$topic" -m "$payload"
done <"$messages"

all_normalized() {
  local json
  json=$("$agent" status --json "${options[@]}" 2>/dev/null) || return 1
  [[ "$json" == *"\"raw_messages\":$count,"* && "$json" == *'"pending_normalization":0,'* ]]
}
wait_for 20 all_normalized || { echo "not everything arrived in time"; }

echo
echo "== meter-agent status"
"$agent" status "${options[@]}"
echo
echo "== meter-agent export --format jsonl"
"$agent" export "${options[@]}"
echo
echo "== stopping the agent (SIGTERM)"
kill "$agent_pid"
wait "$agent_pid" || true
agent_pid=""
tail -n 3 "$state_dir/agent.log"
echo
echo "The buffer stays in $state_dir/buffer.db; look again with:"
echo "  $agent export --format csv ${options[*]}"
