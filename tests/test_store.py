"""The store on real SQLite files: visits, periods, outbox delivery state, durability."""

import json
import os
import random
import re
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
from kiosk.period import DAY_S, MAX_JITTER_S, Period, count_event_id, is_period_start
from kiosk.store import (
    DB_NAME,
    DUE_AT_ONCE,
    MIGRATIONS,
    Housekeeper,
    OutboxStats,
    Purged,
    Store,
    new_event_id,
    parse_rfc3339,
    rfc3339,
)
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fixtures.disk import fill

REPO = Path(__file__).resolve().parents[1]
VISIT_TOPIC = "citizeninfo/v1/kiosk/k1/visit"
PERIOD_TOPIC = "citizeninfo/v1/kiosk/k1/period"
T0 = datetime(2025, 3, 1, 2, 0, 0, tzinfo=UTC)  # 09:00 in Bangkok: an hour starts
HOUR = 3600
#: A period that ended long before T0: its rows are due at once when it is closed.
PAST = Period.of(T0 - timedelta(hours=2), HOUR)


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


def outgoing(clock=None, period=...):
    """What the runner hands the store beside the visit: topic, mode and the period, the hour
    of ``clock`` (T0 without one) unless ``period`` is given (None: the clock is not synced)."""
    if period is ...:
        period = Period.of(clock() if clock else T0, HOUR)
    return {"topic": VISIT_TOPIC, "period": period, "mode": "production"}


def close(store, before):
    return store.close_periods(before, topic=PERIOD_TOPIC, mode="production")


def close_and_release(store, clock):
    """What the runner does once the hour is over: close it, and wait out the longest release
    delay, so every row of the hour is due."""
    end = Period.of(clock(), HOUR).end
    closed = close(store, end)
    clock.now = end + timedelta(seconds=MAX_JITTER_S)
    return closed


def record_due(store, count=1, **changes):
    """``count`` visits of a period that ended long ago, closed: due at once, with the count."""
    rows = [store.record_visit(visit_record(**changes), **outgoing(period=PAST))
            for _ in range(count)]
    close(store, Period.of(T0, HOUR).start)
    return rows


def row_order(store):
    """``{event_id: row id}`` of the outbox: the order rows are sent in."""
    M = store.OutboxMessage
    return dict(M.select(M.event_id, M.id).tuples())


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
    clock.advance(minutes=17, seconds=3)
    visit = store.record_visit(visit_record(repeat_hash=b"\x01" * 32), **outgoing(clock))
    assert 1 <= visit.id < 2**63
    assert len(visit.event_id) == 32 and int(visit.event_id, 16) >= 0
    assert (visit.period, visit.period_s) == ("2025-03-01T02:00:00Z", HOUR)
    assert (visit.rating, visit.language, visit.mode) == (4, "th", "production")
    assert visit.confirmed_at is None
    assert store.due_messages(10) == []  # held until its hour has closed
    assert store.outbox_stats().held == 1
    close_and_release(store, clock)
    [message] = [m for m in store.due_messages(10) if m.topic == VISIT_TOPIC]
    assert (message.event_id, message.topic, message.state, message.qos) == (
        visit.event_id, VISIT_TOPIC, "pending", 1)
    payload = json.loads(message.payload)
    assert (payload["period"], payload["period_s"], payload["clock_synced"]) == (
        "2025-03-01T02:00:00Z", HOUR, True)
    assert payload["duration_s"] == 22  # whole seconds, as the row holds it
    assert store.VisitRow.get_by_id(visit.id).duration_s == 22
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
    assert store.outbox_stats().held == 1
    store.record_visit(visit_record(), **outgoing(clock))
    assert store.VisitRow.select().count() == 2


def test_store_visit_the_schema_refuses_leaves_nothing_half_written(store, clock):
    with pytest.raises(ValueError, match="13-digit number at \\$.service_id"):
        store.record_visit(visit_record(service_id="svc-1234567890123",
                                        repeat_hash=b"\x02" * 32), **outgoing(clock))
    assert store.VisitRow.select().count() == 0
    assert store.due_messages(10) == []
    assert store.outbox_stats().held == 0


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


