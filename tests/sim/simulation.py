"""A simulated metering site: M meters, their messages in the shipped presets' formats, and the
truth about them. Pure: no sockets, no clock; the same options and seed give the same bytes.

Why the numbers are shaped the way they are:
* Every register moves in whole steps of its format's resolution (1 Wh for the kWh registers
  with three decimals, 0.01 Wh for Shelly's `total_act`), and at least one step per publication,
  so the true energy is exact (integers of 0.01 Wh).
* A series stamped with the gateway's receive time (Tasmota, Shelly, Zigbee2MQTT, plain, and seed
  meters without a clock) never publishes a value it has published before (a reset, rollback or
  replacement that lands on one counts one more step; a second glitch to 0 is not made; power
  moves by 1 W, or 0.1 W, until new). Two of its readings can then never share an event_id even
  if they arrive within one millisecond, which keeps the count of distinct readings exact.
* For the same reason a repeated message is only made for meters that stamp their readings:
  a repeat of a receive-time message is, to the agent, a new reading at a new time.
* Energy is counted by the meter whatever is published: silences, glitches and bursts change
  what is sent, never what was consumed. Resets, rollbacks and replacements change the register
  but not the consumption, so `true_energy` differs from `last - first` exactly for meters
  whose register misbehaved.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional

FORMATS = ("seed", "tasmota", "shelly_em", "zigbee2mqtt", "plain")

# Faults applied per publication of a meter that is not fault-free (probability each time).
MESSAGE_FAULTS = {
    "glitch": 0.01,     # the register reads 0 once, then its real value again
    "spike": 0.01,      # the register reads 1000x its value once
    "reset": 0.002,     # the register restarts at 0 (e.g. Shelly Plug S after a reboot)
    "rollback": 0.003,  # restart from the last value saved to flash, a few publications back
    "replace": 0.001,   # the meter is swapped: same device id, another meter's register
    "silence": 0.003,   # nothing published for 5 to 30 intervals (the meter keeps counting)
    "repeat": 0.02,     # the same reading again right after (meters with their own clock only)
    "burst": 0.003,     # readings held for 5 to 30 intervals, then all at once (broker restart)
    "malformed": 0.01,  # an extra message that is no reading: truncated JSON, bad UTF-8, '12,5'
}
# Faults of a whole meter (the fraction of faulty seed-format meters that have them).
METER_FAULTS = {
    "skew": 0.3,      # the meter's clock is off by 30 s to 15 min, either way
    "unsynced": 0.2,  # the meter's clock was never set: it sends no timestamp
}
ALL_FAULTS = {**MESSAGE_FAULTS, **METER_FAULTS}

# Register resolution of each format, in 0.01 Wh (the common integer unit of every register).
RESOLUTION = {"seed": 100, "tasmota": 100, "shelly_em": 1, "zigbee2mqtt": 100, "plain": 100}
INTERVALS_S = (5, 10, 15, 30, 60)
CENTI_WH_PER_KWH = 100_000
CENTI_WH_PER_WH = 100


def parse_faults(text: str) -> dict[str, float]:
    """'all', 'none', or 'glitch=0.05,repeat,skew=0.5' (a name alone takes its default rate)."""
    if text == "all":
        return dict(ALL_FAULTS)
    if text in ("none", ""):
        return {}
    rates: dict[str, float] = {}
    for item in text.split(","):
        name, _, rate = item.partition("=")
        name = name.strip()
        if name not in ALL_FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(ALL_FAULTS)}")
        value = float(rate) if rate else ALL_FAULTS[name]
        if not 0 <= value <= 1:
            raise ValueError(f"fault {name}: rate {value} is not between 0 and 1")
        rates[name] = value
    return rates


@dataclass
class Message:
    """One MQTT publication: when (simulated ms since the start), where, what."""
    sim_ms: int
    topic: str
    payload: bytes
    meter: int    # index of the meter that sent it
    kind: str     # reading, repeat, malformed, status


@dataclass
class Meter:
    index: int
    device_id: str
    format: str
    interval_s: int
    fault_free: bool
    skew_ms: Optional[int] = None   # clock skew (seed meters with the skew fault)
    unsynced: bool = False          # no timestamp in its messages (seed meters)
    watts: tuple[int, int] = (400, 3000)
    # bookkeeping
    register: int = 0               # the register, 0.01 Wh
    consumed: int = 0               # consumed since the first publication, 0.01 Wh
    true_energy: int = 0            # consumed from the first to the last publication, 0.01 Wh
    first_register: Optional[int] = None
    last_register: Optional[int] = None
    history: list[int] = field(default_factory=list)   # published registers (rollback targets)
    last_power: Optional[Decimal] = None
    used_energy: set = field(default_factory=set)      # receive-time series: values published
    used_power: set = field(default_factory=set)
    faults: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    readings: set = field(default_factory=set)         # distinct reading keys

    @property
    def stamps_readings(self) -> bool:
        """True when the meter puts its own timestamp in the payload."""
        return self.format == "seed" and not self.unsynced


@dataclass
class Simulation:
    options: dict
    meters: list[Meter]
    messages: list[Message]

    def distinct_readings(self) -> int:
        return sum(len(m.readings) for m in self.meters)

    def summary(self) -> dict:
        """The truth, as JSON-ready data. Registers and energy in kWh, as exact decimal text."""
        def kwh(centi_wh: Optional[int]) -> Optional[str]:
            return None if centi_wh is None else _text(Decimal(centi_wh) / CENTI_WH_PER_KWH)
        faults: dict[str, int] = {}
        meters = []
        for m in self.meters:
            for name, n in m.faults.items():
                faults[name] = faults.get(name, 0) + n
            meters.append({
                "device_id": m.device_id, "format": m.format, "interval_s": m.interval_s,
                "fault_free": m.fault_free, "skew_ms": m.skew_ms, "unsynced": m.unsynced,
                "messages": m.messages, "distinct_readings": len(m.readings),
                "faults": dict(sorted(m.faults.items())),
                "energy_kwh": {
                    "first_register": kwh(m.first_register),
                    "last_register": kwh(m.last_register),
                    "register_delta": kwh(None if m.first_register is None
                                          else m.last_register - m.first_register),
                    "true_energy": kwh(m.true_energy),
                },
            })
        return {
            "options": self.options,
            "messages": len(self.messages),
            "distinct_readings": self.distinct_readings(),
            "faults": dict(sorted(faults.items())),
            "meters": meters,
        }


def _text(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: 1234.5, 0, 12."""
    text = format(value.normalize(), "f")
    return text


