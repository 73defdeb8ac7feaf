"""The collector by periods: visits filed under their period, period counts reconciled with them,
schema-1 visits and an old database coarsened, and no time finer than a period for any visit.

Kiosk messages are built with the contract functions (``kiosk.visit.payload``,
``topics.period_payload``) and published with a plain MQTT client.
"""

import argparse
import datetime as dt
import json
import re
import sqlite3

import pytest

from kiosk.fleet import collector as collect_verb
from kiosk.fleet.collector import Collector
from kiosk.fleet.db import open_database, utc_text
from kiosk.fleet.status import status_lines
from kiosk.period import Period, is_period_start, local_day
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fleet.test_collector import (
    INSTANCE,
    KIOSK,
    PERIOD,
    acked_ids,
    legacy_visit,
    period_count,
    visit,
    wait_for_ack,
)

GRACE_S = 720
#: When PERIOD's count arrives: five minutes after the period ended.
ARRIVED = PERIOD.end + dt.timedelta(minutes=5)
NEXT = Period.of(PERIOD.end, 3600)
#: Anything that looks like a time to the second or finer.
TIME_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def parse(kind, payload, kiosk_id=KIOSK):
    return topics.parse_kiosk_message(topics.kiosk_topic(kiosk_id, kind), payload)


@pytest.fixture
def db(fleet_url):
    opened = open_database(fleet_url)
    yield opened
    opened.close()


def store(db, *, counts=(), visits=(), at=ARRIVED):
    """Store period messages and visits as one collector batch arriving ``at``."""
    with db.database.atomic():
        for payload in counts:
            db.add_period(parse("period", payload), utc_text(at))
        db.add_visits([parse("visit", payload) for payload in visits], utc_text(at))


def verdict_of(db, period=PERIOD):
    (row,) = [p for p in db.PeriodCount.select() if p.period == period.text]
    return row.reconciled


# --- reconciliation -------------------------------------------------------------------------


def test_periods_count_over_raises_the_alarm_at_once(db):
    store(db, counts=[period_count(1)], visits=[visit("a"), visit("b")])

    [verdict] = db.reconcile(ARRIVED, GRACE_S)
    assert (verdict.after, verdict.expected, verdict.stored) == ("over", 1, 2)
    [alarm] = db.alarms(KIOSK)
    assert alarm.kind == "period_count_over" and alarm.count == 1
    assert PERIOD.text in alarm.detail and "counted 1" in alarm.detail
    assert "2 are stored" in alarm.detail

    assert db.reconcile(ARRIVED + dt.timedelta(hours=1), GRACE_S) == []
    assert db.alarms(KIOSK)[0].count == 1  # an alarmed period does not bump it on every run


def test_periods_count_short_raises_the_alarm_only_after_the_grace(db):
    store(db, counts=[period_count(3)], visits=[visit("a"), visit("b")])

    assert db.reconcile(ARRIVED + dt.timedelta(seconds=GRACE_S - 1), GRACE_S) == []
    assert verdict_of(db) == "open" and db.alarms(KIOSK) == []

    [verdict] = db.reconcile(ARRIVED + dt.timedelta(seconds=GRACE_S + 1), GRACE_S)
    assert (verdict.before, verdict.after) == ("open", "short")
    [alarm] = db.alarms(KIOSK)
    assert alarm.kind == "period_count_short"
    assert PERIOD.text in alarm.detail and "counted 3" in alarm.detail
    assert "2 are stored" in alarm.detail

    assert db.reconcile(ARRIVED + dt.timedelta(hours=2), GRACE_S) == []
    assert db.alarms(KIOSK)[0].count == 1


def test_periods_open_count_is_looked_at_again_when_its_visit_comes(db):
    """An open count is not re-counted at every run, but a visit stored for it, or its grace
    passing, has it looked at again."""
    store(db, counts=[period_count(2), period_count(2, NEXT)], visits=[visit("a")])
    assert db.reconcile(ARRIVED, GRACE_S) == []
    assert not db.PeriodCount.select().where(db.PeriodCount.is_due).exists()

    store(db, visits=[visit("b")], at=ARRIVED + dt.timedelta(minutes=1))
    [verdict] = db.reconcile(ARRIVED + dt.timedelta(minutes=1), GRACE_S)
    assert (verdict.period, verdict.before, verdict.after) == (PERIOD.text, "open", "ok")
    [verdict] = db.reconcile(ARRIVED + dt.timedelta(seconds=GRACE_S + 1), GRACE_S)
    assert (verdict.period, verdict.after, verdict.stored) == (NEXT.text, "short", 0)