def test_store_epoch_and_closed_periods_survive_reopen(tmp_path, clock):
    data = tmp_path / "data"
    first = Store.open(data, clock=clock)
    assert first.current_epoch() == 0
    assert first.closed_through() is None
    assert [first.next_epoch(), first.next_epoch()] == [1, 2]
    ids = [first.record_visit(visit_record(), **outgoing(clock)).id for _ in range(3)]
    close(first, T0)
    first.close()
    second = Store.open(data, clock=clock)
    try:
        assert len(set(ids)) == 3
        assert second.current_epoch() == 2
        assert second.next_epoch() == 3
        assert second.closed_through() == T0
        assert second.outbox_stats().held == 3  # T0's own hour is not closed
        visit = second.record_visit(visit_record(), **outgoing(clock))
        assert visit.id not in ids and not hasattr(visit, "epoch")
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


# --- periods ----------------------------------------------------------------------------------

RFC3339_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


def fine_times(store):
    """``(table, column, time)`` of every RFC 3339 time in any text column of any table that
    says more than an hour: allowed are the start of an hour, the due-at-once value, and a
    ``not_before`` at or after the end of its row's period (a release after the period says
    nothing about the moment of a visit within it)."""
    db = sqlite3.connect(store.path)
    try:
        periods = {event_id: Period.parse(start, length) for event_id, start, length in
                   db.execute("SELECT event_id, period, period_s FROM visit "
                              "WHERE period IS NOT NULL")}
        for event_id, payload in db.execute("SELECT event_id, payload FROM outbox_message"):
            obj = json.loads(payload)
            if obj.get("period"):
                periods.setdefault(event_id, Period.parse(obj["period"], obj["period_s"]))
        found = []
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = db.execute(f"SELECT * FROM {table}")  # noqa: S608 - names from the file
            columns = [d[0] for d in cursor.description]
            for values in cursor:
                row = dict(zip(columns, values, strict=True))
                for column, value in row.items():
                    for moment in RFC3339_TIME.findall(value if isinstance(value, str) else ""):
                        if is_period_start(moment, HOUR) or moment == DUE_AT_ONCE:
                            continue
                        owner = periods.get(row.get("event_id"))
                        if (column == "not_before" and owner is not None
                                and parse_rfc3339(moment) >= owner.end):
                            continue
                        found.append((table, column, moment))
        return found
    finally:
        db.close()


class Draws(random.Random):
    """A seeded generator whose release delays are always ``fraction`` of the longest."""

    def __init__(self, fraction, seed=5):
        super().__init__(seed)
        self.fraction = fraction

    def uniform(self, a, b):
        return a + (b - a) * self.fraction


def test_store_keeps_no_time_finer_than_the_period_and_no_order_of_visits(tmp_path, clock):
    """Forty visits over three hours, some before the clock synced, delivered at odd moments:
    every time in every table is an hour's start, or a release after its hour has ended, and
    row ids follow no order. The scan could fail: a planted time is found."""
    store = Store.open(tmp_path, clock=clock, rng=random.Random(3))
    pace = random.Random(4)
    try:
        recorded, undated = [], []
        for n in range(40):
            clock.advance(seconds=pace.randint(60, 420), milliseconds=pace.randint(0, 999))
            synced = n % 7 != 3
            period = Period.of(clock(), HOUR) if synced else None
            visit = store.record_visit(visit_record(rating=1 + n % 5), **outgoing(period=period))
            recorded.append(visit)
            if not synced:
                undated.append(visit.event_id)
            if n % 9 == 0:
                store.enqueue("citizeninfo/v1/kiosk/k1/reply", {"ok": True})
            if n % 6 == 5:  # the clock synced: back-date, then close what has ended
                store.date_visits({event_id: Period.of(clock(), HOUR) for event_id in undated})
                undated.clear()
                close(store, Period.of(clock(), HOUR).start)
            due = [m.event_id for m in store.due_messages(5)]
            store.mark_sent(due, clock())
            store.mark_published(due[:3], clock())
            store.confirm(due[:2])
        store.date_visits({event_id: Period.of(clock(), HOUR) for event_id in undated})
        close_and_release(store, clock)
        clock.advance(seconds=7, milliseconds=123)
        due = [m.event_id for m in store.due_messages(100)] + store.published_ids()
        store.mark_sent(due, clock())
        store.mark_published(due, clock())
        store.confirm(due)
        assert store.outbox_stats() == OutboxStats(depth=0, oldest_unconfirmed_age_s=None,
                                                   dead=0, held=0)
        assert fine_times(store) == []

        for table in ("visit", "outbox_message"):
            ids = [row_id for (row_id,) in
                   store._db.execute_sql(f"SELECT id FROM {table}")]  # noqa: S608
            assert len(set(ids)) == len(ids) and all(1 <= i < 2**63 for i in ids)
        by_record = [store.VisitRow.get(store.VisitRow.event_id == v.event_id).id
                     for v in recorded]
        assert by_record != sorted(by_record)

        store.set_state("leak", "2025-03-01T02:13:07.123Z")
        assert fine_times(store) == [("kiosk_state", "value", "2025-03-01T02:13:07.123Z")]
    finally:
        store.close()


