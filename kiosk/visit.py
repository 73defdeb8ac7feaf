"""The visit, defined once: every field a finished visit has, and where each one goes.

Standard library only (pure core: the store, the flow and the telemetry contract all import
it). Each :class:`Field` says its type and allowed values, whether the kiosk stores it, whether
it goes on the wire, whether the collector keeps it, which statistic counts it and the store
version it appeared in. From :data:`FIELDS` follow the flow's finished visit (:class:`Record`),
the visit payload (:func:`payload`) and its parser (``kiosk.telemetry.topics``), the kiosk
store's ``visit`` columns and their migrations (:func:`add_column_statements`), the collector's
``visit`` table (``kiosk.fleet.db``) and the field table in ``docs/telemetry.md``
(:func:`doc_table`). Adding a field means adding it here, and to the screen that asks for it.

The vocabularies are declared here too, not taken from the flow, so a change to the flow cannot
silently change the wire.
"""

import enum
import json
import math
import re
from dataclasses import dataclass, field, make_dataclass
from functools import cached_property

from kiosk import logsafe, period

#: The payload schema of every message on the wire (``kiosk.telemetry.topics.SCHEMA``); kept
#: here because the visit is the message that grows. Raise it when a field changes meaning.
#: Schema 3 (issue 14) added the "not sure" copy answer, the card-return and confirm steps and
#: two fields; a collector is upgraded before its kiosks, since a schema-2 reader refuses it.
SCHEMA = 3



class Outcome(enum.StrEnum):
    """How a visit ended: every question answered, or left half-way (recorded all the same)."""

    COMPLETED = "completed"
    ABANDONED = "abandoned"


OUTCOMES = tuple(Outcome)
#: Where a visit ended: the flow's screen values (``kiosk.flow.Screen``), pinned for the wire.
STEPS = ("idle", "reading", "card_problem", "already_rated", "choose_service", "copy_check",
         "rating", "reason", "thank_you", "take_card", "out_of_service",
         "return_card", "confirm")
#: ``not_sure`` (schema 3) is kept apart in the statistics: neither asked nor not asked.
COPY_ANSWERS = ("none", "id_card", "house_registration", "both", "not_sure")
REASONS = ("waiting_time", "staff", "copies_requested", "unclear_process", "other")
#: Reasons still valid on the wire (older visits carry them) that the screens no longer offer:
#: ``copies_requested`` only repeated the photocopy question.
RETIRED_REASONS = ("copies_requested",)
#: The service id of the "other service" choice; the registry may not use it for a service.
OTHER_SERVICE = "other"
RATINGS = (1, 2, 3, 4, 5)
LANGUAGES = ("th", "en")
GENDERS = ("male", "female")
AGE_BAND = re.compile(r"\d{1,3}(-\d{1,3}|\+)")
#: Ids on the wire (service, event, instance): what a topic level and a log line can carry.
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
MODES = ("production", "demo")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
#: The envelope around the answers, each with its rule, as the collector's parser holds it:
#: a payload the collector would refuse is refused here, where it was made, not resent for ever.
#: No time finer than the period, no sequence number, no connect epoch (docs/privacy.md).
_ENVELOPE = {
    "event_id": lambda v: isinstance(v, str) and TOKEN.fullmatch(v) is not None,
    "instance": lambda v: isinstance(v, str) and TOKEN.fullmatch(v) is not None,
    "mode": lambda v: v in MODES,
    "period": lambda v: v is None or (isinstance(v, str) and RFC3339_UTC.fullmatch(v) is not None),
    "period_s": lambda v: v is None or (type(v) is int and period.length_problem(v, demo=True)
                                        is None),
    "clock_synced": lambda v: type(v) is bool,
}

_SQL_TYPES = {str: "TEXT", int: "INTEGER", bool: "INTEGER", float: "REAL", bytes: "BLOB"}
_TYPE_NAMES = {str: "text", int: "integer", bool: "boolean", float: "number", bytes: "bytes"}


