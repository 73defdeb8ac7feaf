"""The store on real SQLite files: visits, outbox delivery state, repeat hashes, durability."""

import json
import os
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk.errors import DiskFull, StoreError
from kiosk.flow import Screen, VisitRecord
from kiosk.store import DB_NAME, MIGRATIONS, OutboxStats, Purged, Store, new_event_id, rfc3339
from tests.fixtures.disk import fill

REPO = Path(__file__).resolve().parents[1]
VISIT_TOPIC = "citizeninfo/v1/kiosk/k1/visit"
T0 = datetime(2025, 3, 1, 2, 0, 0, tzinfo=UTC)


TYPICAL_VISIT = dict(outcome="completed", step="thank_you", verified=True, expired=False,
                     service_id="id_card_renewal", copy_answer="none", rating=4, reason=None,
                     language="th", duration_s=21.5)


def visit_record(**changes):
    """A finished visit as the flow hands it over, typical unless told otherwise."""
    return VisitRecord(**{**TYPICAL_VISIT, **changes})


class WallClock:
    """The store's UTC wall clock, driven by the test."""

    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += timedelta(**delta)


def outgoing(clock=None):
    """What the runner hands the store beside the visit: topic, mode and one time stamp, read
    from ``clock`` (T0 without one)."""
    now = clock() if clock else T0
    return {"topic": VISIT_TOPIC, "stamp": {"at": rfc3339(now), "clock_synced": True,
                                            "mono_s": 1.0}, "mode": "production"}


@pytest.fixture
def clock():
    return WallClock()


@pytest.fixture
def store(tmp_path, clock):
    store = Store.open(tmp_path / "data", clock=clock)
    yield store
    store.close()


# --- visits -----------------------------------------------------------------------------------


def test_store_record_visit_writes_visit_and_outbox_together_never_the_hash(store, clock):
    visit = store.record_visit(visit_record(repeat_hash=b"\x01" * 32), **outgoing(clock))
    assert visit.seq == 1
    assert len(visit.event_id) == 32 and int(visit.event_id, 16) >= 0
    assert visit.recorded_at == "2025-03-01T02:00:00.000Z"
    assert (visit.rating, visit.language, visit.mode) == (4, "th", "production")
    assert visit.confirmed_at is None
    [message] = store.due_messages(10)
    assert (message.event_id, message.topic, message.state, message.qos) == (
        visit.event_id, VISIT_TOPIC, "pending", 1)
    assert json.loads(message.payload)["seq"] == 1
    assert not any(b"\x01" * 32 in path.read_bytes() for path in store.data_dir.iterdir())


def test_store_visit_table_has_no_identity_or_hash_column(store):
    columns = {field.column_name for field in store.VisitRow._meta.sorted_fields}
    on_disk = {row[1] for row in sqlite3.connect(store.path).execute("PRAGMA table_info(visit)")}
    assert columns == on_disk
    forbidden = {"cid", "citizen_id", "name", "name_th", "name_en", "address", "birth_date",
                 "dob", "photo", "hash", "repeat_hash"}
    assert not on_disk & forbidden


def test_store_enum_fields_stored_as_plain_text(store):
    visit = store.record_visit(visit_record(outcome="abandoned", step=Screen.RATING, rating=None),
                               **outgoing())
    assert store.VisitRow.get_by_id(visit.id).step == "rating"


def test_store_bad_rating_rejected_without_writing(store, clock):
    store.record_visit(visit_record(), **outgoing(clock))
    with pytest.raises(StoreError, match=f"{DB_NAME}.*rating"):
        store.record_visit(visit_record(rating=9), **outgoing(clock))
    assert store.VisitRow.select().count() == 1
    assert len(store.due_messages(10)) == 1
    assert store.record_visit(visit_record(), **outgoing(clock)).seq == 2


def test_store_visit_the_schema_refuses_leaves_nothing_half_written(store, clock):
    with pytest.raises(ValueError, match="13-digit number at \\$.service_id"):
        store.record_visit(visit_record(service_id="svc-1234567890123",
                                        repeat_hash=b"\x02" * 32), **outgoing(clock))
    assert store.VisitRow.select().count() == 0
    assert store.due_messages(10) == []


def test_store_refuses_a_payload_that_is_not_json_and_keeps_nothing(store):
    with pytest.raises(StoreError, match=f"payload for {VISIT_TOPIC} is not JSON"):
        store.enqueue(VISIT_TOPIC, b"not json")
    with pytest.raises(StoreError, match=f"payload for {VISIT_TOPIC} is not JSON"):
        store.enqueue(VISIT_TOPIC, {"at": object()})
    assert store.due_messages(10) == []


