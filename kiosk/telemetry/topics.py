"""The telemetry contract between kiosks, the collector and ops: topics, payloads, parsing.

Standard library only (the visit's fields and vocabularies come from the pure
:mod:`kiosk.visit`, never from the flow), so both sides of the wire and every test share one
definition. ``docs/telemetry.md`` explains each
message and carries an example payload that the tests validate against this module.

What the kiosk side calls (builders return the UTF-8 JSON bytes to publish):

* topics: :func:`kiosk_topic` (``status pin visit period health reply``), :func:`cmd_topic`,
  :func:`cmd_subscription`, :func:`ack_topic`; :data:`QOS` and :data:`RETAIN` per message.
* :func:`kiosk.clock.stamp` (wall clock UTC, ``clock_synced``, ``mono_s``) -> the three time
  fields every event carries.
* :func:`status_payload`, :func:`service_point_payload`, :func:`health_payload`,
  :func:`period_payload`, :func:`reply_payload` (the ``visit`` payload is
  :func:`kiosk.visit.payload`, which the store calls).
* :func:`parse_command` -> :class:`Command`, or :class:`~kiosk.errors.CommandRejected` (a
  :class:`~kiosk.errors.MessageRejected`) carrying the reason and the correlation id when known.
* :func:`parse_ack` -> tuple of event ids.

What the collector and ops call: :func:`parse_kiosk_message` (topic + bytes -> validated
:class:`Status`, :class:`ServicePoint`, :class:`VisitMessage`, :class:`PeriodMessage`,
:class:`HealthMessage` or :class:`Reply`), :func:`ack_payload`, :func:`command_payload`,
:data:`KIOSK_SUBSCRIPTION`.

Privacy rules held here: builders take explicit fields (never a dict dump of a stored row), so
the citizen ID, names, address, birth date, photo and the repeat hash cannot reach the wire;
every builder and parser refuses a 13-digit number (:func:`find_long_numbers`), which is what a
citizen ID looks like to any privacy scan. Rejection messages name the field, never its value.
"""

import json
import math
import re
from dataclasses import dataclass, make_dataclass
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType

from kiosk import logsafe
from kiosk import visit as schema
from kiosk.accounts import is_reserved
from kiosk.errors import CommandRejected, MessageRejected
from kiosk.period import DEFAULT_S, Period, is_period_start, length_problem

#: The payload schema kiosks write (:data:`kiosk.visit.SCHEMA`). Readers accept every schema
#: still in the field, so kiosks not yet upgraded keep reporting to an upgraded collector.
SCHEMA = schema.SCHEMA
ACCEPTED_SCHEMAS = (1, 2, 3)
#: The schema of what the centre writes to kiosks (acks, commands): the oldest one their shape
#: needs, since the collector is upgraded first and a kiosk a release behind must still read its
#: acks, or it would resend its visits for ever.
DOWNSTREAM_SCHEMA = 2

ROOT = "citizeninfo/v1"
KIOSK_MESSAGES = ("status", "pin", "visit", "period", "health", "reply", "csr")
COMMANDS = ("config", "rebirth", "ping", "replay", "update", "cert")

#: QoS per message kind; ``health`` is QoS 0 because the next report supersedes a lost one.
QOS = MappingProxyType(
    {"status": 1, "pin": 1, "visit": 1, "period": 1, "health": 0, "reply": 1, "csr": 1,
     "ack": 1, "config": 1, "rebirth": 1, "ping": 1, "replay": 1, "update": 1, "cert": 1}
)
#: Retained messages: a subscriber arriving later still learns the kiosk's state and location,
#: and a kiosk reconnecting still learns its desired config, version and newest certificate.
RETAIN = MappingProxyType(
    {"status": True, "pin": True, "visit": False, "period": False, "health": False,
     "reply": False, "csr": False,
     "ack": False, "config": True, "rebirth": False, "ping": False, "replay": False,
     "update": True, "cert": True}
)

#: The collector's shared subscription filter (without the ``$share/<group>/`` prefix).
KIOSK_SUBSCRIPTION = f"{ROOT}/kiosk/+/#"
#: Largest kiosk message the collector takes; a service-point message with a long service
#: catalogue fits easily.
MAX_KIOSK_MESSAGE_BYTES = 64 * 1024
#: Deeper than any message of the contract (a config command nests 4 levels). The sender
#: decides the depth, and every level costs the reader's scan time and memory.
MAX_DEPTH = 8
#: Longest PEM block a ``csr`` message or ``cert`` command carries: an EC P-256 request is
#: about 500 characters, a certificate about 800; RSA-4096 would still fit.
MAX_PEM_CHARS = 8000
#: Most event ids in one ack; the collector splits bigger batches.
MAX_ACK_IDS = 500

STATUS_STATES = ("online", "offline", "lost")
MODES = schema.MODES
NO_COPY_STATES = ("cancelled", "in_progress", "not_yet")
#: Never ``card_present`` since schema 2: a report once a minute would time each visit.
READER_STATES = ("ready", "no_reader", "error", "disabled")
#: Schema-1 reports still say it; the parser coarsens it to ``ready``.
_SCHEMA1_READER_STATES = (*READER_STATES, "card_present")
#: Most visits one period message may count (a 5 s demo period of a busy kiosk is far below).
MAX_PERIOD_VISITS = 100_000