def test_store_close_periods_releases_only_ended_periods_and_counts_them_once(store, clock):
    first = [store.record_visit(visit_record(), **outgoing(clock)) for _ in range(3)]
    clock.advance(hours=1, minutes=5)  # 10:05 in Bangkok: the 09:00 hour is over
    second = [store.record_visit(visit_record(), **outgoing(clock)) for _ in range(2)]
    nine, ten = Period.of(T0, HOUR), Period.of(clock(), HOUR)
    assert close(store, ten.start) == [(nine, 3)]
    assert store.closed_through() == ten.start
    M = store.OutboxMessage
    not_before = dict(M.select(M.event_id, M.not_before).tuples())
    for visit in first:
        assert nine.end <= parse_rfc3339(not_before[visit.event_id]) <= nine.end + timedelta(
            seconds=MAX_JITTER_S)
    assert [not_before[visit.event_id] for visit in second] == [None, None]
    count = M.get(M.topic == PERIOD_TOPIC)
    assert count.event_id == count_event_id(store.instance, nine)
    assert parse_rfc3339(count.not_before) == nine.end + timedelta(seconds=MAX_JITTER_S)
    message = topics.parse_kiosk_message(PERIOD_TOPIC, count.payload.encode())
    assert (message.instance, message.period, message.period_s, message.visits) == (
        store.instance, nine.text, HOUR, 3)
    clock.now = nine.end + timedelta(seconds=MAX_JITTER_S)
    assert {m.event_id for m in store.due_messages(10)} == {
        *(v.event_id for v in first), count.event_id}

    assert close(store, ten.start) == []  # nothing held before ten
    # A visit filed in the closed hour anyway (the runner's book never does that): it is
    # released by the next close, and the hour's count is not queued a second time, so the
    # collector will find the hour one over: an alarm, as it should be.
    late = store.record_visit(visit_record(), **outgoing(period=nine))
    assert close(store, ten.start) == [(nine, 1)]
    assert M.get(M.event_id == late.event_id).not_before is not None
    assert M.select().where(M.topic == PERIOD_TOPIC).count() == 1
    assert close(store, ten.end) == [(ten, 2)]
    assert M.select().where(M.topic == PERIOD_TOPIC).count() == 2
    assert store.outbox_stats().held == 0


def test_store_closed_period_goes_out_in_random_order_the_same_for_a_seed(tmp_path, clock):
    nine = Period.of(T0, HOUR)

    def send_order(name, seed):
        """Indices, in record order, of the visits as they are sent; checks the releases."""
        clock.now = T0
        store = Store.open(tmp_path / name, clock=clock, rng=random.Random(seed))
        try:
            recorded = [store.record_visit(visit_record(), **outgoing(clock)).event_id
                        for _ in range(50)]
            close(store, nine.end)
            M = store.OutboxMessage
            releases = {parse_rfc3339(t) for (t,) in M.select(M.not_before)
                        .where(M.topic == VISIT_TOPIC).tuples()}
            assert len(releases) > 10
            assert nine.end <= min(releases) and max(releases) <= nine.end + timedelta(
                seconds=MAX_JITTER_S)
            clock.now = nine.end + timedelta(seconds=MAX_JITTER_S)
            sent = [m.event_id for m in store.due_messages(100) if m.topic == VISIT_TOPIC]
            assert sorted(sent) == sorted(recorded)
            return [recorded.index(event_id) for event_id in sent]
        finally:
            store.close()

    order = send_order("a", 11)
    assert order != list(range(50))
    assert send_order("b", 11) == order
    assert send_order("c", 12) != order


