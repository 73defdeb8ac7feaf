"""The fleet's alarms, each raised and cleared by a simulated fault: messages built with the
contract's builders go through the real Mosquitto to a real collector with short thresholds,
on SQLite and on PostgreSQL (``fleet_url``)."""

import argparse
import dataclasses
import datetime as dt

import pytest

from kiosk import clock
from kiosk.fleet import alarms, crl, migrations, registry, status
from kiosk.fleet import collector as collect_verb
from kiosk.fleet.alarms import Thresholds
from kiosk.fleet.ca import load_ca
from kiosk.fleet.db import open_database
from kiosk.fleet.status import Filters, status_lines
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fleet.test_collector import KIOSK, STAMP, period_count, visit
from tests.fleet.test_collector import status as status_message
from tests.fleet.test_crl import make_ca
from tests.fleet.test_registry import T1, TWO_POINTS, write

OTHER_INSTANCE = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
UNSYNCED = clock.stamp(dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC), False, 300.0)
SHORT = Thresholds(silent_s=60, disk_low_mb=100, outbox_depth=10, outbox_oldest_s=60,
                   dead_letters=0, instance_changed_s=0.5)
HEALTH_KINDS = {"reader_missing", "disk_low", "outbox_growing", "dead_letters",
                "clock_unsynced"}


def health(*, stamp=STAMP, **overrides):
    fields = dict(mode="production", uptime_s=60, load_1m=0.5, disk_free_mb=900,
                  mem_free_mb=200, outbox_depth=0, outbox_oldest_s=None, dead_letters=0,
                  reader="ready", card_reads_ok=None, config_version=3, version="0.3.0")
    return topics.health_payload(**{**fields, **overrides}, stamp=stamp)


def publish(kiosk, kind, payload):
    kiosk.publish(topics.kiosk_topic(KIOSK, kind), payload, qos=1)


@pytest.fixture
def kiosk(broker, mqtt_client):
    """The kiosk's own connection to the broker."""
    return mqtt_client(KIOSK, broker.add_kiosk(KIOSK))


@pytest.fixture
def alarmed(start_collector):
    """``start(thresholds) -> Collector`` evaluating alarms every 50 ms, a 0.2-s grace."""
    def start(thresholds):
        return start_collector(reconcile_grace_s=0.2, reconcile_every_s=0.05,
                               alarms_every_s=0.05, thresholds=thresholds)

    return start


def open_kinds(collector):
    return {event.kind for event in collector.db.alarm_events(KIOSK, open_only=True)}


def history(collector, kind):
    return [(e.raised is not None, e.cleared is not None)
            for e in collector.db.alarm_events(KIOSK) if e.kind == kind]


def settled(collector):
    """Wait for an evaluation that began after everything received so far was stored."""
    runs = collector.counters.alarm_runs
    wait_until(lambda: collector.counters.alarm_runs >= runs + 2, "two more evaluations")


def test_alarms_each_raised_once_and_cleared_by_a_simulated_fault(alarmed, kiosk):
    collector = alarmed(SHORT)
    publish(kiosk, "status", status_message("online", 1))
    publish(kiosk, "health", health())
    wait_until(lambda: collector.counters.health_reports == 1, "the healthy report")
    settled(collector)
    assert open_kinds(collector) == set()

    # Five faults at once: no reader, a full disk, a stuck outbox, dead letters, a lost clock.
    publish(kiosk, "health", health(reader="no_reader", disk_free_mb=50, outbox_depth=20,
                                    outbox_oldest_s=5.0, dead_letters=2, stamp=UNSYNCED))
    wait_until(lambda: open_kinds(collector) == HEALTH_KINDS, "the five health alarms")
    publish(kiosk, "health", health(reader="no_reader", disk_free_mb=40, outbox_depth=25,
                                    outbox_oldest_s=9.0, dead_letters=3, stamp=UNSYNCED))
    wait_until(lambda: collector.counters.health_reports == 3, "the fault persisting")
    settled(collector)
    assert len(collector.db.alarm_events(KIOSK)) == 5  # raised once, not per report

    publish(kiosk, "health", health())  # repaired
    wait_until(lambda: open_kinds(collector) == set(), "the five cleared")
    for kind in HEALTH_KINDS:
        assert history(collector, kind) == [(True, True)], kind

    # The outbox by its oldest row alone, and the reader in error: raised again, new rows.
    publish(kiosk, "health", health(outbox_depth=1, outbox_oldest_s=120.0, reader="error"))
    wait_until(lambda: open_kinds(collector) == {"outbox_growing", "reader_missing"},
               "the outbox's age and the reader's error")
    publish(kiosk, "health", health())
    wait_until(lambda: open_kinds(collector) == set(), "both cleared again")
    assert history(collector, "outbox_growing") == [(True, True), (True, True)]

    # A new SD card: instance_changed stays raised for instance_changed_s, then clears.
    publish(kiosk, "status", status_message("online", 1, OTHER_INSTANCE))
    wait_until(lambda: open_kinds(collector) == {"instance_changed"}, "instance changed")
    wait_until(lambda: open_kinds(collector) == set(), "instance_changed cleared", timeout=5)
    assert history(collector, "instance_changed") == [(True, True)]

    # A period counted with one visit that has not come: short after the grace, then healed.
    publish(kiosk, "period", period_count(1, instance=OTHER_INSTANCE))
    wait_until(lambda: open_kinds(collector) == {"period_count_mismatch"}, "the short period")
    publish(kiosk, "visit", visit("late", instance=OTHER_INSTANCE))
    wait_until(lambda: open_kinds(collector) == set(), "the period healed")
    assert history(collector, "period_count_mismatch") == [(True, True)]
    assert collector.counters.alarm_failures == 0