_KIOSK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TOKEN = schema.TOKEN
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,39}")
_RFC3339_UTC = schema.RFC3339_UTC
_MAX_TEXT = 200

#: Where a kiosk's update stands, as the root updater reports it (docs/updates.md), in the
#: order they come; ``refused`` and ``rolled_back`` end one with a reason.
UPDATE_STATES = ("requested", "downloading", "verified", "waiting", "switched", "healthy",
                 "rolled_back", "refused")
#: A release's URL: https only (the kiosk refuses anything else), printable ASCII, no spaces.
_RELEASE_URL = re.compile(r"https://[!-~]{1,500}")
#: A manifest's SHA-256 on the wire: hex in eight groups of eight, so that no run of 13 digits
#: (which the contract refuses anywhere, as a citizen ID) can come from a hash.
_GROUPED_SHA256 = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){7}")


# --- topics ---------------------------------------------------------------------------------


def check_kiosk_id(kiosk_id):
    """Return ``kiosk_id`` if it can name a topic level and a broker account, else raise."""
    if not isinstance(kiosk_id, str) or not _KIOSK_ID.fullmatch(kiosk_id):
        raise MessageRejected(
            "kiosk id must be 1-64 letters, digits, '-' or '_' (no '/', '+', '#'), "
            "starting with a letter or digit"
        )
    if is_reserved(kiosk_id):
        raise MessageRejected(f"kiosk id {kiosk_id!r} is reserved for a fleet account")
    if logsafe.holds_id(kiosk_id):
        raise MessageRejected("kiosk id must not hold 13 digits in a row (looks like a citizen ID)")
    return kiosk_id


def kiosk_topic(kiosk_id, kind):
    """``citizeninfo/v1/kiosk/{kiosk_id}/{kind}``: the only place a kiosk may write."""
    if kind not in KIOSK_MESSAGES:
        raise ValueError(f"unknown kiosk message {kind!r}; expected one of {KIOSK_MESSAGES}")
    return f"{ROOT}/kiosk/{check_kiosk_id(kiosk_id)}/{kind}"


def cmd_topic(kiosk_id, name):
    """``citizeninfo/v1/cmd/{kiosk_id}/{name}``: where ops sends a command to one kiosk."""
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}; expected one of {COMMANDS}")
    return f"{ROOT}/cmd/{check_kiosk_id(kiosk_id)}/{name}"


def cmd_subscription(kiosk_id):
    """The filter a kiosk subscribes to for its commands."""
    return f"{ROOT}/cmd/{check_kiosk_id(kiosk_id)}/#"


def ack_topic(kiosk_id):
    """``citizeninfo/v1/ack/{kiosk_id}``: the collector confirms stored visits here."""
    return f"{ROOT}/ack/{check_kiosk_id(kiosk_id)}"