def test_store_accepts_payload_already_encoded(store, clock):
    store.enqueue(VISIT_TOPIC, json.dumps({"event_id": "e1", "name": "ทดสอบ"}).encode())
    [message] = store.due_messages(1)
    assert json.loads(message.payload)["name"] == "ทดสอบ"


def test_store_seq_and_epoch_survive_reopen(tmp_path, clock):
    data = tmp_path / "data"
    first = Store.open(data, clock=clock)
    assert first.current_epoch() == 0
    assert [first.next_epoch(), first.next_epoch()] == [1, 2]
    seqs = [first.record_visit(visit_record(), **outgoing(clock)).seq for _ in range(3)]
    first.close()
    second = Store.open(data, clock=clock)
    try:
        assert seqs == [1, 2, 3]
        assert second.current_epoch() == 2
        assert second.next_epoch() == 3
        visit = second.record_visit(visit_record(), **outgoing(clock))
        assert (visit.seq, visit.epoch) == (4, 3)
    finally:
        second.close()


def test_store_small_state_values_survive_reopen(tmp_path, clock):
    first = Store.open(tmp_path, clock=clock)
    assert first.get_state("config_hash", "none") == "none"
    first.set_state("config_hash", "ab12")
    first.set_state("config_hash", "cd34")
    first.close()
    second = Store.open(tmp_path, clock=clock)
    assert second.get_state("config_hash") == "cd34"
    second.close()


def test_store_event_ids_never_hold_thirteen_digits(monkeypatch):
    draws = iter([uuid.UUID("12345678-9012-4345-8abc-def012345678"),
                  uuid.UUID("abcdefab-cdef-4abc-8def-abcdefabcdef")])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert new_event_id() == "abcdefabcdef4abc8defabcdefabcdef"


def test_store_files_are_owner_only(tmp_path, clock):
    store = Store.open(tmp_path / "fresh", clock=clock)
    store.record_visit(visit_record(), **outgoing(clock))
    try:
        assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
        for name in (DB_NAME, DB_NAME + "-wal"):
            assert stat.S_IMODE((tmp_path / "fresh" / name).stat().st_mode) == 0o600
    finally:
        store.close()


def test_store_pragmas_hold_on_every_threads_connection(store):
    seen = {}

    def read_pragmas():
        seen["worker"] = [store._db.execute_sql(f"PRAGMA {name}").fetchone()[0]
                          for name in ("journal_mode", "synchronous", "secure_delete",
                                       "foreign_keys")]
        store.close()

    worker = threading.Thread(target=read_pragmas)
    worker.start()
    worker.join(timeout=30)
    assert seen["worker"] == ["wal", 2, 1, 1]


def test_store_not_a_database_named_and_left_alone(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=f"{tmp_path / DB_NAME}"):
        Store.open(tmp_path)
    assert (tmp_path / DB_NAME).read_bytes() == b"this is not sqlite" * 100


def test_store_unwritable_data_dir_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="storage.data_dir"):
        Store.open(blocker / "data")


# --- repeat hashes ----------------------------------------------------------------------------


def test_store_v3_drops_the_seen_card_table_and_its_hashes(tmp_path, clock):
    """Repeat hashes live in the runner's memory now: a v2 file loses its table, and the bytes
    of the hashes it held are gone from every file, WAL included."""
    v2 = Store.open(tmp_path, clock=clock, migrations=MIGRATIONS[:2])
    planted = bytes(range(100, 132))
    v2._db.execute_sql("INSERT INTO seen_card (hash, seen_at) VALUES (?, ?)",
                       (planted, rfc3339(clock())))
    v2.close()
    store = Store.open(tmp_path, clock=clock)
    try:
        tables = {row[0] for row in store._db.execute_sql("SELECT name FROM sqlite_master")}
        assert "seen_card" not in tables
        assert not any(planted in path.read_bytes() for path in tmp_path.iterdir())
        assert not hasattr(store, "is_repeat")
    finally:
        store.close()


# --- outbox -----------------------------------------------------------------------------------