def test_store_due_messages_wait_for_not_before_unless_the_clock_went_far_back(tmp_path, clock):
    store = Store.open(tmp_path, clock=clock, rng=Draws(0.5))
    try:
        visit = store.record_visit(visit_record(), **outgoing(clock))
        clock.advance(hours=1)
        later = store.record_visit(visit_record(), **outgoing(clock))  # the next hour: held
        nine = Period.of(T0, HOUR)
        close(store, nine.end)
        release = nine.end + timedelta(seconds=MAX_JITTER_S / 2)
        count_id = count_event_id(store.instance, nine)

        def due_at(moment):
            clock.now = moment
            return {m.event_id for m in store.due_messages(10)}

        assert due_at(release - timedelta(seconds=1)) == set()
        assert due_at(release) == {visit.event_id}
        assert due_at(nine.end + timedelta(seconds=MAX_JITTER_S)) == {visit.event_id, count_id}
        # NTP stepped the clock back: a release is set when its period closes, at most the
        # longest jitter ahead of the close, so that far back a row still waits ...
        assert visit.event_id not in due_at(release - timedelta(seconds=MAX_JITTER_S))
        # ... further back no release can be meant (the soak's 3-hour step held a period's
        # visits for three hours): it goes rather than wait for as long as the step.
        assert visit.event_id in due_at(release - timedelta(seconds=MAX_JITTER_S + 1))
        assert visit.event_id in due_at(release - timedelta(hours=3))
        assert due_at(T0 - timedelta(days=2)) == {visit.event_id, count_id}
        assert later.event_id not in due_at(T0 + timedelta(days=3))  # held is never due
    finally:
        store.close()


def concordance(positions):
    """The share of pairs of ``positions`` (given in the order the visits were made) that
    stand in that order: about 0.5 when they follow no order, near 0 or 1 when they do."""
    pairs = [(a, b) for i, a in enumerate(positions) for b in positions[i + 1:]]
    return sum(a < b for a, b in pairs) / len(pairs)


def file_order(path, event_ids):
    """For each place an event id is written in the file (its row, its index entries, its
    outbox row...), the byte offsets of the visits' copies, in the order of ``event_ids``."""
    data = path.read_bytes()
    found = []
    for event_id in event_ids:
        offsets, start = [], 0
        while (at := data.find(event_id.encode(), start)) >= 0:
            offsets.append(at)
            start = at + 1
        found.append(offsets)
    places = min(len(offsets) for offsets in found)
    assert places >= 2, "the event ids should be in the visit table and its index at least"
    return [[offsets[place] for offsets in found] for place in range(places)]


def test_store_compact_leaves_no_order_of_a_closed_periods_visits_in_the_file(tmp_path,
                                                                              clock):
    """Random row ids are not enough: SQLite writes each new cell of a page below the one
    before, so the file itself kept the order in which an hour's visits were made."""
    store = Store.open(tmp_path, clock=clock)
    try:
        made = []
        for _ in range(40):
            clock.advance(seconds=60)
            made.append(store.record_visit(visit_record(), **outgoing(period=PAST)).event_id)
        store.checkpoint()
        before = [concordance(offsets) for offsets in file_order(store.path, made)]
        assert any(abs(share - 0.5) > 0.4 for share in before), before  # the leak, shown
        assert close(store, PAST.end) and store.needs_compact
        assert store.compact() and not store.needs_compact
        after = [concordance(offsets) for offsets in file_order(store.path, made)]
        assert all(abs(share - 0.5) < 0.25 for share in after), after
        assert not Path(f"{store.path}-wal").exists() or Path(f"{store.path}-wal").stat(
            ).st_size == 0
    finally:
        store.close()


def test_store_housekeeper_compacts_once_a_period_was_closed(store, clock):
    store.record_visit(visit_record(), **outgoing(period=PAST))
    assert not store.needs_compact
    close(store, PAST.end)
    assert store.needs_compact
    keeper = Housekeeper(store)
    keeper.start()
    try:
        keeper.request()
        wait_until(lambda: not store.needs_compact, "the compaction after the close")
    finally:
        keeper.stop()


def test_store_day_periods_are_not_released_early_after_a_change_to_hours(tmp_path, clock):
    """telemetry.period_s changed from a day to an hour, the kiosk restarted at 10:00: the
    day's visits stay held until the day has ended, then wait for their jitter like any
    period's (a release is set at the close, so it is never further ahead than the jitter)."""
    day = Period.of(T0, DAY_S)
    store = Store.open(tmp_path, clock=clock, period_s=DAY_S)
    visits = [store.record_visit(visit_record(), **outgoing(period=day)) for _ in range(3)]
    store.close()
    clock.now = T0 + timedelta(hours=1)  # 10:00 in Bangkok
    store = Store.open(tmp_path, clock=clock, period_s=HOUR)
    try:
        assert close(store, Period.of(clock(), HOUR).start) == []
        assert store.due_messages(10) == [] and store.outbox_stats().held == 3
        clock.now = day.end
        assert close(store, day.end) == [(day, 3)]
        M = store.OutboxMessage
        releases = [parse_rfc3339(m.not_before) for m in M.select()]
        assert all(day.end <= r <= day.end + timedelta(seconds=MAX_JITTER_S) for r in releases)
        clock.now = day.end + timedelta(seconds=MAX_JITTER_S)
        assert {m.event_id for m in store.due_messages(10)} == {
            *(v.event_id for v in visits), count_event_id(store.instance, day)}
    finally:
        store.close()


