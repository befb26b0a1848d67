#!/usr/bin/env bash
# The gateway packages, checked end to end (issue #6; scripts/test.sh runs it):
#  1. arm64: cross build (Release) of the agent and the unit tests, the unit
#     tests (ctest label "unit") under qemu-aarch64-static, the arm64 .deb;
#  2. amd64: Release build of the agent, the amd64 .deb and meter-central (all),
#     in the background while 1. runs (they share nothing; see below);
#  3. lintian (no error or warning on the three .debs); the units: systemd-analyze
#     verify and security (exposure <= 1.5);
#  4. dpkg -i, check-config against the installed conffile, the installed agent
#     run as its own unprivileged user against a local mosquitto (a reading
#     published, then found by status and export; reload; stop), the central
#     package's command as its user, dpkg --remove and --purge, and nothing left
#     behind: files, directories, users, enablement links, masks.
# Needs root (dpkg). Build directories: build-arm64 and build-pkg (Release, no
# sanitizers), kept between runs for speed. Prints how long each step took at
# the end.
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
pkg_dir=${METER_PKG_BUILD_DIR:-$source_dir/build-pkg}
arm_dir=${METER_ARM64_BUILD_DIR:-$source_dir/build-arm64}
jobs=$(nproc)

if [ "$(id -u)" -ne 0 ]; then
  echo "package-test: needs root (dpkg -i, runs the agent as its own user)" >&2
  exit 1
fi
"$source_dir/scripts/install-deps.sh"
# shellcheck source=lib/cross-build.sh
source "$source_dir/scripts/lib/cross-build.sh"

# Each step's duration, for the summary at the end.
step_name=""
step_start=0
timings=()
end_step() {
  if [ -n "$step_name" ]; then
    timings+=("$(printf '%5d s  %s' $((SECONDS - step_start)) "$step_name")")
  fi
  step_name=""
}
step() {
  end_step
  step_name=$*
  step_start=$SECONDS
  printf '\n-- %s (at %d s)\n' "$*" "$SECONDS"
}
fail() {
  echo "package-test: FAILED: $*" >&2
  exit 1
}
# A build's output only when it fails (g++ 12 at -O3 floods it with -Wrestrict
# false positives from <string>).
build() {
  local log=$1
  shift
  if ! cmake --build "$@" >"$log" 2>&1; then
    grep -E -B2 -A8 'error|FAILED' "$log" | head -n 80
    fail "build: cmake --build $*"
  fi
}

