"""Issues 4 and 11: what crosses the broker holds no citizen's ID, name or address, nor any
13-digit number, and no visit carries a time finer than its period, nor the visits' order.

Two hundred scripted visits, a hundred of them with different emulated citizens' cards, run
through ``kiosk run --script`` (the real card stack, a headless kiosk, the real broker and
collector); a read-only wiretap keeps every message that crossed the broker, and the scan looks
for every form the cards' personal data could take on the wire. The kiosk runs in demo mode for
its 5-second periods, so its visits are released within seconds rather than after the hour. Then
the three places a visit lives are searched as someone holding them and the counter's own log
would: the kiosk's SQLite file, every payload on the broker, and the collector's database. None
may hold a time finer than the visit's period, nor the order in which a period's visits were
made; every period's count must match what the collector stored.
"""

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk import visit
from kiosk.period import DAY_S, DEMO_MIN_S, Period, count_event_id, is_period_start
from kiosk.rigs.card_profiles import PROFILES
from kiosk.store import DB_NAME
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fixtures.kiosk_world import KIOSK_ID
from tests.fixtures.privacy import record_text

VISITS = 200
DIGIT_RUN = re.compile(rb"\d{13}")
#: A time written the way the wire writes times, to the second or finer.
WIRE_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
#: What schema 1 timed and ordered each visit by, and what the stores once kept.
TIMING_KEYS = ("at", "mono_s", "seq", "epoch", "recorded_at", "received")

SERVICES = ("id-card", "house-registration", "land-building-tax")
COPIES = ("none", "id_card", "house_registration", "both")
RATINGS = (3, 4, 5)
#: Every RFC 3339 time, with or without a fraction, inside any text.
TEXT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
DUE_AT_ONCE = "1970-01-01T00:00:00Z"


def answers(n):
    """The answers of visit ``n``: distinct for 36 visits in a row, so the order in which a
    period's visits were made can be told from their answers (by this test only)."""
    return SERVICES[n % 3], COPIES[n // 3 % 4], RATINGS[n // 12 % 3]


def with_card(n):
    """Every other visit inserts a card (a hundred citizens' data to look for); the others rate
    without one, which skips pcscd's 400 ms polls for the card going in and out."""
    return n % 2 == 0


def visit_script():
    """The quickest complete visits: each citizen takes the card back when asked, answers at
    once, sends the answers and taps Done."""
    steps = []
    for n in range(VISITS):
        service, copy, rating = answers(n)
        start = ([f"insert citizen-{n}", "wait return_card", "remove"] if with_card(n)
                 else ["nocard"])
        steps += [*start, "wait choose_service", f"service {service}", "wait copy_check",
                  f"copy {copy}", "wait rating", f"rating {rating}", "wait confirm", "ok",
                  "wait thank_you", "ok", "wait idle"]
    return "\n".join(steps) + "\n"


def made_order(rows):
    """Where each of ``rows`` (a period's visits, dicts of answers) came in the script, mod 36."""
    number = {answers(n): n for n in range(36)}
    return [number[(row["service_id"], row["copy_answer"], row["rating"])] for row in rows]


def in_made_order(sequence):
    """True when a period's visits stand in the order they were made."""
    return all((later - earlier) % 36 < 18 for earlier, later in zip(sequence, sequence[1:],
                                                                      strict=False))


def ordered_periods(groups):
    """How many of the periods with 4 visits or more list them in the order they were made,
    and how many such periods there are. Shuffled, a period of 4 keeps its order 1 time in 8."""
    big = [rows for rows in groups.values() if len(rows) >= 4]
    return sum(in_made_order(made_order(rows)) for rows in big), len(big)


def table_rows(path):
    """``{table: [row as a dict, ...]}`` of every table of an SQLite file."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        names = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {name: [dict(row) for row in db.execute(f'SELECT * FROM "{name}"')]
                for name in names}


def times_in(row):
    return [t for value in row.values() if isinstance(value, str)
            for t in TEXT_TIME.findall(value)]


def after_its_period(text, start):
    """A release time says nothing of a visit's moment once its period has ended."""
    end = dt.datetime.fromisoformat(start) + dt.timedelta(seconds=DEMO_MIN_S)
    return dt.datetime.fromisoformat(text) >= end


def _parts(text, skip_first=False):
    """The non-empty ``#``-separated parts of a card field (a name's title is skipped)."""
    parts = [part for part in text.split("#") if part]
    return parts[1:] if skip_first else parts


def needles(profiles):
    """``{bytes: what}``: every form a card's personal data could take in a message.

    Names and addresses in UTF-8 (the wire's encoding) and TIS-620 (the card's); the citizen ID
    as digits, written with dashes, and as the hex of its ASCII. A name's title (นาย, Mr.) is
    not personal and a bare house number is too short to tell from any other number, so those
    two are left out; the address also counts whole.
    """
    found = {}
    for profile in profiles:
        if profile.cid:
            cid = profile.cid
            raw = cid.encode("ascii")
            for form in (raw, raw.hex().encode(), raw.hex().upper().encode(),
                         "-".join((cid[0], cid[1:5], cid[5:10], cid[10:12], cid[12])).encode()):
                found[form] = f"{profile.name}'s citizen ID"
        texts = [(part, "name") for field in (profile.name_th, profile.name_en)
                 for part in _parts(field, skip_first=True)]
        if profile.has_thai_applet:
            texts += [(part, "address") for part in _parts(profile.address)
                      if not part.isdigit()]
            texts.append((profile.address.replace("#", " "), "address"))
        for text, kind in texts:
            for encoding in ("utf-8", "tis-620"):
                found[text.encode(encoding)] = f"{profile.name}'s {kind} {text!r} ({encoding})"
    return found


def scan(items, looked_for):
    """``[(source, finding)]`` for personal data or a 13-digit run in ``(source, bytes)`` items.

    A JSON payload is also scanned as decoded text, so ``\\u0e19``-style escapes hide nothing.
    """
    findings = []
    for source, data in items:
        forms = [data]
        try:
            forms.append(json.dumps(json.loads(data), ensure_ascii=False).encode())
        except ValueError:
            pass
        for form in forms:
            findings += [(source, what) for needle, what in looked_for.items() if needle in form]
            findings += [(source, f"13-digit number {m.group().decode()}")
                         for m in DIGIT_RUN.finditer(form)]
    return sorted(set(findings))


def finer_than_its_period(payload):
    """What in one visit or period payload tells more time than its period: a timing key, or
    any time on it other than the start of its own period."""
    obj = json.loads(payload)
    found = [f"key {key!r}" for key in TIMING_KEYS if key in obj]
    own = obj.get("period")
    if own is not None and not is_period_start(own, obj.get("period_s")):
        own = None
    found += [f"time {t}" for t in sorted({m.group().decode() for m in WIRE_TIME.finditer(payload)}
                                          - {own})]
    return found


@settings(max_examples=60, deadline=None)
@given(wall=st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1),
                         timezones=st.just(dt.UTC)),
       length=st.sampled_from((DEMO_MIN_S, 60, 900, 3600, DAY_S)),
       duration=st.integers(0, 86_400), synced=st.booleans())