def test_periods_count_matching_raises_no_alarm(db):
    day = local_day(ARRIVED)
    store(db, counts=[period_count(2), period_count(1, day), period_count(0, NEXT)],
          visits=[visit("a"), visit("b"), visit("in-the-day", period=day),
                  # Filed under the same day by arrival: not one the kiosk counted.
                  visit("undated", period=None),
                  # Another instance's visit in the same hour counts for that instance only.
                  visit("other-card", instance="other-instance")])

    verdicts = db.reconcile(ARRIVED + dt.timedelta(days=1), GRACE_S)
    assert sorted((v.period, v.expected, v.stored, v.after) for v in verdicts) == sorted([
        (PERIOD.text, 2, 2, "ok"), (day.text, 1, 1, "ok"), (NEXT.text, 0, 0, "ok")])
    assert db.alarms() == []
    assert db.period_verdicts(KIOSK) == {"ok": 3}


def test_periods_hour_of_the_upgrade_counts_only_what_the_kiosk_counted(db):
    """Upgraded mid-hour: its schema-1 visits of that hour went out as they were made (and are
    coarsened into the hour here), its schema-2 ones were held and counted; only those count."""
    store(db, counts=[period_count(1)],
          visits=[legacy_visit("before-1"), legacy_visit("before-2"), visit("after")])
    [verdict] = db.reconcile(ARRIVED + dt.timedelta(seconds=GRACE_S + 1), GRACE_S)
    assert (verdict.expected, verdict.stored, verdict.after) == (1, 1, "ok")
    assert {v.period for v in db.visits()} == {PERIOD.text}
    assert db.alarms() == []


def test_periods_short_period_healed_by_a_late_visit(db):
    store(db, counts=[period_count(2)], visits=[visit("a")])
    late = ARRIVED + dt.timedelta(seconds=GRACE_S + 1)
    db.reconcile(late, GRACE_S)
    assert db.period_verdicts(KIOSK) == {"short": 1}
    assert "periods short 1" in status_lines(db)[0]

    store(db, visits=[visit("b")], at=late + dt.timedelta(minutes=30))
    [verdict] = db.reconcile(late + dt.timedelta(minutes=30), GRACE_S)
    assert (verdict.before, verdict.after) == ("short", "ok")
    assert db.period_verdicts(KIOSK) == {"ok": 1}
    # The alarm stays as the record that the period was short for a while; the status line
    # drops the short period.
    [alarm] = db.alarms(KIOSK)
    assert (alarm.kind, alarm.count) == ("period_count_short", 1)
    line = status_lines(db)[0]
    assert "periods short" not in line and "alarms 1" in line


def test_periods_matched_period_turns_over_when_a_visit_comes_after_its_count(db):
    store(db, counts=[period_count(1)], visits=[visit("a")])
    [verdict] = db.reconcile(ARRIVED, GRACE_S)
    assert verdict.after == "ok"

    store(db, visits=[visit("a"), visit("forged")], at=ARRIVED + dt.timedelta(hours=1))
    [verdict] = db.reconcile(ARRIVED + dt.timedelta(hours=1), GRACE_S)
    assert (verdict.before, verdict.after, verdict.stored) == ("ok", "over", 2)
    assert [a.kind for a in db.alarms(KIOSK)] == ["period_count_over"]
    assert "periods over 1" in status_lines(db)[0]


def test_periods_count_repeated_is_stored_once_and_replaces_nothing(db):
    with db.database.atomic():
        assert db.add_period(parse("period", period_count(2)), utc_text(ARRIVED)) is True
        assert db.add_period(parse("period", period_count(5)),
                             utc_text(ARRIVED + dt.timedelta(hours=1))) is False
    [row] = db.PeriodCount.select()
    assert (row.visits, row.arrived) == (2, utc_text(ARRIVED))


