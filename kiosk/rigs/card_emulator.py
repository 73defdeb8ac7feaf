"""An emulated Thai ID card speaking vpcd's protocol, controlled at run time (stdlib only).

For tests, benchmarks and the demo; never part of a real kiosk. The emulator connects to the
vpcd driver inside the project's private pcscd (see :mod:`kiosk.rigs.card_stack`): connected means
"card inserted", closing the connection means "card pulled". Every message either way is a
2-byte big-endian length and a payload; a 1-byte payload from vpcd is a control code (0 power
off, 1 power on, 2 reset, 4 get ATR), anything longer a command APDU.

A Unix-socket control channel (one JSON line in, one JSON line out) inserts and removes cards,
switches profiles and sets faults: a per-APDU delay, a pull after N APDUs, a garbage answer, a
frozen card. :class:`ControlClient` is its client. The emulator logs events, never APDU bytes:
those carry the (synthetic) citizen data the privacy scans look for.
"""

import argparse
import json
import logging
import os
import socket
import struct
import threading

from kiosk.card.apdu import THAI_ID_AID
from kiosk.rigs.card_profiles import PROFILES

log = logging.getLogger(__name__)

VPCD_PORT = 35963
_POWER_OFF, _POWER_ON, _RESET, _GET_ATR = 0, 1, 2, 4
_SW_OK = b"\x90\x00"


class EmulatedCard:
    """The card's answers to APDUs for one profile: the pure half of the emulator.

    It is strict where real cards are: GET RESPONSE must use the P2 of the card's generation
    and the Le the card announced, or it answers an error status word.
    """

    def __init__(self, profile):
        self.profile = profile
        self.memory = profile.memory() if profile.has_thai_applet else b""
        self.reset()

    def reset(self):
        self.is_selected = False
        self._pending = None

    def answer(self, command):
        if len(command) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = command[:4]
        if (cla, ins) == (0x00, 0xA4):
            return self._select(command)
        if (cla, ins) == (0x80, 0xB0):
            return self._read(command, (p1 << 8) | p2)
        if (cla, ins) == (0x00, 0xC0):
            return self._get_response(command, p2)
        return b"\x6d\x00"

    def _select(self, command):
        self.reset()
        if not self.profile.has_thai_applet or command[5 : 5 + command[4]] != THAI_ID_AID:
            return b"\x6a\x82"
        self.is_selected = True
        self._pending = b"\x00" * 10
        return b"\x61\x0a"

    def _read(self, command, offset):
        if not self.is_selected:
            return b"\x69\x85"
        if len(command) != 7 or command[4:6] != b"\x02\x00":
            return b"\x67\x00"
        length = command[6] or 256
        if offset + length > len(self.memory):
            return b"\x6b\x00"
        self._pending = self.memory[offset : offset + length]
        return bytes([0x61, length & 0xFF])

    def _get_response(self, command, p2):
        wanted_p2 = 0x01 if self.profile.atr[:2] == b"\x3b\x67" else 0x00
        if p2 != wanted_p2:
            return b"\x6a\x86"
        if self._pending is None:
            return b"\x69\x85"
        length = command[4] if len(command) > 4 else 0
        if (length or 256) != len(self._pending):
            return bytes([0x6C, len(self._pending) & 0xFF])
        data, self._pending = self._pending, None
        return data + _SW_OK


class Faults:
    """What is wrong with the card right now; all off by default."""

    def __init__(self):
        self.delay_s = 0.0
        self.pull_after = None
        self.garbage = False
        self.frozen = False

    def as_dict(self):
        return dict(
            delay_s=self.delay_s,
            pull_after=self.pull_after,
            garbage=self.garbage,
            frozen=self.frozen,
        )


