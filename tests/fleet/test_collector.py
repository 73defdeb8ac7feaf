"""The collector against a real Mosquitto, each test on a real SQLite file and on a real
PostgreSQL database (the ``fleet_store`` fixture)."""

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import time
import uuid

import peewee
import pytest
from paho.mqtt import client as mqtt

from kiosk import clock
from kiosk import visit as schema
from kiosk.cli import run_verbs
from kiosk.fleet import migrations
from kiosk.fleet.cli import VERBS
from kiosk.fleet.collector import Collector
from kiosk.fleet.db import open_database
from kiosk.fleet.status import add_arguments as status_add_arguments
from kiosk.fleet.status import main as status_main
from kiosk.fleet.status import status_lines
from kiosk.period import Period, count_event_id
from kiosk.telemetry import topics
from tests.fixtures.broker import RecordingClient, wait_until
from tests.fixtures.poison import POISON

KIOSK = "bkk-001"
INSTANCE = "3f2c9a7e5b1d4e6f8a0b2c4d6e8f0a1b"
STAMP = clock.stamp(dt.datetime(2025, 1, 31, 9, 30, tzinfo=dt.UTC), True, 5000.0)
#: The hour of STAMP: 16:00-17:00 local (Asia/Bangkok) on 31 January 2025.
PERIOD = Period.of(dt.datetime(2025, 1, 31, 9, 30, tzinfo=dt.UTC), 3600)


def visit(event_id=None, **overrides):
    """A schema-2 visit as a kiosk sends it, in PERIOD unless ``period`` says otherwise."""
    fields = dict(
        event_id=event_id or str(uuid.uuid4()), instance=INSTANCE, mode="production",
        period=PERIOD, outcome="completed", step="thank_you", verified=True, expired=False,
        service_id="id_card", copy_answer="none", rating=5, reason=None, language="th",
        duration_s=30,
    )
    fields.update(overrides)
    return schema.payload(**fields)


def legacy_visit(event_id, *, at="2025-01-31T09:41:07.250Z", clock_synced=True, **overrides):
    """A schema-1 visit, as a kiosk not yet upgraded sends it: timed to the millisecond, with its
    number, connect epoch and monotonic time. ``overrides`` replace or add fields."""
    obj = {**json.loads(visit(event_id)), "schema": 1, "seq": 41, "epoch": 3, "at": at,
           "clock_synced": clock_synced, "mono_s": 5123.456, "duration_s": 30.4}
    del obj["period"], obj["period_s"]
    obj.update(overrides)
    return json.dumps(obj).encode()


def period_count(visits, period=PERIOD, *, instance=INSTANCE, mode="production"):
    """The ``period`` message a kiosk queues when ``period`` closes with ``visits`` in it."""
    return topics.period_payload(event_id=count_event_id(instance, period), instance=instance,
                                 mode=mode, period=period, visits=visits)


#: Collector clock readings (after PERIOD ended, as a period's visits arrive).
T1, T2 = "2025-01-31T10:04:00.125Z", "2025-01-31T10:06:30.500Z"


def status(state, epoch, instance=INSTANCE):
    return topics.status_payload(state, epoch, "0.1.0", STAMP, instance=instance)


@pytest.fixture
def kiosk(broker, mqtt_client):
    """A kiosk connection already subscribed to its acks."""
    client = mqtt_client(KIOSK, broker.add_kiosk(KIOSK))
    client.subscribe(topics.ack_topic(KIOSK))
    return client


def acked_ids(client):
    messages = client.received(topics.ack_topic(KIOSK))
    return [i for m in messages for i in topics.parse_ack(m.payload)]


def wait_for_ack(client, event_id, timeout=10.0):
    return client.wait_for_message(topics.ack_topic(KIOSK),
                                   lambda m: event_id in topics.parse_ack(m.payload), timeout)


def test_collector_stores_a_visit_once_and_acks_every_delivery(collector, kiosk):
    payload = visit("visit-1")
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), payload)
    wait_for_ack(kiosk, "visit-1")
    assert [v.event_id for v in collector.db.visits()] == ["visit-1"]

    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), payload)  # the ack was "lost": resend
    wait_until(lambda: acked_ids(kiosk).count("visit-1") == 2, "the second ack")
    assert [v.event_id for v in collector.db.visits()] == ["visit-1"]
    assert (collector.counters.visits_stored, collector.counters.visits_duplicate) == (1, 1)


