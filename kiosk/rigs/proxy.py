"""A seeded userspace TCP fault proxy between a kiosk and its broker, for tests and the soak.

This kernel has no ``netem`` and all traffic stays on 127.0.0.1, so a flapping 4G link is
modelled here, in one daemon thread (``selectors``), on the byte stream a kiosk's TCP socket
sees. :meth:`FaultProxy.set_mode` switches what the link does:

- ``pass``: bytes flow as they come;
- ``cut``: every open connection is reset (RST) and new ones are accepted and reset at once;
- ``stall``: connections stay open but no byte moves either way, nor does a new connection
  reach the target, until the mode changes; then what was held flows on (a frozen link);
- ``lossy(p=0.05, delay_s=(0.2, 1.5), reset_p=0.002)``: TCP never loses bytes, it retransmits,
  so a lost segment shows as a chunk held for a retransmission delay (probability ``p``, the
  chunks behind it wait too); with probability ``reset_p`` a chunk instead resets its connection
  (a NAT mapping timed out);
- ``throttle(bytes_per_s=2000)``: each direction limited to that rate, all connections shared.

Every random draw comes from one ``random.Random(seed)`` in chunk order, and the draws that did
something are kept in :attr:`FaultProxy.decisions`, so a run with the same seed and traffic makes
the same decisions.
"""

import collections
import logging
import random
import selectors
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)

MODES = {
    "pass": {},
    "cut": {},
    "stall": {},
    "lossy": {"p": 0.05, "delay_s": (0.2, 1.5), "reset_p": 0.002},
    "throttle": {"bytes_per_s": 2000},
}
UP, DOWN = 0, 1  # client -> target, target -> client
RECV_BYTES = 16384
#: Bytes read and not yet written, per direction of a connection, before the proxy stops
#: reading: the sender then feels back-pressure as it would from a slow link.
MAX_BUFFERED = 256 * 1024
#: A throttled direction writes at most this share of a second's budget at once.
THROTTLE_SLICE = 0.1


class _Pipe:
    """One client connection and its connection to the target; ``queues[d]`` holds
    ``[release_at, bytearray]`` chunks read in direction ``d`` and not yet written."""

    def __init__(self, client):
        self.client = client
        self.target = None
        self.is_connected = False
        self.queues = (collections.deque(), collections.deque())
        self.eof = [False, False]  # the direction's reader has seen its end
        self.shut = [False, False]  # ... and its writer has passed the end on
        self.registered = {}

    def source(self, direction):
        return self.client if direction == UP else self.target

    def sink(self, direction):
        return self.target if direction == UP else self.client

    def buffered(self, direction):
        return sum(len(chunk) for _, chunk in self.queues[direction])