def test_store_outbox_pending_published_resent_confirmed(store, clock):
    visit = store.record_visit(visit_record(), **outgoing(clock))
    sent = clock()
    assert store.mark_sent([visit.event_id], sent) == 1
    # Pending rows are always due: the pump skips the ones it has in flight itself.
    assert [m.attempts for m in store.due_messages(10)] == [1]
    assert store.mark_published([visit.event_id], sent)
    assert store.due_messages(10) == []  # published: due only when the pump names it
    [due] = store.due_messages(10, [visit.event_id])
    assert (due.state, due.attempts, due.sent_at) == ("published", 1, rfc3339(sent))
    assert store.published_ids() == [visit.event_id]
    assert store.confirm([visit.event_id]) == 1
    assert store.due_messages(10, [visit.event_id]) == []
    assert store.published_ids() == []
    assert store.VisitRow.get_by_id(visit.id).confirmed_at == rfc3339(clock())


def test_store_mark_published_takes_a_batch_beyond_one_statement(store, clock):
    with store.atomic():
        ids = [store.record_visit(visit_record(), **outgoing(clock)).event_id
               for _ in range(1200)]
    sent = clock()
    assert store.mark_published(ids[:1100], sent) == 1100
    assert store.published_ids() == ids[:1100]
    due = store.due_messages(100, ids[:1100])
    # Oldest first, pending and named published mixed in id order.
    assert [m.event_id for m in due] == ids
    assert {m.state for m in due[:1100]} == {"published"} and due[1100].state == "pending"
    assert [m.event_id for m in store.due_messages(150)] == ids[1100:1200]


def test_store_confirm_is_idempotent_and_ignores_unknown_ids(store, clock):
    a = store.record_visit(visit_record(), **outgoing(clock))
    b = store.record_visit(visit_record(), **outgoing(clock))
    assert store.confirm([a.event_id, "not-an-event"]) == 1
    first_confirmed_at = store.VisitRow.get_by_id(a.id).confirmed_at
    clock.advance(minutes=5)
    assert store.confirm([a.event_id]) == 0
    assert store.VisitRow.get_by_id(a.id).confirmed_at == first_confirmed_at
    assert store.VisitRow.get_by_id(b.id).confirmed_at is None
    assert store.outbox_stats().depth == 1


def test_store_late_puback_does_not_undo_confirmation(store, clock):
    visit = store.record_visit(visit_record(), **outgoing(clock))
    store.confirm([visit.event_id])
    assert not store.mark_published([visit.event_id], clock())
    assert not store.mark_dead(visit.event_id, 0x87)
    assert store.OutboxMessage.get(store.OutboxMessage.event_id == visit.event_id).state == \
        "confirmed"


def test_store_dead_letters_parked_and_replayed(store, clock):
    visit = store.record_visit(visit_record(), **outgoing(clock))
    store.mark_sent([visit.event_id], clock())
    assert store.mark_dead(visit.event_id, 0x87)
    assert store.due_messages(10, [visit.event_id]) == []
    assert store.outbox_stats() == OutboxStats(depth=0, oldest_unconfirmed_age_s=None, dead=1)
    row = store.OutboxMessage.get(store.OutboxMessage.event_id == visit.event_id)
    assert row.reason_code == 0x87
    assert store.replay_dead() == 1
    [due] = store.due_messages(10)
    assert (due.state, due.sent_at, due.attempts) == ("pending", None, 1)
    assert store.replay_dead() == 0


def test_store_due_messages_pending_up_to_the_limit_and_named_rows_still_published(store):
    ids = [store.record_visit(visit_record(), **outgoing()).event_id
           for _ in range(5)]
    store.mark_published(ids[:3], T0)
    store.confirm([ids[1]])
    store.mark_dead(ids[2], 0x87)
    # Confirmed and dead rows are never resent, whoever names them.
    assert [m.event_id for m in store.due_messages(10, ids[:3])] == [ids[0], ids[3], ids[4]]
    assert [m.event_id for m in store.due_messages(1, [ids[0]])] == ids[0:4:3]
    assert store.due_messages(0) == []