def test_collector_acks_only_after_the_visit_is_committed(collector, kiosk, fleet_url):
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("visit-2", rating=3))
    wait_for_ack(kiosk, "visit-2")
    # A separate connection sees the row the moment the ack is out.
    reader = open_database(fleet_url)
    try:
        assert [(v.event_id, v.rating) for v in reader.visits()] == [("visit-2", 3)]
    finally:
        reader.close()


def test_collector_keeps_demo_visits_out_of_statistics(collector, kiosk):
    real = [f"real-{n}" for n in range(5)]  # five: fewer would all show "<5"
    for event_id in real:
        kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit(event_id, rating=4))
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("demo", rating=1, mode="demo"))
    wait_until(lambda: {*real, "demo"} <= set(acked_ids(kiosk)), "every ack")

    stats = collector.db.statistics()
    assert stats["visits"] == 5 and stats["ratings"][4] == 5 and stats["ratings"][1] == "<5"
    assert stats["mean_rating"] == 4
    assert {v.event_id: v.is_demo for v in collector.db.visits()} == {
        **dict.fromkeys(real, False), "demo": True}


def test_collector_statistics_show_no_count_under_five_nor_one_a_total_gives_away(collector,
                                                                                  kiosk):
    answers = ([(1, "none")] * 5 + [(2, "none")] * 5 + [(3, "id_card")] + [(4, "none")] * 5
               + [(5, "none")] * 6)
    for n, (rating, copy) in enumerate(answers):
        kiosk.publish(topics.kiosk_topic(KIOSK, "visit"),
                      visit(f"v-{n}", rating=rating, copy_answer=copy))
    wait_until(lambda: len(acked_ids(kiosk)) == len(answers), "every ack")

    stats = collector.db.statistics()
    assert (stats["visits"], stats["rated"]) == (22, 22)
    # The lone rating of 3 is hidden, and so is a second one: the total less the visible
    # ratings would otherwise give it away.
    hidden = [rating for rating, count in stats["ratings"].items() if count == "<5"]
    assert 3 in hidden and len(hidden) == 2 and stats["ratings"][5] == 6
    assert stats["copy_answers"] == {"none": 21, "id_card": "<5", "house_registration": "<5",
                                     "both": "<5", "not_sure": "<5"}
    assert stats["mean_rating"] is None  # it would solve the hidden ratings


def test_collector_counts_malformed_messages_without_logging_them(collector, kiosk, caplog):
    caplog.set_level(logging.INFO, logger="kiosk.fleet.collector")
    personal = json.loads(visit("bad-1"))
    personal["service_id"] = "สมชาย ใจดี"  # a name where a service id belongs
    broken = [b"not json", json.dumps(personal, ensure_ascii=False).encode(),
              json.dumps({**json.loads(visit("bad-2")), "rating": 9}).encode(),
              json.dumps({**json.loads(visit("bad-3")), "note": "3-1012-00345-67-8"}).encode()]
    for payload in broken:
        kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), payload)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("good"))

    wait_for_ack(kiosk, "good")
    assert collector.counters.malformed == 4
    assert [v.event_id for v in collector.db.visits()] == ["good"]
    assert "สมชาย" not in caplog.text and "00345" not in caplog.text
    assert "field 'service_id'" in caplog.text and "field 'rating'" in caplog.text


def test_collector_ignores_certificate_requests_and_deleted_retained_messages(collector, kiosk):
    """A csr is the signing service's (kiosk-fleet ca); an empty payload deletes a retained
    message (kiosk-fleet revoke deletes a kiosk's): neither is stored nor malformed."""
    csr = ("-----BEGIN CERTIFICATE REQUEST-----\nMIIBCZCBsAIBADAS\n"
           "-----END CERTIFICATE REQUEST-----\n")
    kiosk.publish(topics.kiosk_topic(KIOSK, "csr"), topics.csr_payload(csr))
    kiosk.publish(topics.kiosk_topic(KIOSK, "status"), b"", retain=True)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("after"))

    wait_for_ack(kiosk, "after")
    assert collector.counters.ignored == 2
    assert collector.counters.malformed == 0 and collector.db.malformed() == {}
    assert collector.counters.store_failures == 0 and collector.db.replies(None) == []
    assert [v.event_id for v in collector.db.visits()] == ["after"]