def test_periods_grace_is_two_resends_and_the_longest_jitter_unless_told():
    parser = argparse.ArgumentParser()
    collect_verb.add_arguments(parser)
    assert parser.parse_args([]).reconcile_grace_s == 2 * 60 + 600
    assert parser.parse_args(["--reconcile-grace-s", "30"]).reconcile_grace_s == 30


# --- filing ---------------------------------------------------------------------------------


def test_periods_undated_visit_is_filed_under_the_local_day_it_arrived(db):
    # 18:30 UTC is 01:30 the next morning in Bangkok: the local day, not the UTC one.
    arrived = dt.datetime(2025, 1, 31, 18, 30, tzinfo=dt.UTC)
    store(db, visits=[visit("undated", period=None)], at=arrived)
    [row] = db.visits()
    assert (row.period, row.period_s, row.clock_synced) == ("2025-01-31T17:00:00Z", 86400, False)


def test_periods_old_layout_is_rebuilt_coarsened_and_wiped(tmp_path):
    path = tmp_path / "fleet.sqlite3"
    with sqlite3.connect(path) as old:  # the visit table as the schema-1 collector made it
        old.executescript(SCHEMA1_FLEET)
        old.executemany(f"INSERT INTO visit VALUES ({', '.join('?' * 24)})", SCHEMA1_ROWS)
    old.close()
    before = path.read_bytes()
    assert b"09:41:07.250" in before and b"2025-01-31T18:02:13.871Z" in before

    db = open_database(path)
    try:
        rows = {v.event_id: v for v in db.visits()}
        assert {e: (v.period, v.period_s, v.clock_synced, v.duration_s, v.instance, v.schema)
                for e, v in rows.items()} == {
            "synced": ("2025-01-31T09:00:00Z", 3600, True, 30, INSTANCE, 1),
            # Unsynced: filed under the local day it reached the old collector (1 February).
            "unsynced": ("2025-01-31T17:00:00Z", 86400, False, 12, INSTANCE, 1)}
        assert rows["synced"].rating == 4 and rows["unsynced"].gender == "female"
        columns = {c.name for c in db.database.get_columns("visit")}
        assert not columns & {"seq", "epoch", "at", "mono_s", "received"}
        message = parse("visit", visit("new"))  # the rebuilt table takes new visits
        with db.database.atomic():
            assert db.add_visits([message], utc_text(ARRIVED)) == 1
    finally:
        db.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(path.name))
    for old_time in (b"09:41:07.250", b"09:41:09.002", b"1970-01-01T00:00:41.500Z",
                     b"2025-01-31T18:02:13.871Z"):
        assert old_time not in on_disk


def test_periods_old_layout_rebuilt_in_no_order_of_the_visits(tmp_path):
    """The old table's rows came in sequence order; copied in that order, the new table's
    hidden row ids would keep it."""
    path = tmp_path / "fleet.sqlite3"
    rows = [(f"v{seq:03d}", KIOSK, INSTANCE, seq, 2, 0, "completed", "thank_you", 1, 0,
             "id_card", "none", 4, None, "th", 30.0, None, None, "2025-01-31T09:41:07.250Z", 1,
             812.5, 1, "2025-01-31T09:41:09.002Z", None) for seq in range(60)]
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA1_FLEET)
        old.executemany(f"INSERT INTO visit VALUES ({', '.join('?' * 24)})", rows)
    old.close()
    open_database(path).close()
    with sqlite3.connect(path) as rebuilt:
        order = [int(event_id[1:]) for (event_id,) in
                 rebuilt.execute("SELECT event_id FROM visit ORDER BY rowid")]
    rebuilt.close()
    assert sorted(order) == list(range(60))
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    assert 0.25 < sum(a < b for a, b in pairs) / len(pairs) < 0.75  # 1.0 in sequence order