def test_store_date_visits_gives_held_undated_visits_their_period(store, clock):
    M = store.OutboxMessage

    def payload(visit):
        return json.loads(M.get(M.event_id == visit.event_id).payload)

    undated = store.record_visit(visit_record(), **outgoing(period=None))
    assert (undated.period, undated.period_s) == (None, None)
    assert (payload(undated)["period"], payload(undated)["clock_synced"]) == (None, False)
    nine = Period.of(T0, HOUR)
    assert store.date_visits({undated.event_id: nine, "not-a-visit": nine}) == 1
    row = store.VisitRow.get_by_id(undated.id)
    assert (row.period, row.period_s) == (nine.text, HOUR)
    assert (payload(undated)["period"], payload(undated)["period_s"],
            payload(undated)["clock_synced"]) == (nine.text, HOUR, True)
    assert store.outbox_stats().held == 1
    assert store.date_visits({undated.event_id: Period.of(T0 + timedelta(hours=1), HOUR)}) == 0
    assert close(store, nine.end) == [(nine, 1)]

    released = store.record_visit(visit_record(), **outgoing(period=None))
    assert store.release_undated() == 1
    assert store.date_visits({released.event_id: nine}) == 0  # already on its way, undated
    assert payload(released)["period"] is None


def test_store_release_undated_sends_what_a_restart_left_without_a_period(tmp_path, clock):
    first = Store.open(tmp_path, clock=clock)
    undated = {first.record_visit(visit_record(), **outgoing(period=None)).event_id
               for _ in range(2)}
    first.record_visit(visit_record(), **outgoing(clock))
    first.close()
    store = Store.open(tmp_path, clock=clock)  # restarted before the clock synced
    try:
        assert store.release_undated() == 2
        due = {m.event_id: json.loads(m.payload) for m in store.due_messages(10)}
        assert set(due) == undated
        assert {(p["period"], p["period_s"], p["clock_synced"]) for p in due.values()} == {
            (None, None, False)}
        assert store.outbox_stats().held == 1  # the dated visit waits for its hour
        assert store.release_undated() == 0
        # Undated visits are counted in no period.
        assert close(store, Period.of(T0, HOUR).end) == [(Period.of(T0, HOUR), 1)]
    finally:
        store.close()


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
    close_and_release(store, clock)
    period_message = count_event_id(store.instance, Period.of(T0, HOUR))
    assert store.confirm([period_message]) == 1
    clock.advance(minutes=13, seconds=7)
    sent = clock()
    assert store.mark_sent([visit.event_id], sent) == 1
    # Released pending rows are due: the pump skips the ones it has in flight itself.
    assert [m.attempts for m in store.due_messages(10)] == [1]
    assert store.mark_published([visit.event_id], sent)
    assert store.due_messages(10) == []  # published: due only when the pump names it
    [due] = store.due_messages(10, [visit.event_id])
    # The send time too is only its period's start.
    assert (due.state, due.attempts, due.sent_at) == ("published", 1, "2025-03-01T03:00:00Z")
    assert store.published_ids() == [visit.event_id]
    assert store.confirm([visit.event_id]) == 1
    assert store.due_messages(10, [visit.event_id]) == []
    assert store.published_ids() == []
    assert store.VisitRow.get_by_id(visit.id).confirmed_at == "2025-03-01T03:00:00Z"


def test_store_mark_published_takes_a_batch_beyond_one_statement(store, clock):
    with store.atomic():
        ids = [store.enqueue(VISIT_TOPIC, {"n": n}) for n in range(1200)]
    order = row_order(store)
    sent = clock()
    assert store.mark_published(ids[:1100], sent) == 1100
    assert store.published_ids() == sorted(ids[:1100], key=order.get)
    due = store.due_messages(100, ids[:1100])
    # In row id order, which is random: pending and named published mixed.
    assert [m.event_id for m in due] == sorted(ids, key=order.get)
    assert {m.state for m in due if m.event_id in ids[:1100]} == {"published"}
    assert {m.state for m in due if m.event_id in ids[1100:]} == {"pending"}
    assert [m.event_id for m in store.due_messages(150)] == sorted(ids[1100:], key=order.get)


