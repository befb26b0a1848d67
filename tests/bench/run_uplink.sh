#!/usr/bin/env bash
# The uplink benchmark (docs/BENCHMARKS.md, "Uplink"): drain a backlog of N buffered events
# (default 1,000,000) from a real agent to the real central service (uvicorn + PostgreSQL) on
# loopback, then the same while events arrive live over MQTT. Reports events/s, bytes on the wire
# per event (and the compression ratio), and CPU seconds per 100k events of the agent and of the
# central (uvicorn + its PostgreSQL backends).
#
#   tests/bench/run_uplink.sh [EVENTS]          # builds meter-agent in Release in ../build-uplink-bench
#
# Environment: LIVE_EVENTS (default 50,000), METER_BENCH_BUILD_DIR (build directory), GZIP_LEVEL (default 1), BATCH (records per
# array, default 1000), IN_FLIGHT (uplink.max_in_flight, default 2), PG_FSYNC (default on: the central pays for durable commits).
set -euo pipefail

source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${METER_BENCH_BUILD_DIR:-$(dirname "$source_dir")/build-uplink-bench}
events=${1:-1000000}
live_events=${LIVE_EVENTS:-50000}
gzip_level=${GZIP_LEVEL:-1}
batch=${BATCH:-1000}
in_flight=${IN_FLIGHT:-2}

if [ -z "${DATABASE_URL:-}" ]; then
  cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" --target meter-agent >/dev/null
  export METER_BENCH_BUILD_DIR="$build_dir"
  exec env PG_FSYNC="${PG_FSYNC:-on}" "$source_dir/central/tests/with_postgres.sh" "$0" "$@"
fi

agent="$build_dir/agent/meter-agent"
work=$(mktemp -d /tmp/uplink-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
cpu_seconds() {  # utime + stime of a process and its children that were waited for, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"
}
pg_cpu_seconds() {  # this cluster's CPU: the postmaster, its live backends and the ones that exited
  local pm
  pm=$(head -1 "$(dirname "$CENTRAL_TEST_PG_LOG")/data/postmaster.pid")
  { cat "/proc/$pm/stat"; for pid in $(pgrep -P "$pm"); do cat "/proc/$pid/stat" 2>/dev/null; done; } |
    awk -v pm="$pm" -v hz="$(getconf CLK_TCK)" '{ t += $14 + $15; if ($1 == pm) t += $16 + $17 } END { print t / hz }'
}
metric() { curl -s "http://127.0.0.1:$http_port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wait_confirmed() {  # until the agent counts N measurements confirmed (polling its /metrics)
  local confirmed
  while :; do
    confirmed=$(metric meter_agent_uplink_measurements_confirmed_total)
    [ "${confirmed:-0}" -ge "$1" ] && return
    kill -0 "$agent_pid" || { tail -20 "$work/agent.log" >&2; exit 1; }
    sleep 0.5
  done
}

export PYTHONPATH="$source_dir"
/usr/bin/python3 -m central migrate 2>/dev/null
token=$(/usr/bin/python3 -m central gateway create bench-gw 2>/dev/null)
printf '%s\n' "$token" > "$work/token"; chmod 600 "$work/token"
central_port=$(free_port)
/usr/bin/python3 -m central serve --no-migrate --port "$central_port" >"$work/central.log" 2>&1 &
central_pid=$!; pids+=("$central_pid")

broker_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n%s' "$broker_port" \
  "$( [ "$(id -u)" = 0 ] && echo 'user root' )" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=("$!")

http_port=$(free_port)
cat > "$work/agent.yaml" <<YAML
gateway_id: bench-gw
buffer: {path: $work/buffer.db, durability: normal}
metrics:
  energy: {kind: counter, unit: kWh}
mappings:
  - topic: "meters/#"
  - topic: import
mqtt: {host: 127.0.0.1, port: $broker_port}
http: {listen: "127.0.0.1:$http_port"}
uplink:
  url: http://127.0.0.1:$central_port
  token_file: $work/token
  gzip_level: $gzip_level
  batch_max_records: $batch
  max_in_flight: $in_flight
  interval: 100ms
YAML

echo "generating and importing $events buffered events (1,000 meters)..." >&2
/usr/bin/python3 - "$events" > "$work/events.jsonl" <<'PY'
import sys, time
n = int(sys.argv[1])
meters = 1000
out = sys.stdout
for i in range(n):
    m, step = i % meters, i // meters
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1735689600 + step * 60))
    out.write('{"device_id":"meter-%04d","timestamp":"%s","metric_type":"energy","value":%d.%03d,"unit":"kWh"}\n'
              % (m, ts, 1000 + step, (m * 7 + step * 13) % 1000))
PY
"$agent" import --config "$work/agent.yaml" "$work/events.jsonl" >/dev/null 2>"$work/import.log" || {
  cat "$work/import.log" >&2; exit 1; }