def split_kiosk_topic(topic):
    """``(kiosk_id, kind)`` of a kiosk message topic; the kiosk id is trusted from here only."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{ROOT}/kiosk" or parts[4] not in KIOSK_MESSAGES:
        # Anyone may publish to any topic: one may hold a citizen ID, never quoted.
        raise MessageRejected(
            f"topic {logsafe.redact_ids(topic)!r} is not "
            f"{ROOT}/kiosk/<kiosk_id>/<{'|'.join(KIOSK_MESSAGES)}>"
        )
    return check_kiosk_id(parts[3]), parts[4]


# --- the privacy check -----------------------------------------------------------------------


def find_long_numbers(obj, path="$"):
    """Paths in ``obj`` (decoded JSON) holding something shaped like a 13-digit citizen ID.

    The rule for one value is :func:`kiosk.logsafe.is_id_shaped` (13-digit numbers, texts
    holding an ID in a row or in groups); keys are checked too. An empty list means the object
    is clean; a key that is not id-like shows as ``<key>`` in a path. Walks with its own stack,
    not recursion: a kiosk's payload decides the depth.
    """
    if not _holds_long_number(obj):
        return []
    found = []
    pending = [(path, obj)]
    while pending:
        path, obj = pending.pop()
        if logsafe.is_id_shaped(obj):
            found.append(path)
        elif isinstance(obj, dict):
            children = []
            for key, value in obj.items():
                # A path names only id-like keys: it ends up in rejection reasons and logs.
                shown = key if _TOKEN.fullmatch(key) and not logsafe.holds_id(key) else "<key>"
                children += [(f"{path}.<key>", key), (f"{path}.{shown}", value)]
            pending += reversed(children)
        elif isinstance(obj, list | tuple):
            pending += reversed([(f"{path}[{index}]", value) for index, value in enumerate(obj)])
    return found


def _holds_long_number(obj):
    """Whether :func:`find_long_numbers` would find anything, without building paths: every
    message goes through it at the collector's ingest rate. The texts (keys and values) are
    searched in one go, joined by NUL: no pattern of :func:`kiosk.logsafe.holds_id` matches
    across a NUL, and its look-arounds see a NUL as they see the end of a text."""
    texts, pending = [], [obj]
    while pending:
        obj = pending.pop()
        if isinstance(obj, str):
            texts.append(obj)
        elif isinstance(obj, dict):
            pending.extend(obj)
            pending.extend(obj.values())
        elif isinstance(obj, list | tuple):
            pending.extend(obj)
        elif logsafe.is_id_shaped(obj):
            return True
    return logsafe.holds_id("\0".join(texts))


class _Floats:
    """json.loads's ``parse_float`` for one payload: makes each float as json.loads would, and
    keeps it in ``values``, so :func:`_may_hold_long_number` can look at the floats without a
    walk. (Not a list itself: the decoder takes an empty, falsy one for no ``parse_float``.)"""

    def __init__(self):
        self.values = []

    def __call__(self, literal):
        value = float(literal)
        self.values.append(value)
        return value


def _may_hold_long_number(text, floats):
    """False only when the JSON ``text`` surely decodes to nothing :func:`find_long_numbers`
    finds, checked on the text at once rather than walking the decoded object (``floats``: its
    floats). Without a backslash every key and string is a verbatim slice of the text between
    quotes (which the look-arounds of :func:`kiosk.logsafe.holds_id` see as they see its ends),
    and an integer of 13 or more digits is 13 digits in a row."""
    return ("\\" in text or any(map(logsafe.is_id_shaped, floats.values))
            or logsafe.holds_id(text))


# --- encoding and decoding ------------------------------------------------------------------


def _encode(obj):
    """Compact UTF-8 JSON (Thai stays readable); refuses anything shaped like a citizen ID."""
    long_numbers = find_long_numbers(obj)
    if long_numbers:
        raise ValueError(
            f"payload would carry a 13-digit number at {', '.join(long_numbers)}; "
            "send RFC 3339 strings for times and never an ID"
        )
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _is_deeper(obj, levels):
    """Whether ``obj`` nests containers more than ``levels`` deep; stops at that depth."""
    level = [obj]
    for _ in range(levels):
        level = [child for item in level if isinstance(item, dict | list)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False  # nothing nests further (a flat message: after one level)
    return any(isinstance(item, dict | list) for item in level)


def _decode(payload, what, max_bytes):
    """Bytes -> JSON object with a ``schema`` we understand, or MessageRejected saying why."""
    if isinstance(payload, str):
        payload = payload.encode()
    if len(payload) > max_bytes:
        raise MessageRejected(f"{what}: {len(payload)} bytes is over the limit of {max_bytes}")
    try:
        text, floats = payload.decode("utf-8"), _Floats()
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=floats)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageRejected(f"{what}: not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise MessageRejected(f"{what}: payload must be a JSON object")
    if _is_deeper(obj, MAX_DEPTH):
        raise MessageRejected(f"{what}: nested deeper than {MAX_DEPTH} levels")
    # Before any rule that quotes a value (the schema below), so none can quote an ID.
    long_numbers = find_long_numbers(obj) if _may_hold_long_number(text, floats) else []
    if long_numbers:
        raise MessageRejected(
            f"{what}: 13-digit number at {', '.join(long_numbers)} (looks like a citizen ID)"
        )
    schema = obj.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise MessageRejected(f"{what}: schema must be an integer version")
    if schema not in ACCEPTED_SCHEMAS:
        newer = "upgrade the reader" if schema > SCHEMA else "upgrade the sender"
        raise MessageRejected(
            f"{what}: schema {schema} is not one of {ACCEPTED_SCHEMAS}; {newer}"
        )
    return obj


class _Fields:
    """Typed reads from a decoded payload; each failure names the field and the rule. A rule
    that must be worked out (from bounds or choices) is given as a function, called only for a
    rejection: every message at the collector's ingest rate goes through here."""

    def __init__(self, obj, what):
        self.obj = obj
        self.what = what

    def fail(self, key, rule):
        raise MessageRejected(f"{self.what}: field {key!r} {rule}")

    def get(self, key, check, rule, *, optional=False):
        value = self.obj.get(key)
        if value is None:
            if optional:
                return None
            self.fail(key, f"is missing; it {rule() if callable(rule) else rule}")
        if not check(value):
            self.fail(key, rule() if callable(rule) else rule)
        return value

    def boolean(self, key, *, optional=False):
        return self.get(key, lambda v: isinstance(v, bool), "must be true or false",
                        optional=optional)

    def integer(self, key, low, high, *, optional=False):
        return self.get(
            key, lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
            lambda: f"must be an integer from {low} to {high}", optional=optional)

    def number(self, key, low, high, *, optional=False):
        value = self.get(
            key, lambda v: isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v) and low <= v <= high,
            lambda: f"must be a number from {low} to {high}", optional=optional)
        return None if value is None else float(value)

    def choice(self, key, choices, *, optional=False):
        return self.get(key, lambda v: isinstance(v, str | int) and not isinstance(v, bool)
                        and v in choices,
                        lambda: f"must be one of {', '.join(map(str, choices))}",
                        optional=optional)

    def match(self, key, pattern, rule, *, optional=False):
        return self.get(key, lambda v: isinstance(v, str) and pattern.fullmatch(v) is not None,
                        rule, optional=optional)

    def text(self, key, *, optional=False):
        return self.get(key, lambda v: isinstance(v, str) and 0 < len(v) <= _MAX_TEXT,
                        f"must be text of 1-{_MAX_TEXT} characters", optional=optional)

    def time(self, key, *, optional=False):
        return self.match(key, _RFC3339_UTC, "must be an RFC 3339 UTC time like "
                          "2025-01-31T09:30:00.000Z", optional=optional)

    def instance(self):
        # Optional: kiosks before 0.2 (and visits they queued before an upgrade) have none.
        return self.match("instance", _TOKEN, _INSTANCE_RULE, optional=True)

    def stamp(self):
        return {"at": self.time("at"), "clock_synced": self.boolean("clock_synced"),
                "mono_s": self.number("mono_s", 0, 10**11)}


