#!/usr/bin/python3
"""Reads with a year of data: consumption of one meter over a year and the fleet page, p50/p95.

A year of hourly readings for 1,000 meters (8.76 M rows by default) is generated inside
PostgreSQL (INSERT ... SELECT over generate_series, hour by hour across all meters, the order
live ingest writes them in), then the read API is measured through `python3 -m central serve`
(one uvicorn worker, its own process) over loopback HTTP:

* consumption, one meter (random per request), a whole year, bucket=day in UTC and in
  Europe/Berlin (the dashboard asks in the browser's zone), and bucket=hour in UTC;
* the fleet page: GET /api/v1/gateways and GET /api/v1/devices?limit=5000, as the dashboard's
  Fleet page asks them, one after the other.

Scenarios, each in a database of its own in one throwaway cluster:
  0006        the schema before partitioning and rollups, loaded;
  upgraded    that same database migrated to head (0007-0010 timed on the populated table),
              measured with rollups (and with CENTRAL_READ_ROLLUPS=false: partitions only);
  ingested    a fresh database at head loaded in the same time order through the rollup
              triggers (how the rollups lie on disk after a year of live ingest).

    /usr/bin/python3 tests/bench/central_year.py                 # the full year, ~15-25 min
    /usr/bin/python3 tests/bench/central_year.py --meters 20 --days 7 --samples 5   # smoke

Without DATABASE_URL it runs itself under central/tests/with_postgres.sh (fsync off: this
measures reads; the load is not durable-write bound and says so). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PRE_PARTITIONING = "0006"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_for(admin_url: str, name: str) -> str:
    import psycopg2
    from sqlalchemy.engine import make_url
    url = make_url(admin_url)
    admin = psycopg2.connect(host=url.host, port=url.port, user=url.username,
                             password=url.password, dbname=url.database)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    admin.close()
    return str(url.set(database=name))


def connect(url: str):
    import psycopg2
    from sqlalchemy.engine import make_url
    u = make_url(url)
    return psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                            dbname=u.database)


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


# One row per meter and hour. Every reading carries a delta (the first one of each meter a
# first_reading without), from the previous hour; a few are flagged so every class of the
# consumption split has energy: every 500th reading a gap (its delta_from three hours back),
# every 997th a suspicious_jump. The event_id is the protocol's hash over the canonical fields.
_LOAD = """
INSERT INTO normalized_measurements (event_id, gateway_id, device_id, metric_type, "timestamp",
       value, unit, delta, flags, revision, raw_buffer_id, raw_seq, delta_from)
SELECT encode(sha256(convert_to(d.name || '|' || to_char(t.ts AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '|energy|' || v.value,
                                'UTF8')), 'hex'),
       1 + d.i %% %(gateways)s, d.name, 'energy', t.ts, v.value, 'kWh',
       CASE WHEN h.h > 0 THEN v.delta END, f.flags, 1,
       '6f1c2a4e-3b7d-4c1e-9a55-0d2f8e7b1c90', 1 + h.h,
       CASE WHEN h.h > 0 THEN t.ts - CASE WHEN 'gap' = ANY(f.flags) THEN interval '3 hours'
                                         ELSE interval '1 hour' END END
  FROM generate_series(%(h0)s, %(h1)s) AS h(h)
 CROSS JOIN generate_series(0, %(meters)s - 1) AS d0(i)
 CROSS JOIN LATERAL (SELECT d0.i AS i, 'meter-' || lpad(d0.i::text, 4, '0') AS name) AS d
 CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + h.h * interval '1 hour'
                            + (d.i %% 60) * interval '1 second' AS ts) AS t
 CROSS JOIN LATERAL (SELECT CASE WHEN h.h = 0 THEN ARRAY['first_reading']
                                 WHEN (h.h * %(meters)s + d.i) %% 500 = 0 THEN ARRAY['gap']
                                 WHEN (h.h * %(meters)s + d.i) %% 997 = 0
                                      THEN ARRAY['suspicious_jump']
                                 ELSE '{}'::text[] END AS flags) AS f
 CROSS JOIN LATERAL (SELECT (1000 + d.i + h.h * (0.5 + (d.i %% 7) * 0.125))::numeric AS value,
                            (0.5 + (d.i %% 7) * 0.125)::numeric AS delta) AS v
 ORDER BY h.h, d.i