work=$(mktemp -d /tmp/meter-package-test.XXXXXX)
chmod 755 "$work"
pids=()
amd64_pid=""
installed=()
# Whether a process is there and not a zombie.
running() {
  local state
  state=$(ps -o stat= -p "$1") || return 1
  [[ $state != Z* ]]
}
# Stops a process: SIGTERM, SIGKILL if it is still there 10 s later; reaps it if
# it is this shell's child. strace -o FILE blocks SIGTERM (strace(1), -I), so a
# strace's tracee is stopped first, after which strace ends by itself.
stop_process() {
  local pid=$1 child
  if [ "$(ps -o comm= -p "$pid")" = strace ]; then
    for child in $(pgrep -P "$pid"); do stop_process "$child"; done
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    running "$pid" || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
export -f running stop_process
cleanup() {
  local i
  # The newest first: the agent before the strace that traces it.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_process "${pids[i]}"
  done
  # The background amd64 build is a process group of its own: stop its compilers too.
  if [ -n "$amd64_pid" ]; then
    kill -- -"$amd64_pid" 2>/dev/null && wait "$amd64_pid" 2>/dev/null || true
  fi
  # A failed run must not leave the packages on the machine.
  if [ ${#installed[@]} -gt 0 ]; then
    dpkg --purge "${installed[@]}" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

for package in meter-agent meter-central; do
  if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q installed; then
    fail "$package is already installed on this machine; remove it first"
  fi
done

# ---- 2. amd64, in the background ---------------------------------------------
# The agent alone (no tests: what the .deb needs), then both packages. It runs
# beside the arm64 steps, with which it shares nothing, so that it fills the
# cores whenever they leave one idle (the sysroot download, configure, the test
# binary's link and test discovery, cpack): the suite takes about the CPU time
# of both builds over the cores instead of the sum of their single-core tails.
amd64_packages() {
  local start=$SECONDS
  cmake -S "$source_dir" -B "$pkg_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMETER_TESTS=OFF \
    -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON >/dev/null
  build "$work/build-pkg.log" "$pkg_dir" -j "$jobs" --target meter-agent
  (cd "$pkg_dir" && rm -f ./*.deb && cpack -G DEB >/dev/null)
  echo "amd64 build and .debs took $((SECONDS - start)) s (beside the arm64 steps)"
}
step "amd64: Release build and .debs, started in the background"
set -m # its own process group, which cleanup can stop as a whole
amd64_packages </dev/null >"$work/amd64.log" 2>&1 &
amd64_pid=$!
set +m

# ---- 1. arm64 ---------------------------------------------------------------
step "arm64: cross build"
cross_build arm64 "$source_dir" "$arm_dir" "$work/build-arm64.log" "$jobs" meter-agent meter_tests

step "arm64: unit tests under qemu-aarch64-static"
# Label "unit": the "process" tests start the arm64 agent binary, a broker or
# the daemon's threads, which the emulated run cannot (tests/CMakeLists.txt).
# The order-independence property test with 1,000 streams, not 10,000 (emulated).
if ! METER_PROPERTY_STREAMS=1000 ctest --test-dir "$arm_dir" -L unit -j "$jobs" --output-on-failure --timeout 300 \
  >"$work/ctest-arm64.log" 2>&1; then
  cat "$work/ctest-arm64.log"
  fail "arm64 unit tests under qemu"
fi
tail -n 4 "$work/ctest-arm64.log"

step "arm64: .deb"
arm_deb=$(cross_deb arm64 "$arm_dir")

step "amd64: waiting for the background build"
if ! wait "$amd64_pid"; then
  amd64_pid=""
  cat "$work/amd64.log"
  fail "amd64 build and .debs"
fi
amd64_pid=""
tail -n 1 "$work/amd64.log" | sed 's/^/  /'
agent_deb=$(ls "$pkg_dir"/meter-agent_*_amd64.deb)
central_deb=$(ls "$pkg_dir"/meter-central_*_all.deb)

size_of() { dpkg-deb --fsys-tarfile "$1" | tar -xO ./usr/bin/meter-agent | wc -c; }
for deb in "$agent_deb" "$arm_deb" "$central_deb"; do
  dpkg-deb -f "$deb" Package Architecture Installed-Size Depends | sed 's/^/  /'
done
dpkg-deb --fsys-tarfile "$arm_deb" | tar -xO ./usr/bin/meter-agent >"$work/meter-agent.arm64"
if file "$work/meter-agent.arm64" | grep -q 'not stripped'; then fail "arm64 binary not stripped"; fi
echo "  stripped meter-agent: amd64 $(size_of "$agent_deb") bytes, arm64 $(size_of "$arm_deb") bytes"
dpkg-deb -f "$arm_deb" Depends | grep -q 'libyaml-cpp0.7' || fail "arm64 Depends lack shlibdeps"

step "lintian: no error or warning on the three packages"
# Overrides only with their reason written beside them (systemd/deb/*/lintian-overrides).
# Informational tags are listed, not failed on.
if ! lintian --fail-on error,warning --tag-display-limit 0 "$agent_deb" "$arm_deb" "$central_deb" \
  >"$work/lintian.log" 2>&1; then
  grep -v 'root privileges' "$work/lintian.log"
  fail "lintian reports errors or warnings (above)"
fi
# (grep -v finds nothing to print when lintian said nothing: not a failure.)
{ grep -v 'root privileges' "$work/lintian.log" || true; } | sed 's/^/  /'

# ---- 3 and 4. install, check, smoke test, purge ------------------------------
# Every system call a traced run made after exec'ing $2, against the units'
# filter: @system-service minus @privileged and @resources, plus setpriority (the
# normalizer thread lowers its own priority) and clock_adjtime (EPERM expected), and no
# W+X memory
# (MemoryDenyWriteExecute=yes). CI has no systemd to apply the filter itself.
cat >"$work/check_syscalls.py" <<'PY'
import re, subprocess, sys

def expand(group, seen):
    if group in seen:
        return set()
    seen.add(group)
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                         text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            calls |= expand(item, seen) if item.startswith("@") else {item}
    return calls

allowed = ((expand("@system-service", set()) | expand("@default", set()))
           - expand("@privileged", set()) - expand("@resources", set())) | {"setpriority"}
# clock_adjtime: the clock-trust check's read-only adjtimex when timesyncd's flag file is
# absent. The unit forbids it (ProtectClock=, @privileged) with EPERM, which the agent
# reports as a clock of unknown state (agent/ops/clock_sync.cpp): expected, not a failure.
allowed |= {"clock_adjtime"}
made, write_exec, started = set(), [], False
for line in open(sys.argv[1]):
    if f'execve("{sys.argv[2]}"' in line:
        started = True
        continue
    match = re.match(r"\d+ +([a-z0-9_]+)\(", line)
    if started and match:
        made.add(match.group(1))
        if (match.group(1) in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in line) or (
                match.group(1) == "mmap" and "PROT_WRITE|PROT_EXEC" in line):
            write_exec.append(line.strip())
forbidden = sorted(made - allowed)
print(f"  {sys.argv[2]}: {len(made)} distinct system calls"
      + (f"; forbidden by the unit: {' '.join(forbidden)}" if forbidden else ", all allowed by the unit")
      + "".join(f"\n  W+X memory: {line}" for line in write_exec[:5]))
sys.exit(1 if forbidden or write_exec or not made else 0)
PY
check_syscalls() { /usr/bin/python3 "$work/check_syscalls.py" "$@"; }

step "install"
# Everything of the packages' on this machine before installing, to compare after the purge.
snapshot() {
  {
    getent passwd meter-agent meter-central || true
    getent group meter-agent meter-central || true
    find /etc /lib/systemd /usr/lib/systemd /usr/lib/sysusers.d /usr/lib/tmpfiles.d /var/lib \
      /usr/share/doc /usr/share/meter-agent /usr/lib/meter-central /usr/bin \
      -path /var/lib/dpkg -prune -o -path /var/lib/apt -prune -o -path /var/lib/postgresql -prune -o \
      -name '*meter-*' -print 2>/dev/null || true
  } | sort
}
snapshot >"$work/before"
installed=(meter-agent meter-central)
dpkg -i "$agent_deb" "$central_deb" >/dev/null
getent passwd meter-agent | grep -q ':/var/lib/meter-agent:' || fail "no meter-agent user"
[ "$(stat -c %U:%a /var/lib/meter-agent)" = meter-agent:750 ] || fail "/var/lib/meter-agent"
[ -L /etc/systemd/system/multi-user.target.wants/meter-agent.service ] ||
  fail "meter-agent.service not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/meter-central.service ] ||
  fail "meter-central.service enabled before its database is configured"
[ "$(stat -c %G:%a /etc/meter-central/central.env)" = meter-central:640 ] ||
  fail "central.env must be readable by root and meter-central only"
dpkg-query --control-show meter-agent conffiles | grep -qx '/etc/meter-agent/agent.yaml' ||
  fail "agent.yaml is not a conffile"

step "units: systemd-analyze verify and security"
for unit in meter-agent meter-central; do
  systemd-analyze verify "/lib/systemd/system/$unit.service"
  exposure=$(systemd-analyze security --offline=true "/lib/systemd/system/$unit.service" 2>&1 |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
  echo "  $unit.service exposure $exposure"
  awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 1.5) }' || fail "$unit exposure $exposure > 1.5"
done

step "check-config against the installed conffile"
setpriv --reuid meter-agent --regid meter-agent --init-groups --no-new-privs -- \
  /usr/bin/meter-agent check-config --config /etc/meter-agent/agent.yaml

step "smoke test: the installed agent as meter-agent against a local mosquitto"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
mkdir -p "$work/mosquitto.d" "$work/mosquitto-data"
chown mosquitto "$work/mosquitto-data"
# The package's broker snippet, the way README.md tells to use it.
cp /usr/share/meter-agent/mosquitto/gateway.conf "$work/mosquitto.d/"
cat >"$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence_location $work/mosquitto-data/
log_dest stderr
include_dir $work/mosquitto.d
CONF
mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
pids+=($!)
for _ in $(seq 50); do
  mosquitto_pub -p "$port" -t probe -m x 2>/dev/null && break
  sleep 0.1
done
# The installed configuration with only the broker's port changed: its buffer
# is /var/lib/meter-agent/buffer.db, its presets /usr/share/meter-agent/presets.
# Two ingest workers: the system calls of their processes (fork, exec, the
# socket to the daemon) are checked against the unit's filter too.
sed "s/^  # port: 1883\$/  port: $port\n  ingest_workers: 2/" /etc/meter-agent/agent.yaml >"$work/agent.yaml"
grep -q "^  port: $port\$" "$work/agent.yaml" || fail "could not set the port in the config copy"
as_agent() { setpriv --reuid meter-agent --regid meter-agent --init-groups --no-new-privs -- "$@"; }
gateway=$(sed -n 's/^gateway_id: *//p' "$work/agent.yaml")
mosquitto_sub -p "$port" -t "meter-agent/$gateway/status" -C 1 -W 30 >"$work/status" &
watcher=$!
pids+=("$watcher")
# Under strace, to check afterwards that every system call the agent made is one
# the unit's SystemCallFilter allows (CI has no systemd to apply the filter).
# The agent is strace's child: setpriv execs it, so signals go to it directly.
strace -f -qq -o "$work/agent.strace" \
  setpriv --reuid meter-agent --regid meter-agent --init-groups --no-new-privs -- \
  /usr/bin/meter-agent run --config "$work/agent.yaml" 2>"$work/agent.log" &
strace_pid=$!
pids+=("$strace_pid")
agent_pid=""
# By name: strace's first child can be its own short-lived probe of ptrace's
# features (strace 6.1), not the agent (seen on a loaded machine).
for _ in $(seq 50); do
  agent_pid=$(pgrep -P "$strace_pid" -x meter-agent || true)
  [ -n "$agent_pid" ] && break
  sleep 0.1
done
[ -n "$agent_pid" ] || fail "the agent did not start"
pids+=("$agent_pid")
wait "$watcher" || {
  cat "$work/agent.log"
  fail "the agent did not come online"
}
grep -q '"status":"online"' "$work/status" || fail "status: $(cat "$work/status")"
# The readings go to the workers' shared subscription: publish once both subscribed.
for _ in $(seq 100); do
  [ "$(grep -c "subscribed to '\$share/" "$work/agent.log")" -ge 2 ] && break
  sleep 0.1
done
[ "$(grep -c "subscribed to '\$share/" "$work/agent.log")" -ge 2 ] || {
  cat "$work/agent.log"
  fail "the ingest workers did not subscribe"
}
mosquitto_pub -p "$port" -q 1 -t meters/smoke-1 \
  -m '{"device_id":"smoke-1","timestamp":"2026-01-01T00:00:00Z","metric_type":"energy","value":1234.5,"unit":"kWh"}'
found=""
for _ in $(seq 100); do
  if as_agent /usr/bin/meter-agent export --config "$work/agent.yaml" 2>/dev/null |
    grep '"device_id":"smoke-1"' | grep -q '1234.5'; then
    found=yes
    break
  fi
  sleep 0.1
done
[ -n "$found" ] || {
  cat "$work/agent.log"
  fail "the published reading is not in the export"
}
as_agent /usr/bin/meter-agent status --config "$work/agent.yaml" | sed 's/^/  /' | head -n 12
kill -HUP "$agent_pid" || {
  cat "$work/agent.log"
  fail "the agent (pid $agent_pid) is gone before the reload"
}
for _ in $(seq 50); do grep -q 'reloaded' "$work/agent.log" && break; sleep 0.1; done
grep -q 'reloaded' "$work/agent.log" || fail "SIGHUP did not reload"
kill -TERM "$agent_pid"
wait "$strace_pid" || fail "the agent exited with $? on SIGTERM"
grep -q 'stopped' "$work/agent.log" || fail "no clean stop in the log"
check_syscalls "$work/agent.strace" /usr/bin/meter-agent ||
  fail "the agent made system calls its unit forbids"
[ "$(stat -c %U /var/lib/meter-agent/buffer.db)" = meter-agent ] || fail "buffer owner"

step "the central package as meter-central: migrate, serve, /healthz (throwaway PostgreSQL)"
# DATABASE_URL comes from with_postgres.sh. Under strace like the agent; the
# server is strace's only child (setpriv, then the wrapper, exec into python):
# the trap stops it (stop_process: the tracee, then strace).
"$source_dir/central/tests/with_postgres.sh" env CENTRAL_PORT="$(free_port)" bash -c '
  set -euo pipefail
  as_central() { setpriv --reuid meter-central --regid meter-central --init-groups --no-new-privs -- "$@"; }
  as_central /usr/bin/meter-central migrate 2>/dev/null
  strace -f -qq -o "'"$work"'/central.strace" \
    setpriv --reuid meter-central --regid meter-central --init-groups --no-new-privs -- \
    /usr/bin/meter-central serve --no-migrate 2>"'"$work"'/central.log" &
  tracer=$!
  trap "stop_process $tracer" EXIT
  for _ in $(seq 150); do
    if /usr/bin/python3 -c "import urllib.request as u; u.urlopen(\"http://127.0.0.1:$CENTRAL_PORT/healthz\", timeout=1)" 2>/dev/null; then
      echo "  /healthz answers 200"
      exit 0
    fi
    sleep 0.1
  done
  cat "'"$work"'/central.log"
  exit 1' || fail "meter-central did not serve"
check_syscalls "$work/central.strace" /usr/bin/python3 ||
  fail "meter-central made system calls its unit forbids"

step "upgrade (reinstall), remove, purge"
dpkg -i "$agent_deb" >/dev/null
[ -L /etc/systemd/system/multi-user.target.wants/meter-agent.service ] ||
  fail "the upgrade lost the enablement"
dpkg --remove meter-agent meter-central >/dev/null
[ "$(readlink /etc/systemd/system/meter-agent.service)" = /dev/null ] ||
  fail "remove did not mask the unit (as debhelper does)"
[ -f /etc/meter-agent/agent.yaml ] || fail "remove must keep the conffile"
dpkg --purge meter-agent meter-central >/dev/null
installed=()
snapshot >"$work/after"
if ! diff -u "$work/before" "$work/after"; then
  fail "the purge left the above behind"
fi
echo "  nothing left behind"
end_step
printf '\npackage-test: passed in %d s; by step:\n' "$SECONDS"
printf '%s\n' "${timings[@]}"