#: :func:`kiosk.period.is_period_start` of a validated start text and length, remembered: a
#: fleet's visits fall in few periods at a time, and working one out was a sixth of the parse.
_is_period_start = lru_cache(maxsize=1024, typed=True)(is_period_start)

_INSTANCE_RULE = "must be the kiosk's instance id: 1-64 letters, digits or '_.:-'"


def _event_id_rule():
    return "must be 1-64 letters, digits or '_.:-' (a UUID is ideal)"


# --- kiosk -> fleet -------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """``status``: online / offline (clean stop) / lost (the Last Will), per instance and
    connect epoch."""

    kiosk_id: str
    state: str
    instance: str | None
    epoch: int
    version: str
    at: str
    clock_synced: bool
    mono_s: float
    schema: int


@dataclass(frozen=True)
class ServiceEntry:
    """One entry of a service-point message's service catalogue."""

    id: str
    name_th: str
    name_en: str
    no_copy: str


@dataclass(frozen=True)
class ServicePoint:
    """The service-point message (the ``pin`` topic): where the kiosk stands and what the
    service point offers."""

    kiosk_id: str
    service_point_id: str
    name_th: str
    name_en: str
    agency: str
    ministry: str
    province: str
    lat: float | None
    lon: float | None
    services: tuple
    mode: str
    schema: int


def _message_field(f):
    return f.name, f.type if f.required else f.type | None


#: ``visit``: one anonymous visit, exactly the fields the collector may store (the sent fields
#: of :mod:`kiosk.visit`, between the envelope and the period). A schema-1 visit arrives here
#: already coarsened to schema 2 (see :func:`_parse_visit`): nothing finer reaches a store.
VisitMessage = make_dataclass("VisitMessage", [
    ("kiosk_id", str), ("event_id", str), ("instance", str | None), ("mode", str),
    *(_message_field(f) for f in schema.SENT), ("period", str | None), ("period_s", int | None),
    ("clock_synced", bool), ("schema", int),
], frozen=True, namespace={"__module__": __name__})


@dataclass(frozen=True)
class PeriodMessage:
    """``period``: how many visits a kiosk's instance recorded in one closed period, so the
    collector can tell a lost visit without a sequence number (acked like a visit)."""

    kiosk_id: str
    event_id: str
    instance: str
    mode: str
    period: str
    period_s: int
    visits: int
    schema: int


@dataclass(frozen=True)
class UpdateState:
    """Where the kiosk's latest update stands: the root updater's report, relayed in
    ``health``. ``version`` is the release it is about, ``rollout`` the id ops gave it."""

    state: str
    version: str | None
    reason: str | None
    rollout: str | None


@dataclass(frozen=True)
class HealthMessage:
    """``health``: the latest vital signs; superseded by the next report."""

    kiosk_id: str
    mode: str
    uptime_s: float
    load_1m: float
    disk_free_mb: float
    mem_free_mb: float
    outbox_depth: int
    outbox_oldest_s: float | None
    dead_letters: int
    reader: str
    card_reads_ok: int | None
    config_version: int | None
    version: str
    cpu_temp_c: float | None
    screen: str | None
    at: str
    clock_synced: bool
    mono_s: float
    schema: int
    update: UpdateState | None = None
    cert_expires: str | None = None


@dataclass(frozen=True)
class Reply:
    """``reply``: a kiosk's answer to one command."""

    kiosk_id: str
    correlation_id: str
    ok: bool
    error: str | None
    data: object
    schema: int


def status_payload(state, epoch, version, stamp, *, instance):
    """The retained ``status``; build the ``lost`` one as the Last Will at connect time.

    ``instance`` names the kiosk's store (a new one after a re-flash) and ``epoch`` rises on
    every connect of that instance (``store.next_epoch()``), so the collector can tell a stale
    will from the previous connection of a kiosk that is already back online.
    """
    obj = {"schema": SCHEMA, "state": state, "instance": instance, "epoch": epoch,
           "version": version, **stamp}
    _parse_status("status_payload", obj, "-")
    return _encode(obj)


def _parse_status(what, obj, kiosk_id):
    f = _Fields(obj, what)
    return Status(
        kiosk_id=kiosk_id, state=f.choice("state", STATUS_STATES), instance=f.instance(),
        epoch=f.integer("epoch", 0, 2**31 - 1),
        version=f.match("version", _VERSION, "must be a version like 0.1.0"),
        **f.stamp(), schema=obj["schema"],
    )


def service_point_payload(cfg):
    """The retained service-point message (the ``pin`` topic) from a
    :class:`kiosk.config.Config` or anything shaped like one.

    Reads ``cfg.kiosk.{service_point_id, name_th, name_en, agency, ministry, province, lat,
    lon, mode}`` and ``cfg.services`` (items with ``id, name_th, name_en, no_copy``).
    """
    k = cfg.kiosk
    obj = {
        "schema": SCHEMA,
        "service_point_id": k.service_point_id,
        "name_th": k.name_th,
        "name_en": k.name_en,
        "agency": k.agency,
        "ministry": k.ministry,
        "province": k.province,
        "lat": k.lat,
        "lon": k.lon,
        "mode": k.mode,
        "services": [
            {"id": s.id, "name_th": s.name_th, "name_en": s.name_en, "no_copy": s.no_copy}
            for s in cfg.services
        ],
    }
    _parse_service_point("service_point_payload", obj, "-")
    return _encode(obj)