@dataclass(frozen=True)
class Field:
    """One field of a finished visit and every place it goes.

    ``choices`` or ``pattern`` (with its ``rule`` for people) or ``bounds`` limit the values;
    ``digits`` rounds a number on the wire. ``since`` is the store schema version that added the
    column: a field newer than version 1 must be optional, since older rows have no value.
    ``is_omitted_when_null`` marks a field put on the wire without a new :data:`SCHEMA`: the
    schema's readers ignore a key they do not know and take a missing one as null, so it is
    left out when null and a visit without it keeps its schema's bytes.
    """

    name: str
    type: type
    doc: str
    required: bool = False
    choices: tuple | None = None
    pattern: re.Pattern | None = None
    rule: str | None = None
    bounds: tuple | None = None
    digits: int | None = None
    is_stored: bool = True
    is_sent: bool = True
    is_kept: bool = True
    statistic: str | None = None
    since: int = 1
    is_omitted_when_null: bool = False

    def describe(self):
        """The rule a value must meet, as a rejection message says it."""
        if self.type is bool:
            return "must be true or false"
        if self.choices is not None:
            return f"must be one of {', '.join(map(str, self.choices))}"
        if self.bounds is not None:
            low, high = self.bounds
            return f"must be a number from {low} to {high}"
        return self.rule

    @cached_property
    def accepts(self):
        """The predicate ``accepts(value)``: True when ``value`` (decoded JSON, not None) meets
        the rule; booleans are no numbers. Made once a field, for its kind of rule alone:
        every visit at the collector's ingest rate goes through each field's."""
        if self.type is bool:
            return lambda value: value is True or value is False
        if self.choices is not None:
            choices = frozenset(self.choices)
            return lambda value: (isinstance(value, str | int) and value is not True
                                  and value is not False and value in choices)
        if self.bounds is not None:
            low, high = self.bounds
            return lambda value: (isinstance(value, int | float) and value is not True
                                  and value is not False and math.isfinite(value)
                                  and low <= value <= high)
        fullmatch = self.pattern.fullmatch
        return lambda value: isinstance(value, str) and fullmatch(value) is not None

    def column_sql(self):
        """The column as SQLite declares it (nullable unless required)."""
        return f"{self.name} {_SQL_TYPES[self.type]}{' NOT NULL' if self.required else ''}"


FIELDS = (
    Field("outcome", str, "the citizen finished, or left a question unanswered",
          required=True, choices=OUTCOMES, statistic="completed"),
    Field("step", str, "the screen the visit ended on", required=True, choices=STEPS),
    Field("verified", bool, "a Thai ID card was read for this visit", required=True),
    Field("expired", bool, "the card had expired (null without a card)"),
    Field("service_id", str, "the service chosen, an id from the config's catalogue or "
          "\"other\" (a service not in it)",
          pattern=TOKEN, rule="must be a service id"),
    Field("copy_answer", str, "whether a photocopy was asked for today", choices=COPY_ANSWERS,
          statistic="copy_answers"),
    Field("rating", int, "the rating, 1 (worst) to 5", choices=RATINGS,
          statistic="ratings, mean_rating"),
    Field("reason", str, "why the rating was low (null when skipped or not asked)",
          choices=REASONS),
    Field("language", str, "the language the visit ended in", required=True, choices=LANGUAGES),
    Field("duration_s", int, "whole seconds from the card (or first tap) to the end",
          required=True, bounds=(0, 86_400), digits=0),
    Field("age_band", str, "from the card's birth date when flow.collect_age_band is on",
          pattern=AGE_BAND, rule="must look like 30-39 or 60+"),
    Field("gender", str, "from the card when flow.collect_gender is on", choices=GENDERS),
    Field("service_point_id", str, "the registry service point the kiosk stands at (its "
          "config's kiosk.service_point_id); without it the collector files the visit under "
          "the kiosk's pin when it arrives", pattern=TOKEN, rule="must be a service point id",
          statistic="every table's service point", since=5, is_omitted_when_null=True),
    Field("card_in_at_commit", bool, "the citizen's card was still in the reader when the "
          "visit was committed (null without a card)", statistic="card_left_in", since=6,
          is_omitted_when_null=True),
    Field("undone", bool, "the citizen went back from the confirm screen to change an answer "
          "(\"change my answer\" or Back) before the visit was committed", statistic="undone",
          since=6, is_omitted_when_null=True),
    Field("repeat_hash", bytes, "keyed hash of the card, in the runner's memory for the repeat "
          "window only", is_stored=False, is_sent=False, is_kept=False),
)
STORED = tuple(f for f in FIELDS if f.is_stored)
SENT = tuple(f for f in FIELDS if f.is_sent)
KEPT = tuple(f for f in FIELDS if f.is_kept)


