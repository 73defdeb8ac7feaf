"""A minimal MQTT 5 publisher on asyncio, for the national-rate benchmark only.

paho gives each client its own network thread (``loop_start``) or leaves the caller to poll
every socket; tens of thousands of kiosk connections need neither threads nor a Python poll loop
over sockets, but one event loop: each connection here is a socket, a reader coroutine and a few
counters (6 KiB measured at 19,500), and a single scheduler writes each prepared message at its
time. It speaks just what a kiosk does on the wire: CONNECT with user name and password,
SUBSCRIBE to its acks, PUBLISH at QoS 0 (health) and 1 (visits, period counts) with a bounded
number in flight, PUBACK of the acks it receives, and PINGREQ to learn that the broker has read
everything sent before it. Nothing of it is a product: kiosks keep paho (kiosk.telemetry.mqtt).
"""

import asyncio
import struct
import time

from kiosk.telemetry import topics

#: QoS 1 publishes a connection keeps unacknowledged; the broker's receive maximum
#: (kiosk.rigs.broker.MAX_INFLIGHT_MESSAGES) is above it, so the broker never has to refuse one.
MAX_IN_FLIGHT = 500
#: Filters in one SUBSCRIBE: a multiplexer subscribes to thousands of kiosks' ack topics.
FILTERS_PER_SUBSCRIBE = 500
CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP = 1, 2, 3, 4, 8, 9, 12, 13


def _length(n):
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(value):
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _packet(kind_flags, body):
    return bytes([kind_flags]) + _length(len(body)) + body


def connect_packet(username, password):
    """CONNECT, MQTT 5, clean start, no keepalive: a kiosk's health every minute keeps its link
    busier than the kiosk's 60 s keepalive would, so its pings are left out of the load."""
    body = (_text("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 0) + b"\x00"
            + _text(username) + _text(username) + _text(password))
    return _packet(CONNECT << 4, body)


def publish_parts(topic, payload, qos):
    """``(head, tail)`` of a PUBLISH: the packet id (QoS 1) goes between them when sent."""
    topic_bytes = _text(topic)
    rest = len(topic_bytes) + (2 if qos else 0) + 1 + len(payload)
    head = bytes([(PUBLISH << 4) | (qos << 1)]) + _length(rest) + topic_bytes
    return head, b"\x00" + payload


class Connection:
    """One MQTT connection: ``publish``, in-flight bookkeeping, acks received."""

    def __init__(self, name, password, load):
        self.name, self.password, self.load = name, password, load
        self.reader = self.writer = None
        self._next_id = 0
        self.in_flight = {}  # packet id -> (event id, monotonic time written)
        self.waiting = []  # (head, tail, event id) held back while the window is full
        self._replies = {}  # packet id or kind -> future
        self.task = None

    async def open(self, port, ack_filters):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        connack = self._expect(CONNACK)
        self.writer.write(connect_packet(self.name, self.password))
        self.task = asyncio.get_running_loop().create_task(self._read())
        reason = await connack
        if reason:
            raise ConnectionError(f"{self.name}: CONNACK reason {reason:#x}")
        for start in range(0, len(ack_filters), FILTERS_PER_SUBSCRIBE):
            pid = self._packet_id()
            body = struct.pack("!H", pid) + b"\x00" + b"".join(
                _text(f) + b"\x01" for f in ack_filters[start:start + FILTERS_PER_SUBSCRIBE])
            suback = self._expect(pid)
            self.writer.write(_packet((SUBSCRIBE << 4) | 2, body))
            codes = await suback
            if any(code >= 0x80 for code in codes):
                raise ConnectionError(f"{self.name}: the broker refused its ack subscription")

    def _expect(self, key):
        future = asyncio.get_running_loop().create_future()
        self._replies[key] = future
        return future

    def _packet_id(self):
        while True:
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self.in_flight:
                return self._next_id

    def publish(self, head, tail, event_id):
        """Write one prepared PUBLISH (QoS 1 when ``event_id`` is set); True if written now,
        False if held back until an earlier one is acknowledged."""
        if event_id is None:
            self.writer.write(head + tail)
            return True
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            self.waiting.append((head, tail, event_id))
            return False
        self._send_qos1(head, tail, event_id)
        return True

    def _send_qos1(self, head, tail, event_id):
        pid = self._packet_id()
        self.in_flight[pid] = event_id
        self.writer.write(head + struct.pack("!H", pid) + tail)

    async def ping(self):
        """Returns once the broker has read everything written before (it answers in order)."""
        reply = self._expect(PINGRESP)
        self.writer.write(bytes([PINGREQ << 4, 0]))
        await reply

    async def _read(self):
        reader = self.reader
        try:
            while True:
                first = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(length) if length else b""
                self._on_packet(first >> 4, first & 0x0F, body)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.load.lost.append(f"{self.name}: {type(exc).__name__}")
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name} lost its connection"))

    def _on_packet(self, kind, flags, body):
        if kind == PUBACK:
            pid = struct.unpack_from("!H", body)[0]
            event_id = self.in_flight.pop(pid)
            if len(body) > 2 and body[2] >= 0x80:
                self.load.refused += 1
            else:
                self.load.pubacked[event_id] = time.monotonic()
            if self.waiting:
                self._send_qos1(*self.waiting.pop(0))
        elif kind == PUBLISH:
            self._on_ack(flags, body)
        elif kind == CONNACK:
            self._replies.pop(CONNACK).set_result(body[1])
        elif kind == SUBACK:
            pid = struct.unpack_from("!H", body)[0]
            skip = 2 + 1 + body[2]  # packet id, then properties (short: length in one byte)
            self._replies.pop(pid).set_result(body[skip:])
        elif kind == PINGRESP:
            self._replies.pop(PINGRESP).set_result(None)

    def _on_ack(self, flags, body):
        qos = (flags >> 1) & 3
        topic_len = struct.unpack_from("!H", body)[0]
        at = 2 + topic_len
        if qos:
            pid = struct.unpack_from("!H", body, at)[0]
            at += 2
            self.writer.write(bytes([PUBACK << 4, 2]) + struct.pack("!H", pid))
        props, shift = 0, 0
        while True:  # properties length, a variable byte integer
            byte = body[at]
            at += 1
            props |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        now = time.monotonic()
        for event_id in topics.parse_ack(body[at + props:]):
            self.load.acked.setdefault(event_id, now)