def _parse_service_point(what, obj, kiosk_id):
    f = _Fields(obj, what)
    services = f.get("services", lambda v: isinstance(v, list) and len(v) <= 100,
                     "must be a list of at most 100 services")
    parsed = []
    for index, item in enumerate(services):
        if not isinstance(item, dict):
            f.fail(f"services[{index}]", "must be an object")
        s = _Fields(item, f"{what}: services[{index}]")
        parsed.append(ServiceEntry(
            id=s.match("id", _TOKEN, "must be a service id of letters, digits or '_.:-'"),
            name_th=s.text("name_th"), name_en=s.text("name_en"),
            no_copy=s.choice("no_copy", NO_COPY_STATES)))
    return ServicePoint(
        kiosk_id=kiosk_id,
        service_point_id=f.match("service_point_id", _TOKEN,
                                 "must be an id of letters, digits or '_.:-'"),
        name_th=f.text("name_th"), name_en=f.text("name_en"), agency=f.text("agency"),
        ministry=f.text("ministry"), province=f.text("province"),
        lat=f.number("lat", -90, 90, optional=True), lon=f.number("lon", -180, 180, optional=True),
        services=tuple(parsed), mode=f.choice("mode", MODES), schema=obj["schema"],
    )


def _parse_visit(what, obj, kiosk_id):
    f = _Fields(obj, what)
    if obj["schema"] == 1:
        return _coarsened_visit(f, obj, kiosk_id)
    answers = _answers(f)
    period_s = f.get("period_s", lambda v: type(v) is int and length_problem(v, demo=True)
                     is None, "must be a period length in seconds that divides a day",
                     optional=True)
    start = f.match("period", _RFC3339_UTC, "must be the RFC 3339 UTC start of the period",
                    optional=True)
    synced = f.boolean("clock_synced")
    if (start is None) != (period_s is None) or synced != (start is not None):
        f.fail("period", "and period_s are both null (then clock_synced is false) or both set")
    if start is not None and not _is_period_start(start, period_s):
        f.fail("period", "must start a period of period_s seconds, aligned to local midnight")
    return VisitMessage(
        kiosk_id=kiosk_id, event_id=f.match("event_id", _TOKEN, _event_id_rule()),
        instance=f.match("instance", _TOKEN, _INSTANCE_RULE), mode=f.choice("mode", MODES),
        **answers, period=start, period_s=period_s, clock_synced=synced, schema=obj["schema"])


#: Each sent field's name, predicate, whether it is required, its rounding and its rule as a
#: rejection says it, worked out once rather than per message.
_SENT_CHECKS = tuple((field.name, field.accepts, field.required, field.digits, field.describe())
                     for field in schema.SENT)


def _answers(f):
    """The sent fields of a visit, checked and rounded as :meth:`_Fields.get` would, inline:
    fifteen calls of it a visit were a quarter of the parse at the collector's ingest rate."""
    obj, answers = f.obj, {}
    for name, accepts, required, digits, rule in _SENT_CHECKS:
        value = obj.get(name)
        if value is None:
            if required:
                f.fail(name, f"is missing; it {rule}")
        elif not accepts(value):
            f.fail(name, rule)
        elif digits is not None:
            value = round(float(value), digits) if digits else round(value)
        answers[name] = value
    return answers


def _coarsened_visit(f, obj, kiosk_id):
    """A schema-1 visit (a kiosk not yet upgraded) as schema 2: its time to the millisecond
    becomes the default period, its sequence number, epoch and monotonic time are checked and
    dropped. An unsynced clock's time is no time at all: ``period`` None."""
    event_id = f.match("event_id", _TOKEN, _event_id_rule())
    instance = f.instance()
    f.integer("epoch", 0, 2**31 - 1)
    f.integer("seq", 0, 10**11)
    mode = f.choice("mode", MODES)
    answers = _answers(f)
    stamp = f.stamp()
    period = None
    if stamp["clock_synced"]:
        period = Period.of(datetime.fromisoformat(stamp["at"]), DEFAULT_S)
    return VisitMessage(
        kiosk_id=kiosk_id, event_id=event_id, instance=instance, mode=mode, **answers,
        period=None if period is None else period.text,
        period_s=None if period is None else period.length_s,
        clock_synced=period is not None, schema=obj["schema"])


def period_payload(*, event_id, instance, mode, period, visits):
    """The ``period`` message: ``visits`` recorded in the closed ``period`` (a
    :class:`kiosk.period.Period`), queued in the transaction that closed it."""
    obj = {"schema": SCHEMA, "event_id": event_id, "instance": instance, "mode": mode,
           "period": period.text, "period_s": period.length_s, "visits": visits}
    _parse_period("period_payload", obj, "-")
    return _encode(obj)


