"""Two collectors (or two imports) on one database at once, on SQLite and PostgreSQL: a kiosk's
status and health written by different connections keep each other's columns, an alarm is
raised once, registry imports never overlap two versions, and an old SQLite file is rebuilt
once.

Each race is made to happen, not hoped for: the first party is held inside the critical step
until the second has either reached the same step (no lock: the race) or is waiting for the
lock; only then is the first let go. No sleeps decide an outcome.
"""

import contextlib
import sqlite3
import threading
from urllib.parse import urlsplit

import peewee
import pytest

from kiosk import clock
from kiosk.fleet import alarms, ingest, migrations, registry
from kiosk.fleet.db import FleetDb, open_database
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fleet.test_alarms import NOW, RECEIVED, health, pin
from tests.fleet.test_collector import INSTANCE, KIOSK, status
from tests.fleet.test_collector import visit as visit_payload
from tests.fleet.test_periods import SCHEMA1_FLEET, SCHEMA1_ROWS
from tests.fleet.test_registry import T1, T2, TWO_POINTS, row, write

WAIT_S = 20


def parse(kind, payload, kiosk_id=KIOSK):
    return topics.parse_kiosk_message(topics.kiosk_topic(kiosk_id, kind), payload)


@pytest.fixture
def two(fleet_url):
    """Two connections to one fleet store, as two collectors of a share group have."""
    first, second = open_database(fleet_url), open_database(fleet_url)
    yield first, second
    first.close()
    second.close()


@contextlib.contextmanager
def between_statements(database, other):
    """Within it, ``other()`` runs once, right after the first statement ``database`` executes:
    the other collector's whole message lands between this one's statements."""
    original, pending = database.execute_sql, [other]

    def execute_sql(*args, **kwargs):
        cursor = original(*args, **kwargs)
        if pending:
            pending.pop()()
        return cursor

    database.execute_sql = execute_sql
    try:
        yield
    finally:
        del database.execute_sql  # the class's own again


# --- 1. kiosk rows: each message writes its own columns -------------------------------------

def test_concurrency_messages_of_one_kiosk_keep_each_others_columns(two):
    """A status, a health report and a pin of one kiosk, each landing between another's
    statements; and the stale-status rule judged on the row as it is when written."""
    first, second = two
    for kiosk_id in ("a", "b", "c", "d"):
        first.apply_status(parse("status", status("online", 1), kiosk_id), RECEIVED)
    with between_statements(first.database, lambda: second.apply_status(
            parse("status", status("online", 2), "a"), RECEIVED)):
        first.apply_health([parse("health", health(reader="no_reader", disk_free_mb=80), "a")],
                           RECEIVED)
    with between_statements(first.database, lambda: second.apply_health(
            [parse("health", health(reader="no_reader", disk_free_mb=80), "b")], RECEIVED)):
        first.apply_status(parse("status", status("offline", 1), "b"), RECEIVED)
    with between_statements(first.database, lambda: second.apply_service_point(
            pin("c", "dopa-50", "กระทรวงมหาดไทย", "Chiang Mai"), RECEIVED)):
        first.apply_health([parse("health", health(disk_free_mb=80), "c")], RECEIVED)
    with between_statements(first.database, lambda: second.apply_status(
            parse("status", status("online", 2), "d"), RECEIVED)):
        assert first.apply_status(parse("status", status("lost", 1), "d"), RECEIVED) is False
    kiosks = {k.kiosk_id: k for k in first.kiosks()}
    a, b, c, d = (kiosks[kiosk_id] for kiosk_id in "abcd")
    assert (a.state, a.epoch, a.instance, a.reader, a.disk_free_mb) == (
        "online", 2, INSTANCE, "no_reader", 80)
    assert (b.state, b.reader, b.disk_free_mb) == ("offline", "no_reader", 80)
    assert (c.mode, c.disk_free_mb) == ("production", 80)
    assert [p.kiosk_id for p in first.ServicePointRow.select()] == ["c"]
    assert (d.state, d.epoch, d.stale_statuses) == ("online", 2, 1)


def test_concurrency_a_batch_of_health_reports_is_written_at_once_the_last_of_a_kiosk_wins(two):
    """Health goes in as one statement over many kiosks (a statement each was more than a
    collector's time at the national rate): new kiosks get rows, known ones keep their other
    columns, and a kiosk's later report in the batch is the one kept."""
    first, _ = two
    first.apply_status(parse("status", status("online", 1), "a"), RECEIVED)
    first.apply_health([parse("health", health(disk_free_mb=10), "a"),
                        parse("health", health(disk_free_mb=20, reader="no_reader"), "b"),
                        parse("health", health(disk_free_mb=30), "a")], RECEIVED)
    kiosks = {k.kiosk_id: k for k in first.kiosks()}
    assert (kiosks["a"].state, kiosks["a"].disk_free_mb, kiosks["a"].reader) == (
        "online", 30, "ready")
    assert (kiosks["b"].state, kiosks["b"].disk_free_mb, kiosks["b"].reader) == (
        None, 20, "no_reader")
    assert kiosks["b"].last_seen == RECEIVED and '"disk_free_mb": 20' in kiosks["b"].health


