#!/usr/bin/python3
"""Benchmark of the central ingest API: events/s on loopback, batches of 1,000 events.

One event = one raw event (a ~100-byte JSON payload, base64) + its measurement. The server is
`python3 -m central serve` (uvicorn, one worker) in its own process; the client pre-encodes every
batch and posts it over keep-alive HTTP/1.1 connections (http.client), so it costs little next to
the server. PostgreSQL is a real one: either DATABASE_URL, or (default) a throwaway cluster
started through central/tests/with_postgres.sh with fsync on (durable commits).

    /usr/bin/python3 tests/bench/central_ingest.py [--batches 60] [--batch-size 1000]

Comparing two versions of the central in the same run (the machine may be shared and noisy:
compare their CPU per batch, measured alternately, rather than wall time across runs):

    mkdir /tmp/base && git archive HEAD~3 central | tar -x -C /tmp/base
    /usr/bin/python3 tests/bench/central_ingest.py --baseline /tmp/base --rounds 3

Each version then gets its own database in the cluster (migrated and served by its own code;
this needs a cluster where the benchmark may create databases, e.g. the default throwaway one)
and the rounds alternate baseline, current, baseline, current, ...

Prints a Markdown table (also written to --out if given).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_batch(gateway: str, buffer_id: str, start_seq: int, size: int, devices: int) -> bytes:
    """A batch as the agent would send it; texts are canonical, numbers written verbatim."""
    raws, ms = [], []
    for seq in range(start_seq, start_seq + size):
        device = f"meter-{seq % devices:04d}"
        ts_ms = 1_704_099_600_000 + seq * 1000
        t = time.gmtime(ts_ms // 1000)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ts_ms % 1000:03d}Z"
        value = f"{seq // devices}.{seq % 1000:03d}".rstrip("0").rstrip(".")
        payload = json.dumps({"device_id": device, "ts": ts, "energy_kwh": value}).encode()
        raws.append('{"seq":%d,"topic":"site/%s/energy","payload":"%s","qos":1,"retained":false,'
                    '"dup":false,"received_at":"%s","decode_error":null}'
                    % (seq, device, base64.b64encode(payload).decode(), ts))
        eid = hashlib.sha256(f"{device}|{ts}|energy|{value}".encode()).hexdigest()
        ms.append('{"event_id":"%s","device_id":"%s","metric_type":"energy","timestamp":"%s",'
                  '"value":%s,"unit":"kWh","delta":null,"flags":["first_reading"],"revision":1,'
                  '"raw":{"buffer_id":"%s","seq":%d}}' % (eid, device, ts, value, buffer_id, seq))
    return ('{"protocol_version":"1","gateway_id":"%s","buffer_id":"%s",'
            '"sent_at":"2024-01-01T09:00:00.000Z","raw_events":[%s],"measurements":[%s]}'
            % (gateway, buffer_id, ",".join(raws), ",".join(ms))).encode()


def post_all(port: int, token: str, bodies: list[bytes], gzip_body: bool,
             latencies: list[float], expect: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if gzip_body:
        headers["Content-Encoding"] = "gzip"
    for data in bodies:
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/ingest", body=data, headers=headers)
        resp = conn.getresponse()
        out = resp.read()
        latencies.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {out[:300]!r}")
        outcomes = json.loads(out)["measurements"]
        if any(o["outcome"] != expect for o in outcomes):
            raise SystemExit(f"unexpected outcome (wanted {expect}): {outcomes[:2]}")
    conn.close()


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime+stime of each live pid (all threads), from /proc."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / _TICK
        except (OSError, IndexError, ValueError):
            pass
    return out


class CpuMeter:
    """CPU used by the server process and by every PostgreSQL process (pg_stat_activity lists
    backends and background workers), so results can be read independently of machine load."""

    def __init__(self, server_pid: int, database_url: str):
        import psycopg2
        self.server_pid = server_pid
        self.conn = psycopg2.connect(database_url)
        self.conn.autocommit = True

    def pg_pids(self) -> list[int]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
            return [r[0] for r in cur.fetchall()]

    def snapshot(self) -> tuple[float, dict[int, float]]:
        return cpu_seconds([self.server_pid]).get(self.server_pid, 0.0), cpu_seconds(self.pg_pids())

    def since(self, snap) -> tuple[float, float]:
        server0, pg0 = snap
        server1, pg1 = self.snapshot()
        return server1 - server0, sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())


def run(scenario: str, port: int, token: str, batches: list[bytes], clients: int, gzip_body: bool,
        expect: str, size: int, meter: "CpuMeter") -> dict:
    bodies = [gzip.compress(b, 1) for b in batches] if gzip_body else batches
    latencies: list[float] = []
    snap = meter.snapshot()
    shares = [bodies[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=post_all, args=(port, token, share, gzip_body, latencies, expect))
               for share in shares]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    server_cpu, pg_cpu = meter.since(snap)
    events = len(batches) * size
    s_ms, p_ms = server_cpu * 1000 / len(batches), pg_cpu * 1000 / len(batches)
    # An idle 2-core machine: the Python server is one GIL-bound process (<= 1 core) and the
    # server and PostgreSQL together get at most 2 cores.
    per_batch_ms = max(s_ms, (s_ms + p_ms) / 2) if s_ms + p_ms else float("nan")
    latencies.sort()
    return {"scenario": scenario, "clients": clients, "batches": len(batches), "events": events,
            "seconds": elapsed, "rate": events / elapsed,
            "p50": statistics.median(latencies) * 1000,
            "p95": latencies[int(len(latencies) * 0.95) - 1] * 1000,
            "mb": sum(len(b) for b in bodies) / len(bodies) / 1e6,
            "server_ms": s_ms, "pg_ms": p_ms, "cpu_rate": size * 1000 / per_batch_ms}


class Central:
    """One version of the central: its source tree, its database, its gateway token."""

    def __init__(self, label: str, root: Path, database_url: str, gateway: str):
        self.label, self.root, self.database_url, self.gateway = label, root, database_url, gateway
        self.env = dict(os.environ, DATABASE_URL=database_url, CENTRAL_LOG_LEVEL="warning")
        subprocess.run(["/usr/bin/python3", "-m", "central", "migrate"], cwd=root, env=self.env,
                       check=True, stderr=subprocess.DEVNULL)
        self.token = subprocess.run(["/usr/bin/python3", "-m", "central", "gateway", "create",
                                     gateway], cwd=root, env=self.env, check=True,
                                    capture_output=True, text=True).stdout.strip()
        self.buffer_id = str(uuid.uuid4())
        self.seq = 1

    def serve(self) -> tuple[subprocess.Popen, int]:
        port = free_port()
        server = subprocess.Popen(["/usr/bin/python3", "-m", "central", "serve", "--no-migrate",
                                   "--port", str(port)], cwd=self.root, env=self.env)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return server, port
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    server.kill()
                    raise SystemExit(f"{self.label}: server did not start")
                time.sleep(0.1)

    def fresh(self, count: int, size: int, devices: int) -> list[bytes]:
        out = []
        for _ in range(count):
            out.append(make_batch(self.gateway, self.buffer_id, self.seq, size, devices))
            self.seq += size
        return out


def database_for(admin_url: str, name: str) -> str:
    """A new database in the cluster of admin_url; its URL."""
    import psycopg2
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def run_scenarios(central: Central, args, meter_url: str) -> list[dict]:
    """The four scenarios against one version of the central, its server started and stopped."""
    size, n = args.batch_size, args.batches
    server, port = central.serve()
    try:
        meter = CpuMeter(server.pid, meter_url)
        fresh = lambda count: central.fresh(count, size, args.devices)  # noqa: E731
        run("warm-up", port, central.token, fresh(6), 2, False, "stored", size, meter)
        first = fresh(n)
        rows = [run("new events, 1 client", port, central.token, first, 1, False, "stored",
                    size, meter),
                run("new events, 2 clients", port, central.token, fresh(n), 2, False, "stored",
                    size, meter),
                run("new events, gzip, 1 client", port, central.token, fresh(n), 1, True,
                    "stored", size, meter),
                run("replay (all duplicates), 1 client", port, central.token, first, 1, False,
                    "duplicate", size, meter)]
        meter.conn.close()
    finally:
        server.terminate()
        server.wait(20)
    for r in rows:
        r["central"] = central.label
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=60, help="batches per scenario")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--baseline", type=Path,
                    help="another version's tree (holding central/) to measure alternately")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds of all scenarios per version (default 1, or 2 with --baseline)")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.baseline else 1)

    if not os.environ.get("DATABASE_URL"):
        env = dict(os.environ, PG_FSYNC=os.environ.get("PG_FSYNC", "on"))
        script = REPO / "central/tests/with_postgres.sh"
        return subprocess.call([str(script), "/usr/bin/python3", __file__, *sys.argv[1:]], env=env)
    if args.baseline and not (args.baseline / "central" / "__main__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no central/ package there")

    admin_url = os.environ["DATABASE_URL"]
    gateway = f"bench-{uuid.uuid4().hex[:8]}"
    load_before = os.getloadavg()[0]
    if args.baseline:
        tag = uuid.uuid4().hex[:6]
        versions = [Central("baseline", args.baseline.resolve(),
                            database_for(admin_url, f"bench_base_{tag}"), gateway),
                    Central("current", REPO, database_for(admin_url, f"bench_cur_{tag}"), gateway)]
    else:
        versions = [Central("current", REPO, admin_url, gateway)]
    rows = []
    for _ in range(rounds):
        for central in versions:
            rows += run_scenarios(central, args, admin_url)

    lines = [
        f"central ingest, batches of {args.batch_size} events (raw event + measurement each), "
        f"{args.devices} devices, uvicorn 1 worker, PostgreSQL 15 on loopback (fsync "
        f"{os.environ.get('PG_FSYNC', 'as configured')}), {os.cpu_count()} CPUs, "
        f"load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}",
        "",
        "| central | scenario | clients | batches | events | seconds | events/s | batch p50 ms "
        "| batch p95 ms | MB/batch on wire | server CPU ms/batch | PostgreSQL CPU ms/batch "
        "| CPU-bound events/s, idle 2 cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['central']} | {r['scenario']} | {r['clients']} | {r['batches']} | "
                     f"{r['events']:,} | {r['seconds']:.2f} | {r['rate']:,.0f} | {r['p50']:.0f} | "
                     f"{r['p95']:.0f} | {r['mb']:.2f} | {r['server_ms']:.0f} | {r['pg_ms']:.0f} | "
                     f"{r['cpu_rate']:,.0f} |")
    lines += ["", "events/s is wall-clock throughput on this machine as loaded during the run. The "
              "last column divides by the CPU the server process and PostgreSQL actually used per "
              "batch, assuming an otherwise idle 2-core machine: max(server, (server + "
              "PostgreSQL) / 2) per batch, since the Python server is one GIL-bound process."]
    if args.baseline:
        lines += ["", f"Mean over {rounds} rounds, CPU ms per batch (server + PostgreSQL):", "",
                  "| scenario | baseline | current | baseline / current |", "|---|--:|--:|--:|"]
        for scenario in dict.fromkeys(r["scenario"] for r in rows):
            mean = {}
            for label in ("baseline", "current"):
                sel = [r for r in rows if r["scenario"] == scenario and r["central"] == label]
                mean[label] = (statistics.mean(r["server_ms"] for r in sel),
                               statistics.mean(r["pg_ms"] for r in sel))
            b, c = mean["baseline"], mean["current"]
            lines.append(f"| {scenario} | {b[0]:.0f} + {b[1]:.0f} = {sum(b):.0f} | "
                         f"{c[0]:.0f} + {c[1]:.0f} = {sum(c):.0f} | {sum(b) / sum(c):.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