class Emulator:
    """A card slot wired to vpcd at ``host:port``; reconnects whenever a card is inserted.

    Only the emulator's own thread talks to vpcd; control calls change state under a lock and
    wake that thread (closing the socket is how a card is pulled).
    """

    def __init__(self, host="127.0.0.1", port=VPCD_PORT):
        self.host, self.port = host, port
        self.faults = Faults()
        self.card = None
        self.apdu_count = 0
        self._changed = threading.Condition()
        self._sock = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="card-emulator", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        with self._changed:
            self._stopping = True
            self.card = None
            self._drop_connection()
            self._changed.notify_all()
        self._thread.join(5)

    # --- control -------------------------------------------------------------------------

    def insert(self, profile="default"):
        if profile not in PROFILES:
            raise ValueError(f"unknown card profile {profile!r}; known: {', '.join(PROFILES)}")
        with self._changed:
            self._drop_connection()
            self.card = EmulatedCard(PROFILES[profile])
            self.apdu_count = 0
            self._changed.notify_all()
        log.info("card inserted (profile %s)", profile)

    def remove(self):
        with self._changed:
            self.card = None
            self._drop_connection()
            self._changed.notify_all()
        log.info("card removed")

    def set_fault(self, delay_s=None, pull_after=None, garbage=None, frozen=None, clear=False):
        """Change faults; ``None`` leaves one as it is, ``pull_after=-1`` turns that one off,
        ``clear=True`` resets all first."""
        with self._changed:
            if clear:
                self.faults = Faults()
            if delay_s is not None:
                self.faults.delay_s = float(delay_s)
            if pull_after is not None:
                self.faults.pull_after = int(pull_after) if pull_after >= 0 else None
                self.apdu_count = 0
            if garbage is not None:
                self.faults.garbage = bool(garbage)
            if frozen is not None:
                self.faults.frozen = bool(frozen)
            self._changed.notify_all()
        log.info("faults now %s", self.faults.as_dict())

    def status(self):
        with self._changed:
            return dict(
                inserted=self.card is not None,
                profile=self.card.profile.name if self.card else None,
                connected=self._sock is not None,
                apdu_count=self.apdu_count,
                faults=self.faults.as_dict(),
            )

    # --- the vpcd side -------------------------------------------------------------------

    def _drop_connection(self):
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self):
        while True:
            with self._changed:
                while self.card is None and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                card = self.card
            sock = self._connect()
            if sock is None:
                with self._changed:
                    # pcscd is not (yet) there: try again soon, or at once on a control change.
                    self._changed.wait(0.05)
                continue
            with self._changed:
                if self.card is not card:
                    sock.close()
                    continue
                self._sock = sock
            log.info("connected to vpcd on %s:%d", self.host, self.port)
            try:
                self._serve(sock, card)
            except OSError:
                pass
            finally:
                with self._changed:
                    self._sock = None
                sock.close()
            log.info("disconnected from vpcd")

    def _connect(self):
        try:
            sock = socket.create_connection((self.host, self.port), timeout=1)
        except OSError:
            return None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _serve(self, sock, card):
        while True:
            payload = self._receive(sock)
            if payload is None:
                return
            if len(payload) == 1:
                if payload[0] == _GET_ATR:
                    self._send(sock, card.profile.atr)
                elif payload[0] in (_POWER_OFF, _POWER_ON, _RESET):
                    card.reset()
                continue
            if not self._before_answer(card):
                return
            answer = b"\xde\xad" if self.faults.garbage else card.answer(payload)
            self._send(sock, answer)

    def _before_answer(self, card):
        """Apply faults before answering an APDU; False means the card is gone."""
        with self._changed:
            self.apdu_count += 1
            pull_after = self.faults.pull_after
            if pull_after is not None and self.apdu_count > pull_after:
                self.card = None
                log.info("card pulled after %d APDUs (fault)", pull_after)
                return False
            while self.faults.frozen and self.card is card and not self._stopping:
                self._changed.wait()
            if self.card is not card or self._stopping:
                return False
            delay = self.faults.delay_s
        if delay:
            with self._changed:
                self._changed.wait_for(lambda: self.card is not card or self._stopping, delay)
        return True

    @staticmethod
    def _receive(sock):
        header = Emulator._exactly(sock, 2)
        if header is None:
            return None
        return Emulator._exactly(sock, struct.unpack(">H", header)[0])

    @staticmethod
    def _exactly(sock, size):
        data = b""
        while len(data) < size:
            # vpcd writes length and payload separately without TCP_NODELAY; quick ACKs avoid
            # the 40 ms delayed-ACK stall on each of them.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    @staticmethod
    def _send(sock, payload):
        sock.sendall(struct.pack(">H", len(payload)) + payload)


