#!/usr/bin/python3
"""Fleet load generator for the central: G simulated gateways speaking docs/PROTOCOL.md, plus
dashboard readers, against a central on loopback. Bounded in gateways and time, loopback only.

  /usr/bin/python3 tests/sim/fleet_load.py [--gateways 200] [--meters 20] [--seconds 60]
      [--upload-every 5] [--replay-rate 0.05] [--outage-rate 0.005] [--outage-uploads 6]
      [--readers 2] [--concurrency 32] [--workers 1] [--server-args ...] [--out FILE]

Without DATABASE_URL it re-runs itself under central/tests/with_postgres.sh (a throwaway
PostgreSQL, fsync on, as tests/bench/central_ingest.py). It migrates, creates the gateways and a
viewer in-process (central.accounts), starts `python3 -m central serve --no-migrate` (plus
--workers and --server-args) and then, for --seconds:

* every gateway uploads one batch every --upload-every seconds (jittered, first ones spread over
  the interval): each of its --meters meters' next reading, a raw event and its measurement
  (deltas chained, as the agent sends them);
* with probability --replay-rate a gateway sends its previous batch again instead (a retry after
  a lost answer: every record must come back `duplicate`), then the new one;
* with probability --outage-rate an upload does not happen: the gateway lost its uplink for
  --outage-uploads upload intervals, keeps reading its meters meanwhile and then sends the
  backlog, every reading of those intervals, in one larger batch (as the agent drains its
  buffer after an outage); the offered rate stays the same on average, it comes in lumps;
* --readers dashboard readers loop over the fleet page (/api/v1/gateways, /api/v1/devices) and one
  random meter's consumption over the last day (/api/v1/consumption, hourly).

Requests are made by --concurrency threads with keep-alive connections; when the central cannot
keep up, uploads start late, and the lateness (schedule lag) is reported beside the latencies.
Prints a Markdown table: events/s offered (by the schedule) and stored, latency p50/p99 per
request kind, CPU seconds per 1,000 events of the API processes (all workers), of PostgreSQL and
of this generator (it shares the machine's cores), bytes per stored event (raw_events +
normalized_measurements with their indexes), and the lag.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import heapq
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_GATEWAYS = 5000
MAX_SECONDS = 900
START_MS = 1_767_225_600_000   # 2026-01-01T00:00:00Z: readings count up from here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timestamp(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class Gateway:
    """One simulated gateway: its meters' registers, its buffer's sequence, its last batch."""

    def __init__(self, index: int, token: str, meters: int, rng: random.Random):
        self.name = f"load-gw-{index:04d}"
        self.token = token
        self.buffer_id = str(uuid.UUID(int=rng.getrandbits(128)))
        self.seq = 0
        self.step = 0
        self.registers = [rng.randrange(1_000, 50_000_000) for _ in range(meters)]  # Wh
        self.previous: bytes | None = None
        self.rng = rng
        self.silent_for = 0   # upload slots left in an outage
        self.backlog = 0      # reading intervals not uploaded yet (sent with the next batch)
        # A gateway sends one request at a time, in order, like the agent with max_in_flight 1,
        # even when the schedule has queued it twice because the central fell behind.
        self.lock = threading.Lock()

    def next_batch(self, reading_interval_ms: int, steps: int = 1) -> tuple[bytes, int]:
        """The next batch (JSON, gzip-free) of `steps` readings per meter, and its number of
        measurements."""
        raws: list[str] = []
        measurements: list[str] = []
        for _ in range(steps):
            self._add_step(reading_interval_ms, raws, measurements)
        body = ('{"protocol_version":"1","gateway_id":"%s","buffer_id":"%s","sent_at":"%s",'
                '"raw_events":[%s],"measurements":[%s]}'
                % (self.name, self.buffer_id, timestamp(int(time.time() * 1000)),
                   ",".join(raws), ",".join(measurements))).encode()
        return body, len(measurements)

    def _add_step(self, reading_interval_ms: int, raws: list[str], measurements: list[str]
                  ) -> None:
        ts_ms = START_MS + self.step * reading_interval_ms
        ts = timestamp(ts_ms)
        for meter, register in enumerate(self.registers):
            increment = self.rng.randrange(1, 500)
            new = register + increment
            self.registers[meter] = new
            self.seq += 1
            device = f"{self.name}-m{meter:03d}"
            value = f"{new // 1000}.{new % 1000:03d}".rstrip("0").rstrip(".")
            delta = None if self.step == 0 else f"{increment / 1000:.3f}".rstrip("0").rstrip(".")
            payload = json.dumps({"device_id": device, "timestamp": ts, "metric_type": "energy",
                                  "value": value, "unit": "kWh"}).encode()
            raws.append('{"seq":%d,"topic":"meters/%s","payload":"%s","qos":1,"retained":false,'
                        '"dup":false,"received_at":"%s","decode_error":null}'
                        % (self.seq, device, base64.b64encode(payload).decode(), ts))
            event_id = hashlib.sha256(f"{device}|{ts}|energy|{value}".encode()).hexdigest()
            flags = '["first_reading"]' if delta is None else "[]"
            measurements.append(
                '{"event_id":"%s","device_id":"%s","metric_type":"energy","timestamp":"%s",'
                '"value":%s,"unit":"kWh","delta":%s,"flags":%s,"revision":1,'
                '"raw":{"buffer_id":"%s","seq":%d}}'
                % (event_id, device, ts, value, delta if delta is not None else "null", flags,
                   self.buffer_id, self.seq))
        self.step += 1


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {}
        self.lag: list[float] = []
        self.stored = 0
        self.duplicates = 0
        self.outages = 0
        self.backlog_batches = 0
        self.errors: list[str] = []

    def add(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latency.setdefault(kind, []).append(seconds)


_local = threading.local()


def connection(port: int) -> http.client.HTTPConnection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    return conn


def request(port: int, method: str, path: str, token: str, body: bytes | None = None):
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    for attempt in (1, 2):   # a keep-alive connection the server closed: one new one
        conn = connection(port)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            _local.conn = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def upload(port: int, gateway: Gateway, body: bytes, expect: str, stats: Stats,
           kind: str = "ingest, new") -> int:
    started = time.perf_counter()
    status, out = request(port, "POST", "/api/v1/ingest", gateway.token, body)
    stats.add(kind if expect == "stored" else "ingest, replay", time.perf_counter() - started)
    if status != 200:
        with stats.lock:
            stats.errors.append(f"{gateway.name}: HTTP {status} {out[:200]!r}")
        return 0
    outcomes = [o["outcome"] for o in json.loads(out)["measurements"]]
    wrong = [o for o in outcomes if o != expect]
    with stats.lock:
        if wrong:
            stats.errors.append(f"{gateway.name}: wanted {expect}, got {wrong[:3]}")
        if expect == "stored":
            stats.stored += outcomes.count("stored")
        else:
            stats.duplicates += outcomes.count("duplicate")
    return len(outcomes)


def run_load(port: int, gateways: list[Gateway], viewer: str, args, stats: Stats) -> float:
    """Runs the schedule for args.seconds; returns the wall time it took to drain."""
    rng = random.Random(args.seed)
    interval = args.upload_every
    reading_interval_ms = 10_000
    schedule = [(rng.uniform(0, interval), i) for i in range(len(gateways))]
    heapq.heapify(schedule)
    queue: list[tuple[float, int]] = []
    queue_lock = threading.Condition()
    stop_at = args.seconds
    started = time.monotonic()
    done = threading.Event()

    def gateway_worker() -> None:
        while True:
            with queue_lock:
                while not queue and not done.is_set():
                    queue_lock.wait(0.5)
                if not queue:
                    return
                due, index = queue.pop(0)
            gateway = gateways[index]
            stats.lag.append(time.monotonic() - started - due)
            try:
                with gateway.lock:
                    # An outage: this slot's readings wait in the gateway's buffer.
                    if gateway.silent_for == 0 and args.outage_rate > 0 \
                            and gateway.rng.random() < args.outage_rate:
                        gateway.silent_for = args.outage_uploads
                        with stats.lock:
                            stats.outages += 1
                    if gateway.silent_for > 0:
                        gateway.silent_for -= 1
                        gateway.backlog += 1
                        continue
                    if gateway.previous is not None and gateway.rng.random() < args.replay_rate:
                        upload(port, gateway, gateway.previous, "duplicate", stats)
                    steps, gateway.backlog = gateway.backlog + 1, 0
                    body, _ = gateway.next_batch(reading_interval_ms, steps)
                    kind = "ingest, new" if steps == 1 else "ingest, backlog after outage"
                    if steps > 1:
                        with stats.lock:
                            stats.backlog_batches += 1
                    upload(port, gateway, body, "stored", stats, kind)
                    gateway.previous = body
            except (OSError, http.client.HTTPException, ValueError) as error:
                with stats.lock:
                    stats.errors.append(f"{gateway.name}: {error}")

    def reader(number: int) -> None:
        reader_rng = random.Random(args.seed * 1000 + number)
        day_from = urllib.parse.quote(timestamp(START_MS - 3_600_000))
        day_to = urllib.parse.quote(timestamp(START_MS + 86_400_000))
        while time.monotonic() - started < stop_at:
            for kind, path in (
                    ("read: gateways", "/api/v1/gateways"),
                    ("read: devices", "/api/v1/devices"),
                    ("read: consumption", "/api/v1/consumption?device_id="
                     + urllib.parse.quote(f"{reader_rng.choice(gateways).name}-m000")
                     + f"&bucket=hour&from={day_from}&to={day_to}")):
                t0 = time.perf_counter()
                try:
                    status, out = request(port, "GET", path, viewer)
                except (OSError, http.client.HTTPException) as error:
                    status, out = 0, str(error).encode()
                stats.add(kind, time.perf_counter() - t0)
                if status != 200:
                    with stats.lock:
                        stats.errors.append(f"{path}: HTTP {status} {out[:200]!r}")
            time.sleep(args.read_pause)   # a person looking at the page, not a synchronization

    workers = [threading.Thread(target=gateway_worker, daemon=True)
               for _ in range(args.concurrency)]
    readers = [threading.Thread(target=reader, args=(n,), daemon=True)
               for n in range(args.readers)]
    for thread in workers + readers:
        thread.start()
    while schedule:
        due, index = schedule[0]
        if due >= stop_at:
            break
        delay = started + due - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.05))   # the schedule's clock, not a synchronization
            continue
        heapq.heappop(schedule)
        with queue_lock:
            queue.append((due, index))
            queue_lock.notify()
        heapq.heappush(schedule, (due + interval * rng.uniform(0.9, 1.1), index))
    done.set()
    with queue_lock:
        queue_lock.notify_all()
    for thread in workers + readers:
        thread.join()
    return time.monotonic() - started


def process_tree_cpu(root: int) -> float:
    """CPU of root and its descendants, from /proc: utime+stime of the live ones plus
    cutime+cstime, the CPU of children that exited and were reaped (PostgreSQL backends of
    pooled connections closed under load, uvicorn workers), which would otherwise vanish."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(field) for field in fields[11:15]) / tick
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(cpu.get(pid, 0.0) for pid in tree)


