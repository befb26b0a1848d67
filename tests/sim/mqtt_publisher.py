"""A small raw-socket MQTT 3.1.1 publisher at QoS 1 that counts the broker's PUBACKs.

Why not paho-mqtt: the count of acknowledgements must be exactly what the broker sent (one PUBACK
per packet identifier in flight), pipelining keeps a fast simulation from being limited by round
trips, and the same framing is what the C++ benchmark's raw publisher writes (tests/bench).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterable, Optional


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte = length % 128
        length //= 128
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def _string(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


def connect_packet(client_id: str, keepalive_s: int = 60) -> bytes:
    body = _string(b"MQTT") + bytes([4, 0x02]) + keepalive_s.to_bytes(2, "big")
    body += _string(client_id.encode())
    return bytes([0x10]) + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = _string(topic.encode()) + packet_id.to_bytes(2, "big") + payload
    return bytes([0x32]) + _remaining_length(len(body)) + body   # PUBLISH, QoS 1


class PublishError(RuntimeError):
    pass


class QosOnePublisher:
    """Publishes at QoS 1 with at most `window` messages unacknowledged.

    `acknowledged` counts PUBACKs for packet identifiers that were in flight: a PUBACK for an
    identifier not in flight (which a correct broker never sends) is counted in `unexpected`.
    """

    def __init__(self, host: str, port: int, client_id: str, window: int = 1000):
        if not 1 <= window <= 65535:
            raise ValueError("window must be 1..65535 (MQTT packet identifiers)")
        self.window = window
        self.published = 0
        self.acknowledged = 0
        self.unexpected = 0
        self._in_flight: set[int] = set()
        self._next_id = 1
        self._changed = threading.Condition()
        self._closed = False
        self._socket = socket.create_connection((host, port), timeout=10)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.sendall(connect_packet(client_id))
        connack = self._read_exactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise PublishError(f"broker refused the connection (CONNACK {connack.hex()})")
        self._socket.settimeout(None)
        self._reader = threading.Thread(target=self._read_acknowledgements, daemon=True)
        self._reader.start()

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._socket.recv(size - len(data))
            if not chunk:
                raise PublishError("the broker closed the connection")
            data += chunk
        return data

    def _read_acknowledgements(self) -> None:
        pending = b""
        try:
            while True:
                chunk = self._socket.recv(65536)
                if not chunk:
                    break
                pending += chunk
                while len(pending) >= 2:
                    # Packets from the broker to a publisher: PUBACK (0x40, length 2) only.
                    length = pending[1]
                    if length & 0x80 or len(pending) < 2 + length:
                        break
                    kind, packet_id = pending[0], int.from_bytes(pending[2:4], "big")
                    pending = pending[2 + length:]
                    with self._changed:
                        if kind == 0x40 and packet_id in self._in_flight:
                            self._in_flight.discard(packet_id)
                            self.acknowledged += 1
                        else:
                            self.unexpected += 1
                        self._changed.notify_all()
        except OSError:
            pass
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        with self._changed:
            while len(self._in_flight) >= self.window and not self._closed:
                self._changed.wait()
            if self._closed:
                raise PublishError("the broker closed the connection")
            while self._next_id in self._in_flight:
                self._next_id = self._next_id % 65535 + 1
            packet_id = self._next_id
            self._next_id = self._next_id % 65535 + 1
            self._in_flight.add(packet_id)
        self._socket.sendall(publish_packet(topic, payload, packet_id))
        self.published += 1

    def wait_for_acknowledgements(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._in_flight and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return not self._in_flight

    def close(self) -> None:
        try:
            self._socket.sendall(bytes([0xE0, 0]))   # DISCONNECT
        except OSError:
            pass
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.join(timeout=5)
        self._socket.close()


def publish_all(host: str, port: int, client_id: str,
                messages: Iterable[tuple[float, str, bytes]], speed: float = 0,
                window: int = 1000, ack_timeout_s: float = 60,
                on_progress: Optional[Callable[[int], None]] = None) -> QosOnePublisher:
    """Publishes (simulated seconds, topic, payload) in order. speed 0: as fast as the window
    lets; otherwise `speed` simulated seconds per real second. Waits for the last PUBACK."""
    publisher = QosOnePublisher(host, port, client_id, window)
    started = time.monotonic()
    try:
        for sim_s, topic, payload in messages:
            if speed > 0:
                delay = started + sim_s / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)   # pacing a publication, not waiting for a result
            publisher.publish(topic, payload)
            if on_progress is not None:
                on_progress(publisher.published)
        publisher.wait_for_acknowledgements(ack_timeout_s)
    finally:
        publisher.close()
    return publisher