def store_on(url):
    """A collector's store process's :class:`kiosk.fleet.ingest.Store`, run in this one."""
    return ingest.Store(ingest.Options(str(url), 60.0, 2.0, alarms.DEFAULT_THRESHOLDS, 10.0),
                        threading.Event(), [], lambda: None)


def test_concurrency_a_later_status_wins_over_an_earlier_health_report_of_its_batch(fleet_url):
    """Health reports are written together, but never past a later message of their kiosk:
    a reconnected kiosk's status (new version, clock synced) must not be undone by the last
    health report of its old connection, which would raise clock_unsynced."""
    unsynced = clock.stamp(NOW, False, 10.0)
    store = store_on(fleet_url)
    try:
        store.handle([
            (1, 1, topics.kiosk_topic(KIOSK, "health"),
             health(version="0.0.9", stamp=unsynced)),
            (2, 1, topics.kiosk_topic(KIOSK, "status"), status("online", 2))])
        row = store.db.KioskRow.get(store.db.KioskRow.kiosk_id == KIOSK)
    finally:
        store.db.close()
    assert (row.state, row.version, row.clock_synced) == ("online", "0.1.0", True)


def test_concurrency_two_batches_taking_kiosks_in_opposite_orders_both_commit(
        postgres, fleet_template, monkeypatch):
    """A batch takes all its kiosks' rows first, in id order: taken as each message came (a
    health report of k2 then a visit of k1, against the opposite), PostgreSQL found a
    deadlock and aborted one batch."""
    url = postgres.url(postgres.create_database(template=fleet_template))
    setup = open_database(url)
    setup.apply_health([parse("health", health(), k) for k in ("k1", "k2")], RECEIVED)
    setup.close()
    first, second = store_on(url), store_on(url)
    turns = Turns(monkeypatch, FleetDb, "add_visits", url)

    def batch(store, health_of, visit_of):
        return lambda: store.commit([
            (health_of, parse("health", health(disk_free_mb=7), health_of)),
            (visit_of, parse("visit", visit_payload(f"v-{visit_of}"), visit_of))], RECEIVED)

    results = turns.run(batch(first, "k2", "k1"), batch(second, "k1", "k2"),
                        (first.db.database, second.db.database))
    first.db.close()  # this thread's connections, opened with each store
    second.db.close()
    for result in results:
        assert not isinstance(result, Exception), result
    check = open_database(url)
    try:
        assert sorted(v.event_id for v in check.visits()) == ["v-k1", "v-k2"]
        assert {k.kiosk_id: k.disk_free_mb for k in check.kiosks()} == {"k1": 7, "k2": 7}
    finally:
        check.close()
        postgres.drop_database(urlsplit(url).path.lstrip("/"))


# --- holding one party inside its critical step ------------------------------------------------

class Turns:
    """``first`` runs in a thread until it calls ``module.name``, and is held there; ``second``
    then runs until it calls it too (unguarded) or waits for a lock, and ``first`` is let go."""

    def __init__(self, monkeypatch, module, name, fleet_url):
        self.held, self.release = threading.Event(), threading.Event()
        self.reached, self.began_immediate = set(), set()
        self.fleet_url = str(fleet_url)
        original = getattr(module, name)

        def hooked(*args, **kwargs):
            who = threading.current_thread().name
            self.reached.add(who)
            if who == "first" and not self.held.is_set():
                self.held.set()
                assert self.release.wait(WAIT_S), "never let go"
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, hooked)
        begin = peewee.SqliteDatabase.begin

        def begin_noted(database, lock_type=None):
            if lock_type == "IMMEDIATE":
                self.began_immediate.add(threading.current_thread().name)
            return begin(database, lock_type)

        monkeypatch.setattr(peewee.SqliteDatabase, "begin", begin_noted)

    def _second_waiting(self):
        if "second" in self.reached or "second" in self.began_immediate:
            return True
        if not self.fleet_url.startswith("postgresql://"):
            return False
        import psycopg

        with psycopg.connect(self.fleet_url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]

    def run(self, first, second, databases=()):
        """Both results (a value, or the exception raised), ``(first's, second's)``; each
        thread closes its connections to ``databases`` (and to any database a result has)."""
        results = {}
        self.databases = list(databases)

        def call(name, function):
            try:
                results[name] = function()
            except Exception as exc:  # reported to the test, which asserts there was none
                results[name] = exc
            else:
                if hasattr(results[name], "database"):
                    results[name].database.close()
            finally:  # peewee connects per thread: this thread's connections end with it
                for database in self.databases:
                    database.close()

        threads = {name: threading.Thread(target=call, args=(name, function), name=name)
                   for name, function in (("first", first), ("second", second))}
        threads["first"].start()
        wait_until(lambda: self.held.is_set() or not threads["first"].is_alive(),
                   "the first to reach its critical step", timeout=WAIT_S)
        threads["second"].start()
        wait_until(lambda: self._second_waiting() or not threads["second"].is_alive(),
                   "the second to wait for the lock or race", timeout=WAIT_S)
        self.release.set()
        for thread in threads.values():
            thread.join(WAIT_S)
        return results["first"], results["second"]


