#!/usr/bin/env bash
# The checks scripts/vm-test.sh runs inside the arm64 (or armhf) VM, as root, after systemd
# booted it (meter-vm-run.service; the host's share is /mnt/share). One line per
# check, "check: NAME: ok" or "check: NAME: FAILED (why)"; the host counts them.
# Environment from the host: /mnt/share/env (the .deb's name, the source and
# build directories, the central's address as the VM sees it).
set -uo pipefail
# shellcheck source=/dev/null
source /mnt/share/env
failures=0
passed=0
# Each line ends with when the check ended, in seconds since the checks began.
ok() {
  echo "check: $1: ok${2:+ ($2)} [$SECONDS s]"
  passed=$((passed + 1))
}
bad() {
  echo "check: $1: FAILED ($2) [$SECONDS s]"
  failures=$((failures + 1))
}
# Waits up to $1 seconds (emulated time is slow) for the command after it to succeed.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}
as_agent() { runuser -u meter-agent -- "$@"; }
config=/etc/meter-agent/agent.yaml
export_all() { as_agent /usr/bin/meter-agent export --config "$config" 2>/dev/null; }
main_pid() { systemctl show -p MainPID --value meter-agent; }
restarts() { systemctl show -p NRestarts --value meter-agent; }
reading() { # DEVICE VALUE [METRIC UNIT]: a seed_json reading on meters/DEVICE
  printf '{"device_id":"%s","timestamp":"2026-01-01T00:%02d:00Z","metric_type":"%s","value":%s,"unit":"%s"}' \
    "$1" "$((${2%.*} % 60))" "${3:-energy}" "$2" "${4:-kWh}"
}
exported() { export_all | grep "\"device_id\":\"$1\"" | grep -q "$2"; }

echo "vm: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo), systemd $(systemctl --version | head -n 1 | cut -d' ' -f2)"

# ---- the machine -------------------------------------------------------------
if [ "$(uname -m)" = "$machine" ]; then ok "uname -m is $machine"; else bad "uname -m is $machine" "$(uname -m)"; fi

# ---- the broker, as the README says for a gateway ----------------------------
cp "$source_dir/config/mosquitto/gateway.conf" /etc/mosquitto/conf.d/
systemctl restart mosquitto
if wait_for 60 mosquitto_pub -q 1 -t probe -m x 2>/dev/null; then
  ok "mosquitto with gateway.conf running"
else
  bad "mosquitto with gateway.conf running" "$(systemctl status mosquitto --no-pager | tail -n 5)"
fi

# ---- the package, installed as on a gateway: systemd starts the agent -------
gateway=""
if DEBIAN_FRONTEND=noninteractive dpkg -i "/mnt/share/$deb" >/tmp/dpkg.log 2>&1; then
  ok "dpkg -i $deb"
else
  bad "dpkg -i $deb" "$(tail -n 5 /tmp/dpkg.log)"
fi
gateway=$(sed -n 's/^gateway_id: *//p' "$config")
if wait_for 300 systemctl is-active --quiet meter-agent; then
  ok "systemd started meter-agent (Type=notify: active once ready)" \
    "$(systemctl show -p ActiveEnterTimestampMonotonic --value meter-agent | awk '{printf "%.1f s after boot", $1 / 1e6}')"
else
  bad "systemd started meter-agent" "$(systemctl status meter-agent --no-pager | tail -n 8)"
fi

# The central on the host (scripts/vm-test.sh), through qemu's forwarded port
# ($central_address). The agent takes http:// only to loopback (the token would
# travel in the clear): systemd's socket proxy brings it to 127.0.0.1:8080.
cat >/etc/systemd/system/central-proxy.socket <<UNIT
[Socket]
ListenStream=127.0.0.1:8080
UNIT
cat >/etc/systemd/system/central-proxy.service <<UNIT
[Service]
ExecStart=/lib/systemd/systemd-socket-proxyd $central_address
UNIT
systemctl daemon-reload
systemctl start central-proxy.socket
cat >>"$config" <<YAML

# vm-test: the central on the host (qemu's user-mode network, systemd-socket-proxyd).
uplink:
  url: http://127.0.0.1:8080
  token_file: /etc/meter-agent/token
YAML
install -o meter-agent -g meter-agent -m 0600 /mnt/share/token /etc/meter-agent/token
systemctl restart meter-agent
wait_for 300 systemctl is-active --quiet meter-agent

status_is() { mosquitto_sub -t "meter-agent/$gateway/status" -C 1 -W 5 2>/dev/null | grep -q "$1"; }
if wait_for 120 status_is '"status":"online"'; then
  ok "retained status online"