def _timestamp(epoch_ms: int, offset_minutes: int = 0) -> str:
    zone = dt.timezone(dt.timedelta(minutes=offset_minutes))
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=zone)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{epoch_ms % 1000:03d}"
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    return text + f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"


def _json(value) -> bytes:
    """Compact JSON with Decimals written exactly as their digits (json.dumps would go through
    binary floating point, and a meter's register must arrive as the meter wrote it)."""
    def write(item) -> str:
        if isinstance(item, Decimal):
            return _text(item)
        if isinstance(item, dict):
            return "{" + ",".join(json.dumps(k) + ":" + write(v) for k, v in item.items()) + "}"
        if isinstance(item, list):
            return "[" + ",".join(write(v) for v in item) + "]"
        return json.dumps(item)
    return write(value).encode()


def _malformed(rng: random.Random, payload: bytes, fmt: str) -> bytes:
    """A message on the meter's topic that is no reading and makes a decode error. Never holds a
    tab or a newline (the replay file is one topic<TAB>payload per line)."""
    choice = rng.randrange(3)
    if fmt == "plain":
        return [b"12,5", b"\xff\xfe12", b"1.2.3"][choice]
    if choice == 0:
        return payload[: max(1, len(payload) // 2)]   # cut off: unbalanced braces
    if choice == 1:
        return b"\xff\xfe" + payload                   # not UTF-8
    return b"{\"" + payload[:8].replace(b"\"", b"") + b"\": }"  # not JSON


class SiteGenerator:
    """Generates the whole site's publications, meter by meter, then merges them in time."""

    def __init__(self, seed: int, meters: int, duration_s: int, start_ms: int,
                 faults: dict[str, float], fault_free: Optional[int] = None,
                 formats: tuple[str, ...] = FORMATS):
        self.rng = random.Random(seed)
        self.duration_ms = duration_s * 1000
        self.start_ms = start_ms
        self.faults = faults
        self.options = {"seed": seed, "meters": meters, "duration_s": duration_s,
                        "start": _timestamp(start_ms), "faults": dict(sorted(faults.items())),
                        "formats": list(formats)}
        # Fault-free meters spread over the formats (each format's meters in a random order,
        # then one of each format in turn), so that a few of them already cover every format.
        wanted = min(meters, max(1, meters // 3) if fault_free is None else fault_free)
        by_format = [[i for i in range(meters) if i % len(formats) == f]
                     for f in range(len(formats))]
        for group in by_format:
            self.rng.shuffle(group)
        order = [group[k] for k in range(max(map(len, by_format))) for group in by_format
                 if k < len(group)]
        clean = set(order[:wanted])
        self.options["fault_free"] = len(clean)
        self.meters: list[Meter] = []
        for index in range(meters):
            fmt = formats[index % len(formats)]
            meter = Meter(index=index, device_id=_device_id(fmt, index), format=fmt,
                          interval_s=self.rng.choice(INTERVALS_S), fault_free=index in clean)
            low = max(50, 36 * RESOLUTION[fmt] // meter.interval_s + 1)
            meter.watts = (low, low + self.rng.randrange(200, 4000))
            if fmt == "seed" and not meter.fault_free:
                if self.rng.random() < faults.get("skew", 0):
                    magnitude = self.rng.randrange(30_000, 900_001)
                    meter.skew_ms = magnitude if self.rng.random() < 0.5 else -magnitude
                    meter.faults["skew"] = 1
                if self.rng.random() < faults.get("unsynced", 0):
                    meter.unsynced = True
                    meter.faults["unsynced"] = 1
            self.meters.append(meter)

    def run(self) -> Simulation:
        messages: list[Message] = []
        for meter in self.meters:
            messages.extend(self._meter_messages(meter))
        # Stable: equal times keep meter order, and a meter's own messages keep theirs.
        messages.sort(key=lambda message: (message.sim_ms, message.meter))
        return Simulation(options=self.options, meters=self.meters, messages=messages)

    def _fault(self, meter: Meter, name: str) -> bool:
        if meter.fault_free:
            return False
        rate = self.faults.get(name, 0)
        if rate <= 0 or self.rng.random() >= rate:
            return False
        meter.faults[name] = meter.faults.get(name, 0) + 1
        return True

    def _meter_messages(self, meter: Meter) -> list[Message]:
        rng = self.rng
        out: list[Message] = []
        interval_ms = meter.interval_s * 1000
        sim_ms = rng.randrange(interval_ms)
        resolution = RESOLUTION[meter.format]
        meter.register = rng.randrange(0, 50_000) * CENTI_WH_PER_KWH // resolution * resolution
        if meter.format == "zigbee2mqtt":
            out.append(Message(0, "zigbee2mqtt/bridge/state", b"online", meter.index, "status"))
        silent = 0
        held: list[Message] = []
        hold = 0
        clean_next = False
        while sim_ms < self.duration_ms:
            # Consumption over the interval just ended: whole register steps, at least one.
            watts = rng.randrange(*meter.watts)
            steps = max(1, round(watts * meter.interval_s * CENTI_WH_PER_WH / 3600 / resolution))
            increment = steps * resolution
            meter.register += increment
            if meter.first_register is not None:
                meter.consumed += increment

            # Register faults happen to the meter whether or not it publishes now.
            if self._fault(meter, "reset"):
                meter.register = increment
            elif self._fault(meter, "rollback") and len(meter.history) >= 2:
                back = rng.randrange(2, min(10, len(meter.history)) + 1)
                meter.register = meter.history[-back] + increment
            elif self._fault(meter, "replace"):
                meter.register = (rng.randrange(0, 50_000) * CENTI_WH_PER_KWH // resolution
                                  * resolution + increment)

            if silent > 0:
                silent -= 1
                sim_ms += interval_ms
                continue
            if self._fault(meter, "silence"):
                silent = rng.randrange(5, 31)
                sim_ms += interval_ms
                continue

            # See the module comment: a value a receive-time series has published is never
            # published by it again (the meter counts one more step instead).
            used = meter.used_energy
            while meter.register in used or (meter.history and
                                             meter.register == meter.history[-1]):
                meter.register += resolution
                if meter.first_register is not None:
                    meter.consumed += resolution
            published = meter.register
            if not clean_next and 0 not in used and self._fault(meter, "glitch"):
                published, clean_next = 0, True
            elif (not clean_next and meter.register * 1000 not in used
                  and self._fault(meter, "spike")):
                published, clean_next = meter.register * 1000, True
            else:
                clean_next = False
            if not meter.stamps_readings:
                used.add(published)
            if meter.first_register is None:
                meter.first_register = meter.register
            meter.last_register = meter.register
            meter.true_energy = meter.consumed
            meter.history.append(meter.register)

            power = self._power(meter, increment)
            batch = self._publication(meter, sim_ms, published, power)
            if meter.stamps_readings and self._fault(meter, "repeat"):
                batch.append(self._repeat(meter, batch[-1]))
            if self._fault(meter, "malformed"):
                batch.append(Message(sim_ms, batch[0].topic,
                                     _malformed(rng, batch[0].payload, meter.format),
                                     meter.index, "malformed"))
            if hold == 0 and meter.format == "seed" and self._fault(meter, "burst"):
                hold = rng.randrange(5, 31)
            if hold > 0:
                held.extend(batch)
                hold -= 1
                if hold == 0:
                    out.extend(self._release(held, sim_ms))
                    held = []
            else:
                out.extend(batch)
            sim_ms += interval_ms
        out.extend(self._release(held, sim_ms if held else 0))
        meter.messages = len(out)
        return out

    @staticmethod
    def _release(held: list[Message], sim_ms: int) -> list[Message]:
        for message in held:
            message.sim_ms = sim_ms
        return held

    def _power(self, meter: Meter, increment: int) -> Decimal:
        """Average power over the interval in W (Shelly: one decimal), never the previous value
        again, and for receive-time series never any value published before (module comment)."""
        watts = (Decimal(increment) * 3600 / CENTI_WH_PER_WH / meter.interval_s).quantize(
            Decimal("0.1"))
        step = Decimal("0.1")
        if meter.format != "shelly_em":
            watts, step = watts.quantize(Decimal(1)), Decimal(1)
        while watts == meter.last_power or watts in meter.used_power:
            watts += step
        meter.last_power = watts
        if not meter.stamps_readings:
            meter.used_power.add(watts)
        return watts

    def _reading_key(self, meter: Meter, metric: str, value_canonical: Decimal,
                     stamp_ms: Optional[int]) -> tuple:
        # Receive-time readings are distinct by construction (see the module comment).
        when = stamp_ms if stamp_ms is not None else ("received", len(meter.readings))
        return (metric, when, value_canonical)

    def _publication(self, meter: Meter, sim_ms: int, register: int,
                     watts: Decimal) -> list[Message]:
        energy_kwh = Decimal(register) / CENTI_WH_PER_KWH
        power_kw = watts / 1000
        fmt, device = meter.format, meter.device_id
        stamp: Optional[int] = None
        if meter.stamps_readings:
            stamp = self.start_ms + sim_ms + (meter.skew_ms or 0)
        meter.readings.add(self._reading_key(meter, "energy", energy_kwh, stamp))
        meter.readings.add(self._reading_key(meter, "power", power_kw, stamp))

        if fmt == "seed":
            energy = {"device_id": device, "metric_type": "energy",
                      "value": (energy_kwh.quantize(Decimal("0.001"))), "unit": "kWh"}
            power = {"device_id": device, "metric_type": "power", "value": (watts),
                     "unit": "W"}
            if stamp is not None:
                # Some meters write their local offset: the same instant, another text.
                offset = 60 if meter.index % 2 else 0
                energy["timestamp"] = power["timestamp"] = _timestamp(stamp, offset)
            return [Message(sim_ms, f"meters/{device}", _json([energy, power]), meter.index,
                            "reading")]
        if fmt == "tasmota":
            payload = {"Time": _timestamp(self.start_ms + sim_ms)[:19],
                       "ENERGY": {"TotalStartTime": "2024-01-01T00:00:00",
                                  "Total": (energy_kwh.quantize(Decimal("0.001"))),
                                  "Yesterday": 1.234, "Today": 0.567, "Power": (watts),
                                  "Voltage": 230, "Current": 1.1}}
            return [Message(sim_ms, f"tele/{device}/SENSOR", _json(payload), meter.index,
                            "reading")]
        if fmt == "shelly_em":
            em = {"id": 0, "total_current": 1.0, "total_act_power": (watts),
                  "total_aprt_power": (watts + 10)}
            emdata = {"id": 0, "total_act": ((Decimal(register) / CENTI_WH_PER_WH)
                                                    .quantize(Decimal("0.01"))),
                      "total_act_ret": 0}
            return [Message(sim_ms, f"{device}/status/em:0", _json(em), meter.index, "reading"),
                    Message(sim_ms, f"{device}/status/emdata:0", _json(emdata), meter.index,
                            "reading")]
        if fmt == "zigbee2mqtt":
            payload = {"energy": (energy_kwh.quantize(Decimal("0.001"))),
                       "linkquality": 120, "power": (watts), "state": "ON",
                       "voltage": 231}
            return [Message(sim_ms, f"zigbee2mqtt/{device}", _json(payload), meter.index,
                            "reading")]
        # plain: one number per message and metric
        return [Message(sim_ms, f"plain/{device}/energy",
                        _text(energy_kwh.quantize(Decimal("0.001"))).encode(), meter.index,
                        "reading"),
                Message(sim_ms, f"plain/{device}/power", _text(watts).encode(), meter.index,
                        "reading")]

    @staticmethod
    def _repeat(meter: Meter, original: Message) -> Message:
        """The same readings again, energy in Wh this time: the agent must store them once."""
        readings = json.loads(original.payload, parse_float=Decimal, parse_int=Decimal)
        for reading in readings:
            if reading["metric_type"] == "energy":
                reading["value"] = reading["value"] * 1000
                reading["unit"] = "Wh"
        return Message(original.sim_ms, original.topic, _json(readings), meter.index, "repeat")


def _device_id(fmt: str, index: int) -> str:
    return {"seed": f"meter-{index:03d}", "tasmota": f"tasmota_{index:06X}",
            "shelly_em": f"shellyproem50-{index:012x}", "zigbee2mqtt": f"garage/plug-{index}",
            "plain": f"plain-{index:03d}"}[fmt]


def simulate(seed: int = 1, meters: int = 10, duration_s: int = 300,
             start: str = "2026-01-01T00:00:00Z", faults: Optional[dict[str, float]] = None,
             fault_free: Optional[int] = None, formats: tuple[str, ...] = FORMATS) -> Simulation:
    start_ms = int(dt.datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)
    generator = SiteGenerator(seed, meters, duration_s, start_ms,
                              dict(ALL_FAULTS) if faults is None else faults, fault_free,
                              formats)
    return generator.run()