class Load:
    """Every connection of one generator process and what came back: PUBACK and ack times by
    event id, refusals, lost connections."""

    def __init__(self):
        self.connections = {}
        self.pubacked, self.acked = {}, {}
        self.refused = self.held_back = 0
        self.lost = []

    async def open(self, port, accounts, *, concurrency=200):
        """Open ``accounts`` (``[(name, password, ack_filters)]``), ``concurrency`` at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(name, password, filters):
            async with gate:
                connection = Connection(name, password, self)
                await connection.open(port, filters)
                self.connections[name] = connection

        await asyncio.gather(*(one(*account) for account in accounts))

    async def run(self, schedule, started):
        """Write ``schedule`` (``[(offset_s, connection name, head, tail, event id or None)]``,
        by offset) at ``started + offset_s``; returns the largest lateness of a write, in
        seconds. A publish held back for a full in-flight window is counted in ``held_back``.
        """
        late = 0.0
        index = 0
        while index < len(schedule):
            now = time.monotonic() - started
            while index < len(schedule) and schedule[index][0] <= now:
                offset, name, head, tail, event_id = schedule[index]
                if not self.connections[name].publish(head, tail, event_id):
                    self.held_back += 1
                late = max(late, now - offset)
                index += 1
            await asyncio.sleep(0.002)  # the scheduler's tick: 2 ms of lateness at most
        return late

    async def flush(self):
        """Wait until the broker has read everything written, on every connection."""
        while any(c.waiting or c.in_flight for c in self.connections.values()):
            await asyncio.sleep(0.01)  # polled: PUBACKs arrive on the reader tasks
        await asyncio.gather(*(c.ping() for c in self.connections.values()))

    async def close(self):
        for connection in self.connections.values():
            connection.writer.close()
            connection.task.cancel()
