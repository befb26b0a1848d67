#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with AddressSanitizer
# and UndefinedBehaviorSanitizer, runs every test (ctest: unit, property, CLI,
# crash, power-cut (tests/powercut: needs /dev/fuse) and benchmark smoke
# tests), a 3-minute soak of the whole system (tests/soak), a short fuzzing smoke of each parser, the central service's tests
# against a real PostgreSQL it starts itself, and the style and include rules
# (scripts/format.sh --check, scripts/lint.sh).
#   scripts/test.sh            everything
#   FUZZ_SECONDS=0 scripts/test.sh   skip the fuzzing smoke
# Each suite ends with a line saying how long it took. One still running after
# METER_SUITE_LIMIT seconds (default 1800) is stopped, with everything it started,
# and counted as failed: the others still run and the summary names it.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${METER_TEST_BUILD_DIR:-$source_dir/build-test}
fuzz_seconds=${FUZZ_SECONDS:-20}
suite_limit=${METER_SUITE_LIMIT:-1800}
jobs=$(nproc)

"$source_dir/scripts/install-deps.sh"

passed=0
failed=0
failed_names=()
running_suite=""
watchdog=""
# A suite runs in a process group of its own (set -m), so this script's
# interruption is passed on to it and its services.
stop_running_suite() {
  local group
  for group in "$running_suite" "$watchdog"; do
    if [ -n "$group" ]; then kill -TERM -- -"$group" 2>/dev/null || true; fi
  done
}
trap 'stop_running_suite; exit 130' INT
trap 'stop_running_suite; exit 143' TERM
suite() {
  local name=$1 start=$SECONDS status=0
  shift
  echo
  echo "== $name"
  set -m
  "$@" </dev/null &
  running_suite=$!
  # Stops the suite's whole process group after the limit: SIGTERM (its traps
  # stop what it started), SIGKILL a minute later.
  (
    sleep "$suite_limit"
    echo "== $name: still running after $suite_limit s; stopping it" >&2
    kill -TERM -- -"$running_suite" 2>/dev/null || exit 0
    sleep 60
    kill -KILL -- -"$running_suite" 2>/dev/null || true
  ) &
  watchdog=$!
  set +m
  wait "$running_suite" || status=$?
  running_suite=""
  kill -- -"$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  watchdog=""
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    echo "== $name: passed in $((SECONDS - start)) s"
  else
    echo "== $name FAILED (exit status $status, after $((SECONDS - start)) s)"
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
}

# -O1 -g1 (line tables: the sanitizers' reports still name file and line), not
# RelWithDebInfo's -O2 -g: the build took 630 s of a 29-minute CI run on 2 cores,
# and 267 s so (the tests' own run time did not change: 206 s against 210 s).
build() {
  cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DMETER_SANITIZE=ON -DMETER_WERROR=ON >/dev/null &&
    cmake --build "$build_dir" -j "$jobs"
}
unit_tests() {
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir "$build_dir" -j "$jobs" --output-on-failure --timeout 600
}
lint() {
  local status=0
  "$source_dir/scripts/format.sh" --check || status=1
  # clang-tidy over common/ and agent/, then scripts/check-includes.sh.
  "$source_dir/scripts/lint.sh" || status=1
  return "$status"
}
fuzz_smoke() {
  METER_FUZZ_BUILD_DIR="$source_dir/build-fuzz" "$source_dir/tests/fuzz/run.sh" "$fuzz_seconds"
}

suite "build" build || true
if [ "$failed" -eq 0 ]; then
  suite "ctest" unit_tests
fi
suite "meter simulator and the soak's schedule (pytest: determinism, fault rates, truth, QoS 1 against mosquitto)" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider "$source_dir/tests/sim" "$source_dir/tests/soak"
suite "manual pages (in step with --help and the README's configuration table)" \
  env METER_AGENT_BINARY="$build_dir/agent/meter-agent" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider "$source_dir/tests/man"
if [ "$failed" -eq 0 ]; then
  # The README's first command, reduced: the agent just built, 10 meters, 2 simulated minutes.
  suite "quickstart end to end (reduced: mosquitto, agent, central, PostgreSQL, simulator)" \
    "$source_dir/tests/sim/quickstart_test.sh" "$build_dir/agent/meter-agent"
  # The soak (tests/soak/soak.sh), reduced: 3 minutes of a site with every kind of fault once
  # or more; every reading in PostgreSQL exactly once, fds and threads back to their baseline
  # (RSS reported only: its warm-up is too short, and the sanitizers' allocator holds memory).
  suite "soak (reduced: 3 min of faults; every reading in PostgreSQL exactly once)" \
    "$source_dir/tests/soak/soak.sh" --minutes 3 --out "$build_dir/soak" \
    --agent "$build_dir/agent/meter-agent" --mount-tool "$build_dir/tests/soak/soak_powercut_mount"
  suite "glitches end to end (issue #14: a day with a 0 and a spike, MQTT to the central's total)" \
    "$source_dir/tests/e2e/glitch_day_test.sh" "$build_dir/agent/meter-agent"
fi
# After the tests, so that a style finding does not keep them from running.
suite "lint (clang-format, clang-tidy, include rules)" lint
if [ "$fuzz_seconds" -gt 0 ]; then
  suite "fuzz smoke (${fuzz_seconds}s per target)" fuzz_smoke
fi
if [ -x "$source_dir/central/tests/run.sh" ]; then
  suite "central (pytest, real PostgreSQL)" "$source_dir/central/tests/run.sh"
fi
suite "gateway packages (arm64 under qemu, .debs, install, smoke test, purge)" "$source_dir/scripts/package-test.sh"
if [ -x "$source_dir/central/web/run-tests.sh" ]; then
  suite "central dashboard (vitest, build, e2e in headless Chromium)" "$source_dir/central/web/run-tests.sh"
fi

echo
echo "suites: $passed passed, $failed failed (in $((SECONDS / 60)) min $((SECONDS % 60)) s)"
for name in "${failed_names[@]}"; do echo "  failed: $name"; done
[ "$failed" -eq 0 ]