class FaultProxy:
    """Listens on ``host:0`` (:attr:`port` once started) and forwards to ``host:target_port``
    with the faults of the current mode (``pass`` at first). A context manager; :meth:`close`
    ends every connection and the thread."""

    def __init__(self, target_port, *, seed, host="127.0.0.1"):
        self.target = (host, target_port)
        self.host = host
        self.rng = random.Random(seed)
        self.mode, self.params = "pass", {}
        self.decisions = []  # ("hold", chunk number, delay s) | ("reset", chunk number)
        self._chunks = 0  # chunks read while lossy: the decisions' clock
        self._stats = collections.Counter(connections=0, open=0, bytes_up=0, bytes_down=0,
                                          resets=0, held_chunks=0)
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._listener = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._commands = collections.deque()
        self._pipes = []
        self._budget = [0.0, 0.0]  # throttle: bytes each direction may write now
        self._budget_at = time.monotonic()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fault-proxy", daemon=True)
        self.port = None

    # --- the caller's side -------------------------------------------------------------------

    def start(self):
        self._listener = socket.create_server((self.host, 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()
        return self

    def set_mode(self, mode, **params):
        """Switch the link's behaviour; returns once the proxy's thread applied it (``cut`` has
        reset every open connection by then). Unknown modes or parameters raise ValueError."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; modes: {', '.join(MODES)}")
        unknown = set(params) - set(MODES[mode])
        if unknown:
            raise ValueError(f"mode {mode!r} takes no {', '.join(sorted(unknown))}")
        merged = {**MODES[mode], **params}
        if mode == "throttle" and not merged["bytes_per_s"] > 0:
            raise ValueError("bytes_per_s must be > 0")
        if mode == "lossy" and not (0 <= merged["p"] <= 1 and 0 <= merged["reset_p"] <= 1):
            raise ValueError("p and reset_p are probabilities, from 0 to 1")
        applied = threading.Event()
        self._commands.append((mode, merged, applied))
        self._wake()
        if not applied.wait(5) and self._thread.is_alive():
            raise RuntimeError("the fault proxy's thread did not apply the mode within 5 s")

    @property
    def stats(self):
        """Counts so far: ``connections`` accepted, ``open`` now, ``bytes_up`` (client to
        target) and ``bytes_down`` written, ``resets`` (connections reset by the proxy),
        ``held_chunks`` (lossy delays)."""
        with self._lock:
            return dict(self._stats)

    def close(self):
        self._closing.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def __enter__(self):
        if self.port is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def _wake(self):
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # closed, or its buffer is full: the thread wakes either way

    def _count(self, key, n=1):
        with self._lock:
            self._stats[key] += n

    # --- the proxy's thread -----------------------------------------------------------------

    def _loop(self):
        try:
            while not self._closing.is_set():
                self._apply_commands()
                self._refill_budget()
                for pipe in list(self._pipes):
                    self._interest(pipe)
                for key, events in self._selector.select(self._timeout()):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._ready(key.data, key.fileobj, events)
        except Exception:  # noqa: BLE001 - a test rig: say why the link died, then end it
            log.exception("fault proxy stopped")
        finally:
            for pipe in list(self._pipes):
                self._end(pipe, reset=True, counted=False)
            self._selector.close()
            if self._listener:
                self._listener.close()

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _apply_commands(self):
        while self._commands:
            mode, params, applied = self._commands.popleft()
            self.mode, self.params = mode, params
            if mode == "cut":
                for pipe in list(self._pipes):
                    self._end(pipe, reset=True)
            if mode == "throttle":
                self._budget = [0.0, 0.0]
                self._budget_at = time.monotonic()
            log.info("fault proxy on :%s now %s %s", self.port, mode, params or "")
            applied.set()

    def _refill_budget(self):
        if self.mode != "throttle":
            return
        now = time.monotonic()
        rate = self.params["bytes_per_s"]
        cap = max(1.0, rate * THROTTLE_SLICE)
        for d in (UP, DOWN):
            self._budget[d] = min(cap, self._budget[d] + (now - self._budget_at) * rate)
        self._budget_at = now

    def _timeout(self):
        """Until the next held chunk is due or the throttle allows the next write."""
        now, waits = time.monotonic(), []
        if self.mode == "stall":
            return None
        for pipe in self._pipes:
            for d in (UP, DOWN):
                if pipe.queues[d] and pipe.is_connected:
                    release_at, chunk = pipe.queues[d][0]
                    if release_at > now:
                        waits.append(release_at - now)
                    elif self.mode == "throttle":
                        waits.append(max(0.0, self._throttle_need(chunk) - self._budget[d])
                                     / self.params["bytes_per_s"])
        return max(0.001, min(waits)) if waits else None

    def _throttle_need(self, chunk):
        return min(len(chunk), max(1.0, self.params["bytes_per_s"] * THROTTLE_SLICE))

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._count("connections")
        pipe = _Pipe(client)
        if self.mode == "cut":
            _reset(client)
            self._count("resets")
            return
        self._pipes.append(pipe)
        self._count("open")

    def _connect(self, pipe):
        pipe.target = socket.socket()
        pipe.target.setblocking(False)
        pipe.target.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe.target.connect_ex(self.target)

    def _interest(self, pipe):
        """Register each socket of ``pipe`` for what the mode lets it do now."""
        if self.mode == "stall":
            wanted = {pipe.client: 0, pipe.target: 0}
        else:
            if pipe.target is None:
                self._connect(pipe)
            if not pipe.is_connected:
                wanted = {pipe.client: 0, pipe.target: selectors.EVENT_WRITE}
            else:
                wanted = {pipe.client: 0, pipe.target: 0}
                now = time.monotonic()
                for d in (UP, DOWN):
                    if not pipe.eof[d] and pipe.buffered(d) < MAX_BUFFERED:
                        wanted[pipe.source(d)] |= selectors.EVENT_READ
                    if pipe.queues[d] and pipe.queues[d][0][0] <= now and (
                            self.mode != "throttle"
                            or self._budget[d] >= self._throttle_need(pipe.queues[d][0][1])):
                        wanted[pipe.sink(d)] |= selectors.EVENT_WRITE
        for sock, events in wanted.items():
            if sock is None:
                continue
            if pipe.registered.get(sock, 0) == events:
                continue
            if events == 0:
                self._selector.unregister(sock)
            elif sock in pipe.registered and pipe.registered[sock]:
                self._selector.modify(sock, events, pipe)
            else:
                self._selector.register(sock, events, pipe)
            pipe.registered[sock] = events

    def _ready(self, pipe, sock, events):
        if pipe not in self._pipes:
            return  # ended earlier in this round
        if not pipe.is_connected:
            error = pipe.target.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                log.info("fault proxy: target :%s refused (%s)", self.target[1], error)
                self._end(pipe, reset=True, counted=False)
            else:
                pipe.is_connected = True
            return
        try:
            for d in (UP, DOWN):
                if events & selectors.EVENT_READ and sock is pipe.source(d):
                    self._read(pipe, d)
                if events & selectors.EVENT_WRITE and sock is pipe.sink(d) and pipe in self._pipes:
                    self._write(pipe, d)
        except OSError as exc:  # a peer reset or vanished: pass the reset on
            log.debug("fault proxy connection ended: %s", exc)
            self._end(pipe, reset=True, counted=False)

    def _read(self, pipe, d):
        data = pipe.source(d).recv(RECV_BYTES)
        if not data:
            pipe.eof[d] = True
            self._pass_end(pipe, d)
            return
        release_at = time.monotonic()
        if self.mode == "lossy":
            self._chunks += 1
            draw = self.rng.random()
            if draw < self.params["reset_p"]:
                self.decisions.append(("reset", self._chunks))
                self._end(pipe, reset=True)
                return
            if draw < self.params["reset_p"] + self.params["p"]:
                delay = self.rng.uniform(*self.params["delay_s"])
                self.decisions.append(("hold", self._chunks, round(delay, 6)))
                self._count("held_chunks")
                release_at += delay
        pipe.queues[d].append([release_at, bytearray(data)])

    def _write(self, pipe, d):
        queue = pipe.queues[d]
        chunk = queue[0][1]
        n = len(chunk)
        if self.mode == "throttle":
            n = min(n, int(self._budget[d]))
        sent = pipe.sink(d).send(chunk[:n])
        del chunk[:sent]
        if self.mode == "throttle":
            self._budget[d] -= sent
        self._count("bytes_up" if d == UP else "bytes_down", sent)
        if not chunk:
            queue.popleft()
            self._pass_end(pipe, d)

    def _pass_end(self, pipe, d):
        """Pass a direction's end on once its bytes are out; end the pipe when both are."""
        if pipe.eof[d] and not pipe.queues[d] and not pipe.shut[d]:
            pipe.shut[d] = True
            try:
                pipe.sink(d).shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if all(pipe.shut):
            self._end(pipe, reset=False, counted=False)

    def _end(self, pipe, *, reset, counted=True):
        """Close both sockets of ``pipe``; with ``reset``, as an RST. ``counted``: the proxy's
        own fault (a cut, a lossy reset), not a peer's doing."""
        if pipe not in self._pipes:
            return
        self._pipes.remove(pipe)
        self._count("open", -1)
        if counted:
            self._count("resets")
        for sock in (pipe.client, pipe.target):
            if sock is None:
                continue
            if pipe.registered.get(sock):
                self._selector.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()


def _reset(sock):
    """Close with SO_LINGER 0: the peer gets an RST, as from a NAT that forgot the flow."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