def test_store_confirm_is_idempotent_and_ignores_unknown_ids(store, clock):
    a = store.record_visit(visit_record(), **outgoing(clock))
    b = store.record_visit(visit_record(), **outgoing(clock))
    close_and_release(store, clock)
    assert store.confirm([a.event_id, "not-an-event"]) == 1
    first_confirmed_at = store.VisitRow.get_by_id(a.id).confirmed_at
    clock.advance(hours=5)
    assert store.confirm([a.event_id]) == 0
    assert store.VisitRow.get_by_id(a.id).confirmed_at == first_confirmed_at
    assert store.VisitRow.get_by_id(b.id).confirmed_at is None
    assert store.outbox_stats().depth == 2  # b, and the hour's count


def test_store_late_puback_does_not_undo_confirmation(store, clock):
    visit = store.record_visit(visit_record(), **outgoing(clock))
    store.confirm([visit.event_id])
    assert not store.mark_published([visit.event_id], clock())
    assert not store.mark_dead(visit.event_id, 0x87)
    assert store.OutboxMessage.get(store.OutboxMessage.event_id == visit.event_id).state == \
        "confirmed"


def test_store_dead_letters_parked_and_replayed(store, clock):
    event_id = store.enqueue(VISIT_TOPIC, {"n": 0})
    store.mark_sent([event_id], clock())
    assert store.mark_dead(event_id, 0x87)
    assert store.due_messages(10, [event_id]) == []
    assert store.outbox_stats() == OutboxStats(depth=0, oldest_unconfirmed_age_s=None, dead=1,
                                               held=0)
    row = store.OutboxMessage.get(store.OutboxMessage.event_id == event_id)
    assert row.reason_code == 0x87
    assert store.replay_dead() == 1
    [due] = store.due_messages(10)
    assert (due.state, due.sent_at, due.attempts) == ("pending", None, 1)
    assert store.replay_dead() == 0


def test_store_due_messages_pending_up_to_the_limit_and_named_rows_still_published(store):
    ids = [store.enqueue(VISIT_TOPIC, {"n": n}) for n in range(5)]
    order = row_order(store)
    store.mark_published(ids[:3], T0)
    store.confirm([ids[1]])
    store.mark_dead(ids[2], 0x87)
    # Confirmed and dead rows are never resent, whoever names them.
    assert [m.event_id for m in store.due_messages(10, ids[:3])] == sorted(
        [ids[0], ids[3], ids[4]], key=order.get)
    first_pending = min(ids[3:], key=order.get)
    assert [m.event_id for m in store.due_messages(1, [ids[0]])] == sorted(
        [ids[0], first_pending], key=order.get)
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


def test_store_outbox_stats_count_released_rows_only_and_age_from_the_period(store, clock):
    """A visit moves nothing health reports until its hour has closed: depth and age count
    released rows, and a row's age runs from its period's start."""
    assert store.outbox_stats() == OutboxStats(depth=0, oldest_unconfirmed_age_s=None, dead=0,
                                               held=0)
    a = store.record_visit(visit_record(), **outgoing(clock))
    clock.advance(seconds=30)
    b = store.record_visit(visit_record(), **outgoing(clock))
    clock.advance(seconds=45)
    assert store.outbox_stats() == OutboxStats(depth=0, oldest_unconfirmed_age_s=None, dead=0,
                                               held=2)
    store.enqueue("citizeninfo/v1/kiosk/k1/reply", {"ok": True})  # due at once
    assert store.outbox_stats() == OutboxStats(depth=1, oldest_unconfirmed_age_s=75.0, dead=0,
                                               held=2)
    close_and_release(store, clock)  # an hour and ten minutes after T0
    store.mark_published([b.event_id], clock())
    assert store.outbox_stats() == OutboxStats(depth=4, oldest_unconfirmed_age_s=4200.0, dead=0,
                                               held=0)
    store.confirm([a.event_id])
    assert store.outbox_stats() == OutboxStats(depth=3, oldest_unconfirmed_age_s=4200.0, dead=0,
                                               held=0)


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
        assert store.outbox_stats().held == 1
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
    """The runner records visits and closes periods while the pump sends and confirms them on
    its own connection."""
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
        for n in range(total):  # each in an hour of its own, long over: due once closed
            store.record_visit(visit_record(), **outgoing(
                period=Period.of(T0 - timedelta(hours=total + 1 - n), HOUR)))
            close(store, T0)
    finally:
        recorded.set()
        worker.join(timeout=150)
    assert not worker.is_alive()
    assert errors == []
    assert store.VisitRow.select().where(store.VisitRow.confirmed_at.is_null()).count() == 0
    assert store.VisitRow.select().count() == total
    assert store.OutboxMessage.select().where(
        store.OutboxMessage.topic == PERIOD_TOPIC).count() == total
    assert store.outbox_stats() == OutboxStats(depth=0, oldest_unconfirmed_age_s=None, dead=0,
                                               held=0)