def test_collector_ignores_a_stale_will(collector, kiosk):
    kiosk.publish(topics.kiosk_topic(KIOSK, "status"), status("online", 6))
    kiosk.publish(topics.kiosk_topic(KIOSK, "status"), status("lost", 5))  # previous connection
    wait_until(lambda: collector.counters.stale_statuses == 1, "the stale will")
    assert [(k.state, k.epoch) for k in collector.db.kiosks()] == [("online", 6)]

    kiosk.publish(topics.kiosk_topic(KIOSK, "status"), status("lost", 6))
    wait_until(lambda: collector.db.kiosks()[0].state == "lost", "the current will")


def test_collector_accepts_previous_schema_and_ignores_unknown_fields(collector, kiosk):
    """Every schema still in the field is read (the collector is upgraded before its kiosks)."""
    oldest = {**json.loads(legacy_visit("oldest")), "future_field": [1, 2]}
    older = {**json.loads(visit("older")), "schema": topics.SCHEMA - 1}
    newer = {**json.loads(visit("newer")), "schema": topics.SCHEMA + 1}
    for message in (newer, oldest, older):
        kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), json.dumps(message).encode())

    wait_for_ack(kiosk, "older")
    assert sorted((v.event_id, v.schema) for v in collector.db.visits()) == [
        ("older", topics.SCHEMA - 1), ("oldest", 1)]
    assert collector.counters.malformed == 1
    assert "newer" not in acked_ids(kiosk)


def test_collector_takes_the_kiosk_id_from_the_topic_only(collector, kiosk, broker, mqtt_client):
    other = mqtt_client("other-kiosk", broker.add_kiosk("other-kiosk"))
    other.subscribe(topics.ack_topic("other-kiosk"))
    payload = {**json.loads(visit("claimed")), "kiosk_id": KIOSK}
    other.publish(topics.kiosk_topic("other-kiosk", "visit"), json.dumps(payload).encode())
    other.wait_for_message(topics.ack_topic("other-kiosk"))
    assert [(v.event_id, v.kiosk_id) for v in collector.db.visits()] == [
        ("claimed", "other-kiosk")]
    assert acked_ids(kiosk) == []


def test_collector_status_lines_show_state_outbox_and_version(collector, kiosk):
    kiosk.publish(topics.kiosk_topic(KIOSK, "status"), status("online", 2))
    kiosk.publish(topics.kiosk_topic(KIOSK, "health"), topics.health_payload(
        mode="production", uptime_s=60, load_1m=0.5, disk_free_mb=900, mem_free_mb=200,
        outbox_depth=17, outbox_oldest_s=42.0, dead_letters=0, reader="ready",
        card_reads_ok=None, config_version=3, version="0.2.0", stamp=STAMP), qos=1)
    wait_until(lambda: collector.counters.health_reports == 1, "the health report")

    (line,) = status_lines(collector.db)
    assert line.split()[:2] == [KIOSK, "online"]
    assert "outbox 17" in line and "version 0.2.0" in line


def test_collector_session_queues_visits_while_it_is_down(broker, kiosk, fleet_url):
    user, password = broker.collector_credentials
    db_path = fleet_url
    with Collector(db_path, "127.0.0.1", broker.port, user, password, batch_s=0.05) as first:
        assert first.wait_for_connected(10)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("while-down"))

    with Collector(db_path, "127.0.0.1", broker.port, user, password, batch_s=0.05) as second:
        wait_for_ack(kiosk, "while-down")
        assert [v.event_id for v in second.db.visits()] == ["while-down"]


