"""The health report gives nothing away: a daily count of card reads, never a time or a card in.

The reporter runs on an honest fake store (it reports the outbox stats it was given), or a real
one where the outbox is the point, and a wall clock the test sets; Bangkok's midnight is 17:00
UTC.
"""

import datetime as dt
import json
import logging
from dataclasses import dataclass

import pytest

from kiosk.errors import MessageRejected
from kiosk.fleet.collector import Collector
from kiosk.fleet.db import open_database
from kiosk.period import Period
from kiosk.renewal.client_cert import read_certificate
from kiosk.rigs.broker import Broker
from kiosk.store import Store
from kiosk.telemetry import topics
from kiosk.telemetry.health import HealthReporter
from kiosk.update import request
from tests.fixtures.broker import wait_until
from tests.telemetry.kiosk_process import RECORD, KioskSide

#: 09:00 local on 1 December 2026; local midnight is 17:00 UTC.
MORNING = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
BEFORE_MIDNIGHT = dt.datetime(2026, 12, 1, 16, 59, 59, tzinfo=dt.UTC)
AFTER_MIDNIGHT = dt.datetime(2026, 12, 1, 17, 0, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Stats:
    depth: int
    oldest_unconfirmed_age_s: float | None
    dead: int
    held: int


class FakeStore:
    """Reports the outbox as the test sets it; ``closed`` records the health thread's close."""

    def __init__(self, stats=Stats(0, None, 0, 0)):
        self.stats = stats
        self.closed = False

    def outbox_stats(self):
        return self.stats

    def free_mb(self):
        return 2048.0

    def close(self):
        self.closed = True


class Wall:
    """The wall clock as ``(aware UTC, synced)``; the test moves it."""

    def __init__(self, now=MORNING, synced=True):
        self.now, self.synced = now, synced

    def __call__(self):
        return self.now, self.synced


def reporter(wall, store=None, mode="production"):
    return HealthReporter(store or FakeStore(), link=None, interval_s=60, version="0.2.0",
                          mode=mode, wall=wall)


def report(health):
    payload = health.payload()
    return json.loads(payload), topics.parse_kiosk_message(
        "citizeninfo/v1/kiosk/k1/health", payload)


def reads(health, n):
    for _ in range(n):
        health.note_card_read()


def test_health_card_reads_ok_is_none_on_the_first_day():
    wall = Wall()
    health = reporter(wall)
    reads(health, 3)
    wall.now = BEFORE_MIDNIGHT
    reads(health, 1)
    obj, parsed = report(health)
    assert obj["card_reads_ok"] is None and parsed.card_reads_ok is None


def test_health_card_reads_ok_is_yesterdays_count_after_local_midnight():
    wall = Wall()
    health = reporter(wall)
    reads(health, 3)
    wall.now = BEFORE_MIDNIGHT
    reads(health, 2)
    wall.now = AFTER_MIDNIGHT
    assert report(health)[1].card_reads_ok == 5
    reads(health, 4)  # today's reads leave the published count alone all day
    wall.now = AFTER_MIDNIGHT + 23 * HOUR
    assert report(health)[1].card_reads_ok == 5
    wall.now = AFTER_MIDNIGHT + DAY
    assert report(health)[1].card_reads_ok == 4


def test_health_card_reads_ok_is_zero_after_a_day_without_reads():
    wall = Wall()
    health = reporter(wall)
    reads(health, 6)
    wall.now = AFTER_MIDNIGHT + DAY + HOUR  # the day before today saw no reads
    assert report(health)[1].card_reads_ok == 0


def test_health_reads_before_the_clock_syncs_join_the_first_synced_day():
    """A Pi boots with a clock of its last shutdown; the jump at the sync must not end a "day"
    that tells how many cards were read since boot."""
    wall = Wall(dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC), synced=False)
    health = reporter(wall)
    reads(health, 2)
    assert report(health)[1].card_reads_ok is None
    wall.now, wall.synced = MORNING, True
    reads(health, 1)
    assert report(health)[1].card_reads_ok is None
    wall.now = AFTER_MIDNIGHT
    assert report(health)[1].card_reads_ok == 3


def test_health_clock_stepped_back_ends_no_day():
    wall = Wall(AFTER_MIDNIGHT)
    health = reporter(wall)
    reads(health, 2)
    wall.now = BEFORE_MIDNIGHT  # stepped back into yesterday
    reads(health, 1)
    assert report(health)[1].card_reads_ok is None
    wall.now = AFTER_MIDNIGHT + 2 * HOUR
    assert report(health)[1].card_reads_ok is None
    wall.now = AFTER_MIDNIGHT + DAY
    assert report(health)[1].card_reads_ok == 3


def test_health_demo_mode_counts_days_on_an_unsynced_clock():
    wall = Wall(synced=False)
    health = reporter(wall, mode="demo")
    reads(health, 2)
    wall.now = AFTER_MIDNIGHT
    assert report(health)[1].card_reads_ok == 2


def test_health_report_never_says_a_card_is_in_nor_carries_the_old_fields():
    wall = Wall()
    health = reporter(wall)
    with pytest.raises(ValueError, match="card_present"):
        health.note_reader("card_present")
    health.note_reader("ready")
    reads(health, 1)
    wall.now = AFTER_MIDNIGHT
    payload = health.payload()
    obj = json.loads(payload)
    assert obj["reader"] == "ready" and obj["card_reads_ok"] == 1
    assert b"card_present" not in payload
    assert "last_card_read_at" not in obj and "card_reads_ok" in obj
    with pytest.raises(MessageRejected, match="'reader'"):
        topics.health_payload(
            mode="production", uptime_s=1, load_1m=0, disk_free_mb=1, mem_free_mb=1,
            outbox_depth=0, outbox_oldest_s=None, dead_letters=0, reader="card_present",
            card_reads_ok=None, config_version=None, version="0.2.0",
            stamp={k: obj[k] for k in ("at", "clock_synced", "mono_s")})