def test_privacy_wire_no_visit_payload_carries_a_time_finer_than_its_period(wall, length,
                                                                            duration, synced):
    period = Period.of(wall, length) if synced else None
    payload = visit.payload(event_id="0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10", instance="i1",
                            mode="production", period=period, outcome="completed",
                            step="thank_you", verified=True, language="th",
                            duration_s=duration)
    assert finer_than_its_period(payload) == []
    if period is not None:
        count = topics.period_payload(event_id=count_event_id("i1", period), instance="i1",
                                      mode="production", period=period, visits=duration)
        assert finer_than_its_period(count) == []


def test_privacy_wire_time_scan_finds_what_schema_1_sent():
    """The scan could fail: a schema-1 visit, a time inside a text, a period not on its start."""
    schema1 = (b'{"schema":1,"seq":418,"epoch":12,"at":"2025-01-31T02:41:07.250Z",'
               b'"clock_synced":true,"mono_s":15873.412}')
    assert finer_than_its_period(schema1) == [
        "key 'at'", "key 'mono_s'", "key 'seq'", "key 'epoch'", "time 2025-01-31T02:41:07.250Z"]
    hidden = b'{"period":"2025-01-31T02:00:00Z","period_s":3600,"note":"2025-01-31T02:41:07Z"}'
    assert finer_than_its_period(hidden) == ["time 2025-01-31T02:41:07Z"]
    misaligned = b'{"period":"2025-01-31T02:41:00Z","period_s":3600}'
    assert finer_than_its_period(misaligned) == ["time 2025-01-31T02:41:00Z"]


def test_privacy_wire_scan_finds_planted_personal_data():
    citizen = PROFILES["citizen-7"]
    looked_for = needles([citizen])
    surname = _parts(citizen.name_th, skip_first=True)[-1]
    clean = topics.ack_payload(["0190b7a4-2f3c-7d1e-9a8b-1c2d3e4f5a6b"])
    planted = {
        "cid": json.dumps({"note": citizen.cid}).encode(),
        "cid-hex": citizen.cid.encode().hex().encode(),
        "name-tis620": b"x" + surname.encode("tis-620") + b"x",
        "name-escaped": json.dumps({"n": surname}).encode(),  # ensure_ascii: \\u0e... escapes
        "name-en": b'{"who":"Number7"}',
        "address": "ตำบลสมมุติ".encode(),
        "long-number": b'{"at":1735689600000}',
    }
    assert scan([("clean", clean)], looked_for) == []
    found = {source for source, _ in scan(list(planted.items()), looked_for)}
    assert found == set(planted)


def _event_ids(db_path):
    with sqlite3.connect(db_path) as db:
        return {row[0] for row in db.execute("SELECT event_id FROM visit")}