SCHEMA1_FLEET = """
CREATE TABLE "kiosk" ("kiosk_id" VARCHAR(255) NOT NULL PRIMARY KEY, "state" VARCHAR(255),
  "instance" VARCHAR(255), "epoch" INTEGER, "version" VARCHAR(255), "mode" VARCHAR(255),
  "last_seen" VARCHAR(255), "state_changed" VARCHAR(255), "outbox_depth" INTEGER,
  "dead_letters" INTEGER, "config_version" INTEGER, "health" TEXT,
  "stale_statuses" INTEGER NOT NULL);
CREATE TABLE "visit" ("event_id" VARCHAR(255) NOT NULL PRIMARY KEY,
  "kiosk_id" VARCHAR(255) NOT NULL, "instance" VARCHAR(255), "seq" INTEGER NOT NULL,
  "epoch" INTEGER NOT NULL, "is_demo" INTEGER NOT NULL, "outcome" VARCHAR(255) NOT NULL,
  "step" VARCHAR(255) NOT NULL, "verified" INTEGER NOT NULL, "expired" INTEGER,
  "service_id" VARCHAR(255), "copy_answer" VARCHAR(255), "rating" INTEGER,
  "reason" VARCHAR(255), "language" VARCHAR(255) NOT NULL, "duration_s" REAL NOT NULL,
  "age_band" VARCHAR(255), "gender" VARCHAR(255), "at" VARCHAR(255) NOT NULL,
  "clock_synced" INTEGER NOT NULL, "mono_s" REAL NOT NULL, "schema" INTEGER NOT NULL,
  "received" VARCHAR(255) NOT NULL, "note" TEXT);
CREATE INDEX "visit_kiosk_id" ON "visit" ("kiosk_id");
CREATE INDEX "visit_is_demo" ON "visit" ("is_demo");
"""
# event_id, kiosk_id, instance, seq, epoch, is_demo, outcome, step, verified, expired,
# service_id, copy_answer, rating, reason, language, duration_s, age_band, gender, at,
# clock_synced, mono_s, schema, received, note
SCHEMA1_ROWS = [
    ("synced", KIOSK, INSTANCE, 7, 2, 0, "completed", "thank_you", 1, 0, "id_card", "none", 4,
     None, "th", 30.2, "30-39", "male", "2025-01-31T09:41:07.250Z", 1, 812.5, 1,
     "2025-01-31T09:41:09.002Z", None),
    ("unsynced", KIOSK, INSTANCE, 8, 2, 0, "abandoned", "rating", 0, None, None, None, None,
     None, "en", 11.6, None, "female", "1970-01-01T00:00:41.500Z", 0, 41.5, 1,
     "2025-01-31T18:02:13.871Z", None),
]


# --- end to end through the broker ----------------------------------------------------------


@pytest.fixture
def kiosk(broker, mqtt_client):
    client = mqtt_client(KIOSK, broker.add_kiosk(KIOSK))
    client.subscribe(topics.ack_topic(KIOSK))
    return client


def publish(client, kind, payload):
    client.publish(topics.kiosk_topic(KIOSK, kind), payload)


def test_periods_message_is_acked_by_its_event_id_and_stored_once_when_delivered_twice(
        collector, kiosk):
    event_id = json.loads(period_count(2))["event_id"]
    publish(kiosk, "period", period_count(2))
    wait_for_ack(kiosk, event_id)
    publish(kiosk, "period", period_count(2))  # the ack was "lost": the kiosk resends
    wait_until(lambda: acked_ids(kiosk).count(event_id) == 2, "the second ack")

    [row] = collector.db.PeriodCount.select()
    assert (row.kiosk_id, row.instance, row.period, row.period_s, row.visits) == (
        KIOSK, INSTANCE, PERIOD.text, 3600, 2)
    assert (collector.counters.periods, collector.counters.periods_duplicate) == (1, 1)


