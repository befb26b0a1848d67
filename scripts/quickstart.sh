#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the agent's main job
# on the shipped sample: import the readings, show the status, export the
# normalized measurements.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$source_dir/build"

"$source_dir/scripts/install-deps.sh"
cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETER_TESTS=OFF >/dev/null
cmake --build "$build_dir" --target meter-agent

agent="$build_dir/agent/meter-agent"
state_dir="$build_dir/quickstart"
mkdir -p "$state_dir"
rm -f "$state_dir"/buffer.db*
options=(--config "$source_dir/config/agent.example.yaml" --buffer "$state_dir/buffer.db")

echo
echo "== meter-agent import config/samples/seed-readings.jsonl"
"$agent" import "$source_dir/config/samples/seed-readings.jsonl" "${options[@]}"
echo
echo "== meter-agent status"
"$agent" status "${options[@]}"
echo
echo "== meter-agent export --format jsonl"
"$agent" export "${options[@]}"
echo
echo "The buffer is $state_dir/buffer.db; try: $agent export --format csv ${options[*]}"