else
  bad "retained status online" "$(mosquitto_sub -t "meter-agent/$gateway/status" -C 1 -W 5)"
fi

mosquitto_pub -q 1 -t meters/vm-1 -m "$(reading vm-1 1234.5)"
if wait_for 120 exported vm-1 1234.5; then
  ok "a published reading is acknowledged, normalized and exported"
else
  bad "a published reading is acknowledged, normalized and exported" "$(journalctl -u meter-agent --no-pager | tail -n 8)"
fi

if [ -n "${quick:-}" ]; then # scripts/vm-test.sh --quick: boot, install, one reading
  echo "passed=$passed failures=$failures" >/mnt/share/counts
  [ "$failures" -eq 0 ]
  exit
fi

# ---- the service user and state directory, as the packaging says ------------
# (systemd/meter-agent.sysusers, .tmpfiles, the unit's StateDirectory=)
user_line=$(getent passwd meter-agent || true)
if [ "$(echo "$user_line" | cut -d: -f6)" = /var/lib/meter-agent ] &&
  [ "$(echo "$user_line" | cut -d: -f3)" -lt 1000 ] &&
  [ "$(stat -c %U:%G:%a /var/lib/meter-agent)" = meter-agent:meter-agent:750 ] &&
  [ "$(stat -c %U /var/lib/meter-agent/buffer.db)" = meter-agent ] &&
  [ "$(ps -o user= -p "$(main_pid)")" = meter-agent ]; then
  ok "service user meter-agent (system, home /var/lib/meter-agent), state directory 750, buffer and process its own"
else
  bad "service user and state directory" "passwd '$user_line', $(stat -c %U:%G:%a /var/lib/meter-agent), process $(ps -o user= -p "$(main_pid)")"
fi

# ---- systemd-analyze security, as systemd applies the unit -------------------
exposure=$(systemd-analyze security meter-agent 2>&1 |
  sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
if awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 1.5) }'; then
  ok "systemd-analyze security meter-agent <= 1.5" "$exposure"
else
  bad "systemd-analyze security meter-agent <= 1.5" "exposure '$exposure'"
fi

# ---- systemctl reload: a changed config applied, a broken one refused --------
# A new mapping: the agent subscribes to its topic on the reload, and a reading
# published there is exported. (A mapping, not a new metric: the central takes
# only its canonical metrics, and every reading here must reach it.)
journal_since() { journalctl -u meter-agent --no-pager --since "@$1" -o cat; }
add_mapping() {
  sed -i 's/^mappings:$/mappings:\n  - topic: "vmreload\/#"\n    format: seed_json/' "$config"
}
cp "$config" /tmp/agent.yaml.orig
since=$(date +%s)
add_mapping
systemctl reload meter-agent
if wait_for 60 sh -c "journalctl -u meter-agent --no-pager --since @$since -o cat | grep -q 'reloaded .*changed mappings'"; then
  # The subscription follows the reload; a reading sent before it lands would
  # have no subscriber, so it is sent until one is exported (QoS 1, same reading).
  reload_applied() {
    mosquitto_pub -q 1 -t vmreload/vm-reload -m "$(reading vm-reload 42.5)"
    wait_for 10 exported vm-reload 42.5
  }
  if wait_for 120 reload_applied; then
    ok "systemctl reload applies a changed config (a new mapping's reading exported)"
  else
    bad "systemctl reload applies a changed config" "the new mapping's reading is not exported"
  fi
else
  bad "systemctl reload applies a changed config" "$(journal_since "$since" | tail -n 5)"
fi
pid_before=$(main_pid)
since=$(date +%s)
printf 'no_such_key: 1\n' >>"$config"
systemctl reload meter-agent
if wait_for 60 sh -c "journalctl -u meter-agent --no-pager --since @$since -o cat | grep -q 'reload refused.*agent.yaml:[0-9]*:[0-9]*'" &&
  systemctl is-active --quiet meter-agent && [ "$(main_pid)" = "$pid_before" ]; then
  ok "systemctl reload refuses a broken config (file:line:column), the agent runs on" \
    "$(journal_since "$since" | grep -o 'agent.yaml:[0-9]*:[0-9]*.*' | head -n 1 | cut -c1-80)"
else
  bad "systemctl reload refuses a broken config" "$(journal_since "$since" | tail -n 5)"
fi
cp /tmp/agent.yaml.orig "$config"
add_mapping
systemctl reload meter-agent