def _parse_period(what, obj, kiosk_id):
    f = _Fields(obj, what)
    if obj["schema"] < 2:
        f.fail("schema", "must be 2 or later: schema 1 had no period messages")
    period_s = f.get("period_s", lambda v: type(v) is int and length_problem(v, demo=True)
                     is None, "must be a period length in seconds that divides a day")
    start = f.match("period", _RFC3339_UTC, "must be the RFC 3339 UTC start of the period")
    if not _is_period_start(start, period_s):
        f.fail("period", "must start a period of period_s seconds, aligned to local midnight")
    return PeriodMessage(
        kiosk_id=kiosk_id, event_id=f.match("event_id", _TOKEN, _event_id_rule()),
        instance=f.match("instance", _TOKEN, _INSTANCE_RULE), mode=f.choice("mode", MODES),
        period=start, period_s=period_s, visits=f.integer("visits", 0, MAX_PERIOD_VISITS),
        schema=obj["schema"])


def health_payload(*, mode, uptime_s, load_1m, disk_free_mb, mem_free_mb, outbox_depth,
                   outbox_oldest_s, dead_letters, reader, card_reads_ok, config_version,
                   version, stamp, cpu_temp_c=None, screen=None, update=None,
                   cert_expires=None):
    """One ``health`` report (QoS 0, every ``telemetry.health_interval_s``, never stored).

    Nothing in it may move with a single visit: ``outbox_depth`` and ``outbox_oldest_s`` count
    only rows released for sending (a closed period's), ``card_reads_ok`` is the count of the
    last whole local day (None before one has passed), ``reader`` never says a card is in.
    ``cpu_temp_c`` (None without a sensor) and ``screen`` (``on``/``off``, None without a
    display) come from GPIO and display. ``update`` (None before the first update) is an
    :class:`UpdateState`: how the kiosk's latest update went, for the console's rollout view.
    ``cert_expires`` (None for a password kiosk) is the notAfter of the client certificate the
    kiosk connected with, as RFC 3339 UTC text: the centre judges ``cert_expiring`` by it, since
    a renewal it signed may never have been installed.
    """
    obj = {
        "schema": SCHEMA, "mode": mode, "uptime_s": round(float(uptime_s), 1),
        "load_1m": round(float(load_1m), 2), "disk_free_mb": round(float(disk_free_mb), 1),
        "mem_free_mb": round(float(mem_free_mb), 1), "outbox_depth": outbox_depth,
        "outbox_oldest_s": None if outbox_oldest_s is None else round(float(outbox_oldest_s), 1),
        "dead_letters": dead_letters, "reader": reader, "card_reads_ok": card_reads_ok,
        "config_version": config_version, "version": version, "cpu_temp_c": cpu_temp_c,
        "screen": screen, **stamp,
    }
    if update is not None:
        obj["update"] = {"state": update.state, "version": update.version,
                         "reason": update.reason, "rollout": update.rollout}
    if cert_expires is not None:
        obj["cert_expires"] = cert_expires
    _parse_health("health_payload", obj, "-")
    return _encode(obj)


def _parse_health(what, obj, kiosk_id):
    f = _Fields(obj, what)
    return HealthMessage(
        kiosk_id=kiosk_id, mode=f.choice("mode", MODES),
        uptime_s=f.number("uptime_s", 0, 10**10), load_1m=f.number("load_1m", 0, 10**4),
        disk_free_mb=f.number("disk_free_mb", 0, 10**9),
        mem_free_mb=f.number("mem_free_mb", 0, 10**9),
        outbox_depth=f.integer("outbox_depth", 0, 10**9),
        outbox_oldest_s=f.number("outbox_oldest_s", 0, 10**10, optional=True),
        dead_letters=f.integer("dead_letters", 0, 10**9),
        reader=_reader(f, obj),
        card_reads_ok=f.integer("card_reads_ok", 0, 10**9, optional=True),
        config_version=f.integer("config_version", 0, 2**31 - 1, optional=True),
        version=f.match("version", _VERSION, "must be a version like 0.1.0"),
        cpu_temp_c=f.number("cpu_temp_c", -40, 150, optional=True),
        screen=f.choice("screen", ("on", "off"), optional=True),
        **f.stamp(), schema=obj["schema"], update=_update_state(what, f),
        cert_expires=_instant(f, "cert_expires"),
    )


def _instant(f, key):
    """An optional RFC 3339 UTC time that must also be a real one: the collector compares it
    with its clock, and a 31 February would fail there, on every alarm evaluation."""
    text = f.time(key, optional=True)
    if text is not None:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            f.fail(key, "must be a real date and time")
    return text


def _update_state(what, f):
    """``health``'s optional ``update`` object as an :class:`UpdateState`."""
    obj = f.get("update", lambda v: isinstance(v, dict), "must be a JSON object", optional=True)
    if obj is None:
        return None
    u = _Fields(obj, f"{what}: update")
    return UpdateState(
        state=u.choice("state", UPDATE_STATES),
        version=u.match("version", _VERSION, "must be a version like 0.1.0", optional=True),
        reason=u.text("reason", optional=True),
        rollout=u.match("rollout", _TOKEN, "must be an id of letters, digits or '_.:-'",
                        optional=True))


def _reader(f, obj):
    """The reader state; a schema-1 ``card_present`` (which timed each visit) is ``ready``."""
    if obj["schema"] == 1:
        state = f.choice("reader", _SCHEMA1_READER_STATES)
        return "ready" if state == "card_present" else state
    return f.choice("reader", READER_STATES)