def test_alarm_silent_raised_when_a_kiosk_goes_quiet_and_cleared_when_it_speaks(alarmed, kiosk):
    collector = alarmed(dataclasses.replace(SHORT, silent_s=0.5))
    publish(kiosk, "health", health())
    wait_until(lambda: open_kinds(collector) == {"silent"}, "silent after 0.5 s")
    (event,) = collector.db.alarm_events(KIOSK)
    assert event.cleared is None and "no message for" in event.detail
    publish(kiosk, "health", health())
    wait_until(lambda: history(collector, "silent")[:1] == [(True, True)], "silent cleared")


def test_alarm_thresholds_are_options_of_collect():
    parser = argparse.ArgumentParser()
    collect_verb.add_arguments(parser)
    args = parser.parse_args(["--alarm-silent-s", "30", "--alarm-outbox-depth", "7",
                              "--alarm-cert-expiring-s", "86400",
                              "--alarm-crl-expiring-s", "3600"])
    assert (args.alarm_silent_s, args.alarm_outbox_depth) == (30.0, 7)
    assert args.alarm_cert_expiring_s == 86400.0 and args.alarm_crl_expiring_s == 3600.0
    assert args.alarm_disk_low_mb == alarms.DEFAULT_THRESHOLDS.disk_low_mb
    with pytest.raises(ValueError, match="silent_s"):
        Thresholds(silent_s=-1)


# --- kiosk-fleet status: filters, open alarms, --watch ---------------------------------------

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
RECEIVED = "2026-12-01T02:59:00.000Z"


def pin(kiosk_id, point, ministry, province):
    return topics.ServicePoint(kiosk_id, point, "ชื่อ", "Name", "agency", ministry, province,
                               None, None, (), "production", 2)


@pytest.fixture
def fleet(fleet_url, tmp_path):
    """Three kiosks: two at registered points in Chiang Mai (two ministries), one at a point
    the registry lacks, in Bangkok; the first with its reader unplugged."""
    db = open_database(fleet_url)
    registry.import_file(registry.Registry(db.database),
                         write(tmp_path / "registry.csv", TWO_POINTS), as_of=T1)
    with db.database.atomic():
        # The pins' own ministry and province are not the registry's: the registry wins.
        db.apply_service_point(pin("cm-dopa", "dopa-50", "pinned ministry", "Bangkok"), RECEIVED)
        db.apply_service_point(pin("cm-dlt", "dlt-50", "pinned ministry", "Bangkok"), RECEIVED)
        db.apply_service_point(pin("bkk-bma", "bma-1", "กรุงเทพมหานคร", "Bangkok"), RECEIVED)
        db.apply_health([topics.parse_kiosk_message(topics.kiosk_topic("cm-dopa", "health"),
                                                    health(reader="no_reader"))], RECEIVED)
        db.update_alarms(NOW, alarms.DEFAULT_THRESHOLDS)
    yield db
    db.close()


def shown(db, **filters):
    return sorted(line.split()[0] for line in status_lines(db, NOW, Filters(**filters)))


def test_status_filters_by_the_registry_province_ministry_and_department(fleet):
    assert shown(fleet) == ["bkk-bma", "cm-dlt", "cm-dopa"]
    for name in ("เชียงใหม่", "chiang mai", "50"):
        assert shown(fleet, province=name) == ["cm-dlt", "cm-dopa"], name
    assert shown(fleet, province="Bangkok") == ["bkk-bma"]  # unregistered: its pin's province
    assert shown(fleet, ministry="กระทรวงคมนาคม") == ["cm-dlt"]
    assert shown(fleet, ministry="pinned ministry") == []
    assert shown(fleet, department="กรมการปกครอง") == ["cm-dopa"]
    assert shown(fleet, department="กรมการปกครอง", province="Bangkok") == []


