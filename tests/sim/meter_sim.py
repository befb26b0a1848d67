#!/usr/bin/python3
"""meter_sim: a simulated metering site publishing over MQTT, deterministic by seed.

  tests/sim/meter_sim.py --meters 12 --duration 5m --seed 7            # publish to localhost:1883
  tests/sim/meter_sim.py --faults glitch=0.05,repeat --summary truth.json
  tests/sim/meter_sim.py --no-publish --write site.tsv                   # a replay file only

M meters, each at its own interval, in the formats of the shipped presets (config/presets:
seed JSON on meters/<id>, Tasmota tele/<id>/SENSOR, Shelly EM <id>/status/em:0 + emdata:0,
Zigbee2MQTT zigbee2mqtt/<name>, plain numbers on plain/<id>/<metric>), with faults at chosen
rates (--faults, see tests/sim/simulation.py). Publishes at QoS 1 and counts the broker's PUBACKs,
then prints one JSON summary on stdout: messages published and acknowledged, distinct readings
expected, and per meter its registers and true energy (kWh, exact decimal text). --write FILE
writes the stream as topic<TAB>payload lines (config/samples/mqtt-messages.tsv's format), which
tests/bench/run_mqtt.sh --replay FILE publishes through the benchmark's raw-socket publisher.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mqtt_publisher import PublishError, publish_all  # noqa: E402
from simulation import FORMATS, parse_faults, simulate  # noqa: E402


def duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="meter_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="the same seed, the same bytes")
    parser.add_argument("--meters", type=int, default=10, help="how many meters (default 10)")
    parser.add_argument("--duration", default="5m",
                        help="simulated time, e.g. 300, 5m, 2h (default 5m)")
    parser.add_argument("--start", default="2026-01-01T00:00:00Z",
                        help="simulated start (RFC 3339, or 'now-duration' so the readings end "
                             "now); default 2026-01-01T00:00:00Z")
    parser.add_argument("--faults", default="all",
                        help="'all' (default rates), 'none', or name[=rate],...: "
                             "glitch, spike, reset, rollback, replace, silence, repeat, burst, "
                             "malformed (per publication), skew, unsynced (per seed meter)")
    parser.add_argument("--fault-free", type=int, default=None,
                        help="meters kept free of faults (default a third, at least one)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"formats, assigned in turn (default {','.join(FORMATS)})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--client-id", default="meter-sim")
    parser.add_argument("--speed", type=float, default=0,
                        help="simulated seconds per real second; 0 (default): as fast as QoS 1 "
                             "with --window in flight allows")
    parser.add_argument("--window", type=int, default=1000,
                        help="messages in flight at most (default 1000)")
    parser.add_argument("--ack-timeout", type=float, default=60,
                        help="seconds to wait for the last PUBACKs (default 60)")
    parser.add_argument("--write", metavar="FILE", help="also write topic<TAB>payload lines")
    parser.add_argument("--no-publish", action="store_true", help="do not connect to a broker")
    parser.add_argument("--summary", metavar="FILE", help="write the JSON summary here too")
    return parser.parse_args(argv)


def start_time(text: str, duration_s: int) -> str:
    if text == "now-duration":
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        return (now - dt.timedelta(seconds=duration_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return text


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    try:
        duration_s = duration_seconds(args.duration)
        faults = parse_faults(args.faults)
        formats = tuple(f for f in args.formats.split(",") if f)
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise ValueError(f"unknown format(s) {unknown}; known: {', '.join(FORMATS)}")
        sim = simulate(seed=args.seed, meters=args.meters, duration_s=duration_s,
                       start=start_time(args.start, duration_s), faults=faults,
                       fault_free=args.fault_free, formats=formats)
    except ValueError as error:
        print(f"meter_sim: {error}", file=sys.stderr)
        return 2

    if args.write:
        with open(args.write, "wb") as out:
            for message in sim.messages:
                out.write(message.topic.encode() + b"\t" + message.payload + b"\n")

    summary = sim.summary()
    summary["published"] = summary["acknowledged"] = 0
    if not args.no_publish:
        try:
            publisher = publish_all(args.host, args.port, args.client_id,
                                    ((m.sim_ms / 1000, m.topic, m.payload)
                                     for m in sim.messages),
                                    speed=args.speed, window=args.window,
                                    ack_timeout_s=args.ack_timeout)
        except (OSError, PublishError) as error:
            print(f"meter_sim: publishing to {args.host}:{args.port}: {error}", file=sys.stderr)
            return 1
        summary["published"] = publisher.published
        summary["acknowledged"] = publisher.acknowledged
        summary["unexpected_acknowledgements"] = publisher.unexpected
    text = json.dumps(summary, indent=1)
    if args.summary:
        with open(args.summary, "w") as out:
            out.write(text + "\n")
    print(text)
    complete = args.no_publish or summary["acknowledged"] == summary["messages"]
    if not complete:
        print(f"meter_sim: {summary['acknowledged']} of {summary['messages']} messages "
              "acknowledged", file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