# --- the control channel ---------------------------------------------------------------------


def serve_control(path, handlers, stop_event=None):
    """Answer JSON-line requests ``{"cmd": name, ...kwargs}`` on a Unix socket until stopped.

    Requests are handled one at a time in the calling thread, so handlers may start child
    processes whose parent-death signal is tied to this (long-lived) thread.
    """
    # Bound and listening before the path appears: a client that sees the path and connects
    # between bind() and listen() is refused (the short soak met it on a loaded machine). The
    # rename replaces an old socket at ``path``; one left at the temporary name would fail bind.
    staging = f"{path}.new"
    if os.path.lexists(staging):
        os.unlink(staging)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(staging)
    server.listen(8)
    os.replace(staging, path)
    server.settimeout(0.2)
    try:
        while stop_event is None or not stop_event.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                try:
                    request = json.loads(conn.makefile("rb").readline() or b"{}")
                    handler = handlers.get(request.pop("cmd", None))
                    if handler is None:
                        reply = {"error": f"unknown command; known: {', '.join(sorted(handlers))}"}
                    else:
                        reply = {"result": handler(**request)}
                except (ValueError, TypeError, OSError, RuntimeError) as exc:
                    reply = {"error": str(exc)}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass
    finally:
        server.close()


def emulator_handlers(emulator):
    """The emulator's control commands, for :func:`serve_control`."""
    return {
        "insert": emulator.insert,
        "remove": emulator.remove,
        "set_fault": emulator.set_fault,
        "status": emulator.status,
    }


class ControlClient:
    """Client of a control socket: ``insert("expired")``, ``set_fault(frozen=True)``."""

    def __init__(self, path, timeout=30.0):
        self.path = path
        self.timeout = timeout

    def call(self, cmd, **kwargs):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(json.dumps({"cmd": cmd, **kwargs}).encode() + b"\n")
            reply = json.loads(sock.makefile("rb").readline() or b"{}")
        if "error" in reply:
            raise RuntimeError(f"control command {cmd!r} failed: {reply['error']}")
        return reply.get("result")

    def insert(self, profile="default"):
        """Insert a card. To swap cards as a citizen would, ``remove()`` and let pcscd see the
        empty reader first (``CardStack.wait_for_card(False)``): pcscd polls every ~400 ms."""
        return self.call("insert", profile=profile)

    def remove(self):
        return self.call("remove")

    def set_fault(self, **faults):
        """Faults: ``delay_s``, ``pull_after``, ``garbage``, ``frozen``; ``clear=True`` resets."""
        return self.call("set_fault", **faults)

    def clear_faults(self):
        return self.call("set_fault", clear=True)

    def status(self):
        return self.call("status")


def main(argv=None):
    """Run an emulator on its own: ``python -m kiosk.rigs.card_emulator --control PATH``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, help="Unix socket path for control commands")
    parser.add_argument("--port", type=int, default=VPCD_PORT, help="vpcd's TCP port")
    parser.add_argument("--insert", metavar="PROFILE", help="insert this card at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    emulator = Emulator(port=args.port).start()
    if args.insert:
        emulator.insert(args.insert)
    try:
        serve_control(args.control, emulator_handlers(emulator))
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