"$agent" status --config "$work/agent.yaml" | sed -n '1,12p' >&2

until curl -sf "http://127.0.0.1:$central_port/docs" >/dev/null; do sleep 0.2; done
pg_before=$(pg_cpu_seconds); central_before=$(cpu_seconds "$central_pid")
start=$(date +%s.%N)
"$agent" run --config "$work/agent.yaml" 2>"$work/agent.log" &
agent_pid=$!; pids+=("$agent_pid")
until [ -n "$(metric meter_agent_uplink_backlog_records 2>/dev/null)" ]; do sleep 0.2; done
wait_confirmed "$events"
end=$(date +%s.%N)
agent_cpu=$(cpu_seconds "$agent_pid"); central_cpu=$(cpu_seconds "$central_pid")
pg_cpu=$(pg_cpu_seconds)
sent=$(metric meter_agent_uplink_bytes_sent_total); raw=$(metric meter_agent_uplink_bytes_uncompressed_total)
requests=$(metric meter_agent_uplink_requests_total)
stored=$(psql "$DATABASE_URL" -XAtqc "select count(*) from normalized_measurements")
report() {  # label events start end agent_cpu central_cpu pg_cpu sent raw requests
  /usr/bin/python3 - "$@" <<'PY'
import sys
label, n, start, end, agent, central, pg, sent, raw, requests = sys.argv[1:]
n = int(n); seconds = float(end) - float(start)
central = float(central) + float(pg)
print("| %s | %d | %.1f | **%.0f** | %.0f | %.0f | %.1f | %.2f | %.2f | %.0f%% | %s |"
      % (label, n, seconds, n / seconds, int(sent) / n, int(raw) / n, int(raw) / max(int(sent), 1),
         float(agent) / n * 1e5, central / n * 1e5, 100 * float(agent) / max(central, 1e-9), requests))
PY
}
echo "| run | events | seconds | events/s | wire B/event | JSON B/event | gzip ratio | agent CPU s/100k | central CPU s/100k (uvicorn + PostgreSQL) | agent / central CPU | requests |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
report "backlog drain (gzip $gzip_level, $batch/batch, $in_flight in flight)" "$events" "$start" "$end" "$agent_cpu" \
  "$(awk -v a="$central_cpu" -v b="$central_before" 'BEGIN{print a-b}')" \
  "$(awk -v a="$pg_cpu" -v b="$pg_before" 'BEGIN{print a-b}')" "$sent" "$raw" "$requests"
echo "central holds $stored measurements" >&2

# Live: meters publish over MQTT while the agent stores, normalizes and uploads at once.
if [ "$live_events" -gt 0 ]; then
  pg_before=$(pg_cpu_seconds); central_before=$(cpu_seconds "$central_pid"); agent_before=$(cpu_seconds "$agent_pid")
  sent_before=$sent; raw_before=$raw; requests_before=$requests
  start=$(date +%s.%N)
  /usr/bin/python3 - "$broker_port" "$live_events" <<'PY' &
import sys, time
import paho.mqtt.client as mqtt
port, n = int(sys.argv[1]), int(sys.argv[2])
c = mqtt.Client(client_id="bench-live", clean_session=True)
c.max_inflight_messages_set(500)
c.connect("127.0.0.1", port)
c.loop_start()
pending = []
for i in range(n):
    m, step = i % 1000, 100000 + i // 1000
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1735689600 + step * 60))
    pending.append(c.publish("meters/meter-%04d" % m, '{"device_id":"meter-%04d","timestamp":"%s","metric_type":"energy","value":%d,"unit":"kWh"}' % (m, ts, 1000 + step), qos=1))
    if len(pending) >= 500:  # a window of 500 unacknowledged messages
        for info in pending:
            info.wait_for_publish()
        pending = []
for info in pending:
    info.wait_for_publish()
c.disconnect()
PY
  publisher_pid=$!; pids+=("$publisher_pid")
  total=$((events + live_events))
  wait_confirmed "$total"
  end=$(date +%s.%N)
  wait "$publisher_pid" || true
  report "live over MQTT (publisher: python paho, QoS 1)" "$live_events" "$start" "$end" \
    "$(awk -v a="$(cpu_seconds "$agent_pid")" -v b="$agent_before" 'BEGIN{print a-b}')" \
    "$(awk -v a="$(cpu_seconds "$central_pid")" -v b="$central_before" 'BEGIN{print a-b}')" \
    "$(awk -v a="$(pg_cpu_seconds)" -v b="$pg_before" 'BEGIN{print a-b}')" \
    "$(( $(metric meter_agent_uplink_bytes_sent_total) - sent_before ))" \
    "$(( $(metric meter_agent_uplink_bytes_uncompressed_total) - raw_before ))" \
    "$(( $(metric meter_agent_uplink_requests_total) - requests_before ))"
fi