# --- 5. one alarm raised once by two collectors --------------------------------------------

def test_concurrency_two_collectors_raise_one_alarm_once(two, fleet_url, monkeypatch):
    first, second = two
    first.apply_health([parse("health", health(reader="no_reader"))], RECEIVED)
    turns = Turns(monkeypatch, alarms, "conditions", fleet_url)
    results = turns.run(lambda: first.update_alarms(NOW, alarms.DEFAULT_THRESHOLDS),
                        lambda: second.update_alarms(NOW, alarms.DEFAULT_THRESHOLDS),
                        (first.database, second.database))
    for result in results:
        assert not isinstance(result, Exception), result
    raised = [event.kind for result in results for event in result[0]]
    assert raised == ["reader_missing"]
    assert [e.kind for e in first.alarm_events(open_only=True)] == ["reader_missing"]


# --- 3. registry imports one at a time -------------------------------------------------------

def _no_overlap(reg):
    """Every key's versions, in order, each closed before (or where) the next starts."""
    for kind, model in reg.models.items():
        if kind == "imports":
            continue
        keys, _ = registry.KINDS[kind]
        versions = {}
        for version in model.select().order_by(model.valid_from, model.id):
            versions.setdefault(tuple(getattr(version, k) for k in keys), []).append(version)
        for key, chain in versions.items():
            for version, following in zip(chain, chain[1:], strict=False):
                assert version.valid_to is not None, (kind, key)
                assert version.valid_to <= following.valid_from, (kind, key)
            assert all(v.valid_from < (v.valid_to or "~") for v in chain), (kind, key)


def test_concurrency_two_registry_imports_keep_one_history(fleet_url, tmp_path, monkeypatch):
    setup = registry.open_registry(fleet_url)
    registry.import_file(setup, write(tmp_path / "first.csv", TWO_POINTS), as_of=T1)
    setup.close()
    # dlt-50 closed at T2 and back later; dopa-50's status changed by both, its pin by one.
    renamed = [row(no_copy="cancelled"), *TWO_POINTS[1:2]]
    moved = [row(lat="18.79", no_copy="not_yet"), {**TWO_POINTS[1], "lat": "18.79"},
             TWO_POINTS[2]]
    first, second = registry.open_registry(fleet_url), registry.open_registry(fleet_url)
    try:
        turns = Turns(monkeypatch, registry.Registry, "_record", fleet_url)
        later = T2.replace(month=7)
        results = turns.run(
            lambda: registry.import_file(first, write(tmp_path / "a.csv", renamed), as_of=T2),
            lambda: registry.import_file(second, write(tmp_path / "b.csv", moved),
                                         as_of=later),
            (first.database, second.database))
        for result in results:
            assert not isinstance(result, Exception), result
        _no_overlap(first)
        assert first.declared_status("dopa-50", "dopa.id_card", T2) == "cancelled"
        assert first.declared_status("dopa-50", "dopa.id_card", later) == "not_yet"
        assert first.service_point("dlt-50", T2) is None
        assert first.service_point("dlt-50", later) is not None
    finally:
        first.close()
        second.close()


# --- 4. an old SQLite file rebuilt once, under the migration lock ----------------------------

def test_concurrency_two_collectors_open_one_schema1_file(tmp_path, monkeypatch):
    path = tmp_path / "fleet.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA1_FLEET)
        old.executemany(f"INSERT INTO visit VALUES ({', '.join('?' * 24)})", SCHEMA1_ROWS)
    old.close()
    turns = Turns(monkeypatch, migrations, "_coarsened", str(path))
    results = turns.run(lambda: open_database(path), lambda: open_database(path))
    for result in results:
        assert not isinstance(result, Exception), result
    try:
        assert sorted(v.event_id for v in results[0].visits()) == ["synced", "unsynced"]
        assert migrations.version(results[1]) == migrations.LATEST
        tables = set(results[0].database.get_tables())
        assert "visit" in tables and "visit_schema1" not in tables  # rebuilt once, old gone
    finally:
        for fleet in results:
            fleet.close()
