"""Look for the emulated citizens' data in every byte a test or soak run wrote (a rig: the kiosk
never loads it).

:class:`Needles` is every form the data of :mod:`kiosk.rigs.card_profiles` could take once
written: each citizen ID as digits, grouped, in hex and as a decimal byte list; each name and
address as the card holds it (TIS-620, fields split by ``#``), as text (UTF-8, JSON ``\\u``
escapes) and as the hex an APDU trace would print; and, for a run started with
``kiosk run --repeat-key-seed``, the repeat keys it drew and the HMAC of every emulated citizen ID
under each (raw, hex, base64), which the design keeps in memory only. Birth dates are left out:
eight digits occur in ordinary numbers, and a scan that cries wolf is not read.

Every needle carries a label that says what it is, never what it holds, so a report can be
printed and kept. :func:`scan_paths` reads files (SQLite's ``-wal``, ``-journal`` and ``-shm``
included) in overlapping chunks; :func:`scan_bytes` scans what never reached a file;
:class:`MqttCapture` records every message on the broker for it.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import stat
import sys
import threading
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.card.repeat import seeded_keys
from kiosk.rigs.card_profiles import PROFILES
from kiosk.telemetry import topics

#: Bytes read at a time; a needle spanning two chunks is found through the overlap.
CHUNK_BYTES = 1 << 20
#: Needles of at least _LONG bytes are found by sampling _GRAM-byte grams every _GRAM bytes
#: (_LONG - _GRAM + 1 >= _GRAM, so some sample falls wholly inside any occurrence).
_GRAM = 8
_LONG = 2 * _GRAM - 1


class Needles:
    """Byte strings to look for, each with a label that names it without holding it.

    ``forms`` maps each needle to its label (the first label is kept when two sources make the
    same bytes). ``repr`` shows the count only.
    """

    def __init__(self, forms):
        self._labels = {}
        for needle, label in forms:
            self._labels.setdefault(bytes(needle), label)
        self.longest = max(map(len, self._labels), default=0)
        short = [needle for needle in self._labels if len(needle) < _LONG]
        # Short needles through one trie-shaped regex (sre's first-byte check skips the rest);
        # a match consumes its bytes, so of two overlapping short needles one may go unnamed,
        # never unfound.
        self._short = re.compile(_trie_regex(_trie(short)), re.DOTALL) if short else None
        # A long needle anywhere covers a whole _GRAM-byte word at a multiple of _GRAM: index
        # the words at its first _GRAM offsets and look the data's aligned words up in C, so
        # tens of thousands of keys and hashes cost about what a few do.
        self._grams = {}
        for needle in self._labels:
            if len(needle) >= _LONG:
                for offset in range(_GRAM):
                    word = int.from_bytes(needle[offset:offset + _GRAM], sys.byteorder)
                    self._grams.setdefault(word, []).append((offset, needle))

    @classmethod
    def for_profiles(cls, profiles=None, *, repeat_key_seed=None, repeat_keys=0):
        """The needles of ``profiles`` (default: every emulated card) and, with a seed, of the
        first ``repeat_keys`` keys that seed gives and every emulated ID's hash under each."""
        profiles = list(PROFILES.values() if profiles is None else profiles)
        forms = [form for profile in profiles for form in profile_forms(profile)]
        if repeat_key_seed is not None:
            cids = [(p.name, p.cid) for p in profiles if p.cid]
            forms += key_forms(seeded_keys(repeat_key_seed, repeat_keys), cids)
        return cls(forms)

    def __len__(self):
        return len(self._labels)

    def __repr__(self):
        return f"<Needles {len(self)} forms>"

    def labels(self):
        """Every label, for a report of what was looked for."""
        return sorted(set(self._labels.values()))

    def found_in(self, data):
        """Labels of the needles in ``data`` (bytes)."""
        found = set(self._short.findall(data)) if self._short else set()
        words = memoryview(data)[:len(data) - len(data) % _GRAM].cast("Q")
        for word in self._grams.keys() & words:
            gram = word.to_bytes(_GRAM, sys.byteorder)
            at = data.find(gram)
            while at != -1:
                found.update(needle for offset, needle in self._grams[word]
                             if at >= offset and data.startswith(needle, at - offset))
                at = data.find(gram, at + 1)
        return {self._labels[needle] for needle in found}


def cid_forms(owner, cid):
    """``(bytes, label)`` for each way a citizen ID is written."""
    raw = cid.encode("ascii")
    grouped = (cid[0], cid[1:5], cid[5:10], cid[10:12], cid[12])
    for form, how in (
        (raw, "plain"),
        (" ".join(grouped).encode(), "grouped with spaces"),
        ("-".join(grouped).encode(), "grouped with dashes"),
        (raw.hex().encode(), "hex"),
        (raw.hex().upper().encode(), "hex upper-case"),
        (raw.hex(" ").encode(), "hex spaced"),
        (raw.hex(" ").upper().encode(), "hex spaced upper-case"),
        (", ".join(str(b) for b in raw).encode(), "decimal byte list"),
    ):
        yield form, f"{owner} CID, {how}"