def test_periods_schema1_visit_is_coarsened_on_arrival(collector, kiosk, fleet_bytes):
    before = local_day(dt.datetime.now(dt.UTC))
    publish(kiosk, "visit", legacy_visit("old-synced"))
    publish(kiosk, "visit", legacy_visit("old-unsynced", at="1970-01-01T00:01:23.456Z",
                                         clock_synced=False))
    wait_until(lambda: {"old-synced", "old-unsynced"} <= set(acked_ids(kiosk)), "both acks")
    arrival_days = {before.text, local_day(dt.datetime.now(dt.UTC)).text}  # across midnight

    rows = {v.event_id: v for v in collector.db.visits()}
    assert (rows["old-synced"].period, rows["old-synced"].period_s) == (PERIOD.text, 3600)
    unsynced = rows["old-unsynced"]
    assert unsynced.period in arrival_days
    assert (unsynced.period_s, unsynced.clock_synced) == (86400, False)
    assert {v.duration_s for v in rows.values()} == {30}
    assert all(v.schema == 1 for v in rows.values())
    for row in rows.values():
        assert not {"at", "seq", "epoch", "mono_s", "received"} & set(row.__data__)
    on_disk = fleet_bytes()
    assert b"09:41:07" not in on_disk and b"00:01:23" not in on_disk
    assert b"5123.456" not in on_disk


def test_periods_collector_reconciles_in_its_worker(broker, kiosk, fleet_url):
    user, password = broker.collector_credentials
    with Collector(fleet_url, "127.0.0.1", broker.port, user, password,
                   batch_s=0.05, reconcile_grace_s=0.3, reconcile_every_s=0.05) as collector:
        assert collector.wait_for_connected(10)
        publish(kiosk, "period", period_count(2))  # one of its two visits never comes
        publish(kiosk, "visit", visit("short-1"))
        publish(kiosk, "period", period_count(1, NEXT))  # one more than it counted
        publish(kiosk, "visit", visit("over-1", period=NEXT))
        publish(kiosk, "visit", visit("over-2", period=NEXT))
        wait_until(lambda: {a.kind for a in collector.db.alarms(KIOSK)} == {
            "period_count_short", "period_count_over"}, "both alarms")
        # The alarms commit with the verdicts; the worker counts them just after the commit.
        wait_until(lambda: collector.counters.periods_short + collector.counters.periods_over
                   >= 2, "both verdicts counted")
        assert (collector.counters.periods_short, collector.counters.periods_over) == (1, 1)

        publish(kiosk, "visit", visit("short-2"))  # the missing visit, late
        wait_until(lambda: collector.counters.periods_healed == 1, "the short period healed")
        assert collector.db.period_verdicts(KIOSK) == {"ok": 1, "over": 1}


def rows_of(database, table):
    """Every row of ``table`` as a dict, read with plain SQL (not through the models)."""
    cursor = database.execute_sql(f'SELECT * FROM "{table}"')
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_periods_collector_db_holds_no_time_finer_than_a_period(collector, kiosk, fleet_url):
    demo_period = Period.of(dt.datetime(2025, 1, 31, 9, 30, 17, tzinfo=dt.UTC), 5)
    messages = [("visit", visit("hourly")), ("visit", visit("undated", period=None)),
                ("visit", visit("demo", mode="demo", period=demo_period)),
                ("visit", legacy_visit("schema-1")),
                ("visit", legacy_visit("schema-1-unsynced", clock_synced=False)),
                ("period", period_count(1)),
                ("period", period_count(1, demo_period, mode="demo"))]
    for kind, payload in messages:
        publish(kiosk, kind, payload)
    wait_until(lambda: len(set(acked_ids(kiosk))) == len(messages), "every ack")

    raw = open_database(fleet_url)
    try:
        columns = {column.name for column in raw.database.get_columns("visit")}
        assert not columns & {"received", "at", "seq", "epoch", "mono_s"}
        visits, counts = rows_of(raw.database, "visit"), rows_of(raw.database, "period_count")
    finally:
        raw.close()
    assert len(visits) == 5 and len(counts) == 2
    for row in visits:
        assert is_period_start(row["period"], row["period_s"])
        timed = [key for key in row if TIME_TEXT.search(str(row[key]))]
        assert timed == ["period"], dict(row)
    for row in counts:
        assert is_period_start(row["period"], row["period_s"])
        # ``arrived`` is the collector's clock for the whole period: it times no visit.
        timed = [key for key in row if TIME_TEXT.search(str(row[key]))]
        assert sorted(timed) == ["arrived", "period"], dict(row)