"""


def load(url: str, meters: int, days: int, gateways: int, start: dt.datetime) -> float:
    began = time.monotonic()
    conn = connect(url)
    cur = conn.cursor()
    cur.execute("SET synchronous_commit = off")
    for g in range(1, gateways + 1):
        cur.execute("INSERT INTO gateways (name) VALUES (%s)", (f"gw-{g:03d}",))
    hours = days * 24
    step = 24 * 10  # ten days per statement
    for h0 in range(0, hours, step):
        cur.execute(_LOAD, {"h0": h0, "h1": min(hours, h0 + step) - 1, "meters": meters,
                            "gateways": gateways, "start": start})
        conn.commit()
        print(f"  loaded {min(hours, h0 + step) * meters:,} rows", file=sys.stderr, flush=True)
    conn.autocommit = True
    cur.execute("VACUUM ANALYZE")
    # Write the load's dirty pages out now, not during the first measured cell.
    cur.execute("CHECKPOINT")
    conn.close()
    return time.monotonic() - began


def create_months(url: str, start: dt.datetime, end: dt.datetime) -> None:
    """The monthly partitions ingest would have created while the year's data arrived (the load
    writes with SQL, not through the ingest API)."""
    from central import partitions
    conn = connect(url)
    month = partitions.month_of(start)
    while month <= partitions.month_of(end):
        for table in partitions.PARTITION_KEYS:
            assert partitions.create_month(conn, table, month)
        month = partitions.add_months(month, 1)
    conn.close()


def vacuum(url: str) -> None:
    conn = connect(url)
    conn.autocommit = True
    conn.cursor().execute("VACUUM ANALYZE")
    conn.close()


def migrate_timed(url: str, revisions: list[str]) -> list[tuple[str, float]]:
    from central import migrate
    out = []
    for rev in revisions:
        began = time.monotonic()
        migrate.upgrade(sqlalchemy_url(url), rev)
        out.append((rev, time.monotonic() - began))
        print(f"  migrated to {rev} in {out[-1][1]:.1f} s", file=sys.stderr, flush=True)
    return out


def viewer_token(url: str) -> str:
    import sqlalchemy as sa

    from central import accounts
    engine = sa.create_engine(sqlalchemy_url(url), future=True)
    try:
        return accounts.create(engine, "viewer", f"bench-{uuid.uuid4().hex[:6]}")
    finally:
        engine.dispose()


def baseline_tree(commit: str | None) -> Path:
    """The central as it was before partitioning (the parent of the commit that added 0007,
    unless --baseline-commit says otherwise), extracted into a temporary directory."""
    import tempfile
    if commit is None:
        added = subprocess.run(
            ["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--",
             "central/migrations/versions/0007_measurements_partitioned.py"],
            capture_output=True, text=True, check=True).stdout.split()
        commit = added[-1] + "^"
    root = Path(tempfile.mkdtemp(prefix="central-year-base-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "central"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


class Server:
    def __init__(self, url: str, rollups: bool, root: Path = REPO):
        self.port = free_port()
        env = dict(os.environ, DATABASE_URL=url, CENTRAL_LOG_LEVEL="warning",
                   CENTRAL_READ_ROLLUPS="true" if rollups else "false")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-m", "central", "serve", "--no-migrate", "--port",
             str(self.port)], cwd=root, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the central did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def timed_get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[float, bytes]:
    began = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - began) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed, body


def measure(url: str, token: str, rollups: bool, meters: int, start: dt.datetime, days: int,
            samples: int, seed: int, root: Path = REPO) -> dict[str, tuple[float, float, str]]:
    """p50, p95 and the 1-minute load average before -> after, per cell."""
    server = Server(url, rollups, root)
    rng = random.Random(seed)
    frm = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    to = (start + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    queries = {
        "consumption, day, UTC": "bucket=day&tz=UTC",
        "consumption, day, Europe/Berlin": "bucket=day&tz=Europe/Berlin",
        "consumption, hour, UTC": "bucket=hour&tz=UTC",
    }
    out: dict[str, tuple[float, float, str]] = {}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        checked = {}
        for label, query in queries.items():
            load_before = os.getloadavg()[0]
            times = []
            for i in range(samples + 2):  # two warm-ups
                device = f"meter-{rng.randrange(meters):04d}"
                ms, body = timed_get(conn, f"/api/v1/consumption?device_id={device}&from={frm}"
                                           f"&to={to}&{query}", token)
                if i >= 2:
                    times.append(ms)
                checked[label] = json.loads(body)["total"]["readings"]
            out[label] = (*percentiles(times), f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}")
        load_before = os.getloadavg()[0]
        fleet, gateways, devices = [], [], []
        for i in range(samples + 2):
            g_ms, _ = timed_get(conn, "/api/v1/gateways", token)
            d_ms, body = timed_get(conn, "/api/v1/devices?limit=5000", token)
            if i >= 2:
                gateways.append(g_ms)
                devices.append(d_ms)
                fleet.append(g_ms + d_ms)
            assert len(json.loads(body)["items"]) == meters
        load = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
        out["gateways"] = (*percentiles(gateways), load)
        out["devices?limit=5000"] = (*percentiles(devices), load)
        out["fleet page (both)"] = (*percentiles(fleet), load)
        conn.close()
        for label, readings in checked.items():
            assert readings >= days * 24 - 48, (label, readings)  # the whole year was summed
    finally:
        server.stop()
    return out


def percentiles(times: list[float]) -> tuple[float, float]:
    if len(times) < 2:
        return times[0], times[0]
    cuts = statistics.quantiles(times, n=20, method="inclusive")
    return statistics.median(times), cuts[18]


def table_sizes(url: str) -> str:
    conn = connect(url)
    cur = conn.cursor()
    cur.execute("""
        SELECT coalesce(i.inhparent::regclass::text, c.relname) AS t,
               sum(pg_total_relation_size(c.oid))
          FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
         GROUP BY 1 ORDER BY 2 DESC LIMIT 4""")
    text = ", ".join(f"{t} {size / 2**20:,.0f} MiB" for t, size in cur.fetchall())
    conn.close()
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--gateways", type=int, default=100)
    ap.add_argument("--samples", type=int, default=40, help="requests per measured query")
    ap.add_argument("--scenarios", default="0006,upgraded,ingested")
    ap.add_argument("--baseline-commit", help="the central serving the 0006 scenario (default: "
                    "the parent of the commit that added migration 0007)")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()
    if not os.environ.get("DATABASE_URL"):
        script = REPO / "central/tests/with_postgres.sh"
        return subprocess.call([str(script), "/usr/bin/python3", __file__, *sys.argv[1:]])

    scenarios = args.scenarios.split(",")
    admin_url = os.environ["DATABASE_URL"]
    # The year ends at the current hour: its months are inside the automatic partition window.
    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    start = (now - dt.timedelta(days=args.days)).replace(hour=0)
    rows, notes = [], []
    tag = uuid.uuid4().hex[:6]
    load_before = os.getloadavg()[0]

    if "0006" in scenarios or "upgraded" in scenarios:
        url = database_for(admin_url, f"year_old_{tag}")
        migrate_timed(url, [PRE_PARTITIONING])
        seconds = load(url, args.meters, args.days, args.gateways, start)
        notes.append(f"load at 0006: {args.meters * args.days * 24:,} rows in {seconds:.0f} s "
                     f"({table_sizes(url)})")
        token = viewer_token(url)
        if "0006" in scenarios:
            base = baseline_tree(args.baseline_commit)
            rows.append(("0006, the code before (before)", measure(
                url, token, True, args.meters, start, args.days, args.samples, 1, base)))
            subprocess.run(["rm", "-rf", str(base)], check=True)
        if "upgraded" in scenarios:
            steps = migrate_timed(url, ["0007", "0008", "head"])
            vacuum(url)
            notes.append("upgrade of that populated database: " + ", ".join(
                f"{rev} {s:.0f} s" for rev, s in steps) + f" ({table_sizes(url)})")
            rows.append(("head, upgraded from 0006", measure(
                url, token, True, args.meters, start, args.days, args.samples, 1)))
            rows.append(("head, upgraded, CENTRAL_READ_ROLLUPS=false", measure(
                url, token, False, args.meters, start, args.days, args.samples, 1)))
    if "ingested" in scenarios:
        url = database_for(admin_url, f"year_new_{tag}")
        migrate_timed(url, ["head"])
        create_months(url, start, now)
        seconds = load(url, args.meters, args.days, args.gateways, start)
        notes.append(f"load at head through the rollup triggers: {seconds:.0f} s "
                     f"({table_sizes(url)})")
        token = viewer_token(url)
        rows.append(("head, loaded in time order through the triggers", measure(
            url, token, True, args.meters, start, args.days, args.samples, 1)))

    labels = list(rows[0][1])
    lines = [f"central reads, {args.meters} meters x {args.days} days of hourly readings "
             f"({args.meters * args.days * 24:,} rows), {args.gateways} gateways, uvicorn 1 "
             f"worker, PostgreSQL 15 (shared_buffers 128MB, fsync off), {os.cpu_count()} CPUs, "
             f"load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}; "
             f"{args.samples} requests per cell (random meter), milliseconds p50 / p95", "",
             "| schema | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for name, result in rows:
        lines.append(f"| {name} | " + " | ".join(f"{result[k][0]:.0f} / {result[k][1]:.0f}"
                                                 for k in labels) + " |")
        lines.append("| load average (1 min) before -> after | "
                     + " | ".join(result[k][2] for k in labels) + " |")
    lines += [""] + [f"* {n}" for n in notes]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