def postgres_cpu(database_url: str) -> float:
    """CPU of every PostgreSQL process: the postmaster's tree (backends, checkpointer, WAL)."""
    pid_file = Path(os.environ.get("CENTRAL_TEST_PG_LOG", "")).parent / "data" / "postmaster.pid"
    if pid_file.is_file():
        return process_tree_cpu(int(pid_file.read_text().split()[0]))
    return float("nan")   # an outside PostgreSQL: not measured


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateways", type=int, default=200)
    ap.add_argument("--meters", type=int, default=20, help="meters per gateway")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--upload-every", type=float, default=5,
                    help="seconds between a gateway's uploads (default 5)")
    ap.add_argument("--replay-rate", type=float, default=0.05)
    ap.add_argument("--outage-rate", type=float, default=0.005,
                    help="probability that an upload starts an outage (default 0.005)")
    ap.add_argument("--outage-uploads", type=int, default=6,
                    help="upload intervals an outage lasts; its readings come in one batch after")
    ap.add_argument("--workers", type=int, default=1, help="`central serve --workers`")
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--read-pause", type=float, default=0.5)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--server-args", default="", help="more arguments for `central serve`")
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args()
    if not 1 <= args.gateways <= MAX_GATEWAYS or not 0 < args.seconds <= MAX_SECONDS:
        raise SystemExit(f"bounded: 1..{MAX_GATEWAYS} gateways, up to {MAX_SECONDS} s")

    if not os.environ.get("DATABASE_URL"):
        env = dict(os.environ, PG_FSYNC=os.environ.get("PG_FSYNC", "on"))
        return subprocess.call([str(REPO / "central/tests/with_postgres.sh"), "/usr/bin/python3",
                                __file__, *sys.argv[1:]], env=env)
    database_url = os.environ["DATABASE_URL"]
    host = urllib.parse.urlparse(database_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1", None):
        raise SystemExit("loopback only: DATABASE_URL must name 127.0.0.1 or localhost")

    sys.path.insert(0, str(REPO))
    env = dict(os.environ, CENTRAL_LOG_LEVEL="warning", PYTHONPATH=str(REPO))
    subprocess.run(["/usr/bin/python3", "-m", "central", "migrate"], cwd=REPO, env=env,
                   check=True, stderr=subprocess.DEVNULL)
    from central import accounts  # noqa: PLC0415
    from central.db import make_engine  # noqa: PLC0415
    from central.settings import Settings  # noqa: PLC0415
    engine = make_engine(Settings())
    rng = random.Random(args.seed)
    run_tag = uuid.uuid4().hex[:6]
    gateways = [Gateway(i, accounts.create(engine, "gateway", f"load-gw-{i:04d}"), args.meters,
                        random.Random(rng.getrandbits(64)))
                for i in range(args.gateways)]
    viewer = accounts.create(engine, "viewer", f"load-viewer-{run_tag}")
    engine.dispose()

    port = free_port()
    server = subprocess.Popen(["/usr/bin/python3", "-m", "central", "serve", "--no-migrate",
                               "--host", "127.0.0.1", "--port", str(port),
                               "--workers", str(args.workers), *args.server_args.split()],
                              cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(port, "GET", "/healthz", "")[0] == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the central did not start")
            time.sleep(0.2)   # polling its start, with a deadline
        _local.conn = None
        api_cpu0, pg_cpu0 = process_tree_cpu(server.pid), postgres_cpu(database_url)
        own0 = sum(os.times()[:2])
        load_before = os.getloadavg()[0]
        stats = Stats()
        wall = run_load(port, gateways, viewer, args, stats)
        api_cpu = process_tree_cpu(server.pid) - api_cpu0
        pg_cpu = postgres_cpu(database_url) - pg_cpu0
        own_cpu = sum(os.times()[:2]) - own0
    finally:
        server.terminate()
        server.wait(30)

    import psycopg2  # noqa: PLC0415
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), pg_total_relation_size('normalized_measurements'), "
                    "pg_total_relation_size('raw_events') FROM normalized_measurements")
        rows, measurement_bytes, raw_bytes = cur.fetchone()
        size = measurement_bytes + raw_bytes

    events = stats.stored
    sent = sum(g.seq for g in gateways)
    if events != sent or rows != sent:
        stats.errors.append(f"{sent} measurements sent, {events} answered stored, {rows} in "
                            "PostgreSQL")
    per_k = (lambda cpu: cpu * 1000 / events) if events else (lambda cpu: float("nan"))
    offered = args.gateways * args.meters / args.upload_every
    lags = stats.lag or [0.0]
    lines = [
        f"fleet load: {args.gateways} gateways x {args.meters} meters, an upload every "
        f"{args.upload_every} s each, replays {args.replay_rate:.0%}, outages "
        f"{args.outage_rate:.1%} of uploads x {args.outage_uploads} intervals "
        f"({stats.outages} outages, {stats.backlog_batches} backlog batches), {args.readers} "
        f"readers, {args.concurrency} client threads, `serve --workers {args.workers} "
        f"{args.server_args}`, {wall:.0f} s, {os.cpu_count()} CPUs, load average before/after "
        f"{load_before:.1f}/{os.getloadavg()[0]:.1f}",
        "",
        "| events stored | events/s | duplicates answered | errors | API CPU s / 1k events "
        "| PostgreSQL CPU s / 1k events | bytes / stored event | schedule lag p50 / p99 s "
        "| offered events/s | generator CPU s / 1k events |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        f"| {events:,} | {events / wall:,.0f} | {stats.duplicates:,} | {len(stats.errors)} | "
        f"{per_k(api_cpu):.3f} | {per_k(pg_cpu):.3f} | {size / max(rows, 1):,.0f} | "
        f"{percentile(lags, 0.5) / 1000:.2f} / {percentile(lags, 0.99) / 1000:.2f} | "
        f"{offered:,.0f} | {per_k(own_cpu):.3f} |",
        "",
        "| request | count | p50 ms | p99 ms |",
        "|---|--:|--:|--:|",
    ]
    lines[-2:-2] = [f"Bytes per stored event: {raw_bytes / max(rows, 1):,.0f} in raw_events, "
                    f"{measurement_bytes / max(rows, 1):,.0f} in normalized_measurements "
                    "(tables, TOAST and indexes).", ""]
    for kind, values in sorted(stats.latency.items()):
        lines.append(f"| {kind} | {len(values):,} | {percentile(values, 0.5):.0f} | "
                     f"{percentile(values, 0.99):.0f} |")
    for error in stats.errors[:10]:
        lines.append(f"\nerror: {error}")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