def reply_payload(correlation_id, ok, error=None, data=None):
    """The ``reply`` to a command; ``correlation_id`` comes from the command (may be None).

    ``error`` is a reason for ops (the :class:`~kiosk.errors.CommandRejected` message, say);
    ``data`` is any small JSON value the command returns.
    """
    obj = {"schema": SCHEMA, "correlation_id": correlation_id, "ok": ok, "error": error,
           "data": data}
    _parse_reply("reply_payload", obj, "-")
    return _encode(obj)


def _parse_reply(what, obj, kiosk_id):
    f = _Fields(obj, what)
    ok = f.boolean("ok")
    error = f.get("error", lambda v: isinstance(v, str) and len(v) <= 1000,
                  "must be text of at most 1000 characters", optional=True)
    if not ok and error is None:
        f.fail("error", "must say why when ok is false")
    return Reply(
        kiosk_id=kiosk_id,
        correlation_id=f.match("correlation_id", _TOKEN, "must be an id of letters, digits or "
                               "'_.:-'", optional=True),
        ok=ok, error=error, data=obj.get("data"), schema=obj["schema"],
    )


@dataclass(frozen=True)
class CertRequest:
    """``csr``: a kiosk's certificate signing request (PEM), relayed for its root renewal
    unit; the signing service (``kiosk-fleet ca``) judges the request itself."""

    kiosk_id: str
    csr: str
    schema: int


def _pem(f, name, label):
    """A PEM block of ``label`` as text: checked for shape here, for meaning by its reader."""
    return f.get(name, lambda v: (isinstance(v, str) and len(v) <= MAX_PEM_CHARS
                                  and v.startswith(f"-----BEGIN {label}-----")
                                  and v.rstrip().endswith(f"-----END {label}-----")),
                 f"must be one PEM {label} of at most {MAX_PEM_CHARS} characters")


def csr_payload(csr_pem):
    """The ``csr`` message carrying a certificate request the kiosk's root unit made."""
    obj = {"schema": SCHEMA, "csr": csr_pem}
    _parse_csr("csr_payload", obj, "-")
    return _encode(obj)


def _parse_csr(what, obj, kiosk_id):
    f = _Fields(obj, what)
    return CertRequest(kiosk_id=kiosk_id, csr=_pem(f, "csr", "CERTIFICATE REQUEST"),
                       schema=obj["schema"])


_KIOSK_PARSERS = {
    "status": _parse_status, "pin": _parse_service_point, "visit": _parse_visit,
    "period": _parse_period, "health": _parse_health, "reply": _parse_reply,
    "csr": _parse_csr,
}


def parse_kiosk_message(topic, payload, *, max_bytes=MAX_KIOSK_MESSAGE_BYTES):
    """Validate one message from a kiosk; the kiosk id comes from the topic, never the payload.

    Returns a :class:`Status`, :class:`ServicePoint`, :class:`VisitMessage`,
    :class:`PeriodMessage`, :class:`HealthMessage`, :class:`Reply` or :class:`CertRequest`.
    Unknown fields are ignored (a newer kiosk may add some) and never returned, so nothing the
    contract does not name can be stored. Raises MessageRejected naming the topic and the field
    at fault, never echoing a value.
    """
    kiosk_id, kind = split_kiosk_topic(topic)
    obj = _decode(payload, topic, max_bytes)
    return _KIOSK_PARSERS[kind](topic, obj, kiosk_id)


# --- fleet -> kiosk -------------------------------------------------------------------------


def ack_payload(event_ids):
    """``{"schema": 2, "event_ids": [...]}`` confirming visits (and period messages) the
    collector has committed (:data:`DOWNSTREAM_SCHEMA`)."""
    event_ids = list(event_ids)
    if not 0 < len(event_ids) <= MAX_ACK_IDS:
        raise ValueError(f"an ack carries 1-{MAX_ACK_IDS} event ids, not {len(event_ids)}")
    for event_id in event_ids:
        if not isinstance(event_id, str) or not _TOKEN.fullmatch(event_id):
            raise ValueError(f"event id {event_id!r} {_event_id_rule()}")
    return _encode({"schema": DOWNSTREAM_SCHEMA, "event_ids": event_ids})


def parse_ack(payload, *, max_bytes=MAX_KIOSK_MESSAGE_BYTES):
    """Event ids from an ack, or MessageRejected; the outbox marks exactly these confirmed."""
    obj = _decode(payload, "ack", max_bytes)
    f = _Fields(obj, "ack")
    ids = f.get("event_ids", lambda v: isinstance(v, list) and 0 < len(v) <= MAX_ACK_IDS,
                f"must be a list of 1-{MAX_ACK_IDS} event ids")
    if not all(isinstance(i, str) and _TOKEN.fullmatch(i) for i in ids):
        f.fail("event_ids", _event_id_rule())
    return tuple(ids)


@dataclass(frozen=True)
class WantedRelease:
    """An ``update`` command's desired version: where its signed release is, and the SHA-256
    of its manifest (plain hex) that the kiosk's updater must find there."""

    version: str
    url: str
    sha256: str
    rollout: str | None


@dataclass(frozen=True)
class Command:
    """A validated command. ``desired`` (config only) is the remote layer for
    ``kiosk.config.apply_remote``; ``event_ids`` (replay only) limits the retry, None = all;
    ``release`` (update only) is the :class:`WantedRelease`; ``cert`` (cert only) the signed
    certificate (PEM) for the root renewal unit to check and install."""

    name: str
    correlation_id: str | None
    version: int | None = None
    desired: object = None
    event_ids: tuple | None = None
    release: WantedRelease | None = None
    cert: str | None = None