@pytest.mark.slow
def test_privacy_wire_scripted_visits_leave_nothing_personal_and_no_moment_anywhere(
        kiosk_world, tmp_path):
    world = kiosk_world
    config = world.write_config(tmp_path / "kiosk.toml", kiosk={"mode": "demo"},
                                telemetry={"period_s": DEMO_MIN_S},
                                flow={"allow_rating_without_card": True})
    script = tmp_path / "visits.script"
    script.write_text(visit_script())
    env = dict(os.environ, SDL_AUDIODRIVER="dummy")  # PCSCLITE_CSOCK_NAME: the session's pcscd
    done = subprocess.run(
        [sys.executable, "-m", "kiosk", "run", "--config", str(config), "--headless",
         "--script", str(script), "--emulator", world.card_stack.control_path,
         "--wait-confirmed", "60"],
        env=env, capture_output=True, text=True, timeout=600)
    record_text("kiosk run --script stdout", done.stdout)
    record_text("kiosk run --script stderr", done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{VISITS} visit(s) recorded, 0 unconfirmed in the outbox, 0 held" in done.stdout

    # Everything arrived: the kiosk's visits are the collector's and the wiretap saw each one.
    kiosk_ids = _event_ids(tmp_path / "data" / DB_NAME)
    assert len(kiosk_ids) == VISITS
    assert {v.event_id for v in world.collected()} == kiosk_ids
    visit_topic = topics.kiosk_topic(KIOSK_ID, "visit")
    captured = world.wiretap.received(f"{topics.ROOT}/#")
    assert {json.loads(m.payload)["event_id"] for m in captured
            if m.topic == visit_topic} == kiosk_ids
    assert any(m.topic == topics.ack_topic(KIOSK_ID) for m in captured)

    # No visit or period message tells more time than its period, and every period's count is
    # the number of its visits that crossed the broker.
    period_topic = topics.kiosk_topic(KIOSK_ID, "period")
    timed = [(m.topic, finding) for m in captured if m.topic in (visit_topic, period_topic)
             for finding in finer_than_its_period(m.payload)]
    assert timed == []
    visits = {obj["event_id"]: (obj["instance"], obj["period"], obj["period_s"])
              for obj in (json.loads(m.payload) for m in captured if m.topic == visit_topic)}
    counts = {(obj["instance"], obj["period"], obj["period_s"]): obj["visits"]
              for obj in (json.loads(m.payload) for m in captured if m.topic == period_topic)}
    assert all(period is not None for _, period, _ in visits.values())
    assert counts == Counter(visits.values())

    items = [(f"{m.topic} payload", m.payload) for m in captured]
    items += [(f"{m.topic} topic", m.topic.encode()) for m in captured]
    world.broker.stop()  # flushes the log
    items.append(("broker log", world.broker.log_path.read_bytes()))
    used = [PROFILES[f"citizen-{n}"] for n in range(VISITS) if with_card(n)]
    assert scan(items, needles(used)) == []

    # --- the kiosk's database: periods only, random row ids -----------------------------------
    tables = table_rows(tmp_path / "data" / DB_NAME)
    period_of = {row["event_id"]: row["period"] for row in tables["visit"]}
    assert all(is_period_start(start, DEMO_MIN_S) for start in period_of.values())
    for table, rows in tables.items():
        for row in rows:
            for text in times_in(row):
                if table == "outbox_message" and text == row["not_before"]:
                    assert text == DUE_AT_ONCE or after_its_period(
                        text, period_of.get(row["event_id"]) or json.loads(row["payload"])[
                            "period"]), (table, row["event_id"], text)
                else:
                    assert is_period_start(text, DEMO_MIN_S), (table, text)
    by_period = {}
    for row in sorted(tables["visit"], key=lambda row: row["id"]):
        by_period.setdefault(row["period"], []).append(row)
    ordered, periods = ordered_periods(by_period)
    assert periods >= 10, f"only {periods} periods of 4 visits or more: the script ran too fast"
    assert ordered <= periods // 3, "the kiosk's row ids follow the order of the visits"

    # --- the broker: published in random order within each period ------------------------------
    sent = {}
    for obj in (json.loads(m.payload) for m in captured if m.topic == visit_topic):
        sent.setdefault(obj["period"], []).append(obj)
    ordered, periods = ordered_periods(sent)
    assert ordered <= periods // 3, "the visits crossed the broker in the order they were made"

    # --- the collector's database: periods only, every count reconciled ------------------------
    fleet = table_rows(world.collector.db_path)
    collected = [row for row in fleet["visit"] if row["kiosk_id"] == KIOSK_ID]
    assert {row["event_id"]: row["period"] for row in collected} == period_of
    assert all(times_in(row) == [row["period"]] for row in collected)
    stored_counts = {(row["instance"], row["period"], row["period_s"]): row["visits"]
                     for row in fleet["period_count"] if row["kiosk_id"] == KIOSK_ID}
    assert stored_counts == counts
    wait_until(lambda: world.collector.db.period_verdicts(KIOSK_ID) == {"ok": len(counts)},
               "every period reconciled")
    assert world.collector.db.alarms(KIOSK_ID) == []