def _record_field(f):
    if f.required:
        return f.name, f.type
    return f.name, f.type | None, field(default=None, repr=f.is_sent)


#: One finished visit as the flow hands it to the runner (``RecordVisit``); keyword arguments
#: only. Fields that are not sent (the repeat hash) stay out of its repr, so out of logs.
Record = make_dataclass("Record", [_record_field(f) for f in FIELDS], frozen=True, kw_only=True,
                        namespace={"__module__": __name__})


def values(record, fields):
    """``{name: value}`` of ``fields`` from a :class:`Record`; enum members as plain values."""
    return {f.name: getattr(getattr(record, f.name), "value", getattr(record, f.name))
            for f in fields}


def check(name, value, f):
    """Raise ValueError naming the field (never the value) unless ``value`` fits field ``f``."""
    if value is None:
        if f.required:
            raise ValueError(f"field {name!r} is missing; it {f.describe()}")
        return
    if not f.accepts(value):
        raise ValueError(f"field {name!r} {f.describe()}")


def payload(*, event_id, instance, mode, period, **answers):
    """One ``visit`` message as UTF-8 JSON bytes: the envelope, the sent fields, the period.

    ``period`` is the :class:`kiosk.period.Period` the visit falls in, or None for a visit
    whose time is unknown (recorded before the clock synced, and the kiosk restarted since):
    ``clock_synced`` says which. ``answers`` are the fields of :data:`SENT` by name, nothing
    else (a repeat hash or a row dump is a TypeError). Every answer is checked against its
    field, and no value may look like a citizen ID (13 digits), as every builder of the wire
    refuses.
    """
    unknown = answers.keys() - {f.name for f in SENT}
    if unknown:
        raise TypeError(f"payload() takes the sent visit fields only, not {sorted(unknown)}")
    obj = {"schema": SCHEMA, "event_id": event_id, "instance": instance, "mode": mode,
           "period": None if period is None else period.text,
           "period_s": None if period is None else period.length_s,
           "clock_synced": period is not None}
    for f in SENT:
        value = answers.get(f.name)
        if value is not None and f.digits is not None:
            value = round(float(value), f.digits) if f.digits else round(value)
        check(f.name, value, f)
        if value is not None or not f.is_omitted_when_null:
            obj[f.name] = value
    for name, rule in _ENVELOPE.items():
        if not rule(obj.get(name)):
            raise ValueError(f"field {name!r} of the visit's envelope breaks the contract")
    for name, value in obj.items():
        if logsafe.is_id_shaped(value):
            raise ValueError(f"payload would carry a 13-digit number at $.{name}; send RFC 3339 "
                             "strings for times and never an ID")
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def add_column_statements(version):
    """The ``ALTER TABLE visit ADD COLUMN`` statements of store schema ``version``: one per
    stored field that appeared in it. Version 1 is the hand-written first table."""
    return [f"ALTER TABLE visit ADD COLUMN {f.column_sql()}" for f in STORED
            if f.since == version > 1]


#: The newest store schema version a field names.
STORE_VERSION = max(f.since for f in FIELDS)


def doc_table():
    """The field table of ``docs/telemetry.md`` (Markdown), generated from :data:`FIELDS`."""
    def mark(flag):
        return "yes" if flag else "no"

    lines = ["| field | type | meaning | values | kiosk stores | on the wire | collector keeps | "
             "statistic | since store v |", "|---|---|---|---|---|---|---|---|---|"]
    for f in FIELDS:
        kind = _TYPE_NAMES[f.type] + ("" if f.required else " or null")
        values = re.sub(r"^must (be )?", "", f.describe() or "")
        lines.append(f"| `{f.name}` | {kind} | {f.doc} | {values} | {mark(f.is_stored)} | "
                     f"{mark(f.is_sent)} | {mark(f.is_kept)} | {f.statistic or ''} | "
                     f"{f.since} |")
    return "\n".join(lines) + "\n"
