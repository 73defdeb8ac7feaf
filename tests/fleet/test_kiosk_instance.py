"""A kiosk's instance: a re-flashed SD card or a forged epoch never hides a kiosk from ops.

Each kiosk store makes a random instance id when it is created; every status and visit carries
it. Real parts: the kiosk's telemetry and store (``KioskSide``), Mosquitto, the collector.
"""

import json
import sqlite3
from pathlib import Path

import pytest

from kiosk.fleet.db import open_database
from kiosk.fleet.status import status_lines
from kiosk.store import Store
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fleet.test_collector import INSTANCE, PERIOD, legacy_visit, status, visit
from tests.telemetry.kiosk_process import KioskSide

KIOSK = "kiosk-a"


def kiosk_row(collector):
    rows = [k for k in collector.db.kiosks() if k.kiosk_id == KIOSK]
    return rows[0] if rows else None


def wait_for_status(collector, state, instance, epoch):
    wait_until(lambda: (row := kiosk_row(collector)) is not None
               and (row.state, row.instance, row.epoch) == (state, instance, epoch),
               f"{KIOSK} {state} at instance {instance} epoch {epoch}")


def delivered(side):
    """Everything the kiosk queued is confirmed: nothing released is left, nothing is held."""
    stats = side.store.outbox_stats()
    return stats.depth == 0 and stats.held == 0


@pytest.fixture
def connect(kiosk_config, tmp_path):
    """``connect(sd_card, past_connects=0) -> KioskSide`` connected, its store on
    ``tmp_path/sd_card``; ``past_connects`` raises the store's epoch first, as an SD card that
    has connected that many times before."""
    sides = []

    def start(sd_card, past_connects=0):
        cfg = kiosk_config(storage={"data_dir": str(tmp_path / sd_card)})
        side = KioskSide(cfg, poll_s=0.05)
        sides.append(side)
        for _ in range(past_connects):
            side.store.next_epoch()
        side.start()
        assert side.link.wait_for_connected(10), "kiosk link did not connect"
        return side

    yield start
    for side in sides:
        side.stop()


def test_store_keeps_its_instance_across_restarts_and_a_new_store_gets_another(tmp_path):
    first = Store.open(tmp_path / "a", min_free_mb=1)
    instance = first.instance
    first.close()
    again = Store.open(tmp_path / "a", min_free_mb=1)
    other = Store.open(tmp_path / "b", min_free_mb=1)
    try:
        assert again.instance == instance
        assert other.instance != instance
        assert not topics.find_long_numbers(instance)
    finally:
        again.close()
        other.close()


def test_reflashed_kiosk_starting_again_at_epoch_1_is_online_with_an_alarm(connect, collector):
    old = connect("old-sd", past_connects=4)
    old.record_visits(2)
    wait_for_status(collector, "online", old.store.instance, 5)
    wait_until(lambda: delivered(old), "the old card's visits and their count confirmed")
    old.stop()
    wait_for_status(collector, "offline", old.store.instance, 5)

    new = connect("new-sd")  # a re-flashed SD card: a new store, epochs from 1 again
    wait_for_status(collector, "online", new.store.instance, 1)
    event_ids = new.record_visits(2)
    wait_until(lambda: delivered(new), "the new card's visits and their count confirmed")

    (alarm,) = collector.db.alarms(KIOSK)
    assert alarm.kind == "instance_changed"
    assert old.store.instance in alarm.detail and new.store.instance in alarm.detail
    # Each card's periods are counted apart: the new card's visits short neither card's count.
    assert sorted(v.event_id for v in collector.db.visits(KIOSK)
                  if v.instance == new.store.instance) == sorted(event_ids)
    wait_until(lambda: collector.db.period_verdicts(KIOSK) == {"ok": 2},
               "both cards' periods reconciled")
    assert "alarms 1" in status_lines(collector.db)[0]


def test_forged_top_epoch_hides_the_kiosk_only_until_its_next_connect(connect, collector,
                                                                       mqtt_client):
    side = connect("sd")
    instance = side.store.instance
    wait_for_status(collector, "online", instance, 1)
    side.stop()
    # A thief with a copy of the SD card: the kiosk's password and its instance id.
    thief = mqtt_client(KIOSK, Path(side.config.mqtt.password_file).read_text().strip())
    thief.publish(topics.kiosk_topic(KIOSK, "status"), status("lost", 2**31 - 1, instance),
                  retain=True)
    thief.publish(topics.kiosk_topic(KIOSK, "status"), status("lost", 2**31 - 1, "forged"),
                  retain=True)
    wait_until(lambda: collector.counters.stale_statuses == 1, "the other instance's will")
    wait_for_status(collector, "lost", instance, 2**31 - 1)
    thief.close()

    again = connect("sd")  # the real kiosk's next connect
    assert again.store.instance == instance
    wait_for_status(collector, "online", instance, 2)
    assert [a.kind for a in collector.db.alarms(KIOSK)] == ["epoch_went_back"]