# ---- RSS and CPU at 100 readings/s -------------------------------------------
# 60 s of 100 readings a second (20 devices, 5 readings each per second). Under
# TCG the CPU share is the emulator's, not a Pi's: a ceiling, not a figure.
wait_for 120 systemctl is-active --quiet meter-agent
pid=$(main_pid)
seconds=60
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks_before=$(cpu_ticks)
start_ns=$(date +%s%N)
for s in $(seq 1 "$seconds"); do
  next=$(( $(date +%s%N) + 1000000000 ))
  for d in $(seq 1 20); do
    for r in 1 2 3 4 5; do
      printf '{"device_id":"load-%d","timestamp":"2026-01-03T%02d:%02d:%02d.%d00Z","metric_type":"power","value":%d.5,"unit":"W"}\n' \
        "$d" $((s / 3600)) $((s / 60 % 60)) $((s % 60)) "$r" "$r"
    done
  done
  now=$(date +%s%N)
  [ "$now" -lt "$next" ] && sleep "$(awk -v n=$((next - now)) 'BEGIN { printf "%.3f", n / 1e9 }')"
done | mosquitto_pub -q 1 -t meters/load -l
load_count() { export_all | grep -c '"device_id":"load-'; }
load_complete() { [ "$(load_count)" -ge $((seconds * 100)) ]; }
wait_for 300 load_complete
elapsed_ns=$(( $(date +%s%N) - start_ns ))
ticks=$(( $(cpu_ticks) - ticks_before ))
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
cpu=$(awk -v t="$ticks" -v hz="$hz" -v ns="$elapsed_ns" 'BEGIN { printf "%.1f", 100 * t / hz / (ns / 1e9) }')
loaded=$(load_count)
echo "measure: 100 readings/s for $seconds s ($loaded exported): RSS $rss kB (peak $hwm kB), CPU $cpu% of one emulated core over $(( elapsed_ns / 1000000000 )) s (TCG: not a Pi's figure)"
if [ "$loaded" -ge $((seconds * 100)) ]; then
  ok "100 readings/s for $seconds s: all $loaded exported" "RSS $rss kB, CPU $cpu% under TCG"
else
  bad "100 readings/s for $seconds s" "$loaded of $((seconds * 100)) exported"
fi

# ---- the test suite and the series goldens, started in the background --------
# Started here, after the measurement above, so that nothing runs beside it: they
# run while the checks below mostly wait (the kill loop's publisher, the watchdog's
# minute); their results are read at the end. Each writes its output to
# /tmp/NAME.log, its exit status and the second it ended to /tmp/NAME.end, and the
# CPU time it took (times: user and system, its processes' and theirs) to /tmp/NAME.times.
in_background() { # NAME COMMAND...
  local name=$1
  shift
  (
    "$@" >"/tmp/$name.log" 2>&1
    echo "$? $SECONDS" >"/tmp/$name.end"
    times >"/tmp/$name.times"
  ) &
}
# cpu_of NAME: the CPU seconds (user + system) of what in_background NAME ran.
cpu_of() {
  tail -n 1 "/tmp/$1.times" 2>/dev/null |
    awk '{ for (i = 1; i <= NF; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } } END { printf "%.0f", s }'
}
# The tests' programs come from the host's build-arm64 or build-armhf (shared at
# its own path). The cross build recorded qemu-aarch64-static (qemu-arm-static) as
# their emulator; here the CPU is the target's, so that name runs its program
# natively (the -L sysroot option dropped).
for emulator in qemu-aarch64-static qemu-arm-static; do
  cat >/usr/local/bin/$emulator <<'SHIM'
#!/bin/sh
# vm-test: the cross build's emulator prefix, inside the VM: run natively.
[ "$1" = -L ] && shift 2
exec "$@"
SHIM
  chmod 755 /usr/local/bin/$emulator
