#!/usr/bin/python3
"""The soak: the whole system for a long time under a schedule of faults (issue #17, item 4).
(Over 600 lines: the steps share the processes, the clock and the truth; the plot is apart.)

Run by tests/soak/soak.sh inside central/tests/with_postgres.sh (DATABASE_URL set). Starts
mosquitto, the central service, the power-cut filesystem (tests/soak/powercut_mount.cpp) and
`meter-agent run` with its buffer on it; the meter simulator (tests/sim/simulation.py) publishes
a small site at its own pace (1 simulated second per second) for the whole run while the
schedule, drawn from the seed, injects faults:

  agent_kill      SIGKILL the agent, start it again
  power_cut       the power-cut filesystem loses power (unsynced blocks lost, seeded), the agent
                  is SIGKILLed with it, power back, the agent started again
  central_outage  SIGTERM the central, down for a while, started again
  central_kill    SIGKILL the central, down for a while, started again
  sighup          uplink.interval changed in the config, SIGHUP, its `reloaded` log line awaited
  renormalize     `meter-agent renormalize` while the daemon runs
  disk_budget     the central stopped, a backlog of other meters flooded in until the agent
                  reports it reached its disk budget (buffer.max_size_mib), the central started
                  again, the budget recovered (the agent prunes what the central confirmed)

Phase A (the first 40%) has the agent kills and power cuts; its last fault is a kill whose
restart starts the agent's last life. Then the disk budget, then the warm-up (10 minutes, or a
quarter of the run if shorter); then a baseline is taken at a quiet moment (nothing pending,
nothing unsynced); phase B has the faults that keep the agent's process alive. At the end the
simulator stops, everything drains, and the end is taken at the same kind of quiet moment.

Every step waits on observable state (the agent's /metrics, the central's /healthz, the agent's
log, PostgreSQL), never on a sleep; sleeping is only the pace of the schedule.

Pass lines:
  - every message published was acknowledged by the broker (simulator and flood);
  - every reading is in PostgreSQL exactly once: the simulator's readings, keyed by
    (device, metric, value) for readings stamped on receipt (the simulator makes those distinct)
    and (device, metric, timestamp, value) for the meters that stamp their own, against
    normalized_measurements: none missing, none extra, none twice;
  - the agent's RSS grows at most 5 MiB from the baseline to the end (judged when the warm-up
    was at least 10 minutes; otherwise measured and reported only);
  - its open file descriptors and threads at the end are at most their baseline;
  - the same agent process from the baseline to the end, and it exits 0 on SIGTERM at the end.

Writes OUT/report.md, OUT/samples.tsv, OUT/events.tsv and OUT/soak.svg (the plot); exit 0 when
every judged line passes.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from decimal import Decimal
from typing import Callable, Optional

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "sim"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mqtt_publisher import PublishError, QosOnePublisher  # noqa: E402
from simulation import simulate  # noqa: E402
import soak_plot  # noqa: E402

SITE_FAULTS = ("glitch=0.02,spike=0.01,reset=0.005,rollback=0.005,replace=0.003,silence=0.005,"
               "repeat=0.05,burst=0.005,malformed=0.02,skew=0.5,unsynced=0.3")
RSS_LIMIT_KIB = 5 * 1024
FULL_WARMUP_S = 600
PHASE_A_KINDS = ("agent_kill", "power_cut", "central_outage", "central_kill", "sighup",
                 "renormalize")
PHASE_B_KINDS = ("central_outage", "central_kill", "sighup", "renormalize")


class SoakError(RuntimeError):
    pass


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} soak: {text}", flush=True)


def wait_for(what: str, timeout_s: float, condition: Callable[[], bool]) -> float:
    """Polls `condition` until true; returns the seconds it took. Raises SoakError on timeout."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise SoakError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)  # polling period
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 3) -> Optional[tuple[int, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (OSError, ValueError):
        return None


# ---- the schedule ------------------------------------------------------------------------------

def make_schedule(total_s: float, seed: int, warmup_s: float) -> list[dict]:
    """The faults and their planned times (seconds from the start), from the seed alone."""
    rng = random.Random(seed)
    phase_a_end = 0.4 * total_s
    count_a = max(len(PHASE_A_KINDS), int(phase_a_end // 90))
    kinds: list[str] = []
    while len(kinds) < count_a:
        batch = list(PHASE_A_KINDS)
        rng.shuffle(batch)
        kinds += batch
    kinds = kinds[:count_a]
    spacing = phase_a_end / (count_a + 1)
    events = []
    for i, kind in enumerate(kinds):
        at = spacing * (i + 1) + rng.uniform(-0.2, 0.2) * spacing
        events.append({"at": at, "kind": kind})
    events.append({"at": phase_a_end, "kind": rng.choice(("agent_kill", "power_cut")),
                   "note": "starts the agent's last life"})
    events.append({"at": phase_a_end + 2, "kind": "disk_budget"})
    events.append({"at": phase_a_end + warmup_s, "kind": "baseline"})
    phase_b_start = phase_a_end + warmup_s
    phase_b_end = 0.92 * total_s
    span = max(0.0, phase_b_end - phase_b_start)
    count_b = max(len(PHASE_B_KINDS), int(span // 90))
    kinds = []
    while len(kinds) < count_b:
        batch = list(PHASE_B_KINDS)
        rng.shuffle(batch)
        kinds += batch
    kinds = kinds[:count_b]
    spacing = span / (count_b + 1)
    for i, kind in enumerate(kinds):
        events.append({"at": phase_b_start + spacing * (i + 1), "kind": kind})
    for event in events:
        event["at"] = round(event["at"], 1)
        if event["kind"] in ("central_outage", "central_kill"):
            event["down_s"] = round(rng.uniform(0.005, 0.02) * min(total_s, 3600) + 1, 1)
        if event["kind"] == "power_cut":
            event["cut_seed"] = rng.randrange(1 << 32)
    return events


# ---- the processes -------------------------------------------------------------------------------

class System:
    """mosquitto, the central, the power-cut filesystem and the agent, each stopped by PID."""

    def __init__(self, out: str, agent: str, mount_tool: str, database_url: str):
        self.out = out
        self.agent_binary = agent
        self.mount_tool = mount_tool
        self.database_url = database_url
        self.broker: Optional[subprocess.Popen] = None
        self.central: Optional[subprocess.Popen] = None
        self.mount: Optional[subprocess.Popen] = None
        self.agent: Optional[subprocess.Popen] = None
        self.agent_life = 0
        self.lock = threading.Lock()
        self.mqtt_port = free_port()
        self.central_port = free_port()
        self.http_port = free_port()
        self.mountpoint = os.path.join(out, "mnt")
        self.store = os.path.join(out, "store")
        self.config_path = os.path.join(out, "agent.yaml")
        self.agent_log = os.path.join(out, "agent.log")
        self.interval = "1s"
        self.env = dict(os.environ, PYTHONPATH=SOURCE_DIR)

    # mosquitto
    def start_broker(self) -> None:
        conf = os.path.join(self.out, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\n"
                    "persistence false\nmax_queued_messages 0\nlog_dest stderr\n"
                    "log_type error\nlog_type warning\nlog_type notice\n"
                    + ("user root\n" if os.getuid() == 0 else ""))
        self.broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", conf],
                                       stdout=open(os.path.join(self.out, "mosquitto.log"), "w"),
                                       stderr=subprocess.STDOUT)
        wait_for("mosquitto", 10, lambda: port_answers(self.mqtt_port))

    # the central
    def prepare_central(self) -> str:
        run = lambda *a: subprocess.run([sys.executable, "-m", "central", *a], env=self.env,
                                        cwd=SOURCE_DIR, check=True, capture_output=True,
                                        text=True)
        run("migrate")
        return run("gateway", "create", "soak").stdout.strip()

    def central_healthy(self) -> bool:
        if self.central is None or self.central.poll() is not None:
            return False
        answer = http_get(f"http://127.0.0.1:{self.central_port}/healthz")
        return answer is not None and answer[0] == 200

    def start_central(self) -> float:
        self.central = subprocess.Popen(
            [sys.executable, "-m", "central", "serve", "--no-migrate", "--host", "127.0.0.1",
             "--port", str(self.central_port)], env=self.env, cwd=SOURCE_DIR,
            stdout=open(os.path.join(self.out, "central.log"), "a"), stderr=subprocess.STDOUT)
        return wait_for("the central's /healthz", 60, self.central_healthy)

    def stop_central(self, sig: int) -> None:
        assert self.central is not None
        self.central.send_signal(sig)
        self.central.wait(timeout=30)
        self.central = None

    # the power-cut filesystem
    def mount_fs(self) -> None:
        os.makedirs(self.mountpoint, exist_ok=True)
        os.makedirs(self.store, exist_ok=True)
        self.mount = subprocess.Popen([self.mount_tool, self.store, self.mountpoint],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, bufsize=1)
        line = self.mount.stdout.readline().strip()
        if line != "mounted":
            raise SoakError(f"the power-cut filesystem did not mount ({line!r})")

    def fs_command(self, command: str) -> str:
        assert self.mount is not None
        self.mount.stdin.write(command + "\n")
        self.mount.stdin.flush()
        return self.mount.stdout.readline().strip()

    # the agent
    def write_config(self, token_path: str) -> None:
        presets = os.path.join(SOURCE_DIR, "config", "presets")
        with open(self.config_path + ".tmp", "w") as f:
            f.write(f"""gateway_id: soak
buffer:
  path: {self.mountpoint}/buffer.db
  durability: power_loss
  max_size_mib: 16
metrics:
  energy: {{kind: counter, unit: kWh, jump_threshold: 10000}}
  power: {{kind: gauge, unit: kW}}
presets_dir: {presets}
mappings:
  - preset: seed
  - preset: tasmota
  - preset: shelly_em
  - preset: zigbee2mqtt
  - preset: plain
    topic: "plain/+/+"
mqtt:
  host: 127.0.0.1
  port: {self.mqtt_port}
http:
  listen: 127.0.0.1:{self.http_port}
uplink:
  url: http://127.0.0.1:{self.central_port}
  token_file: {token_path}
  interval: {self.interval}
  retry: {{min: 1s, max: 5s}}
""")
        os.replace(self.config_path + ".tmp", self.config_path)

    def metrics(self) -> dict[str, float]:
        answer = http_get(f"http://127.0.0.1:{self.http_port}/metrics")
        if answer is None or answer[0] != 200:
            return {}
        values = {}
        for line in answer[1].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    values[name] = float(value)
                except ValueError:
                    pass
        return values

    def agent_connected(self) -> bool:
        if self.agent is None or self.agent.poll() is not None:
            raise SoakError(f"the agent exited ({self.agent.returncode if self.agent else '-'});"
                            f" see {self.agent_log}")
        return self.metrics().get("meter_agent_mqtt_connected") == 1

    def start_agent(self) -> float:
        with self.lock:
            self.agent = subprocess.Popen([self.agent_binary, "run", "--config",
                                           self.config_path],
                                          stdout=open(self.agent_log, "a"),
                                          stderr=subprocess.STDOUT)
            self.agent_life += 1
        return wait_for("the agent connected (/metrics)", 120, self.agent_connected)

    def kill_agent(self) -> None:
        with self.lock:
            assert self.agent is not None
            self.agent.kill()
            self.agent.wait(timeout=30)
            self.agent = None

    def agent_pid(self) -> Optional[int]:
        with self.lock:
            return self.agent.pid if self.agent is not None and self.agent.poll() is None else None

    def stop_all(self) -> None:
        """Everything this started, by PID: the agent first (it finishes its batch), then the
        central, the broker, and the filesystem (end of its input unmounts it)."""
        for name in ("agent", "central", "broker"):
            process = getattr(self, name)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.mount is not None and self.mount.poll() is None:
            try:
                self.mount.stdin.close()
            except OSError:
                pass
            try:
                self.mount.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.mount.kill()
                self.mount.wait()
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", self.mountpoint], check=False)


# ---- the resources sampler -----------------------------------------------------------------------

class Sampler(threading.Thread):
    """Every `period` seconds: the agent's VmRSS, Threads (/proc/PID/status) and open fds."""

    def __init__(self, system: System, started: float, period: float = 2.0):
        super().__init__(daemon=True)
        self.system, self.started, self.period = system, started, period
        self.samples: list[tuple[float, int, int, int, int]] = []  # t, life, rss KiB, fds, threads
        self.stopping = threading.Event()

    @staticmethod
    def read(pid: int) -> Optional[tuple[int, int, int]]:
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return None
        rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
        threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
        return rss, fds, threads

    def sample_now(self) -> Optional[tuple[float, int, int, int, int]]:
        pid, life = self.system.agent_pid(), self.system.agent_life
        if pid is None:
            return None
        values = self.read(pid)
        if values is None:
            return None
        row = (round(time.monotonic() - self.started, 1), life, *values)
        self.samples.append(row)
        return row

    def run(self) -> None:
        while not self.stopping.wait(self.period):  # the sampling period
            self.sample_now()


# ---- publishing ----------------------------------------------------------------------------------

class SitePublisher(threading.Thread):
    """The simulated site, published at its own pace (1 simulated second per second)."""

    def __init__(self, port: int, messages: list):
        super().__init__(daemon=True)
        self.port, self.messages = port, messages
        self.published = self.acknowledged = 0
        self.error: Optional[str] = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            publisher = QosOnePublisher("127.0.0.1", self.port, "soak-site", window=1000)
        except (OSError, PublishError) as error:
            self.error = str(error)
            return
        started = time.monotonic()
        try:
            for message in self.messages:
                delay = started + message.sim_ms / 1000 - time.monotonic()
                if delay > 0 and self.stopping.wait(delay):  # the site's pace
                    break
                publisher.publish(message.topic, message.payload)
            publisher.wait_for_acknowledgements(120)
        except (OSError, PublishError) as error:
            self.error = str(error)
        finally:
            publisher.close()
            self.published, self.acknowledged = publisher.published, publisher.acknowledged


# ---- truth and PostgreSQL ------------------------------------------------------------------------

def expected_keys(meters, device_of=lambda d: d, counts: Optional[dict] = None) -> collections.Counter:
    """The readings a simulation made, keyed as PostgreSQL will be read. `counts` (meter index ->
    readings published) keeps only the first readings of a receive-time meter (a flood cut
    short); readings of such a meter are numbered in order by the simulation."""
    keys: collections.Counter = collections.Counter()
    for meter in meters:
        for metric, when, value in meter.readings:
            if isinstance(when, tuple):  # ("received", n): stamped on receipt
                if counts is not None and when[1] >= counts.get(meter.index, 0):
                    continue
                keys[(device_of(meter.device_id), metric, None, Decimal(value))] += 1
            else:
                keys[(device_of(meter.device_id), metric, int(when), Decimal(value))] += 1
    return keys


def stamped_devices(meters, device_of=lambda d: d) -> set[str]:
    return {device_of(m.device_id) for m in meters if m.stamps_readings}


def psql(database_url: str, query: str) -> list[list[str]]:
    result = subprocess.run(["psql", database_url, "-AtX", "-F", "\t", "-c", query],
                            check=True, capture_output=True, text=True)
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def stored_keys(database_url: str, stamped: set[str]) -> collections.Counter:
    rows = psql(database_url, """
        SELECT m.device_id, m.metric_type,
               (extract(epoch FROM m.timestamp) * 1000)::bigint, m.value::text
          FROM normalized_measurements m JOIN gateways g ON g.id = m.gateway_id
         WHERE g.name = 'soak'""")
    keys: collections.Counter = collections.Counter()
    for device, metric, epoch_ms, value in rows:
        when = int(epoch_ms) if device in stamped else None
        keys[(device, metric, when, Decimal(value))] += 1
    return keys


def compare(expected: collections.Counter, stored: collections.Counter) -> tuple:
    """(missing, extra, stored more than once): exactly once when all three are empty."""
    return expected - stored, stored - expected, {k: n for k, n in stored.items() if n > 1}


def stored_count(database_url: str) -> int:
    return int(psql(database_url, """SELECT count(*) FROM normalized_measurements m
        JOIN gateways g ON g.id = m.gateway_id WHERE g.name = 'soak'""")[0][0])


# ---- the soak ------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args: argparse.Namespace, database_url: str):
        self.args = args
        self.total_s = args.minutes * 60
        self.warmup_s = args.warmup if args.warmup is not None else min(FULL_WARMUP_S,
                                                                          0.25 * self.total_s)
        self.schedule = make_schedule(self.total_s, args.seed, self.warmup_s)
        self.system = System(args.out, args.agent, args.mount_tool, database_url)
        self.database_url = database_url
        self.events: list[dict] = []
        self.flood_keys: collections.Counter = collections.Counter()
        self.flood_published = self.flood_acknowledged = 0
        self.baseline: Optional[tuple] = None
        self.end: Optional[tuple] = None
        self.last_life_started: Optional[float] = None
        self.started = time.monotonic()
        self.sampler = Sampler(self.system, self.started)
        self.site: Optional[SitePublisher] = None
        self.simulation = None
        self.agent_exit: Optional[int] = None
        self.began_at = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}"
        self.commit = subprocess.run(["git", "-C", SOURCE_DIR, "describe", "--always", "--dirty"],
                                     capture_output=True, text=True).stdout.strip()

    def now(self) -> float:
        return time.monotonic() - self.started

    def record(self, kind: str, planned: float, began: float, detail: str) -> None:
        event = {"planned": planned, "began": round(began, 1), "ended": round(self.now(), 1),
                 "kind": kind, "detail": detail}
        self.events.append(event)
        log(f"{kind} at {event['began']} s: {detail}")

    # the faults
    def agent_kill(self, event: dict) -> str:
        self.system.kill_agent()
        took = self.system.start_agent()
        return f"SIGKILL; restarted, connected again in {took:.1f} s"

    def power_cut(self, event: dict) -> str:
        answer = self.system.fs_command(f"cut {event['cut_seed']}")
        if answer != "cut":
            raise SoakError(f"power cut: {answer!r}")
        self.system.kill_agent()
        powered = self.system.fs_command("on")
        took = self.system.start_agent()
        return f"power cut (seed {event['cut_seed']}), agent SIGKILLed; {powered}; " \
               f"restarted, connected in {took:.1f} s"

    def central_down(self, event: dict, sig: int) -> str:
        self.system.stop_central(sig)
        time.sleep(event["down_s"])  # how long the outage lasts: the schedule's pace
        took = self.system.start_central()
        return f"{signal.Signals(sig).name}; down {event['down_s']} s; healthy again in {took:.1f} s"

    def sighup(self, event: dict) -> str:
        self.system.interval = "2s" if self.system.interval == "1s" else "1s"
        self.system.write_config(self.token_path)
        before = self.reload_lines()
        os.kill(self.system.agent.pid, signal.SIGHUP)
        took = wait_for("the agent's `reloaded` log line", 30,
                        lambda: self.reload_lines() > before)
        return f"uplink.interval -> {self.system.interval}; reloaded in {took:.1f} s"

    def reload_lines(self) -> int:
        with open(self.system.agent_log, errors="replace") as f:
            return sum(1 for line in f if "reloaded " in line and "changed uplink" in line)

    def renormalize(self, event: dict) -> str:
        result = subprocess.run([self.system.agent_binary, "renormalize", "--config",
                                 self.system.config_path], capture_output=True, text=True,
                                timeout=600)
        if result.returncode != 0:
            raise SoakError(f"renormalize exited {result.returncode}: {result.stderr.strip()}")
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "done"

    def disk_budget(self, event: dict) -> str:
        self.system.stop_central(signal.SIGTERM)
        flood = self.flood
        rename = lambda device: device.replace("plain-", "flood-")
        publisher = QosOnePublisher("127.0.0.1", self.system.mqtt_port, "soak-flood",
                                    window=1000)
        counts: dict[int, int] = collections.defaultdict(int)
        over = False
        received_before = self.system.metrics().get("meter_agent_messages_received_total", 0)
        try:
            for i, message in enumerate(flood.messages):
                if i % 500 == 0:
                    # At most 5,000 ahead of what the agent has taken: the flood stops soon
                    # after the budget is reached instead of queueing all it has at the broker.
                    while True:
                        metrics = self.system.metrics()
                        if metrics.get("meter_agent_buffer_over_budget") == 1:
                            over = True
                            break
                        taken = metrics.get("meter_agent_messages_received_total", 0)
                        if i - (taken - received_before) < 5000:
                            break
                        time.sleep(0.1)  # polling period
                    if over:
                        break
                publisher.publish(rename(message.topic), message.payload)
                counts[message.meter] += 1
            publisher.wait_for_acknowledgements(120)
        finally:
            publisher.close()
        self.flood_published += publisher.published
        self.flood_acknowledged += publisher.acknowledged
        self.flood_keys = expected_keys(flood.meters, rename, counts)
        if not over:
            raise SoakError(f"the disk budget was not reached after {publisher.published} "
                            "flood messages")
        reached_at = self.now()
        took_central = self.system.start_central()
        took = wait_for("the agent back under its disk budget", 900,
                        lambda: self.system.metrics().get("meter_agent_buffer_over_budget") == 0)
        return (f"central stopped; {publisher.published} flood messages "
                f"({len(self.flood_keys)} readings) until OVER BUDGET at {reached_at:.0f} s; "
                f"central back in {took_central:.1f} s; under budget again {took:.0f} s later")

    def quiet(self) -> float:
        """Waits until nothing is pending: inbox empty, everything normalized and uploaded."""
        def settled() -> bool:
            m = self.system.metrics()
            return (m.get("meter_agent_mqtt_connected") == 1
                    and m.get("meter_agent_buffer_inbox_bytes") == 0
                    and m.get("meter_agent_buffer_pending_normalization") == 0
                    and m.get("meter_agent_buffer_unsynced") == 0)
        return wait_for("a quiet agent (inbox, pending, unsynced all 0)", 900, settled)

    def take_sample(self, count: int = 5, spacing_s: float = 0.5) -> tuple:
        """The baseline's or the end's sample: `count` samples `spacing_s` apart, the last one's
        RSS with the fewest fds and threads seen. A quiet agent still opens some for a moment
        (the uplink's connection to the central, an accepted /metrics request, a name lookup's
        thread); with one sample each, such a moment at the end but not at the baseline made
        `open fds back to the baseline` fail (21 -> 22) with nothing leaked. A leak is there in
        every sample."""
        rows = []
        for i in range(count):
            if i:
                time.sleep(spacing_s)  # the sampling window
            row = self.sampler.sample_now()
            if row is None:
                raise SoakError("the agent is not running")
            rows.append(row)
        if len({row[1] for row in rows}) != 1:
            raise SoakError("the agent restarted while it was sampled")
        return (*rows[-1][:3], min(row[3] for row in rows), min(row[4] for row in rows))

    def baseline_step(self, event: dict) -> str:
        took = self.quiet()
        self.baseline = self.take_sample()
        return (f"quiet after {took:.1f} s: RSS {self.baseline[2]} KiB, {self.baseline[3]} fds, "
                f"{self.baseline[4]} threads (life {self.baseline[1]})")

    def run_event(self, event: dict) -> None:
        began = self.now()
        kind = event["kind"]
        if kind == "baseline":
            detail = self.baseline_step(event)
        elif kind == "central_outage":
            detail = self.central_down(event, signal.SIGTERM)
        elif kind == "central_kill":
            detail = self.central_down(event, signal.SIGKILL)
        else:
            detail = getattr(self, kind)(event)
        if event.get("note") == "starts the agent's last life":
            self.last_life_started = self.now()
            detail += " (the agent's last life begins)"
        self.record(kind, event["at"], began, detail)

    def run(self) -> dict:
        args, system = self.args, self.system
        os.makedirs(args.out, exist_ok=True)
        log(f"{args.minutes} minutes, seed {args.seed}, warm-up {self.warmup_s:.0f} s; "
            f"out {args.out}")
        with open(os.path.join(args.out, "schedule.json"), "w") as f:
            json.dump(self.schedule, f, indent=1)
        system.start_broker()
        token = system.prepare_central()
        self.token_path = os.path.join(args.out, "token")
        with open(os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  "w") as f:
            f.write(token + "\n")
        system.start_central()
        system.mount_fs()
        system.write_config(self.token_path)
        system.start_agent()
        wait_for("the agent's subscriptions", 30, lambda: "subscribed to 'plain/+/+'"
                 in open(system.agent_log, errors="replace").read())
        # The flood of the disk budget step: 200 other meters, an hour of readings (~127,000
        # messages; the budget of 16 MiB is reached well before), made before the clock starts.
        self.flood = simulate(seed=args.seed + 1, meters=200, duration_s=3600,
                              start="2026-01-01T00:00:00Z", faults={}, fault_free=200,
                              formats=("plain",))
        self.simulation = simulate(seed=args.seed, meters=args.meters,
                                   duration_s=int(self.total_s),
                                   start=dt.datetime.now(dt.timezone.utc).strftime(
                                       "%Y-%m-%dT%H:%M:%SZ"),
                                   faults=_faults(SITE_FAULTS), fault_free=args.meters // 3)
        self.started = time.monotonic()
        self.sampler.started = self.started
        self.site = SitePublisher(system.mqtt_port, self.simulation.messages)
        self.site.start()
        self.sampler.start()
        log(f"site: {args.meters} meters, {len(self.simulation.messages)} messages over "
            f"{self.total_s:.0f} s; {len(self.schedule)} scheduled steps")
        for event in self.schedule:
            delay = event["at"] - self.now()
            if delay > 0:
                time.sleep(delay)  # the schedule's pace
            self.run_event(event)
        self.site.join()
        if self.site.error:
            raise SoakError(f"the site's publisher: {self.site.error}")
        log(f"site done: {self.site.published} published, {self.site.acknowledged} acknowledged")
        drain_began = self.now()
        expected = expected_keys(self.simulation.meters) + self.flood_keys
        drained = "drained"
        try:
            wait_for("every reading in PostgreSQL", 900,
                     lambda: stored_count(self.database_url) >= sum(expected.values()))
            self.quiet()
        except SoakError as timeout:
            drained = f"NOT drained ({timeout})"  # judged below: what is missing shows there
        self.end = self.take_sample()
        self.record("end", round(drain_began, 1), drain_began,
                    f"{drained} after {self.now() - drain_began:.1f} s: RSS {self.end[2]} KiB, "
                    f"{self.end[3]} fds, {self.end[4]} threads (life {self.end[1]})")
        self.sampler.stopping.set()
        # The agent's own end: SIGTERM, and exit 0 (a sanitizer's finding at exit shows here).
        agent = self.system.agent
        agent.terminate()
        self.agent_exit = agent.wait(timeout=60)
        stamped = stamped_devices(self.simulation.meters)
        stored = stored_keys(self.database_url, stamped)
        return self.judge(expected, stored)

    def judge(self, expected: collections.Counter, stored: collections.Counter) -> dict:
        missing, extra, twice = compare(expected, stored)
        lines = []

        def line(name: str, ok: Optional[bool], text: str) -> None:
            verdict = "PASS" if ok else ("FAIL" if ok is not None else "REPORTED")
            lines.append((name, verdict, text))

        site = self.site
        line("published = acknowledged",
             site.published == site.acknowledged == len(self.simulation.messages)
             and self.flood_published == self.flood_acknowledged,
             f"site {site.published} published of {len(self.simulation.messages)}, "
             f"{site.acknowledged} acknowledged; flood {self.flood_published} published, "
             f"{self.flood_acknowledged} acknowledged")
        total_expected, total_stored = sum(expected.values()), sum(stored.values())
        line("every reading in PostgreSQL exactly once", not missing and not extra,
             f"{total_expected} readings expected ({sum(self.flood_keys.values())} of them the "
             f"flood's), {total_stored} rows in PostgreSQL; {sum(missing.values())} missing, "
             f"{sum(extra.values())} extra, {len(twice)} stored more than once")
        b, e = self.baseline, self.end
        watched = e[0] - b[0]
        growth = e[2] - b[2]
        last_life = [s for s in self.sampler.samples if s[1] == e[1] and s[0] >= b[0]]
        peak = max(s[2] for s in last_life) if last_life else e[2]
        judged = self.warmup_s >= FULL_WARMUP_S
        line("RSS growth after the warm-up <= 5 MiB", (growth <= RSS_LIMIT_KIB) if judged else None,
             f"{b[2]} KiB at the baseline ({self.warmup_s:.0f} s after the last start) -> "
             f"{e[2]} KiB at the end, {watched:.0f} s later: {growth:+d} KiB "
             f"(peak {peak} KiB)" + ("" if judged else
                                     f"; warm-up shorter than {FULL_WARMUP_S} s: not judged"))
        line("open fds back to the baseline", e[3] <= b[3], f"{b[3]} -> {e[3]}")
        line("threads back to the baseline", e[4] <= b[4], f"{b[4]} -> {e[4]}")
        line("same agent process from the baseline to the end", b[1] == e[1],
             f"life {b[1]} -> {e[1]}")
        line("the agent stops on SIGTERM with exit 0", self.agent_exit == 0,
             f"exit {self.agent_exit}")
        return {"lines": lines, "missing": list(missing.items())[:10],
                "extra": list(extra.items())[:10], "expected": total_expected,
                "stored": total_stored}


def _faults(text: str) -> dict[str, float]:
    from simulation import parse_faults
    return parse_faults(text)


def write_report(soak: Soak, outcome: Optional[dict], error: Optional[str]) -> bool:
    args, out = soak.args, soak.args.out
    with open(os.path.join(out, "samples.tsv"), "w") as f:
        f.write("seconds\tlife\trss_kib\tfds\tthreads\n")
        for row in soak.sampler.samples:
            f.write("\t".join(map(str, row)) + "\n")
    with open(os.path.join(out, "events.tsv"), "w") as f:
        f.write("planned\tbegan\tended\tkind\tdetail\n")
        for e in soak.events:
            f.write(f"{e['planned']}\t{e['began']}\t{e['ended']}\t{e['kind']}\t{e['detail']}\n")
    soak_plot.write_svg(os.path.join(out, "soak.svg"), soak.sampler.samples, soak.events,
                        title=f"meter-agent soak: {args.minutes:g} min, seed {args.seed}")
    counts = collections.Counter(e["kind"] for e in soak.events
                                 if e["kind"] not in ("baseline", "end"))
    passed = error is None and outcome is not None and all(
        verdict != "FAIL" for _, verdict, _ in outcome["lines"])
    report = [f"# Soak: {args.minutes:g} minutes, seed {args.seed}", "",
              f"- command: `tests/soak/soak.sh --minutes {args.minutes:g} --seed {args.seed}`",
              f"- began {soak.began_at} UTC at commit {soak.commit} (the tree as it was then)",
              f"- duration: {soak.now() / 60:.1f} minutes (site published for "
              f"{soak.total_s / 60:.1f}); warm-up {soak.warmup_s:.0f} s",
              f"- site: {args.meters} meters ({args.meters // 3} fault-free), faults {SITE_FAULTS}",
              "- faults injected: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())),
              "", "## Result", ""]
    if error:
        report.append(f"**FAILED: {error}**")
        report.append("")
    if outcome:
        report += ["| check | verdict | measured |", "|---|---|---|"]
        report += [f"| {name} | {verdict} | {text} |" for name, verdict, text in outcome["lines"]]
        if outcome["missing"]:
            report += ["", "Missing (first 10): " + "; ".join(map(str, outcome["missing"]))]
        if outcome["extra"]:
            report += ["", "Extra (first 10): " + "; ".join(map(str, outcome["extra"]))]
    report += ["", "## What happened", "", "| planned s | began s | ended s | step | what |",
               "|--:|--:|--:|---|---|"]
    report += [f"| {e['planned']} | {e['began']} | {e['ended']} | {e['kind']} | {e['detail']} |"
               for e in soak.events]
    report += ["", "## The agent's resources", "",
               "![RSS, open fds and threads of the agent over time](soak.svg)", "",
               "samples.tsv: every 2 s (seconds, life = which start of the agent, VmRSS KiB, "
               "fds, threads).", "", f"soak: {'PASSED' if passed else 'FAILED'}", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(report))
    print("\n".join(report[report.index("## Result"):report.index("## What happened")]))
    return passed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--mount-tool", required=True)
    parser.add_argument("--meters", type=int, default=24)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds (default 600, or a quarter of the run if shorter)")
    args = parser.parse_args(argv)
    args.out = os.path.abspath(args.out)
    database_url = os.environ["DATABASE_URL"]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "soak.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")

    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    soak = Soak(args, database_url)
    outcome, error = None, None
    try:
        outcome = soak.run()
    except (SoakError, subprocess.SubprocessError, OSError) as failure:
        error = str(failure)
        log(f"FAILED: {error}")
    except KeyboardInterrupt as stop:
        error = f"interrupted ({stop})"
    finally:
        soak.sampler.stopping.set()
        if soak.site is not None:
            soak.site.stopping.set()
        soak.system.stop_all()
    passed = write_report(soak, outcome, error)
    log(f"report: {os.path.join(args.out, 'report.md')}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