def test_status_shows_state_and_open_alarms(fleet):
    lines = {line.split()[0]: line for line in status_lines(fleet, NOW)}
    assert "OPEN reader_missing" in lines["cm-dopa"]
    assert "reader no_reader" in lines["cm-dopa"] and "disk 900 MB" in lines["cm-dopa"]
    assert "clock synced" in lines["cm-dopa"] and "config 3" in lines["cm-dopa"]
    assert "OPEN" not in lines["cm-dlt"] and "reader ?" in lines["cm-dlt"]


def test_status_watch_prints_again_until_interrupted(fleet, fleet_url, monkeypatch, capsys):
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(status.time, "sleep", sleep)
    parser = argparse.ArgumentParser()
    status.add_arguments(parser)
    args = parser.parse_args(["--db", fleet_url, "--watch", "0.5", "--province", "50"])
    assert status.main(args) == 0
    out = capsys.readouterr().out
    assert sleeps == [0.5, 0.5] and out.count("cm-dopa") == 2 and "bkk-bma" not in out


def test_alarm_migration_4_brings_a_version_3_store_up_keeping_its_kiosks(fleet_url):
    db = open_database(fleet_url)
    try:  # the store as version 3 left it: no health columns, no alarm history
        for column in ("outbox_oldest_s", "reader", "disk_free_mb", "clock_synced"):
            db.database.execute_sql(f'ALTER TABLE "kiosk" DROP COLUMN "{column}"')
        db.database.execute_sql('DROP TABLE "alarm_event"')
        db.database.execute_sql('DELETE FROM "schema_version" WHERE "version" = 4')
        db.database.execute_sql('INSERT INTO "kiosk" ("kiosk_id", "stale_statuses") '
                                "VALUES ('old-kiosk', 0)")
    finally:
        db.close()
    db = open_database(fleet_url)
    try:
        assert migrations.version(db) == migrations.LATEST
        (kiosk,) = db.kiosks()
        assert (kiosk.kiosk_id, kiosk.reader, kiosk.clock_synced) == ("old-kiosk", None, None)
        with db.database.atomic():
            db.update_alarms(NOW, alarms.DEFAULT_THRESHOLDS)
        assert db.alarm_events() == []  # never seen: nothing to judge, no alarm
        assert migrations.migrate(db) == []
    finally:
        db.close()


def test_alarm_cert_expiring_raised_once_for_the_newest_certificate_and_cleared_by_a_newer_one(
        fleet):
    day = dt.timedelta(days=1)
    # cm-dlt: an old certificate long expired, and its current one 20 days from expiry.
    fleet.add_certificate("cm-dlt", serial="0A1B", not_before=NOW - 800 * day,
                          not_after=NOW - 435 * day, issued=NOW - 800 * day)
    fleet.add_certificate("cm-dlt", serial="7F3C", not_before=NOW - 345 * day,
                          not_after=NOW + 20 * day, issued=NOW - 345 * day)
    fleet.add_certificate("bkk-bma", serial="99", not_before=NOW, not_after=NOW + 365 * day,
                          issued=NOW)
    assert not fleet.add_certificate("bkk-bma", serial="99", not_before=NOW,
                                     not_after=NOW + 365 * day, issued=NOW)  # recorded once
    assert [c.serial for c in fleet.certificates("cm-dlt")] == ["7f3c", "0a1b"]

    with fleet.database.atomic():
        raised, cleared = fleet.update_alarms(NOW, alarms.DEFAULT_THRESHOLDS)
    assert [(e.kiosk_id, e.kind, e.detail) for e in raised] == [
        ("cm-dlt", "cert_expiring", "expires 2026-12-21 (in 20 d)")] and cleared == []
    later = NOW + dt.timedelta(minutes=5)
    with fleet.database.atomic():
        assert fleet.update_alarms(later, alarms.DEFAULT_THRESHOLDS) == ([], [])  # once

    fleet.add_certificate("cm-dlt", serial="c0ffee", not_before=later,
                          not_after=later + 365 * day, issued=later)  # renewed
    with fleet.database.atomic():
        raised, cleared = fleet.update_alarms(later, alarms.DEFAULT_THRESHOLDS)
    assert raised == [] and [(e.kiosk_id, e.kind) for e in cleared] == [
        ("cm-dlt", "cert_expiring")]