done
DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/share/test-debs/*.deb >/tmp/dpkg-tests.log 2>&1 ||
  echo "vm: the tests' packages did not install: $(tail -n 3 /tmp/dpkg-tests.log)"
suite_start=$SECONDS
# The order-independence property test with 1,000 streams, not 10,000: under
# TCG the full one takes about 12 minutes (17 s natively).
export METER_PROPERTY_STREAMS=1000
# The "unit" tests (ctest's label) all in one meter_tests process: started once
# per test, as ctest does, the program's start under TCG cost more than most of
# these tests (about 0.3 s each, 342 times). --warn NoTests: a spec that matches
# nothing fails instead of passing.
in_background unit timeout 1800 "$build_dir/tests/meter_tests" --warn NoTests "$(cat "$build_dir/tests/unit-test-spec")"
unit_pid=$!
# The "process" tests (mosquitto, the agent binary, the daemon's threads) under
# ctest, each in its own process; not the crash, bench, uplink and powercut programs,
# which vm-test does not build (uplink_e2e and powercut are labelled "process" too;
# they need PostgreSQL, FUSE). Not series_golden either: its TIMEOUT (300 s, for
# ~16 s on amd64) is too short under TCG, and ctest lets no option lengthen a
# test's own TIMEOUT; the same script runs below, with a limit of its own.
in_background ctest ctest --test-dir "$build_dir" -L process -LE 'uplink|powercut|crash|bench' -E '^series_golden$' \
  -j "$(nproc)" --timeout 900 --output-on-failure
ctest_pid=$!
in_background golden timeout 1800 "$source_dir/tests/data/golden/check_golden.sh" --jobs "$(nproc)" \
  "$build_dir/agent/meter-agent" "$source_dir"
golden_pid=$!

# ---- kill -9: Restart=on-failure, nothing lost -------------------------------
# QoS 1 readings published while the agent is SIGKILLed a few times (the kill
# test's loop, smaller): every one is in the export once the agent is back.
kill_messages=${kill_messages:-600}
kills=${kills:-3}
for i in $(seq 1 "$kill_messages"); do
  printf '{"device_id":"vm-kill","timestamp":"2026-01-02T%02d:%02d:%02dZ","metric_type":"energy","value":%d,"unit":"kWh"}\n' \
    $((i / 3600)) $((i / 60 % 60)) $((i % 60)) "$i"
done >/tmp/kill.jsonl
restarts_before=$(restarts)
# A persistent publisher (the broker keeps what the agent has not acknowledged), fed
# 20 readings every half second. After each quarter of the readings (for 3 kills)
# the agent is SIGKILLed, and the readings go on while it restarts. (A `sleep` after
# each reading, as before, started 600 processes: slow under TCG.)
trap '' PIPE # a publisher that died is reported by the counts below, not by a signal here
exec {publish}> >(exec mosquitto_pub -q 1 -t meters/vm-kill -l)
publisher=$!
exec {readings}</tmp/kill.jsonl
killed=0
sent=0
while mapfile -t -n 20 -u "$readings" batch && [ ${#batch[@]} -gt 0 ]; do
  printf '%s\n' "${batch[@]}" >&"$publish"
  sent=$((sent + ${#batch[@]}))
  sleep 0.5
  if [ "$killed" -lt "$kills" ] && [ "$sent" -ge $(((killed + 1) * kill_messages / (kills + 1))) ] &&
    wait_for 120 systemctl is-active --quiet meter-agent; then
    pid=$(main_pid)
    [ "$pid" != 0 ] && kill -9 "$pid" && killed=$((killed + 1))
  fi
done
exec {readings}<&- {publish}>&-
wait "$publisher"
trap - PIPE
wait_for 180 systemctl is-active --quiet meter-agent
kill_count() { export_all | grep -c '"device_id":"vm-kill"'; }
kill_complete() { [ "$(kill_count)" -ge "$kill_messages" ]; }
wait_for 300 kill_complete
got=$(kill_count)
distinct=$(export_all | grep '"device_id":"vm-kill"' | grep -o '"value":[0-9.]*' | sort -u | wc -l)
if [ "$killed" -eq "$kills" ] && [ "$((  $(restarts) - restarts_before ))" -ge "$kills" ] &&
  [ "$got" -eq "$kill_messages" ] && [ "$distinct" -eq "$kill_messages" ]; then
  ok "kill -9 x$kills: Restart=on-failure, $kill_messages of $kill_messages readings exported, none twice"
else
  bad "kill -9: Restart=on-failure, nothing lost" "kills $killed, restarts $(( $(restarts) - restarts_before )), exported $got ($distinct distinct) of $kill_messages"
fi

# ---- SIGSTOP: the watchdog restarts it ---------------------------------------
pid=$(main_pid)
restarts_before=$(restarts)
since=$(date +%s)
kill -STOP "$pid"
restarted() { [ "$(restarts)" -gt "$restarts_before" ] && systemctl is-active --quiet meter-agent && [ "$(main_pid)" != "$pid" ]; }
# WatchdogSec=60s, then SIGABRT (held by the stopped process) and SIGKILL after TimeoutAbortSec.
if wait_for 400 restarted; then
  ok "SIGSTOP: the watchdog restarted the agent" "$(($(date +%s) - since)) s; $(journal_since "$since" | grep -o 'Watchdog timeout[^!]*' | head -n 1)"
else
  bad "SIGSTOP: the watchdog restarted the agent" "$(journalctl -u meter-agent --no-pager --since @"$since" | tail -n 5)"
  kill -CONT "$pid" 2>/dev/null
fi

# ---- uploads: everything reaches the central --------------------------------
# The host compares the central's rows with these counts once the VM is off.
status_json() { as_agent /usr/bin/meter-agent status --json --config "$config" 2>/dev/null; }
json_number() { grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2; }
uploaded() {
  local json
  json=$(status_json)
  [ "$(echo "$json" | json_number pending_normalization)" = 0 ] &&
    [ "$(echo "$json" | json_number unsynced)" = 0 ]
}
if wait_for 600 uploaded; then
  json=$(status_json)
  echo "raw_messages=$(echo "$json" | json_number raw_messages)" >/mnt/share/uploaded
  echo "measurements=$(echo "$json" | json_number measurements)" >>/mnt/share/uploaded
  echo "gateway=$gateway" >>/mnt/share/uploaded
  echo "uploads: the agent reports nothing left to upload ($(tr '\n' ' ' </mnt/share/uploaded))"
else
  bad "uploads reach the central" "still unsynced: $(status_json | cut -c1-300)"
fi

# ---- systemctl stop publishes offline ----------------------------------------
mosquitto_sub -t "meter-agent/$gateway/status" -v >/tmp/status.log 2>&1 &
watcher=$!
wait_for 30 grep -q online /tmp/status.log
systemctl stop meter-agent
wait_for 60 grep -q offline /tmp/status.log
kill "$watcher"
if [ "$(tail -n 1 /tmp/status.log | grep -c '"status":"offline"\|offline')" -eq 1 ] &&
  journalctl -u meter-agent --no-pager -o cat | tail -n 20 | grep -q stopped; then
  ok "systemctl stop publishes offline" "$(tail -n 1 /tmp/status.log | cut -c1-100)"
else
  bad "systemctl stop publishes offline" "$(tail -n 2 /tmp/status.log)"
fi

# ---- the test suite, threaded tests included: its results ----------------------
# ended NAME: "STATUS SECOND" from /tmp/NAME.end (what in_background wrote).
ended() { cat "/tmp/$1.end" 2>/dev/null || echo "none $SECONDS"; }
wait "$unit_pid" "$ctest_pid"
read -r unit_status unit_end <<<"$(ended unit)"
read -r ctest_status ctest_end <<<"$(ended ctest)"
unit_summary=$(grep -E '^(All tests passed|test cases:)' /tmp/unit.log | tail -n 1)
ctest_summary=$(grep -o '[0-9]*% tests passed.*' /tmp/ctest.log)
if [ "$unit_status" = 0 ] && [ "$ctest_status" = 0 ]; then
  ok "$machine test suite in the VM (the unit tests in one process, ctest -L process: threaded tests included)" \
    "unit: $unit_summary, $((unit_end - suite_start)) s; process: $ctest_summary, $((ctest_end - suite_start)) s"
else
  grep -E -B3 -A12 'FAILED|^-{10}' /tmp/unit.log | head -n 40
  grep -E 'Failed|\*\*\*|Timeout' /tmp/ctest.log | head -n 30
  bad "$machine test suite in the VM" "unit: exit $unit_status, $unit_summary; process: exit $ctest_status, $ctest_summary"
fi
cp /tmp/unit.log /mnt/share/unit.log
cp /tmp/ctest.log /mnt/share/ctest.log

# ---- the series goldens: their result ----------------------------------------
wait "$golden_pid"
read -r golden_status golden_end <<<"$(ended golden)"
if [ "$golden_status" = 0 ]; then
  ok "series goldens with the $machine agent (tests/data/golden/check_golden.sh)" \
    "$(tail -n 1 /tmp/golden.log), $((golden_end - suite_start)) s from their start"
else
  grep '^FAIL' /tmp/golden.log | head -n 10
  bad "series goldens with the $machine agent" "exit $golden_status, $(tail -n 1 /tmp/golden.log)"
fi
cp /tmp/golden.log /mnt/share/golden.log

# Where the emulated CPUs' time went (/proc/stat: USER_HZ ticks since boot).
echo "cpu: the unit tests $(cpu_of unit) s, the process tests $(cpu_of ctest) s, the goldens $(cpu_of golden) s;" \
  "the VM's $(nproc) CPUs busy $(awk '/^cpu / { printf "%d", ($2 + $3 + $4 + $7 + $8) / 100 }' /proc/stat) s" \
  "in $(awk '{ printf "%d", $1 }' /proc/uptime) s since boot"

echo "passed=$passed failures=$failures" >/mnt/share/counts
[ "$failures" -eq 0 ]
