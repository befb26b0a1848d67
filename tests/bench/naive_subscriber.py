#!/usr/bin/python3
"""The naive baseline of tests/bench/bench_mqtt.cpp: a Python paho-mqtt
subscriber written the way a user would write it. For every QoS 1 message it
parses the JSON, computes a sha256 of the payload and commits one row into
SQLite in WAL mode at the given synchronous level; paho-mqtt sends the PUBACK
after on_message returns, so it too acknowledges after the commit.

Debian: apt-get install python3-paho-mqtt; run with /usr/bin/python3.

  naive_subscriber.py --port P --db FILE --count N [--synchronous NORMAL|FULL]
                      [--session-only]

--session-only: connect with a persistent session, subscribe, disconnect
(the broker then queues messages for it). Otherwise it prints "ready" once
subscribed, stores until N messages arrived, prints
"received N seconds_from_first_message S" and exits 0.
"""
import argparse
import hashlib
import json
import sqlite3
import sys
import time

import paho.mqtt.client as mqtt


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", default="meters/#")
    parser.add_argument("--client-id", default="naive-subscriber")
    parser.add_argument("--db", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    parser.add_argument("--session-only", action="store_true")
    args = parser.parse_args()

    db = sqlite3.connect(args.db)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=" + args.synchronous)
    db.execute(
        "CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY, hash TEXT UNIQUE,"
        " topic TEXT, device_id TEXT, timestamp TEXT, metric_type TEXT, value TEXT, unit TEXT)"
    )
    db.commit()

    state = {"received": 0, "first": None, "last": None, "subscribed": False}

    def on_connect(client, userdata, flags, rc):
        if rc != 0:
            print("connect refused: %d" % rc, file=sys.stderr)
            sys.exit(1)
        client.subscribe(args.topic, qos=1)

    def on_subscribe(client, userdata, mid, granted_qos):
        state["subscribed"] = True
        if args.session_only:
            client.disconnect()
        else:
            print("ready", flush=True)

    def on_message(client, userdata, message):
        now = time.monotonic()
        if state["first"] is None:
            state["first"] = now
        reading = json.loads(message.payload)
        digest = hashlib.sha256(message.payload).hexdigest()
        db.execute(
            "INSERT OR IGNORE INTO readings (hash, topic, device_id, timestamp, metric_type,"
            " value, unit) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                digest,
                message.topic,
                reading.get("device_id"),
                reading.get("timestamp"),
                reading.get("metric_type"),
                str(reading.get("value")),
                reading.get("unit"),
            ),
        )
        db.commit()
        state["received"] += 1
        state["last"] = time.monotonic()
        if state["received"] >= args.count:
            client.disconnect()

    client = mqtt.Client(client_id=args.client_id, clean_session=False)
    client.max_inflight_messages_set(100)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=60)
    client.loop_forever()
    if not args.session_only:
        first = state["first"] or time.monotonic()
        last = state["last"] or first
        print("received %d seconds_from_first_message %.6f" % (state["received"], last - first),
              flush=True)
    db.close()
    return 0 if args.session_only or state["received"] >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