def _query_plans(store, action):
    """The plans of the SELECT/UPDATE statements ``action`` runs on this thread's connection."""
    statements = []
    conn = store._db.connection()
    conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    return [" ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            for sql in statements if sql.lstrip().upper().startswith(("SELECT", "UPDATE"))]


def test_store_delivery_updates_look_rows_up_by_event_id(store, clock):
    """A window's worth of PUBACKs, or an ack's 200 ids, must not walk every queued row or
    unconfirmed visit through a state index: with 10,000 rows queued that walk was most of the
    outbox thread's time."""
    with store.atomic():
        ids = [store.record_visit(visit_record(), **outgoing(clock)).event_id
               for _ in range(300)]

    def deliver():
        store.mark_sent(ids[:64], clock())
        store.mark_published(ids[:64], clock())
        store.due_messages(0, ids[:64])
        store.mark_dead(ids[64], 0x87)
        store.confirm(ids[:200])

    plans = _query_plans(store, deliver)
    assert len(plans) == 7  # due_messages reads pending rows by state, the rest by event id
    by_event_id = [plan for plan in plans if "outbox_message_state (state=?)" not in plan]
    assert len(by_event_id) == 6
    assert all("(event_id=?)" in plan for plan in by_event_id), plans


def test_store_schema_v1_file_reads_due_rows_without_sorting_or_scanning(tmp_path, clock):
    Store.open(tmp_path, clock=clock, migrations=MIGRATIONS[:1]).close()
    store = Store.open(tmp_path, clock=clock)
    try:
        plans = _query_plans(store, lambda: store.due_messages(64, ["a", "b"]))
        assert len(plans) == 2, plans
        assert "outbox_message_state (state=?)" in plans[0], plans
        assert "(event_id=?)" in plans[1], plans
        assert not any("TEMP B-TREE" in plan or "SCAN" in plan for plan in plans), plans
        indexes = {row[0] for row in store._db.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "outbox_message_state_sent_at" not in indexes  # it served wall-clock resends
    finally:
        store.close()


def test_store_enqueue_survives_and_is_idempotent(tmp_path, clock):
    store = Store.open(tmp_path, clock=clock)
    event_id = store.enqueue("citizeninfo/v1/kiosk/k1/reply", {"ok": True}, event_id="r-1")
    assert event_id == "r-1"
    store.enqueue("citizeninfo/v1/kiosk/k1/reply", {"ok": False}, event_id="r-1")
    generated = store.enqueue("citizeninfo/v1/kiosk/k1/pin", {"x": 1}, qos=0)
    store.close()
    store = Store.open(tmp_path, clock=clock)
    try:
        due = {m.event_id: m for m in store.due_messages(10)}
        assert set(due) == {"r-1", generated}
        assert json.loads(due["r-1"].payload) == {"ok": True}
        assert due[generated].qos == 0
    finally:
        store.close()


def test_store_outbox_stats_counts_and_age(store, clock):
    assert store.outbox_stats() == OutboxStats(depth=0, oldest_unconfirmed_age_s=None, dead=0)
    a = store.record_visit(visit_record(), **outgoing(clock))
    clock.advance(seconds=30)
    b = store.record_visit(visit_record(), **outgoing(clock))
    clock.advance(seconds=45)
    store.mark_published([b.event_id], clock())
    assert store.outbox_stats() == OutboxStats(depth=2, oldest_unconfirmed_age_s=75.0, dead=0)
    store.confirm([a.event_id])
    assert store.outbox_stats() == OutboxStats(depth=1, oldest_unconfirmed_age_s=45.0, dead=0)


def test_store_purge_keeps_unconfirmed_and_recently_confirmed(tmp_path, clock):
    store = Store.open(tmp_path, retention_days=30, clock=clock)
    try:
        old = store.record_visit(visit_record(), **outgoing(clock))
        unconfirmed = store.record_visit(visit_record(), **outgoing(clock))
        store.confirm([old.event_id])
        clock.advance(days=29)
        late = store.record_visit(visit_record(), **outgoing(clock))
        store.confirm([late.event_id])
        purged = store.purge()
        assert (purged.visits, purged.messages) == (0, 2)
        assert store.outbox_stats().depth == 1
        clock.advance(days=1, seconds=1)
        assert store.purge().visits == 1
        remaining = {v.event_id for v in store.VisitRow.select()}
        assert remaining == {unconfirmed.event_id, late.event_id}
        clock.advance(days=365)
        assert store.purge().visits == 1
        assert [v.event_id for v in store.VisitRow.select()] == [unconfirmed.event_id]
    finally:
        store.close()


def test_store_purge_holds_the_write_lock_for_one_chunk_at_a_time(tmp_path, clock, monkeypatch):
    """A visit recorded on the main loop waits for one chunk of a purge, never the whole one."""
    store = Store.open(tmp_path, retention_days=30, clock=clock)
    try:
        with store.atomic():
            ids = [store.record_visit(visit_record(), **outgoing(clock)).event_id
                   for _ in range(25)]
        store.confirm(ids)
        clock.advance(days=31)
        transactions, atomic = [], store._db.atomic
        monkeypatch.setattr(store._db, "atomic", lambda *a: transactions.append(a) or atomic(*a))
        assert store.purge(chunk=10) == Purged(visits=25, messages=25)
        assert len(transactions) == 6  # 10 + 10 + 5 visits, then as many messages
        assert store.VisitRow.select().count() == 0
    finally:
        store.close()


def test_store_checkpoint_empties_the_wal(store):
    for _ in range(5):
        store.record_visit(visit_record(), **outgoing())
    wal = Path(f"{store.path}-wal")
    assert wal.stat().st_size > 0
    assert store.checkpoint()
    assert wal.stat().st_size == 0
    assert store.VisitRow.select().count() == 5


def test_store_times_must_be_aware(store):
    with pytest.raises(ValueError, match="timezone-aware"):
        store.mark_sent(["e1"], datetime(2025, 1, 1))


# --- threads ----------------------------------------------------------------------------------


def test_store_main_and_outbox_threads_work_at_once(store, clock):
    """The runner records visits while the pump sends and confirms them on its own connection."""
    total = 60
    recorded = threading.Event()
    errors = []

    def pump():
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                due = store.due_messages(20)
                ids = [m.event_id for m in due]
                if ids:
                    store.mark_sent(ids, T0)
                    with store.atomic():
                        for event_id in ids:
                            store.mark_published([event_id], T0)
                        store.confirm(ids)
                elif recorded.is_set():
                    return
        except Exception as exc:  # reported on the main thread below
            errors.append(exc)
        finally:
            store.close()

    worker = threading.Thread(target=pump)
    worker.start()
    try:
        for _ in range(total):
            store.record_visit(visit_record(), **outgoing(clock))
    finally:
        recorded.set()
        worker.join(timeout=150)
    assert not worker.is_alive()
    assert errors == []
    assert store.VisitRow.select().where(store.VisitRow.confirmed_at.is_null()).count() == 0
    assert store.VisitRow.select().count() == total
    assert store.outbox_stats().depth == 0


def test_store_threads_have_separate_connections(store, clock):
    """An open transaction on the main thread is invisible to, and does not block, the pump."""
    store.record_visit(visit_record(), **outgoing(clock))
    seen = []
    with store.atomic():
        store.record_visit(visit_record(), **outgoing(clock))

        def look():
            seen.append(len(store.due_messages(10)))
            store.close()

        worker = threading.Thread(target=look)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive()
    assert seen == [1]
    assert len(store.due_messages(10)) == 2


# --- migrations -------------------------------------------------------------------------------


def _add_kiosk_note(db):
    db.execute_sql("ALTER TABLE visit ADD COLUMN note TEXT")
    db.execute_sql("UPDATE visit SET note = 'from v1'")


def _broken_next(db):
    db.execute_sql("CREATE TABLE half_done (x INTEGER)")
    db.execute_sql("THIS IS NOT SQL")


def test_store_migrations_upgrade_in_order_keeping_data(tmp_path, clock):
    store = Store.open(tmp_path, clock=clock, migrations=MIGRATIONS[:1])
    assert store.schema_version == 1
    visit = store.record_visit(visit_record(), **outgoing(clock))
    store.close()
    store = Store.open(tmp_path, clock=clock, migrations=MIGRATIONS + (_add_kiosk_note,))
    try:
        assert store.schema_version == len(MIGRATIONS) + 1
        note = store._db.execute_sql("SELECT note FROM visit WHERE event_id = ?",
                                     (visit.event_id,)).fetchone()[0]
        assert note == "from v1"
        assert store.record_visit(visit_record(), **outgoing(clock)).seq == 2
    finally:
        store.close()


def test_store_failed_migration_rolls_back_and_names_file(tmp_path, clock):
    Store.open(tmp_path, clock=clock, migrations=MIGRATIONS + (_add_kiosk_note,)).close()
    known = len(MIGRATIONS) + 1
    with pytest.raises(StoreError, match=f"{DB_NAME}: upgrading the schema to version "
                                         f"{known + 1} failed"):
        Store.open(tmp_path, clock=clock,
                   migrations=MIGRATIONS + (_add_kiosk_note, _broken_next))
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == known
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables


def test_store_newer_schema_refused(tmp_path, clock):
    Store.open(tmp_path, clock=clock, migrations=MIGRATIONS + (_add_kiosk_note,)).close()
    with pytest.raises(StoreError, match=f"schema version {len(MIGRATIONS) + 1} is newer"):
        Store.open(tmp_path, clock=clock)


# --- durability -------------------------------------------------------------------------------

_WRITER = """
import sys
from kiosk.flow import VisitRecord
from kiosk.store import Store

store = Store.open(sys.argv[1])
while True:
    row = store.record_visit(
        VisitRecord(outcome="completed", step="thank_you", verified=True, expired=False,
                    service_id="svc", copy_answer="none", rating=5, reason=None, language="en",
                    duration_s=9.0, repeat_hash=b"\\x07" * 32),
        topic="t", stamp={"at": "2025-03-01T02:00:00.000Z", "clock_synced": True, "mono_s": 1.0},
        mode="production")
    print(row.seq, row.event_id, flush=True)
"""


def test_store_every_committed_visit_survives_sigkill(tmp_path):
    data = tmp_path / "data"
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(data)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    committed = {}
    try:
        deadline = time.monotonic() + 60
        while len(committed) < 40 and time.monotonic() < deadline:
            ready, _, _ = select.select([child.stdout], [], [], 1)
            if ready:
                line = child.stdout.readline()
                if not line:
                    break
                seq, event_id = line.split()
                committed[int(seq)] = event_id
        # Killed while it is in the middle of its next transactions.
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        stderr = child.stderr.read()
        child.stderr.close()
    assert len(committed) >= 40, stderr
    assert child.returncode == -signal.SIGKILL
    store = Store.open(data)
    try:
        assert store._db.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
        on_disk = {v.seq: v.event_id for v in store.VisitRow.select()}
        assert committed.items() <= on_disk.items()
        messages = {m.event_id for m in store.OutboxMessage.select()}
        assert set(on_disk.values()) == messages
        after = store.record_visit(visit_record(), **outgoing())
        assert after.seq == max(on_disk) + 1
    finally:
        store.close()


# --- disk full --------------------------------------------------------------------------------


def test_store_refuses_below_free_space_floor_keeping_visits(tiny_fs):
    disk = tiny_fs(2)
    data = disk / "data"
    store = Store.open(data, min_free_mb=1, checkpoint_pages=50)
    recorded = [store.record_visit(visit_record(), **outgoing()).event_id
                for _ in range(5)]
    assert store.has_room()
    fill(disk / "ballast", leave_bytes=512 * 1024)
    assert not store.has_room()
    with pytest.raises(DiskFull, match=r"storage.min_free_mb = 1") as caught:
        store.record_visit(visit_record(), **outgoing())
    assert str(data) in str(caught.value)
    with pytest.raises(DiskFull):
        store.enqueue("citizeninfo/v1/kiosk/k1/reply", {"ok": True})
    assert store.VisitRow.select().count() == 5
    (disk / "ballast").unlink()
    assert store.has_room()
    store.record_visit(visit_record(), **outgoing())
    store.close()
    reopened = Store.open(data, min_free_mb=1)
    try:
        assert recorded == [v.event_id for v in reopened.VisitRow.select().order_by(
            reopened.VisitRow.seq)][:5]
        assert reopened.VisitRow.select().count() == 6
    finally:
        reopened.close()


def test_store_disk_really_full_raises_diskfull_and_loses_nothing(tiny_fs):
    disk = tiny_fs(2)
    data = disk / "data"
    store = Store.open(data, min_free_mb=0, checkpoint_pages=50)
    for _ in range(3):
        store.record_visit(visit_record(), **outgoing())
    assert store.checkpoint()  # the next visit has to grow the WAL
    fill(disk / "ballast")
    with pytest.raises(DiskFull, match=f"{DB_NAME}: the disk filled up while trying to record"):
        for _ in range(50):  # a page or two may still fit in the last partial block
            store.record_visit(visit_record(rating=1), **outgoing())
    assert store.VisitRow.select().where(store.VisitRow.rating == 4).count() == 3
    (disk / "ballast").unlink()
    store.record_visit(visit_record(rating=5), **outgoing())
    store.close()
    reopened = Store.open(data, min_free_mb=0)
    try:
        assert reopened._db.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
        ratings = [v.rating for v in reopened.VisitRow.select().order_by(reopened.VisitRow.seq)]
        assert ratings[:3] == [4, 4, 4] and ratings[-1] == 5
        seqs = [v.seq for v in reopened.VisitRow.select().order_by(reopened.VisitRow.seq)]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        reopened.close()