def test_alarm_cert_expiring_trusts_the_expiry_the_kiosk_reports_over_a_renewal_it_lacks(
        fleet):
    """A renewal is recorded when the signing service signs it; a kiosk that never installed
    it still connects with the old certificate, and its health says so: the alarm stays. A
    kiosk whose health does not say (not upgraded) is judged by the newest record, as before."""
    day = dt.timedelta(days=1)
    for kiosk_id in ("cm-dlt", "bkk-bma"):  # both 20 days from expiry, and renewed
        fleet.add_certificate(kiosk_id, serial="7F3C", not_before=NOW - 345 * day,
                              not_after=NOW + 20 * day, issued=NOW - 345 * day)
        fleet.add_certificate(kiosk_id, serial="c0ffee", not_before=NOW,
                              not_after=NOW + 365 * day, issued=NOW)  # cm-dlt never installed it

    def reports(kiosk_id, cert_expires):
        fleet.apply_health([topics.parse_kiosk_message(
            topics.kiosk_topic(kiosk_id, "health"), health(cert_expires=cert_expires))],
            RECEIVED)

    with fleet.database.atomic():
        reports("cm-dlt", "2026-12-21T03:00:00Z")
        reports("bkk-bma", None)  # not upgraded: its renewal is taken on trust, as before
        raised, cleared = fleet.update_alarms(NOW, alarms.DEFAULT_THRESHOLDS)
    assert [(e.kiosk_id, e.kind, e.detail) for e in raised] == [
        ("cm-dlt", "cert_expiring", "expires 2026-12-21 (in 20 d); the one expiring 2027-12-01 "
                                    "is signed but not installed")] and cleared == []

    later = NOW + dt.timedelta(minutes=5)
    with fleet.database.atomic():
        reports("cm-dlt", "2027-12-01T03:00:00Z")  # restarted with the renewal installed
        raised, cleared = fleet.update_alarms(later, alarms.DEFAULT_THRESHOLDS)
    assert raised == [] and [(e.kiosk_id, e.kind) for e in cleared] == [
        ("cm-dlt", "cert_expiring")]


def test_alarm_migration_11_adds_the_certificates_to_a_version_10_store(fleet_url):
    db = open_database(fleet_url)
    try:
        db.database.execute_sql('DROP TABLE "kiosk_cert"')
        db.database.execute_sql('DELETE FROM "schema_version" WHERE "version" = 11')
    finally:
        db.close()
    db = open_database(fleet_url)
    try:
        assert migrations.version(db) == migrations.LATEST
        assert db.certificates() == []
        assert db.add_certificate("k1", serial="01", not_before=NOW, not_after=NOW, issued=NOW)
    finally:
        db.close()


# --- the conditions alone (pure) ---------------------------------------------------------------

def kiosk_row(**overrides):
    fields = dict(kiosk_id=KIOSK, state="online", last_seen="2026-12-01T02:59:00.000Z",
                  reader="ready", disk_free_mb=100.0, outbox_depth=10, outbox_oldest_s=60.0,
                  dead_letters=0, clock_synced=True)
    return argparse.Namespace(**{**fields, **overrides})


def test_alarm_conditions_start_above_their_threshold_not_at_it():
    def kinds(verdicts=None, changed=None, **overrides):
        return set(alarms.conditions(kiosk_row(**overrides), verdicts or {}, changed, NOW,
                                     SHORT))

    assert kinds() == set()  # every value exactly at its threshold
    assert kinds(last_seen="2026-12-01T02:58:59.000Z") == {"silent"}  # 61 s > 60 s
    assert kinds(disk_free_mb=99.9) == {"disk_low"}
    assert kinds(outbox_depth=11) == kinds(outbox_oldest_s=60.1) == {"outbox_growing"}
    assert kinds(dead_letters=1) == {"dead_letters"}
    assert kinds(clock_synced=None) == set()  # nothing heard about the clock yet
    # No health report yet: none of its conditions, however the row's empty columns read.
    assert kinds(reader=None, disk_free_mb=None, outbox_depth=None, dead_letters=None) == set()
    assert kinds(changed="2026-12-01T02:59:59.600Z") == {"instance_changed"}  # 0.4 s ago
    assert kinds(changed="2026-12-01T02:59:59.000Z") == set()  # 1 s ago, past 0.5 s
    assert kinds({"ok": 3, "open": 1}) == set()
    assert alarms.conditions(kiosk_row(), {"short": 2, "over": 1}, None, NOW, SHORT) == {
        "period_count_mismatch": "2 periods short, 1 periods over"}