def text_forms(owner, what, field):
    """``(bytes, label)`` for a card text field (``#`` between its parts): in hex as an APDU
    trace prints it, and as the card holds it, whole with spaces and (a name) without its title
    or (an address) each place name, in UTF-8, TIS-620 and JSON escapes."""
    on_card = field.encode("tis-620")
    for form, how in ((on_card.hex(), "hex"), (on_card.hex().upper(), "hex upper-case"),
                      (on_card.hex(" "), "hex spaced"),
                      (on_card.hex(" ").upper(), "hex spaced upper-case")):
        yield form.encode(), f"{owner} {what}, card field in {how}"
    parts = [part for part in field.split("#") if part]
    texts = [(field, "card field"), (" ".join(parts), "whole")]
    if what == "address":
        # Its place names are telling on their own; the house and village numbers are not.
        texts += [(part, "one part") for part in parts if not any(c.isdigit() for c in part)]
    else:
        texts.append((" ".join(parts[1:]), "without title"))
    for text, how in texts:
        yield text.encode("utf-8"), f"{owner} {what}, {how}, UTF-8"
        yield text.encode("tis-620"), f"{owner} {what}, {how}, TIS-620"
        yield json.dumps(text).strip('"').encode(), f"{owner} {what}, {how}, JSON-escaped"


def profile_forms(profile):
    """``(bytes, label)`` for everything personal on one emulated card."""
    if profile.cid:
        yield from cid_forms(profile.name, profile.cid)
    for what, field in (("Thai name", profile.name_th), ("English name", profile.name_en),
                        ("address", profile.address if profile.has_thai_applet else "")):
        if field:
            yield from text_forms(profile.name, what, field)


def key_forms(keys, cids):
    """``(bytes, label)`` for each repeat key and HMAC-SHA256(key, CID) of each ``(owner, cid)``,
    raw, in hex and in base64."""
    for n, key in enumerate(keys):
        values = [(key, f"repeat key {n}")]
        values += [(hmac.new(key, cid.encode("ascii"), hashlib.sha256).digest(),
                    f"repeat hash of {owner} CID under key {n}") for owner, cid in cids]
        for value, label in values:
            yield value, f"{label}, raw"
            yield value.hex().encode(), f"{label}, hex"
            yield value.hex().upper().encode(), f"{label}, hex upper-case"
            yield base64.b64encode(value), f"{label}, base64"


def scan_bytes(needles, source, data):
    """``[(source, label)]`` for each needle in ``data`` (bytes, or str taken as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return [(source, label) for label in sorted(needles.found_in(data))]


def scan_paths(needles, paths):
    """``[(path, label)]`` for each needle in each file under ``paths`` (files, or directories
    walked recursively without following links).

    A path that cannot be read, or a named one that does not exist, is a finding (label
    ``unreadable: <error>``): what was not scanned cannot be called clean. Sockets, pipes and
    devices met in a walk are skipped, and so is a file that vanished between listing and
    reading (a SQLite journal).
    """
    findings = []
    for path in _files(paths, findings):
        try:
            labels = _scan_file(needles, path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            findings.append((path, f"unreadable: {type(exc).__name__}"))
            continue
        findings += [(path, label) for label in sorted(labels)]
    return findings


def _files(paths, findings):
    for path in map(Path, paths):
        if not path.exists():
            # Named by the caller, so expected: a misspelt folder must not pass as clean.
            findings.append((path, "unreadable: FileNotFoundError"))
            continue
        if not path.is_dir() or path.is_symlink():
            yield path
            continue
        walk = os.walk(path, onerror=lambda exc: findings.append(
            (Path(exc.filename), f"unreadable: {type(exc).__name__}")))
        for folder, dirs, names in walk:
            dirs.sort()
            for name in sorted(names):
                child = Path(folder, name)
                try:
                    if stat.S_ISREG(child.lstat().st_mode):
                        yield child
                except FileNotFoundError:
                    continue


def _scan_file(needles, path):
    labels = set()
    keep = max(needles.longest - 1, 0)
    tail = b""
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            data = tail + chunk
            labels |= needles.found_in(data)
            tail = data[len(data) - keep:] if keep else b""
    return labels


class MqttCapture:
    """Every message under the telemetry root, as an observer account of ``broker`` sees it.

    A context manager (or :meth:`start` / :meth:`close`). paho reconnects after a broker
    restart and the capture subscribes again on every connect; a message published between the
    broker's start and that subscription is missed, so a soak also scans the collector's files.
    Paho's thread only appends to the record.
    """

    def __init__(self, broker, name="privacy-scan"):
        self._port = broker.port
        self._name = name
        self._password = broker.add_observer(name)
        self._messages = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.username_pw_set(name, self._password)
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __repr__(self):
        return f"<MqttCapture {self._name} {len(self.payloads())} messages>"

    def start(self):
        self._client.connect_async("127.0.0.1", self._port, keepalive=5)
        self._client.loop_start()

    def close(self):
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_for_subscribed(self, timeout):
        """True once subscribed on the current connection (False after ``timeout`` seconds)."""
        return self._subscribed.wait(timeout)

    def payloads(self):
        """Every ``(topic, payload bytes)`` received so far, in order."""
        with self._lock:
            return list(self._messages)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe(f"{topics.ROOT}/#", qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._subscribed.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if not any(code.is_failure for code in reason_codes):
            self._subscribed.set()

    def _on_message(self, client, userdata, message):
        with self._lock:
            self._messages.append((message.topic, bytes(message.payload)))


def _trie(needles):
    root = {}
    for needle in needles:
        node = root
        for byte in needle:
            node = node.setdefault(byte, {})
        node[None] = {}
    return root


def _trie_regex(node):
    """A regex matching the trie's needles, longest first; runs without branches are literals,
    so groups nest only where needles part."""
    run = b""
    while len(node) == 1 and None not in node:
        (byte, node), = node.items()
        run += re.escape(bytes([byte]))
    branches = [re.escape(bytes([byte])) + _trie_regex(node[byte])
                for byte in sorted(key for key in node if key is not None)]
    if not branches:
        return run
    body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
    if None in node:
        body = (b"(?:" + body + b")" if len(branches) == 1 else body) + b"?"
    return run + body