def test_health_outbox_depth_counts_released_rows_only(tmp_path):
    """Rows of an open period are held: a depth that rose by one per visit would time it. A
    real store: three visits of the open hour are in no report until the hour closes."""
    wall = Wall()
    store = Store.open(tmp_path, min_free_mb=1, clock=lambda: wall.now)
    try:
        health = reporter(wall, store)
        hour = Period.of(MORNING, 3600)
        for _ in range(3):
            store.record_visit(RECORD, topic="citizeninfo/v1/kiosk/k1/visit", period=hour,
                               mode="production")
            assert report(health)[0]["outbox_depth"] == 0
        wall.now = hour.end + dt.timedelta(minutes=10)
        store.close_periods(hour.end, topic="citizeninfo/v1/kiosk/k1/period",
                            mode="production")
        obj, parsed = report(health)
        assert obj["outbox_depth"] == 4  # the three visits and the hour's count
        assert parsed.outbox_oldest_s == 4200.0  # from the hour's start, not from any visit
    finally:
        store.close()


def test_health_update_state_comes_from_the_updaters_status_file(tmp_path, caplog):
    """The root updater's status file (kiosk.update.request) is relayed as ``update``; a
    missing file is no update state, and so is a bad one (logged once, not every minute). A
    long reason is cut to the contract's limit and never carries an ID-shaped number."""
    status = tmp_path / "update-status.json"
    health = HealthReporter(FakeStore(), link=None, interval_s=60, version="0.2.0",
                            mode="production", wall=Wall(),
                            update_state=request.StatusReader(status))
    assert "update" not in report(health)[0]

    request.write_status(tmp_path, "rolled_back", "0.3.0", rollout="r-0-3-0",
                         reason="0.3.0 was not healthy within 120 s: " + "x" * 300 +
                         " 1101700203549", sha256="ab" * 32)
    assert status.stat().st_mode & 0o777 == 0o644
    obj, parsed = report(health)
    assert parsed.update == topics.UpdateState(
        "rolled_back", "0.3.0", obj["update"]["reason"], "r-0-3-0")
    assert obj["update"]["reason"].startswith("0.3.0 was not healthy within 120 s: xxx")
    assert len(obj["update"]["reason"]) <= request.MAX_REASON_CHARS
    assert "sha256" not in obj["update"]

    caplog.set_level(logging.WARNING, logger="kiosk.update.request")
    for garbage in (b"{not json", b'{"state": "exploded"}', b"x" * 10000):
        status.write_bytes(garbage)
        assert "update" not in report(health)[0]
        assert "update" not in report(health)[0]
    assert len([r for r in caplog.records if "ignoring the update status" in r.message]) == 3


def test_health_tells_the_collector_the_expiry_of_the_certificate_the_kiosk_connected_with(
        make_config, tmp_path):
    """End to end over the real mutual-TLS listener: the kiosk's health carries the notAfter
    of the certificate it loaded, the collector keeps it, and a renewal recorded as signed but
    never installed does not clear ``cert_expiring`` (the rig's certificates last 30 days,
    inside the default 30-day threshold)."""
    kiosk_id = "k-cert"
    with Broker(tmp_path / "broker", tls=True) as broker:
        cert_file, key_file = broker.make_client_cert(kiosk_id)
        loaded = read_certificate(cert_file)[1]
        cfg = make_config(
            tmp_path / "kiosk", kiosk={"id": kiosk_id},
            mqtt={"host": "127.0.0.1", "port": broker.tls_port, "tls": True,
                  "ca_file": str(broker.ca_file), "cert_file": str(cert_file),
                  "key_file": str(key_file), "password_file": "", "reconnect_min_s": 0.1,
                  "reconnect_max_s": 1})
        fleet = str(tmp_path / "fleet.sqlite3")
        renewal = dt.datetime.now(dt.UTC) + 365 * DAY
        db = open_database(fleet)  # what the signing service records as it signs
        db.add_certificate(kiosk_id, serial="c0ffee", not_before=renewal - 365 * DAY,
                           not_after=renewal, issued=renewal - 365 * DAY)
        db.close()
        collector = Collector(fleet, "127.0.0.1", broker.port, *broker.collector_credentials,
                              batch_s=0.05, alarms_every_s=0.05)
        side = KioskSide(cfg, poll_s=0.05)
        collector.start()
        try:
            assert collector.wait_for_connected(10)
            side.start()
            assert side.link.wait_for_connected(10), "the kiosk's certificate was refused"
            assert side.health.publish()
            wait_until(lambda: collector.counters.health_reports >= 1, "the health report")
            wait_until(lambda: any(e.kind == "cert_expiring" for e in
                                   collector.db.alarm_events(kiosk_id, open_only=True)),
                       "cert_expiring raised")
            stored = json.loads(collector.db.KioskRow.get_by_id(kiosk_id).health)
            alarms = {e.kind: e.detail for e in collector.db.alarm_events(kiosk_id, open_only=True)}
        finally:
            side.stop()
            collector.stop()
    assert stored["cert_expires"] == f"{loaded:%Y-%m-%dT%H:%M:%SZ}"
    assert alarms["cert_expiring"] == (
        f"expires {loaded:%Y-%m-%d} (in 29 d); the one expiring {renewal:%Y-%m-%d} is signed "
        "but not installed")