def test_store_threads_have_separate_connections(store, clock):
    """An open transaction on the main thread is invisible to, and does not block, the pump."""
    store.enqueue(VISIT_TOPIC, {"n": 0})
    seen = []
    with store.atomic():
        store.enqueue(VISIT_TOPIC, {"n": 1})

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


def _insert_v3_visit(store, event_id, seq, recorded_at, *, confirmed_at=None):
    """A visit row as store versions 1 to 3 wrote it."""
    store._db.execute_sql(
        "INSERT INTO visit (event_id, seq, epoch, recorded_at, outcome, step, verified, "
        "expired, service_id, copy_answer, rating, reason, language, duration_s, mode, "
        "confirmed_at) VALUES (?, ?, 3, ?, 'completed', 'thank_you', 1, 0, 'id_card', 'none', "
        "4, NULL, 'th', 21.5, 'production', ?)", (event_id, seq, recorded_at, confirmed_at))


def _insert_v3_message(store, event_id, topic, payload, state, *, created_at, sent_at=None):
    store._db.execute_sql(
        "INSERT INTO outbox_message (event_id, topic, payload, qos, state, attempts, sent_at, "
        "created_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
        (event_id, topic, payload, state, int(sent_at is not None), sent_at, created_at))


def _schema1_visit(event_id, seq, at, *, synced, instance, mono_s):
    """A visit payload as schema 1 put it on the wire: its time to the millisecond."""
    obj = {"schema": 1, "event_id": event_id, "instance": instance, "seq": seq, "epoch": 3,
           "mode": "production", "outcome": "completed", "step": "thank_you", "verified": True,
           "expired": False, "service_id": "id_card", "copy_answer": "none", "rating": 4,
           "reason": None, "language": "th", "duration_s": 21.5, "age_band": None,
           "gender": None, "at": at, "clock_synced": synced, "mono_s": mono_s}
    if instance is None:  # queued before instances
        del obj["instance"]
    return json.dumps(obj, separators=(",", ":"))


def test_store_v4_files_old_visits_by_hour_and_wipes_their_times(tmp_path, clock):
    v3 = Store.open(tmp_path, clock=clock, migrations=MIGRATIONS[:3])
    old = [  # event id, seq, time, synced, state, sent, confirmed
        ("sent", 1, "2025-03-01T02:13:07.123Z", True, "published", "2025-03-01T02:13:08.246Z",
         None),
        ("queued", 2, "2025-03-01T03:41:59.987Z", False, "pending", None, None),
        ("done", 3, "2025-03-01T04:05:00.555Z", True, "confirmed", "2025-03-01T04:05:01.666Z",
         "2025-03-01T04:06:01.777Z"),
    ]
    for n, (event_id, seq, at, synced, state, sent_at, confirmed_at) in enumerate(old):
        _insert_v3_visit(v3, event_id, seq, at, confirmed_at=confirmed_at)
        _insert_v3_message(v3, event_id, VISIT_TOPIC, _schema1_visit(
            event_id, seq, at, synced=synced, instance=v3.instance, mono_s=4321.988 + n),
            state, created_at=at, sent_at=sent_at)
    _insert_v3_message(v3, "legacy", VISIT_TOPIC, _schema1_visit(
        "legacy", 4, "2025-03-01T01:59:59.999Z", synced=True, instance=None, mono_s=17.5),
        "pending", created_at="2025-03-01T01:59:59.999Z")
    reply = '{"schema":1,"correlation_id":"c1","ok":true,"error":null,"data":null}'
    _insert_v3_message(v3, "reply-1", "citizeninfo/v1/kiosk/k1/reply", reply, "pending",
                       created_at="2025-03-01T02:30:30.303Z")
    v3.set_state("seq", 4)
    v3.set_state("write_check", "8641.25")  # the monotonic time older runners wrote
    v3.close()

    store = Store.open(tmp_path, clock=clock)
    try:
        assert store.schema_version == len(MIGRATIONS)
        visits = {v.event_id: v for v in store.VisitRow.select()}
        assert {e: (v.period, v.period_s, v.duration_s, v.confirmed_at)
                for e, v in visits.items()} == {
            "sent": ("2025-03-01T02:00:00Z", HOUR, 22, None),
            "queued": ("2025-03-01T03:00:00Z", HOUR, 22, None),
            "done": ("2025-03-01T04:00:00Z", HOUR, 22, "2025-03-01T04:00:00Z")}
        assert not {v.id for v in visits.values()} & {1, 2, 3}
        M = store.OutboxMessage
        messages = {m.event_id: m for m in M.select()}
        assert {m.not_before for m in messages.values()} == {DUE_AT_ONCE}
        assert (messages["sent"].created_at, messages["sent"].sent_at) == (
            "2025-03-01T02:00:00Z", "2025-03-01T02:00:00Z")
        parsed = {e: topics.parse_kiosk_message(m.topic, m.payload.encode())
                  for e, m in messages.items() if m.topic == VISIT_TOPIC}
        # Queued visits are schema 2 now, as the collector would have coarsened them.
        assert {e: (p.schema, p.period, p.period_s, p.clock_synced, p.duration_s)
                for e, p in parsed.items() if e != "legacy"} == {
            "sent": (2, "2025-03-01T02:00:00Z", HOUR, True, 22),
            "queued": (2, None, None, False, 22),
            "done": (2, "2025-03-01T04:00:00Z", HOUR, True, 22)}
        assert parsed["sent"].instance == store.instance
        assert parsed["legacy"].schema == 1  # no instance to send as schema 2: coarsened there
        legacy = json.loads(messages["legacy"].payload)
        assert (legacy["at"], legacy["seq"], legacy["epoch"], legacy["mono_s"]) == (
            "2025-03-01T01:00:00Z", 0, 0, 0)
        assert parsed["legacy"].period == "2025-03-01T01:00:00Z"
        assert messages["reply-1"].payload == reply
        assert {m.event_id for m in store.due_messages(10)} == {"queued", "legacy", "reply-1"}
        assert (store.get_state("seq"), store.get_state("write_check")) == (None, None)
        assert [time for table, column, time in fine_times(store)] == []
    finally:
        store.close()
    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    for gone in ("02:13:07.123", "02:13:08.246", "03:41:59.987", "04:05:00.555", "04:05:01.666",
                 "04:06:01.777", "02:30:30.303", "4321.988", "4322.988", "4323.988", "8641.25",
                 "01:59:59.999", "17.5"):
        assert gone.encode() not in files, gone