def grouped_sha256(hex_digest):
    """A SHA-256 as the wire carries it (eight groups of eight hex digits), from plain hex or
    already grouped; raises ValueError for anything else."""
    plain = hex_digest.replace("-", "").lower() if isinstance(hex_digest, str) else ""
    if not re.fullmatch(r"[0-9a-f]{64}", plain):
        raise ValueError("a SHA-256 is 64 hex digits (as kiosk-fleet release build prints it)")
    return "-".join(plain[i:i + 8] for i in range(0, 64, 8))


def command_payload(name, correlation_id, **fields):
    """What ops publishes on ``cmd/{kiosk_id}/{name}`` (config: ``version`` plus the
    ``services``, ``flow`` and ``portal`` sections; replay: optional ``event_ids``; update:
    ``version``, ``url``, ``sha256`` in :func:`grouped_sha256` form, optional ``rollout``;
    cert: ``cert``, a PEM certificate)."""
    obj = {"schema": DOWNSTREAM_SCHEMA, "correlation_id": correlation_id, **fields}
    _parse_command_body(name, obj, applied_version=None)
    return _encode(obj)


def parse_command(topic, payload, *, kiosk_id, max_bytes, applied_version):
    """Validate a command addressed to this kiosk; ``applied_version`` is the config version
    in force (None before the first remote config).

    Raises :class:`~kiosk.errors.CommandRejected` when the payload is malformed, bigger than
    ``max_bytes``, for an unknown command or another kiosk, or a config whose version is not
    above ``applied_version`` (``is_stale`` is then True: a retained config re-delivered on
    reconnect is stale by design, and the kiosk may skip the error reply). The portal-host rule
    and the section contents are checked by ``kiosk.config.apply_remote``, not here.
    """
    prefix = f"{ROOT}/cmd/{kiosk_id}/"
    name = topic[len(prefix):] if topic.startswith(prefix) else None
    if name not in COMMANDS:
        # The topic's last level is whatever ops (or anyone) published under: never quoted
        # as it is, it may hold a citizen ID.
        raise CommandRejected(
            f"{logsafe.redact_ids(topic)}: unknown command; expected "
            f"{prefix}<{'|'.join(COMMANDS)}>", command=name)
    correlation_id = None
    try:
        obj = _decode(payload, topic, max_bytes)
        correlation_id = _Fields(obj, topic).match(
            "correlation_id", _TOKEN, "must be an id of letters, digits or '_.:-'",
            optional=True)
        return _parse_command_body(name, obj, applied_version, what=topic)
    except CommandRejected:
        raise
    except MessageRejected as exc:
        raise CommandRejected(str(exc), command=name, correlation_id=correlation_id) from None


def _parse_command_body(name, obj, applied_version, what=None):
    what = what or name
    f = _Fields(obj, what)
    correlation_id = f.match("correlation_id", _TOKEN,
                             "must be an id of letters, digits or '_.:-'", optional=True)
    if name == "config":
        version = f.integer("version", 1, 2**31 - 1)
        if applied_version is not None and version <= applied_version:
            raise CommandRejected(
                f"{what}: config version {version} is not newer than the applied version "
                f"{applied_version}; publish a higher version", command=name,
                correlation_id=correlation_id, is_stale=True)
        desired = {}
        for section, kind in (("services", list), ("flow", dict), ("portal", dict)):
            value = f.get(section, lambda v, kind=kind: isinstance(v, kind),
                          f"must be a JSON {'array' if kind is list else 'object'}",
                          optional=True)
            if value is not None:
                desired[section] = value
        if not desired:
            f.fail("services", "or 'flow' or 'portal' must be given: a config changes something")
        return Command(name, correlation_id, version=version, desired=desired)
    if name == "replay":
        ids = f.get("event_ids", lambda v: isinstance(v, list) and len(v) <= MAX_ACK_IDS,
                    f"must be a list of at most {MAX_ACK_IDS} event ids", optional=True)
        if ids is not None and not all(isinstance(i, str) and _TOKEN.fullmatch(i) for i in ids):
            f.fail("event_ids", _event_id_rule())
        return Command(name, correlation_id, event_ids=None if ids is None else tuple(ids))
    if name == "update":
        release = WantedRelease(
            version=f.match("version", _VERSION, "must be a version like 0.2.0"),
            url=f.match("url", _RELEASE_URL,
                        "must be the release's https:// URL (printable, no spaces, at most "
                        "508 characters)"),
            sha256=f.match("sha256", _GROUPED_SHA256,
                           "must be the manifest's SHA-256 as eight groups of eight hex digits "
                           "joined by '-'").replace("-", ""),
            rollout=f.match("rollout", _TOKEN, "must be an id of letters, digits or '_.:-'",
                            optional=True))
        return Command(name, correlation_id, release=release)
    if name == "cert":
        return Command(name, correlation_id, cert=_pem(f, "cert", "CERTIFICATE"))
    if name in ("rebirth", "ping"):
        return Command(name, correlation_id)
    raise CommandRejected(f"{what}: unknown command {name!r}; expected one of {COMMANDS}",
                          command=name, correlation_id=correlation_id)
