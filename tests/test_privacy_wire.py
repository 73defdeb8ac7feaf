"""Issues 4 and 11: what crosses the broker holds no citizen's ID, name or address, nor any
13-digit number, and no visit carries a time finer than its period.

A hundred scripted visits with a hundred different emulated citizens run through ``kiosk run
--script`` (the real card stack, a headless kiosk, the real broker and collector); a read-only
wiretap keeps every message that crossed the broker, and the scan looks for every form the
cards' personal data could take on the wire. The kiosk runs in demo mode for its 5-second
periods, so its visits are released within seconds rather than after the hour; every visit and
period message is then checked for a time finer than its period, and each period's count
against the visits that crossed the broker.
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
from tests.fixtures.kiosk_world import KIOSK_ID
from tests.fixtures.privacy import record_text

VISITS = 100
DIGIT_RUN = re.compile(rb"\d{13}")
#: A time written the way the wire writes times, to the second or finer.
WIRE_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
#: What schema 1 timed and ordered each visit by, and what the stores once kept.
TIMING_KEYS = ("at", "mono_s", "seq", "epoch", "recorded_at", "received")

# The quickest complete visit: the citizen answers at once, taps Done and takes the card.
VISIT_SCRIPT = """\
insert citizen-{n}
wait choose_service
service id-card
wait copy_check
copy none
wait rating
rating 5
wait thank_you
ok
wait take_card
remove
wait idle
"""


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
def test_privacy_wire_hundred_scripted_visits_leave_nothing_personal_on_the_wire(
        kiosk_world, tmp_path):
    world = kiosk_world
    config = world.write_config(tmp_path / "kiosk.toml", kiosk={"mode": "demo"},
                                telemetry={"period_s": DEMO_MIN_S})
    script = tmp_path / "visits.script"
    script.write_text(VISIT_SCRIPT)
    env = dict(os.environ, SDL_AUDIODRIVER="dummy")  # PCSCLITE_CSOCK_NAME: the session's pcscd
    done = subprocess.run(
        [sys.executable, "-m", "kiosk", "run", "--config", str(config), "--headless",
         "--script", str(script), "--repeat", str(VISITS),
         "--emulator", world.card_stack.control_path, "--wait-confirmed", "60"],
        env=env, capture_output=True, text=True, timeout=400)
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
    used = [PROFILES[f"citizen-{n}"] for n in range(VISITS)]
    assert scan(items, needles(used)) == []