def test_collector_marks_a_vanished_kiosk_lost_through_its_will(collector, broker):
    password = broker.add_kiosk(KIOSK)
    will = (topics.kiosk_topic(KIOSK, "status"), status("lost", 3), 1, True)
    kiosk = RecordingClient("127.0.0.1", broker.port, KIOSK, password, will=will)
    try:
        assert not kiosk.wait_for_connack().is_failure
        kiosk.publish(topics.kiosk_topic(KIOSK, "status"), status("online", 3), retain=True)
        wait_until(lambda: collector.db.kiosks() and collector.db.kiosks()[0].state == "online",
                   "online")
        # Power cut: the socket closes without a DISCONNECT, so the broker sends the will.
        kiosk.client.loop_stop()
        kiosk.client.socket().close()
        wait_until(lambda: collector.db.kiosks()[0].state == "lost", "the will")
        assert collector.db.kiosks()[0].epoch == 3
    finally:
        kiosk.client.loop_stop()


def test_collector_db_stores_a_batch_once_with_duplicates_inside_and_across(fleet_url):
    db = open_database(fleet_url)
    try:
        def parsed(event_id):
            return topics.parse_kiosk_message(topics.kiosk_topic(KIOSK, "visit"),
                                              visit(event_id))

        with db.database.atomic():
            assert db.add_visits([parsed("a"), parsed("b"), parsed("a")], T1) == 2
        batch = [parsed(f"v-{n}") for n in range(250)] + [parsed("b")]
        with db.database.atomic():
            assert db.add_visits(batch, T2) == 250
        assert len(db.visits()) == 252
        assert db.kiosks()[0].last_seen == T2
    finally:
        db.close()


def test_collector_db_stores_every_field_of_a_visit_in_its_column(fleet_url):
    db = open_database(fleet_url)
    try:
        message = topics.parse_kiosk_message(
            topics.kiosk_topic(KIOSK, "visit"),
            visit("every-field", mode="demo", outcome="abandoned", step="rating",
                  expired=None, service_id="tax", copy_answer="both", rating=None,
                  reason="staff", language="en", duration_s=12, age_band="60+",
                  gender="female"))
        with db.database.atomic():
            assert db.add_visits([message], T1) == 1
        [row] = db.visits()
        fields = dataclasses.asdict(message)
        assert fields.pop("mode") == "demo" and row.is_demo is True
        assert {name: getattr(row, name) for name in fields} == fields
        assert (row.period, row.period_s) == (PERIOD.text, 3600)
        # Nothing beside the message's fields: no arrival time, sequence or epoch of the visit.
        assert set(row.__data__) == set(fields) | {"is_demo"}
    finally:
        db.close()


def test_collector_db_refuses_a_batch_with_a_broken_visit_rather_than_skip_it(fleet_url):
    """Skipping it quietly would ack a visit that was never stored; refused, nothing is acked
    and the kiosk resends."""
    db = open_database(fleet_url)
    try:
        good = topics.parse_kiosk_message(topics.kiosk_topic(KIOSK, "visit"), visit("good"))
        broken = dataclasses.replace(good, event_id="broken", language=None)
        with pytest.raises(peewee.IntegrityError), db.database.atomic():
            db.add_visits([good, broken], T1)
        assert db.visits() == []
    finally:
        db.close()


# --- hostile input ------------------------------------------------------------------------


def test_collector_stores_and_acks_a_valid_visit_batched_with_another_kiosks_poison(
        start_collector, kiosk, broker, mqtt_client):
    start_collector().stop()  # the session now exists: both messages queue for one batch
    hostile = mqtt_client("kiosk-b", broker.add_kiosk("kiosk-b"))
    hostile.publish(topics.kiosk_topic("kiosk-b", "visit"), POISON["int too large for a float"])
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("next-to-poison"))

    collector = start_collector()
    wait_for_ack(kiosk, "next-to-poison")
    assert [v.event_id for v in collector.db.visits()] == ["next-to-poison"]
    assert collector.counters.malformed == 1

    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("after-restart"))
    restarted = start_collector()  # released at the broker: the poison never comes back
    wait_for_ack(kiosk, "after-restart")
    assert restarted.counters.malformed == 0


def test_collector_restarted_with_poison_queued_drains_it_at_once(start_collector, kiosk):
    start_collector().stop()
    for payload in POISON.values():
        kiosk.client.publish(topics.kiosk_topic(KIOSK, "visit"), payload, qos=1)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("behind-poison"))

    collector = start_collector()
    wait_for_ack(kiosk, "behind-poison", timeout=2)
    assert collector.counters.malformed == len(POISON)
    assert sum(collector.counters.malformed_by_reason.values()) == len(POISON)