def test_alarm_cert_expiring_starts_inside_its_threshold_not_at_it():
    month = dataclasses.replace(SHORT, cert_expiring_s=30 * 86400)

    def found(not_after):
        return alarms.conditions(kiosk_row(), {}, None, NOW, month, cert_not_after=not_after)

    assert found(None) == {}  # no certificate recorded: a password account
    assert found("2026-12-31T03:00:00.000Z") == {}  # exactly 30 days left
    assert found("2026-12-31T02:59:59.999Z") == {"cert_expiring": "expires 2026-12-31 (in 29 d)"}
    assert found("2026-12-01T03:00:00.000Z") == {"cert_expiring": "expired 2026-12-01"}
    assert found("2026-11-02T08:00:00.000Z") == {"cert_expiring": "expired 2026-11-02"}
    assert alarms.DEFAULT_THRESHOLDS.cert_expiring_s == 30 * 86400


def test_alarm_cert_expiring_judges_the_reported_expiry_first():
    def found(recorded, reported):
        return alarms.conditions(kiosk_row(), {}, None, NOW, SHORT,
                                 cert_not_after=recorded, cert_reported=reported)

    assert found("2027-12-01T03:00:00Z", None) == {}  # not upgraded: the record, as before
    assert found("2027-12-01T03:00:00Z", "2026-12-02T03:00:00Z") == {"cert_expiring": (
        "expires 2026-12-02 (in 1 d); the one expiring 2027-12-01 is signed but not installed")}
    assert found(None, "2026-12-02T03:00:00Z") == {"cert_expiring": "expires 2026-12-02 (in 1 d)"}
    assert found("2026-11-02T03:00:00Z", "2027-12-01T03:00:00Z") == {}  # never recorded here


def test_alarm_crl_expiring_raised_for_the_fleet_and_cleared_by_a_refresh(fleet, tmp_path):
    ca = load_ca(*make_ca(tmp_path / "ca"))
    crl_file = tmp_path / "ca.crl"
    with fleet.database.atomic():
        assert fleet.update_alarms(NOW, alarms.DEFAULT_THRESHOLDS) == ([], [])  # no CRL yet
    crl.issue(fleet, *ca, crl_file, valid_s=10 * 86400, now=NOW)
    week = dt.timedelta(days=7)

    def evaluate(at):
        """The fleet's alarms raised and cleared at ``at`` (the kiosks fall silent meanwhile)."""
        with fleet.database.atomic():
            events = fleet.update_alarms(at, alarms.DEFAULT_THRESHOLDS)
        return tuple([(e.kiosk_id, e.kind) for e in found if e.kiosk_id == "ca"]
                     for found in events)

    assert evaluate(NOW + dt.timedelta(days=3)) == ([], [])  # 7 days left: not under 7
    assert evaluate(NOW + dt.timedelta(days=3, seconds=1)) == ([("ca", "crl_expiring")], [])
    assert evaluate(NOW + week) == ([], [])  # raised once
    assert status.fleet_lines(fleet) == [
        "FLEET OPEN crl_expiring: the CRL's next update is 2026-12-11T03:00:00.000Z (in "
        "7.0 d): run kiosk-fleet crl refresh"]
    assert all(not line.startswith("ca ") for line in status_lines(fleet, NOW + week))
    assert crl.refresh(fleet, *ca, crl_file, valid_s=30 * 86400, reissue_before_s=15 * 86400,
                       now=NOW + week) is not None
    assert evaluate(NOW + week) == ([], [("ca", "crl_expiring")])
    assert status.fleet_lines(fleet) == []
    assert alarms.fleet_conditions("2026-12-01T02:00:00.000Z", NOW, SHORT) == {
        "crl_expiring": "the CRL expired at 2026-12-01T02:00:00.000Z: the broker refuses "
                        "every kiosk certificate; run kiosk-fleet crl refresh"}


def test_alarm_retired_kiosk_has_its_open_alarms_cleared_and_raises_none(fleet):
    assert {e.kind for e in fleet.alarm_events("cm-dopa", open_only=True)} == {"reader_missing"}
    serials, retired = fleet.retire("cm-dopa", NOW, "revoked: stolen")
    assert serials == [] and retired == "2026-12-01T03:00:00.000Z"
    assert fleet.alarm_events("cm-dopa", open_only=True) == []
    with fleet.database.atomic():
        raised, _ = fleet.update_alarms(NOW + dt.timedelta(minutes=1), alarms.DEFAULT_THRESHOLDS)
    assert raised == []
    line, = (line for line in status_lines(fleet, NOW) if line.startswith("cm-dopa "))
    assert line.endswith("RETIRED 2026-12-01T03:00:00.000Z") and "OPEN" not in line
