"""Delivery end to end: kiosk outbox → real Mosquitto → real collector → ack → confirmed.

The kill -9 tests are the reason the outbox waits for the collector's ack: a broker killed
mid-drain loses messages it had already PUBACKed, and a kiosk killed mid-drain must pick up
where its SQLite outbox says it was.
"""

import json
import sqlite3
import subprocess
import sys

import pytest

from kiosk import config
from kiosk.fleet.collector import Collector
from kiosk.store import DB_NAME, Store
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.telemetry.kiosk_process import KioskSide, record_visits

KIOSK = "kiosk-a"
DRAIN_WAIT_S = 240.0




@pytest.fixture
def collector(broker, tmp_path):
    with Collector(tmp_path / "fleet.db", "127.0.0.1", broker.port,
                   *broker.collector_credentials, batch_s=0.05) as running:
        assert running.wait_for_connected(10), "collector did not subscribe"
        yield running




def collected_ids(collector):
    """Event ids the collector stored, one entry per stored row (duplicates would show)."""
    return [v.event_id for v in collector.db.FleetVisit.select(collector.db.FleetVisit.event_id)]


def outbox_states(data_dir, kind="visit"):
    """``{state: count}`` of the ``kind`` messages (``visit``, or ``period``: the counts),
    read straight from the kiosk's SQLite file, whoever has it open."""
    with sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM outbox_message WHERE topic LIKE ? "
                               "GROUP BY state", (f"%/{kind}",)))


def assert_all_delivered_once(collector, event_ids, data_dir):
    stored = collected_ids(collector)
    assert len(stored) == len(set(stored)), "the collector stored a visit twice"
    assert set(stored) == set(event_ids)
    assert outbox_states(data_dir) == {"confirmed": len(event_ids)}
    assert outbox_states(data_dir, "period") == {"confirmed": 1}  # their period's count too


@pytest.mark.slow  # the kiosk is usually back before the collector: the resend does it (5 s)
def test_delivery_visit_recorded_while_the_broker_is_down_arrives_after(
        kiosk_config, collector, running, broker):
    side = running(kiosk_config())
    broker.stop()
    wait_until(lambda: not side.link.is_connected, "the kiosk to notice the broker is gone")
    event_ids = side.record_visits(1)
    assert outbox_states(side.store.data_dir) == {"pending": 1}
    broker.start()
    wait_until(lambda: outbox_states(side.store.data_dir) == {"confirmed": 1}
               and outbox_states(side.store.data_dir, "period") == {"confirmed": 1},
               "the visit and its period's count confirmed by the collector", timeout=30)
    assert_all_delivered_once(collector, event_ids, side.store.data_dir)


def test_delivery_refused_under_another_kiosk_is_replayed_once_fixed(
        kiosk_config, collector, running, broker, mqtt_client):
    # kiosk-b was provisioned with kiosk-a's credentials: the broker refuses its visits.
    wrong = running(kiosk_config("kiosk-b", username=KIOSK))
    event_ids = wrong.record_visits(1)
    wait_until(lambda: outbox_states(wrong.store.data_dir) == {"dead": 1}
               and outbox_states(wrong.store.data_dir, "period") == {"dead": 1},
               "the dead letters: the visit and its period's count")
    assert json.loads(wrong.health.payload())["dead_letters"] == 2
    wrong.stop()
    # The cause fixed (kiosk-b's own account installed), ops asks for a replay.
    fixed = running(kiosk_config("kiosk-b"))
    ops = mqtt_client(*broker.ops_credentials)
    ops.subscribe(topics.kiosk_topic("kiosk-b", "reply"))
    ops.publish(topics.cmd_topic("kiosk-b", "replay"), topics.command_payload("replay", "rp-1"))
    reply = json.loads(ops.wait_for_message(topics.kiosk_topic("kiosk-b", "reply")).payload)
    assert reply["ok"] and reply["data"] == {"replayed": 2}
    wait_until(lambda: outbox_states(fixed.store.data_dir) == {"confirmed": 1}
               and outbox_states(fixed.store.data_dir, "period") == {"confirmed": 1},
               "the replayed visit and count confirmed")
    assert_all_delivered_once(collector, event_ids, fixed.store.data_dir)
    assert json.loads(fixed.health.payload())["dead_letters"] == 0


@pytest.mark.slow
def test_delivery_broker_killed_mid_drain_of_10000_loses_and_doubles_nothing(
        kiosk_config, collector, broker):
    cfg = kiosk_config()
    side = KioskSide(cfg, poll_s=0.05)
    event_ids = record_visits(side.store, KIOSK, 10_000)
    side.start()
    try:
        wait_until(lambda: len(collected_ids(collector)) >= 2_000, "the drain under way",
                   timeout=DRAIN_WAIT_S)
        broker.kill()
        broker.start()
        wait_until(lambda: (stats := side.store.outbox_stats()).depth == 0 and stats.held == 0,
                   "every visit confirmed", timeout=DRAIN_WAIT_S, interval=0.5)
    finally:
        side.stop()
    assert_all_delivered_once(collector, event_ids, side.store.data_dir)


@pytest.mark.slow
def test_delivery_kiosk_killed_mid_drain_and_restarted_loses_nothing(
        kiosk_config, collector, tmp_path):
    cfg = kiosk_config()
    store = Store.open(cfg.storage.data_dir, min_free_mb=1)
    event_ids = record_visits(store, KIOSK, 3_000)
    store.close()
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(config.dumps(cfg, mask_secrets=False))
    data_dir = store.data_dir

    def start_kiosk():
        return subprocess.Popen([sys.executable, "-m", "tests.telemetry.kiosk_process",
                                 str(config_file)], stdout=subprocess.DEVNULL)

    first = start_kiosk()
    try:
        wait_until(lambda: len(collected_ids(collector)) >= 500, "the drain under way",
                   timeout=DRAIN_WAIT_S)
        first.kill()
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert outbox_states(data_dir).get("confirmed", 0) < 3_000, "drained before the kill"
    second = start_kiosk()
    try:
        wait_until(lambda: outbox_states(data_dir) == {"confirmed": 3_000},
                   "every visit confirmed after the restart", timeout=DRAIN_WAIT_S,
                   interval=0.5)
    finally:
        second.terminate()
        second.wait(10)
    assert_all_delivered_once(collector, event_ids, data_dir)