def test_collector_acks_visits_behind_2000_poison_messages_within_5_s(collector, kiosk):
    poison = list(POISON.values())
    for n in range(1999):
        kiosk.client.publish(topics.kiosk_topic(KIOSK, "visit"), poison[n % len(poison)], qos=1)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), poison[0])  # the broker has them all
    last_poison = time.monotonic()
    valid = [f"valid-{n}" for n in range(100)]
    for event_id in valid:
        kiosk.client.publish(topics.kiosk_topic(KIOSK, "visit"), visit(event_id), qos=1)

    wait_until(lambda: set(valid) <= set(acked_ids(kiosk)), "100 acks", timeout=5)
    assert time.monotonic() - last_poison < 5
    assert collector.counters.malformed == 2000
    assert collector.counters.visits_stored == 100
    stored = collector.db.malformed()  # kept for /metrics, whichever collector counted them
    assert sum(stored.values()) == 2000 and stored == collector.counters.malformed_by_reason


def test_collector_db_keeps_at_most_fifty_malformed_reasons_apart(fleet_url):
    """A kiosk making up new reasons cannot grow the table: past fifty, they count as other."""
    db = open_database(fleet_url)
    try:
        db.add_malformed({f"reason {n}": 1 for n in range(45)})
        db.add_malformed({f"reason {n}": 2 for n in range(40, 60)})
        stored = db.malformed()
    finally:
        db.close()
    assert len(stored) == 51 and stored["other"] == 2 * 10  # reasons 50-59
    assert stored["reason 44"] == 3 and stored["reason 49"] == 2 and "reason 50" not in stored


REFUSE_ONE = {
    "sqlite": ["CREATE TRIGGER refuse_one BEFORE INSERT ON visit WHEN NEW.event_id = 'refused' "
               "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
    "postgresql": ["CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN "
                   "IF NEW.event_id = 'refused' THEN RAISE EXCEPTION 'refused by the test' "
                   "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ "
                   "LANGUAGE plpgsql",
                   "CREATE TRIGGER refuse_one BEFORE INSERT ON visit FOR EACH ROW "
                   "EXECUTE FUNCTION refuse_one()"],
}


def test_collector_acks_the_rest_of_a_batch_when_the_database_refuses_one_visit(
        start_collector, kiosk, fleet_store):
    start_collector().stop()
    kind, url = fleet_store
    refuse = open_database(url)
    for sql in REFUSE_ONE[kind]:
        refuse.database.execute_sql(sql)
    refuse.close()
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("refused"))
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("beside-it"))

    collector = start_collector()
    wait_for_ack(kiosk, "beside-it")
    assert [v.event_id for v in collector.db.visits()] == ["beside-it"]
    assert collector.counters.store_failures_by_reason == {"visit: IntegrityError": 1}
    assert "refused" not in acked_ids(kiosk)


def test_collector_acks_nothing_and_retries_while_the_database_fails(collector, kiosk,
                                                                    fleet_store):
    kind, url = fleet_store
    other = open_database(url)
    try:
        other.database.execute_sql("DROP TABLE visit")
        kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("during-failure"))
        wait_until(lambda: collector.counters.store_failures >= 2, "two failed attempts")
        assert acked_ids(kiosk) == []
        # A missing table: OperationalError from SQLite, ProgrammingError from PostgreSQL.
        error = {"sqlite": "OperationalError", "postgresql": "ProgrammingError"}[kind]
        assert set(collector.counters.store_failures_by_reason) == {f"database: {error}"}
        other.database.create_tables([other.FleetVisit])  # the database is back
        wait_for_ack(kiosk, "during-failure")
        assert [v.event_id for v in collector.db.visits()] == ["during-failure"]
    finally:
        other.close()


