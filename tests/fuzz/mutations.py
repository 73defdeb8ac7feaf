"""Strategies shared by the fuzzers: citizen-ID-shaped numbers, JSON values, mutations of a
valid object, and the check that no error message or log line echoes a 13-digit number."""

import json
import re
from pathlib import Path

from hypothesis import strategies as st

from kiosk.card.thai_id import cid_check_digit

#: What a privacy scan flags in any text: 13 digits in a row (ASCII or Thai).
THIRTEEN_DIGITS = re.compile(r"\d{13}")


@st.composite
def citizen_ids(draw):
    """13 ASCII digits, most with a correct check digit (a real-looking citizen ID)."""
    first12 = draw(st.text("0123456789", min_size=12, max_size=12))
    check = cid_check_digit(first12)
    last = check if draw(st.integers(0, 3)) else (check + 1) % 10
    return first12 + str(last)


def id_bearing_texts():
    """Texts carrying a 13-digit number: alone, inside words, or as the card groups it."""
    def grouped(cid):
        return f"{cid[0]}-{cid[1:5]}-{cid[5:10]}-{cid[10:12]}-{cid[12]}"
    return st.one_of(
        citizen_ids(),
        st.tuples(st.text(max_size=8), citizen_ids(), st.text(max_size=8)).map("".join),
        citizen_ids().map(grouped),
        citizen_ids().map(lambda cid: f"id {cid} x"),
    )


def id_numbers():
    """13-digit numbers as JSON or TOML would carry them: an integer or a float."""
    return citizen_ids().flatmap(lambda cid: st.sampled_from([int(cid), float(cid)]))


def scalars():
    """Any JSON scalar, biased to the edges (bools, huge numbers, IDs, control characters)."""
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-2, 100_000),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
        st.sampled_from(["", " ", "0", "-1", "1e400", "demo", "production", "\x00", "๑๒๓",
                         "2026-12-01T00:00:00Z", "2026-13-45T99:99:99Z", "\u202e", "x" * 300]),
        id_numbers(), id_bearing_texts())


def json_values(max_leaves=12):
    """Nested JSON values built from :func:`scalars`."""
    return st.recursive(
        scalars(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                   max_size=4),
        max_leaves=max_leaves)


@st.composite
def mutated(draw, obj, values=None):
    """``obj`` (a dict) with a few keys dropped, replaced by any value or added."""
    values = json_values() if values is None else values
    obj = dict(obj)
    for _ in range(draw(st.integers(0, 3))):
        keys = sorted(obj)
        action = draw(st.sampled_from(["drop", "replace", "replace", "add"]))
        if action == "add" or not keys:
            obj[draw(st.text(max_size=12) | id_bearing_texts())] = draw(values)
        elif action == "drop":
            del obj[draw(st.sampled_from(keys))]
        else:
            obj[draw(st.sampled_from(keys))] = draw(values)
    return obj


def assert_no_id(*texts):
    """No text (an error message, a log line, a reply) echoes a 13-digit number."""
    for text in texts:
        assert not THIRTEEN_DIGITS.search(str(text)), f"13-digit number echoed: {text!r}"


def logged_lines(caplog):
    """Every log record of the project's loggers as its message and traceback, as a handler
    would write it (peewee's own debug lines hold random savepoint names)."""
    return [record.getMessage() + (record.exc_text or "") for record in caplog.records
            if record.name.split(".")[0] == "kiosk"]


_DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"
_EXAMPLE = re.compile(r"```json topic=(\S+)\n(.*?)```", re.S)


def doc_examples(part):
    """``(topic, object)`` of every example payload docs/telemetry.md shows for ``part``
    (``kiosk`` or ``cmd``): valid messages to start mutating from."""
    return [(topic, json.loads(text)) for topic, text in _EXAMPLE.findall(_DOC.read_text())
            if topic.split("/")[2] == part]