def test_stale_wills_of_an_older_epoch_or_instance_never_mark_a_live_kiosk_lost(
        collector, broker, mqtt_client):
    kiosk = mqtt_client(KIOSK, broker.add_kiosk(KIOSK))

    def publish(state, epoch, instance):
        kiosk.publish(topics.kiosk_topic(KIOSK, "status"), status(state, epoch, instance))

    publish("online", 7, "old-card")
    publish("online", 1, "new-card")
    publish("lost", 7, "old-card")  # the old card's will, fired late
    publish("lost", 0, "new-card")  # an earlier connection of the new card
    wait_until(lambda: collector.counters.stale_statuses == 2, "two stale wills")
    assert (kiosk_row(collector).state, kiosk_row(collector).instance) == ("online", "new-card")

    publish("lost", 1, "new-card")
    wait_for_status(collector, "lost", "new-card", 1)


def test_kiosks_before_instances_and_their_queued_visits_are_still_collected(
        collector, broker, mqtt_client):
    """A kiosk not yet upgraded, or an upgraded one's visits queued before the upgrade, carries
    no instance: stored and acked, and the upgrade itself raises no alarm."""
    kiosk = mqtt_client(KIOSK, broker.add_kiosk(KIOSK))
    kiosk.subscribe(topics.ack_topic(KIOSK))
    legacy_status = json.loads(status("online", 4))
    del legacy_status["instance"]
    legacy = json.loads(legacy_visit("queued-before-upgrade", at="2025-01-31T09:41:07.250Z"))
    del legacy["instance"]
    kiosk.publish(topics.kiosk_topic(KIOSK, "status"), json.dumps(legacy_status))
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), json.dumps(legacy))
    kiosk.wait_for_message(topics.ack_topic(KIOSK),
                           lambda m: "queued-before-upgrade" in topics.parse_ack(m.payload))
    kiosk.publish(topics.kiosk_topic(KIOSK, "status"), status("online", 5, "upgraded"))
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("after", instance="upgraded"))
    kiosk.wait_for_message(topics.ack_topic(KIOSK),
                           lambda m: "after" in topics.parse_ack(m.payload))
    assert collector.db.alarms(KIOSK) == []
    wait_for_status(collector, "online", "upgraded", 5)
    # Both kept, the schema-1 one coarsened to its hour; no count was sent, so none is short.
    stored = {v.event_id: (v.instance, v.period) for v in collector.db.visits(KIOSK)}
    assert stored == {"queued-before-upgrade": (None, "2025-01-31T09:00:00Z"),
                      "after": ("upgraded", PERIOD.text)}
    assert collector.db.period_verdicts(KIOSK) == {}


def test_fleet_database_made_before_instances_opens_and_stores(tmp_path):
    path = tmp_path / "fleet.sqlite3"
    with sqlite3.connect(path) as old:  # the tables as the previous collector made them
        old.executescript(OLD_FLEET_SCHEMA)
    db = open_database(path)
    try:
        message = topics.parse_kiosk_message(topics.kiosk_topic(KIOSK, "visit"), visit("v1"))
        assert db.add_visits([message], "2026-01-05T09:00:00.000Z") == 1
        assert [(v.event_id, v.instance) for v in db.visits()] == [("v1", INSTANCE)]
    finally:
        db.close()


OLD_FLEET_SCHEMA = """
CREATE TABLE "kiosk" ("kiosk_id" VARCHAR(255) NOT NULL PRIMARY KEY, "state" VARCHAR(255),
  "epoch" INTEGER, "version" VARCHAR(255), "mode" VARCHAR(255), "last_seen" VARCHAR(255),
  "state_changed" VARCHAR(255), "outbox_depth" INTEGER, "dead_letters" INTEGER,
  "config_version" INTEGER, "health" TEXT, "stale_statuses" INTEGER NOT NULL);
CREATE TABLE "visit" ("event_id" VARCHAR(255) NOT NULL PRIMARY KEY,
  "kiosk_id" VARCHAR(255) NOT NULL, "seq" INTEGER NOT NULL, "epoch" INTEGER NOT NULL,
  "is_demo" INTEGER NOT NULL, "outcome" VARCHAR(255) NOT NULL, "step" VARCHAR(255) NOT NULL,
  "verified" INTEGER NOT NULL, "expired" INTEGER, "service_id" VARCHAR(255),
  "copy_answer" VARCHAR(255), "rating" INTEGER, "reason" VARCHAR(255),
  "language" VARCHAR(255) NOT NULL, "duration_s" REAL NOT NULL, "age_band" VARCHAR(255),
  "gender" VARCHAR(255), "at" VARCHAR(255) NOT NULL, "clock_synced" INTEGER NOT NULL,
  "mono_s" REAL NOT NULL, "schema" INTEGER NOT NULL, "received" VARCHAR(255) NOT NULL);
"""