def test_collector_paho_callbacks_contain_hostile_input(collector, kiosk):
    undecodable = mqtt.MQTTMessage(mid=0, topic=b"citizeninfo/v1/kiosk/\xff/visit")
    undecodable.payload = POISON["int too large for a float"]
    hostile = {
        collector._on_connect: [(None, None, None, None, None)],
        collector._on_subscribe: [(None, None, 1, None, None), (None, None, 1, [object()], None)],
        collector._on_disconnect: [(None, None, None, "not a reason code", None)],
        collector._on_message: [(None, None, undecodable), (None, None, None)],
    }
    for callback, calls in hostile.items():
        for args in calls:
            callback(*args)  # paho 2 would re-raise an exception and end its network thread

    assert collector.counters.callback_failures == 4
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("after-hostile-callbacks"))
    wait_for_ack(kiosk, "after-hostile-callbacks")
    assert collector.counters.malformed_by_reason == {
        "unparseable (UnicodeDecodeError)": 1, "unparseable (AttributeError)": 1}


def test_collector_logs_kiosk_text_escaped_and_capped(collector, kiosk, caplog):
    caplog.set_level(logging.INFO, logger="kiosk.fleet.collector")
    forged = "done\n2025-01-31 02:41:07,250 ERROR kiosk.fleet.collector: \x1b[31mforged" * 12
    kiosk.publish(topics.kiosk_topic(KIOSK, "reply"), topics.reply_payload("c-1", False, forged))
    # The ACL lets a kiosk write any one level under its own id.
    kiosk.publish(f"{topics.ROOT}/kiosk/{KIOSK}/{'ข' * 5000}", visit("long-topic"))
    wait_until(lambda: collector.counters.replies == 1 and collector.counters.malformed == 1,
               "the reply and the rejection")

    lines = [r.getMessage() for r in caplog.records if r.name == "kiosk.fleet.collector"]
    reply = next(line for line in lines if line.startswith("reply from"))
    rejection = next(line for line in lines if line.startswith("rejected message"))
    assert "\n" not in reply and "\x1b" not in reply and "\\x0a" in reply
    assert len(reply) < 400 and len(rejection) < 600
    assert all(len(reason) < 220 for reason in collector.counters.malformed_by_reason)


def test_collector_stores_each_reply_once_with_its_data(collector, kiosk):
    kiosk.publish(topics.kiosk_topic(KIOSK, "reply"),
                  topics.reply_payload("c-ping", True, None, {"pong": "ok", "queued": 3}))
    kiosk.publish(topics.kiosk_topic(KIOSK, "reply"), topics.reply_payload("c-cfg", False,
                                                                           "bad key"))
    kiosk.publish(topics.kiosk_topic(KIOSK, "reply"),
                  topics.reply_payload("c-ping", True, None, {"pong": "ok", "queued": 3}))
    wait_until(lambda: collector.counters.replies + collector.counters.replies_duplicate == 3,
               "three replies")

    assert (collector.counters.replies, collector.counters.replies_duplicate) == (2, 1)
    assert [(r.kiosk_id, r.correlation_id, r.ok, r.error, r.data)
            for r in collector.db.replies()] == [
        (KIOSK, "c-ping", True, None, {"pong": "ok", "queued": 3}),
        (KIOSK, "c-cfg", False, "bad key", None)]
    [ping] = collector.db.replies("c-ping")
    assert ping.received.endswith("Z")


def test_collector_reply_without_a_correlation_id_is_logged_not_a_store_failure(
        collector, kiosk, caplog):
    """Found by the fuzzer: the contract lets a reply carry no correlation id (a command sent
    without one), and storing it broke the table's NOT NULL key: a store failure each time."""
    caplog.set_level(logging.INFO, logger="kiosk.fleet.collector")
    kiosk.publish(topics.kiosk_topic(KIOSK, "reply"), topics.reply_payload(None, False, "huh"))
    wait_until(lambda: collector.counters.replies == 1, "the reply")

    assert collector.counters.store_failures == 0 and collector.db.replies() == []
    assert f"reply from {KIOSK} to a command without a correlation id: huh" in caplog.text


def test_collector_db_migrates_once_and_records_each_version(fleet_url):
    first = open_database(fleet_url)
    try:
        assert migrations.version(first) == migrations.LATEST
        versions = list(first.database.execute_sql(
            'SELECT "version" FROM "schema_version" ORDER BY "version"'))
        assert [v for (v,) in versions] == [step[0] for step in migrations.STEPS]
        assert "visit_period" in {index.name for index in first.database.get_indexes("visit")}
    finally:
        first.close()
    again = open_database(fleet_url)
    try:
        assert migrations.migrate(again) == []
    finally:
        again.close()


