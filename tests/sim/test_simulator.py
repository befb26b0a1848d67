"""Tests of the meter simulator itself: determinism by seed, fault rates, the truth it reports
(recomputed here from the published bytes, independently of its own bookkeeping), the replay
file, and QoS 1 publishing with PUBACK counting against a real mosquitto.

  /usr/bin/python3 -m pytest -q tests/sim
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

from mqtt_publisher import publish_all  # noqa: E402
from simulation import ALL_FAULTS, MESSAGE_FAULTS, parse_faults, simulate  # noqa: E402


def stream(sim):
    return [(m.sim_ms, m.topic, m.payload) for m in sim.messages]


# ---- determinism --------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_bytes_and_truth():
    a = simulate(seed=42, meters=15, duration_s=600)
    b = simulate(seed=42, meters=15, duration_s=600)
    assert stream(a) == stream(b)
    assert a.summary() == b.summary()


def test_another_seed_gives_another_site():
    a = simulate(seed=1, meters=15, duration_s=600)
    b = simulate(seed=2, meters=15, duration_s=600)
    assert stream(a) != stream(b)


def test_the_command_line_is_deterministic_too(tmp_path):
    outputs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.tsv"
        run = subprocess.run([sys.executable, os.path.join(here, "meter_sim.py"), "--seed", "9",
                              "--meters", "7", "--duration", "3m", "--no-publish",
                              "--write", str(path)], capture_output=True, check=True)
        outputs.append((path.read_bytes(), run.stdout))
    assert outputs[0] == outputs[1]
    summary = json.loads(outputs[0][1])
    assert outputs[0][0].count(b"\n") == summary["messages"] > 0


# ---- faults -------------------------------------------------------------------------------------

def publications(sim, meter):
    """Publications of one meter that carried its energy register (one per interval)."""
    return [m for m in sim.messages if m.meter == meter.index and m.kind == "reading"
            and energy_of(meter.format, m.topic, m.payload) is not None]


@pytest.mark.parametrize("fault", sorted(MESSAGE_FAULTS))
def test_each_fault_alone_happens_at_its_rate(fault):
    rate = 0.05
    # Repeats and bursts are for meters with a clock; a receive-time series glitches to 0 once
    # at most (its values never repeat): those three are counted on seed meters.
    formats = (("seed",) if fault in ("repeat", "burst", "glitch")
               else ("seed", "tasmota", "shelly_em"))
    sim = simulate(seed=3, meters=30, duration_s=3600, faults={fault: rate}, fault_free=10,
                   formats=formats)
    summary = sim.summary()
    assert set(summary["faults"]) == {fault}
    # Chances: one per publication of a faulty meter while it publishes (silences and bursts
    # draw once per interval too, so count intervals, not messages).
    chances = sum(len(m.history) for m in sim.meters if not m.fault_free)
    if fault in ("silence",):
        chances = sum(3600 // m.interval_s for m in sim.meters if not m.fault_free)
    observed = summary["faults"][fault]
    expected = chances * rate
    spread = 5 * math.sqrt(chances * rate * (1 - rate))
    assert abs(observed - expected) <= spread + 0.35 * expected, (observed, expected, chances)
    for meter in sim.meters:
        if meter.fault_free:
            assert meter.faults == {}


def test_no_faults_means_none_anywhere():
    sim = simulate(seed=5, meters=20, duration_s=1800, faults={})
    assert sim.summary()["faults"] == {}
    assert all(m.kind in ("reading", "status") for m in sim.messages)


def test_meter_faults_are_a_fraction_of_the_faulty_seed_meters():
    sim = simulate(seed=6, meters=200, duration_s=60, faults={"skew": 0.5, "unsynced": 0.25},
                   fault_free=0, formats=("seed",))
    skewed = sum(1 for m in sim.meters if m.skew_ms is not None)
    unsynced = sum(1 for m in sim.meters if m.unsynced)
    assert 70 <= skewed <= 130 and 25 <= unsynced <= 75
    for m in sim.meters:
        if m.skew_ms is not None:
            assert 30_000 <= abs(m.skew_ms) <= 900_000


def test_fault_names_and_rates_are_checked():
    assert parse_faults("glitch=0.5,repeat") == {"glitch": 0.5, "repeat": ALL_FAULTS["repeat"]}
    assert parse_faults("none") == {}
    with pytest.raises(ValueError):
        parse_faults("glich=0.1")
    with pytest.raises(ValueError):
        parse_faults("glitch=2")


# ---- the truth, recomputed from the bytes -------------------------------------------------------

KWH = Decimal(1)


def energy_of(fmt, topic, payload):
    """The energy register (kWh) a message carries, decoded the way the presets say."""
    try:
        if fmt == "seed":
            for r in json.loads(payload, parse_float=Decimal, parse_int=Decimal):
                if r["metric_type"] == "energy":
                    return r["value"] / (1000 if r["unit"] == "Wh" else 1)
        elif fmt == "tasmota":
            return json.loads(payload, parse_float=Decimal, parse_int=Decimal)["ENERGY"]["Total"]
        elif fmt == "shelly_em" and topic.endswith("emdata:0"):
            return json.loads(payload, parse_float=Decimal, parse_int=Decimal)["total_act"] / 1000
        elif fmt == "zigbee2mqtt" and "bridge" not in topic:
            return json.loads(payload, parse_float=Decimal, parse_int=Decimal)["energy"]
        elif fmt == "plain" and topic.endswith("/energy"):
            return Decimal(payload.decode())
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, ArithmeticError):
        return None
    return None


def readings_of(fmt, topic, payload):
    """(device, metric, timestamp ms or None, canonical value) of every reading in a message, as
    the agent would take them (canonical units kWh and kW); [] for a message with none."""
    def loads():
        return json.loads(payload, parse_float=Decimal, parse_int=Decimal)
    try:
        if fmt == "seed":
            out = []
            for r in loads():
                scale = {"kWh": 1, "Wh": Decimal("0.001"), "W": Decimal("0.001"), "kW": 1}
                stamp = None
                if "timestamp" in r:
                    moment = dt.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
                    stamp = round(moment.timestamp() * 1000)
                out.append((r["device_id"], r["metric_type"], stamp,
                            r["value"] * scale[r["unit"]]))
            return out
        if fmt == "tasmota":
            p = loads()["ENERGY"]
            device = topic.split("/")[1]
            return [(device, "energy", None, p["Total"]),
                    (device, "power", None, p["Power"] / 1000)]
        if fmt == "shelly_em":
            p, device = loads(), topic.split("/")[0]
            if topic.endswith("emdata:0"):
                return [(device, "energy", None, p["total_act"] / 1000)]
            return [(device, "power", None, p["total_act_power"] / 1000)]
        if fmt == "zigbee2mqtt":
            if "bridge" in topic:
                return []
            p, device = loads(), topic.split("/", 1)[1]
            return [(device, "energy", None, p["energy"]), (device, "power", None, p["power"] / 1000)]
        if fmt == "plain":
            _, device, metric = topic.split("/")
            value = Decimal(payload.decode())
            return [(device, metric, None, value / (1000 if metric == "power" else 1))]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, ArithmeticError):
        return []
    return []


def test_distinct_readings_recomputed_from_the_published_bytes():
    faults = {name: rate * 4 for name, rate in MESSAGE_FAULTS.items()}
    sim = simulate(seed=11, meters=25, duration_s=1800, faults={**ALL_FAULTS, **faults})
    keys = set()
    receive_time_readings = 0
    for message in sim.messages:
        meter = sim.meters[message.meter]
        for device, metric, stamp, value in readings_of(meter.format, message.topic,
                                                        message.payload):
            if stamp is None:
                receive_time_readings += 1   # stamped on receipt: each one a reading of its own
            else:
                keys.add((device, metric, stamp, value))
    assert receive_time_readings + len(keys) == sim.summary()["distinct_readings"]
    # The faults that make or drop readings all happened.
    assert {"repeat", "malformed", "glitch", "spike"} <= set(sim.summary()["faults"])


def test_receive_time_series_never_repeat_a_value():
    # Readings of one series that arrive within one millisecond must still differ (event_id),
    # whatever else arrived between them: no value twice in a series, faults included.
    faults = {name: rate * 4 for name, rate in MESSAGE_FAULTS.items()}
    sim = simulate(seed=12, meters=25, duration_s=3600, faults={**ALL_FAULTS, **faults})
    seen = set()
    checked = 0
    for message in sim.messages:
        meter = sim.meters[message.meter]
        for device, metric, stamp, value in readings_of(meter.format, message.topic,
                                                        message.payload):
            if stamp is None:
                assert (device, metric, value) not in seen
                seen.add((device, metric, value))
                checked += 1
    assert checked > 1000


def test_fault_free_meters_register_delta_is_the_true_energy():
    sim = simulate(seed=13, meters=25, duration_s=3600)
    summary = {m["device_id"]: m for m in sim.summary()["meters"]}
    checked = 0
    for meter in sim.meters:
        values = [energy_of(meter.format, m.topic, m.payload) for m in publications(sim, meter)]
        truth = summary[meter.device_id]["energy_kwh"]
        if meter.fault_free:
            checked += 1
            assert all(a < b for a, b in zip(values, values[1:]))
            assert Decimal(truth["first_register"]) == values[0]
            assert Decimal(truth["last_register"]) == values[-1]
            assert values[-1] - values[0] == Decimal(truth["register_delta"]) \
                == Decimal(truth["true_energy"])
    assert checked >= 8


def test_glitches_and_spikes_change_what_is_sent_not_the_truth():
    sim = simulate(seed=14, meters=10, duration_s=3600, faults={"glitch": 0.1, "spike": 0.1},
                   fault_free=0, formats=("tasmota",))
    for meter in sim.meters:
        values = [energy_of("tasmota", m.topic, m.payload) for m in publications(sim, meter)]
        truth = sim.summary()["meters"][meter.index]["energy_kwh"]
        good = [v for v in values if 0 < v < Decimal(truth["last_register"]) * 10]
        assert len(good) < len(values)   # some were glitches or spikes
        assert Decimal(truth["true_energy"]) == Decimal(truth["register_delta"])
        assert good[-1] - good[0] <= Decimal(truth["true_energy"])


def test_resets_make_the_register_delta_differ_from_the_true_energy():
    sim = simulate(seed=15, meters=30, duration_s=7200, faults={"reset": 0.02}, fault_free=0,
                   formats=("plain",))
    checked = 0
    for meter in sim.meters:
        if not meter.faults:
            continue
        truth = sim.summary()["meters"][meter.index]["energy_kwh"]
        values = [energy_of("plain", m.topic, m.payload) for m in publications(sim, meter)]
        drops = [b for a, b in zip(values, values[1:]) if b < a]
        assert 0 < len(drops) <= meter.faults["reset"]
        assert Decimal(truth["register_delta"]) != Decimal(truth["true_energy"])
        if len(drops) < meter.faults["reset"]:
            continue   # two resets close together: the second one hides in the first one's rise
        checked += 1
        # The truth: every increase, and after each reset the value it restarted from zero with.
        assert sum(b - a if b > a else b for a, b in zip(values, values[1:])) == \
            Decimal(truth["true_energy"])
    assert checked >= 5


def test_malformed_messages_make_no_reading_and_fit_on_a_line():
    sim = simulate(seed=16, meters=10, duration_s=3600, faults={"malformed": 0.2})
    malformed = [m for m in sim.messages if m.kind == "malformed"]
    assert len(malformed) > 20
    for message in malformed:
        assert b"\t" not in message.payload and b"\n" not in message.payload
        meter = sim.meters[message.meter]
        assert readings_of(meter.format, message.topic, message.payload) == []


# ---- publishing at QoS 1 against a real mosquitto -----------------------------------------------

@pytest.fixture()
def broker():
    if not os.path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/install-deps.sh)")
    directory = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = os.path.join(directory, "mosquitto.conf")
    with open(config, "w") as out:
        out.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                  + ("user root\n" if os.geteuid() == 0 else ""))
    process = subprocess.Popen(["/usr/sbin/mosquitto", "-c", config],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory)


def test_every_message_is_acknowledged_once_by_a_real_broker(broker):
    sim = simulate(seed=17, meters=20, duration_s=600)
    # A small window forces packet identifiers to be reused many times over.
    publisher = publish_all("127.0.0.1", broker, "sim-test",
                            ((m.sim_ms / 1000, m.topic, m.payload) for m in sim.messages),
                            window=7)
    assert publisher.published == len(sim.messages) > 500
    assert publisher.acknowledged == publisher.published
    assert publisher.unexpected == 0


def test_the_command_line_reports_what_the_broker_acknowledged(broker, tmp_path):
    run = subprocess.run([sys.executable, os.path.join(here, "meter_sim.py"), "--port",
                          str(broker), "--meters", "5", "--duration", "2m", "--summary",
                          str(tmp_path / "s.json")], capture_output=True, check=True)
    summary = json.loads(run.stdout)
    assert summary == json.loads((tmp_path / "s.json").read_text())
    assert summary["published"] == summary["acknowledged"] == summary["messages"] > 0


def test_publishing_to_nothing_fails_cleanly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, os.path.join(here, "meter_sim.py"), "--port",
                          str(port), "--meters", "2", "--duration", "30s"], capture_output=True)
    assert run.returncode == 1
    assert b"publishing to 127.0.0.1" in run.stderr


# ---- the fleet load generator, briefly -----------------------------------------------------------

def test_fleet_load_generator_runs_and_its_counts_agree():
    # 5 gateways for 4 s against a real central (two worker processes) and PostgreSQL: every
    # measurement sent is answered `stored` and is in PostgreSQL once, every replay answered
    # `duplicate`, backlogs after outages included (the tool exits 1 otherwise).
    run = subprocess.run([sys.executable, os.path.join(here, "fleet_load.py"), "--gateways", "5",
                          "--meters", "3", "--seconds", "4", "--upload-every", "0.5",
                          "--replay-rate", "0.3", "--outage-rate", "0.2", "--outage-uploads",
                          "2", "--readers", "1", "--workers", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "`serve --workers 2" in run.stdout
    assert "| ingest, backlog after outage |" in run.stdout
    row = [line for line in run.stdout.splitlines() if line.startswith("| ") and
           line[2].isdigit()][0]
    stored, duplicates = (int(cell.replace(",", "")) for cell in row.split("|")[1:4:2])
    assert stored > 0 and duplicates > 0