def test_store_migrations_upgrade_in_order_keeping_data(tmp_path, clock):
    store = Store.open(tmp_path, clock=clock, migrations=MIGRATIONS[:1])
    assert store.schema_version == 1
    _insert_v3_visit(store, "v1-visit", 1, "2025-03-01T02:13:07.123Z")
    store.close()
    store = Store.open(tmp_path, clock=clock, migrations=MIGRATIONS + (_add_kiosk_note,))
    try:
        assert store.schema_version == len(MIGRATIONS) + 1
        note = store._db.execute_sql("SELECT note FROM visit WHERE event_id = ?",
                                     ("v1-visit",)).fetchone()[0]
        assert note == "from v1"
        store.record_visit(visit_record(), **outgoing(clock))
        assert store.VisitRow.select().count() == 2
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
from datetime import UTC, datetime
from kiosk.flow import VisitRecord
from kiosk.period import Period
from kiosk.store import Store

store = Store.open(sys.argv[1])
while True:
    row = store.record_visit(
        VisitRecord(outcome="completed", step="thank_you", verified=True, expired=False,
                    service_id="svc", copy_answer="none", rating=5, reason=None, language="en",
                    duration_s=9.0, repeat_hash=b"\\x07" * 32),
        topic="t", period=Period.of(datetime(2025, 3, 1, 2, tzinfo=UTC), 3600),
        mode="production")
    print(row.id, row.event_id, flush=True)
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
                row_id, event_id = line.split()
                committed[int(row_id)] = event_id
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
        on_disk = {v.id: v.event_id for v in store.VisitRow.select()}
        assert committed.items() <= on_disk.items()
        messages = {m.event_id for m in store.OutboxMessage.select()}
        assert set(on_disk.values()) == messages
        after = store.record_visit(visit_record(), **outgoing())
        assert after.id not in on_disk
        assert store.VisitRow.select().count() == len(on_disk) + 1
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
        kept = {v.event_id for v in reopened.VisitRow.select()}
        assert set(recorded) < kept
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
        ratings = [v.rating for v in reopened.VisitRow.select()]
        assert ratings.count(4) == 3 and ratings.count(5) == 1
        # Nothing half written: every visit has its message and every message its visit.
        assert {v.event_id for v in reopened.VisitRow.select()} == {
            m.event_id for m in reopened.OutboxMessage.select()}
    finally:
        reopened.close()