def test_collector_status_cli_reads_either_database(fleet_url, capsys):
    db = open_database(fleet_url)
    try:
        with db.database.atomic():
            db.add_visits([topics.parse_kiosk_message(topics.kiosk_topic(KIOSK, "visit"),
                                                      visit("seen"))], T1)
    finally:
        db.close()
    parser = argparse.ArgumentParser()
    status_add_arguments(parser)
    assert status_main(parser.parse_args(["--db", fleet_url])) == 0
    assert capsys.readouterr().out.split()[:2] == [KIOSK, "unknown"]



def test_collector_cli_refuses_a_counters_interval_that_is_not_positive(capsys):
    assert run_verbs("kiosk-fleet", VERBS, ["collect", "--counters-every-s", "0"]) == 1
    assert "--counters-every-s must be > 0" in capsys.readouterr().err

# --- the store process (kiosk.fleet.ingest) -------------------------------------------------


def test_collector_store_process_log_records_reach_the_callers_logging(collector, kiosk,
                                                                      caplog):
    caplog.set_level(logging.INFO, logger="kiosk.fleet.collector")
    kiosk.publish(topics.kiosk_topic(KIOSK, "reply"), topics.reply_payload("c-1", True, None))
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), b"not json")
    wait_until(lambda: collector.counters.replies == 1 and collector.counters.malformed == 1,
               "the reply and the rejection")

    stored = {r.getMessage(): r for r in caplog.records if r.name == "kiosk.fleet.collector"}
    reply = stored["reply from bkk-001 to c-1: ok"]
    rejection = stored[f"rejected message on {topics.kiosk_topic(KIOSK, 'visit')}: "
                       "not UTF-8 JSON (JSONDecodeError)"]
    assert (reply.levelno, rejection.levelno) == (logging.INFO, logging.WARNING)
    assert reply.process == rejection.process != os.getpid()  # written by the store process


def test_collector_store_process_killed_mid_run_loses_nothing_and_stores_nothing_twice(
        start_collector, kiosk, caplog):
    start_collector().stop()  # the session now exists: the visits queue for the next one
    sent = [f"queued-{n}" for n in range(400)]
    for event_id in sent[:-1]:
        kiosk.client.publish(topics.kiosk_topic(KIOSK, "visit"), visit(event_id), qos=1)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit(sent[-1]))  # the broker has all

    collector = start_collector(batch_size=10)
    wait_until(lambda: collector.counters.visits_stored > 0, "the first batch")
    os.kill(collector._store.pid, signal.SIGKILL)
    wait_until(lambda: set(sent) <= set(acked_ids(kiosk)), "every ack")

    assert sorted(v.event_id for v in collector.db.visits()) == sorted(sent)
    assert sorted(acked_ids(kiosk)) == sorted(sent)  # each batch answered exactly once
    counters = collector.counters
    assert counters.store_restarts == 1 and counters.received == len(sent)
    # A batch committed by the killed process is stored again as duplicates, never twice.
    assert counters.visits_stored + counters.visits_duplicate == len(sent)
    assert "the collector's store process ended (exit code -9)" in caplog.text


def test_collector_keeps_trying_when_another_store_process_cannot_start(
        start_collector, kiosk, caplog, monkeypatch):
    """Right after the store process is killed (say by the kernel, out of memory), starting
    another fails once: the collector tries again, and stores and acks everything."""
    from kiosk.fleet import collector as collector_module

    collector = start_collector()
    processes = collector_module._PROCESSES
    real, failures = processes.Process, []

    def failing_once(*args, **kwargs):
        process = real(*args, **kwargs)
        if not failures:
            failures.append(process)
            process.start = lambda: (_ for _ in ()).throw(OSError("Cannot allocate memory"))
        return process

    monkeypatch.setattr(processes, "Process", failing_once, raising=False)
    os.kill(collector._store.pid, signal.SIGKILL)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("after-the-kill"))
    wait_for_ack(kiosk, "after-the-kill")
    assert failures and collector.counters.store_restarts == 1
    assert [v.event_id for v in collector.db.visits()] == ["after-the-kill"]
    assert "could not start another store process for the collector" in caplog.text
