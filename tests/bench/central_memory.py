#!/usr/bin/python3
"""Peak memory of the central per ingest request, against the worst bodies we can construct.

For each body: the server's peak RSS is reset (/proc/PID/clear_refs "5"), its RSS read, the
request sent (gzip, so the wire is small and only the decompressed size matters), and the peak
RSS read again: growth = peak - RSS before. Bodies are built at several decompressed sizes up
to the central's limit; the bound to check is growth <= 4 x decompressed size + 20 MiB.
The server is `python3 -m central serve` in its own process on a real PostgreSQL (DATABASE_URL,
or a throwaway cluster via central/tests/with_postgres.sh), one request at a time.

    /usr/bin/python3 tests/bench/central_memory.py [--sizes 1,4,15.5] [--baseline TREE]

--baseline TREE measures another version of central/ (e.g. `git archive main central | tar -x
-C /tmp/base`) the same way, after this one; a 413 row means the body was over that version's
limit. Prints a Markdown table (and writes it to --out).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from central_ingest import Central, database_for  # noqa: E402

MIB = 1024 * 1024
TS = "2024-01-01T09:00:00.000Z"


def envelope(gateway: str, raws: str = "", ms: str = "", extra: str = "") -> str:
    return ('{"protocol_version":"1","gateway_id":"%s","buffer_id":"%s","sent_at":"%s",%s'
            '"raw_events":[%s],"measurements":[%s]}' % (gateway, uuid.uuid4(), TS, extra, raws, ms))


def fill(unit: str, size: int, sep: str = ",") -> str:
    return sep.join([unit] * max(1, size // (len(unit) + len(sep))))


def raw(seq: int, payload: bytes, topic: str = "site/m/energy") -> str:
    return ('{"seq":%d,"topic":"%s","payload":"%s","qos":1,"retained":false,"dup":false,'
            '"received_at":"%s","decode_error":null}' % (seq, topic, base64.b64encode(payload).decode(), TS))


def measurement(i: int, buffer_id: str) -> str:
    device, value = f"meter-{i % 1000:04d}", f"{i}.5"
    ts = f"2024-01-{1 + i // 86400 % 28:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"
    eid = hashlib.sha256(f"{device}|{ts}|energy|{value}".encode()).hexdigest()
    return ('{"event_id":"%s","device_id":"%s","metric_type":"energy","timestamp":"%s",'
            '"value":%s,"unit":"kWh","delta":null,"flags":["first_reading"],"revision":1,'
            '"raw":{"buffer_id":"%s","seq":%d}}' % (eid, device, ts, value, buffer_id, i))


def bodies(gateway: str, size: int, max_records: int, start: int):
    """(name, body) pairs of about `size` bytes of JSON each."""
    buf = str(uuid.uuid4())
    # An agent's batch: records with payloads sized so the batch reaches `size`.
    n = min(max_records, max(1, size // 2000))
    pad = max(0, (size // n - 720) * 3 // 4)  # base64 makes 4 characters of 3 bytes
    payload = b'{"device":"m","energy_kwh":"1.5","pad":"' + b"x" * pad + b'"}'
    yield "agent batch", envelope(gateway, ",".join(raw(start + i, payload) for i in range(n)),
                                  ",".join(measurement(start + i, buf) for i in range(n)))
    # The most records an agent may send, each as small as valid (limit of records, not bytes).
    n = max_records
    yield f"{n} + {n} small valid records", envelope(
        gateway, ",".join(raw(start + 10**6 + i, b"{}") for i in range(n)),
        ",".join(measurement(start + 10**6 + i, buf) for i in range(n)))
    # Many tiny JSON values where nothing is expected: each costs a Python object if built.
    yield "[0,0,...] in an unknown key", envelope(gateway, extra='"x":[%s],' % fill("0", size))
    yield "[[],[],...] in an unknown key", envelope(gateway, extra='"x":[%s],' % fill("[]", size))
    yield '["ab","ab",...] in a record', envelope(gateway, raws='{"seq":1,"topic":[%s]}' % fill('"ab"', size))
    yield "{} records (over the record limit)", envelope(gateway, raws=fill("{}", size))
    yield "[[[...]]] nested", envelope(gateway, extra='"x":%s%s,' % ("[" * (size // 2), "]" * (size // 2)))
    # One string: ASCII but for one character outside the BMP (4 bytes per character in Python).
    yield "one wide string (topic)", envelope(gateway, raws=raw(start, b"{}", topic="a" * (size - 300) + "\U0001F600"))
    yield "one number of many digits", envelope(gateway, ms='{"value":%s}' % ("1" * (size - 300)))
    # Payloads at the size limit (256 KiB decoded), as many as fit.
    n = max(1, size // (350 * 1024))
    big = b"[" + b"1," * (128 * 1024 - 2) + b"1]"
    yield f"{n} payloads of 256 KiB JSON", envelope(gateway, ",".join(raw(start + 2 * 10**6 + i, big) for i in range(n)))


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def measure(central: Central, sizes: list[int], max_records: int) -> list[dict]:
    """Each body in a fresh server process (after one small request), so what an earlier body
    left allocated cannot hide this one's growth."""
    rows = []
    headers = {"Authorization": f"Bearer {central.token}", "Content-Type": "application/json",
               "Content-Encoding": "gzip"}
    warm_up = gzip.compress(envelope(central.gateway).encode())
    for size in sizes:
        for name, text in bodies(central.gateway, int(size * MIB), max_records, central.seq):
            central.seq += 10**7
            data = text.encode("utf-8")
            del text
            wire = gzip.compress(data, 6)
            server, port = central.serve()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                conn.request("POST", "/api/v1/ingest", body=warm_up, headers=headers)
                conn.getresponse().read()
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")
                before = status_kib(server.pid)["VmRSS"]
                started = time.monotonic()
                conn.request("POST", "/api/v1/ingest", body=wire, headers=headers)
                response = conn.getresponse()
                response.read()
                seconds = time.monotonic() - started
                peak = status_kib(server.pid)["VmHWM"]
                conn.close()
            finally:
                server.terminate()
                server.wait(20)
            growth = (peak - before) / 1024
            bound = 4 * len(data) / MIB + 20
            rows.append({"central": central.label, "body": name, "mib": len(data) / MIB,
                         "wire_kib": len(wire) / 1024, "status": response.status,
                         "growth": growth, "bound": bound, "seconds": seconds})
            print(f"{central.label:9} {name:38} {len(data) / MIB:6.2f} MiB -> "
                  f"{response.status} growth {growth:7.1f} MiB (bound {bound:.1f}) "
                  f"{seconds:.2f} s", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,4,15.5", help="decompressed body sizes in MiB")
    ap.add_argument("--max-records", type=int, default=10_000)
    ap.add_argument("--baseline", type=Path, help="another version's tree (holding central/)")
    ap.add_argument("--baseline-sizes", help="sizes for the baseline (default: --sizes)")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()
    if not os.environ.get("DATABASE_URL"):
        script = REPO / "central/tests/with_postgres.sh"
        return subprocess.call([str(script), "/usr/bin/python3", __file__, *sys.argv[1:]])
    sizes = [float(s) for s in args.sizes.split(",")]
    admin_url = os.environ["DATABASE_URL"]
    tag = uuid.uuid4().hex[:6]
    rows = measure(Central("current", REPO, database_for(admin_url, f"mem_cur_{tag}"),
                           f"mem-{tag}"), sizes, args.max_records)
    if args.baseline:
        rows += measure(Central("baseline", args.baseline.resolve(),
                                database_for(admin_url, f"mem_base_{tag}"), f"mem-{tag}"),
                        [float(s) for s in (args.baseline_sizes or args.sizes).split(",")],
                        args.max_records)
    lines = ["| central | body | decompressed MiB | gzip KiB | status | peak RSS growth MiB "
             "| bound 4x+20 MiB | within | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['central']} | {r['body']} | {r['mib']:.2f} | {r['wire_kib']:.0f} | "
                     f"{r['status']} | {r['growth']:.1f} | {r['bound']:.1f} | "
                     f"{'yes' if r['growth'] <= r['bound'] else '**no**'} | {r['seconds']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    worst = [r for r in rows if r["central"] == "current" and r["growth"] > r["bound"]]
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
