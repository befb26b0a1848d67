#!/bin/sh
# Live QoS 1 throughput with a local mosquitto (tests/bench/bench_mqtt.cpp):
# a do-nothing Paho subscriber, the agent and the naive Python baseline, backlog
# drain and live, durability normal and power_loss. Release build.
#   tests/bench/run_mqtt.sh [--messages N] [--devices D] [--modes drain,live]
#                           [--durability normal,power_loss] [--replay FILE] [--naive off]
#                           [--ingest-workers N] [--acknowledge each|batched]
# --replay FILE: publish a recorded stream instead (tests/sim/meter_sim.py --write FILE; the
# agent maps it with the shipped presets; no naive baseline). --naive off: without the naive
# baseline (its power_loss runs take minutes). --ingest-workers N: the agent with
# mqtt.ingest_workers N (default: its own default). --acknowledge batched: the agent with
# mqtt.acknowledge batched (its own connection, acknowledgements after a shared sync).
# Builds in ../build-bench-mqtt (METER_BENCH_BUILD_DIR to change); the naive
# baseline needs Debian's python3-paho-mqtt (/usr/bin/python3).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${METER_BENCH_BUILD_DIR:-$(dirname "$root")/build-bench-mqtt}
if ! /usr/bin/python3 -c 'import paho.mqtt.client' 2>/dev/null; then
  echo "the naive baseline needs Debian's python3-paho-mqtt: apt-get install python3-paho-mqtt" >&2
  exit 1
fi
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_mqtt
exec "$build/tests/bench/mqtt/bench_mqtt" "$@"
