"""The kiosk's durable private store: anonymous visits and their outbox messages.

One SQLite file (``kiosk.db``) under ``storage.data_dir``, the only place the kiosk writes at run
time. What it promises, and why:

- A visit and the outbox message that reports it are written in ONE transaction with
  ``synchronous=FULL``: once :meth:`Store.record_visit` returns (and the thank-you screen shows),
  the rating survives a power cut and will reach the collector.
- WAL journal: the main thread (visits) and the outbox thread (delivery state) each get their own
  connection from peewee and never block each other's reads. SQLite checkpoints the WAL into the
  main file every ``checkpoint_pages`` pages; :meth:`Store.checkpoint` does a full TRUNCATE
  checkpoint after each purge, because ``secure_delete`` zeroes freed pages in the main file
  but not old page images still sitting in the WAL, and because a WAL that only grows eats the
  small data partition. Both run on the :class:`Housekeeper` thread, never on the main loop.
- Nothing that identifies a citizen is ever stored: no CID, name, address, birth date or photo,
  nor the pseudonymous repeat hash (the runner keeps those in memory: ``kiosk.card.repeat``).
- Free space is checked before every write; below ``min_free_mb`` the store refuses new rows
  with :class:`~kiosk.errors.DiskFull` instead of risking the rows it already has.
- The outbox's states and which may follow which are :mod:`kiosk.outbox_rules`; the store only
  persists them, for the pump in :mod:`kiosk.telemetry.outbox`.
- No time finer than a visit's period (:mod:`kiosk.period`) and no order of visits: the counter's
  own system logs each citizen's service, so either would time a rating back to its citizen.
  Row ids are random 63-bit numbers; ``created_at``, ``sent_at`` and ``confirmed_at`` are period
  starts. A visit's outbox row is held (``not_before`` NULL) until its period closes, then
  released at the period's end (or at the close, for a clock behind its closed periods) plus a
  random delay (:meth:`Store.close_periods`), with one ``period`` message counting the
  period's visits; rows are sent in id order, so at random. A release further ahead than that
  delay can be means the clock was stepped back since: it goes at once.

Schema versions live in ``PRAGMA user_version``; :data:`MIGRATIONS` is the ordered history and
each step runs in its own transaction together with the version bump.
"""

import contextlib
import json
import logging
import math
import os
import random
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee

from kiosk import logsafe
from kiosk import visit as schema
from kiosk.errors import DiskFull, StoreError
from kiosk.outbox_rules import ACCEPT, CONFIRM, DUE, LIVE, REFUSE, REPLAY, RESENDABLE, SEND, State
from kiosk.period import DEFAULT_S, MAX_JITTER_S, Period, count_event_id, release_jitter_s
from kiosk.sqlite import bind, schema_columns
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

DB_NAME = "kiosk.db"

_BUSY_TIMEOUT_S = 10  # the other thread's write transactions are milliseconds long
_IN_CHUNK = 500  # stay far below SQLite's bound-parameter limit
PURGE_CHUNK = 1000  # rows a purge transaction deletes: a few milliseconds of write lock
#: ``not_before`` of a row due at once (replies, rows from before periods): no time at all.
DUE_AT_ONCE = "1970-01-01T00:00:00Z"
_ID_LIMIT = 2**63  # row ids are random in [1, 2**63): any order of them says nothing


# --- schema history ---------------------------------------------------------------------------


def _schema_v1(db):
    """The first schema. Written as SQL, not from the models, so it never changes after release."""
    for statement in (
        """CREATE TABLE visit (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            seq INTEGER NOT NULL UNIQUE,
            epoch INTEGER NOT NULL,
            recorded_at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            step TEXT NOT NULL,
            verified INTEGER NOT NULL,
            expired INTEGER,
            service_id TEXT,
            copy_answer TEXT,
            rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
            reason TEXT,
            language TEXT NOT NULL,
            duration_s REAL NOT NULL,
            age_band TEXT,
            gender TEXT,
            mode TEXT NOT NULL,
            confirmed_at TEXT)""",
        "CREATE INDEX visit_confirmed_at ON visit (confirmed_at)",
        """CREATE TABLE seen_card (
            id INTEGER PRIMARY KEY,
            hash BLOB NOT NULL,
            seen_at TEXT NOT NULL)""",
        "CREATE INDEX seen_card_hash ON seen_card (hash)",
        "CREATE INDEX seen_card_seen_at ON seen_card (seen_at)",
        """CREATE TABLE outbox_message (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            payload TEXT NOT NULL,
            qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'published', 'confirmed', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at TEXT,
            reason_code INTEGER,
            created_at TEXT NOT NULL)""",
        "CREATE INDEX outbox_message_state ON outbox_message (state, id)",
        """CREATE TABLE kiosk_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL)""",
    ):
        db.execute_sql(statement)


def _schema_v2(db):
    """Overdue published rows by send time: without it every refill of the window walked all
    published rows (thousands while the collector is away) to find the few due for a resend."""
    db.execute_sql("CREATE INDEX outbox_message_state_sent_at ON outbox_message (state, sent_at)")


def _schema_v3(db):
    """Repeat hashes and resend timing moved to memory, on the monotonic clock: a wall-clock
    step no longer expires a hash or a resend early or late, and no hash is left on disk. The
    send-time index only served wall-clock resends."""
    db.execute_sql("DROP TABLE seen_card")
    db.execute_sql("DROP INDEX outbox_message_state_sent_at")


def _schema_v4(db):
    """Visits by period (issue 11): no ``seq``, ``epoch`` or ``recorded_at``, random row ids,
    outbox times floored to the hour and a ``not_before`` that holds a row until its period
    has closed. SQLite cannot drop a UNIQUE column, so both tables are rebuilt; ``_migrate``'s
    TRUNCATE checkpoint then overwrites the old pages (secure_delete zeroed them).

    Old rows fall in the 3600-s period of their time (Bangkok is UTC+7, so the UTC hour is the
    local one) and are due at once. Queued schema-1 visit payloads are rewritten as schema 2,
    as the collector would coarsen them, so no time to the millisecond stays in the file; one
    without an ``instance`` (queued before instances) stays schema 1, which schema 2 cannot
    express, with its time floored to the hour and its sequence number, epoch and monotonic
    time zeroed (the collector coarsens it on arrival to that same hour).
    """
    for statement in (
        "ALTER TABLE visit RENAME TO visit_v3",
        """CREATE TABLE visit (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            period TEXT,
            period_s INTEGER,
            outcome TEXT NOT NULL,
            step TEXT NOT NULL,
            verified INTEGER NOT NULL,
            expired INTEGER,
            service_id TEXT,
            copy_answer TEXT,
            rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
            reason TEXT,
            language TEXT NOT NULL,
            duration_s INTEGER NOT NULL,
            age_band TEXT,
            gender TEXT,
            mode TEXT NOT NULL,
            confirmed_at TEXT)""",
        """INSERT INTO visit (id, event_id, period, period_s, outcome, step, verified, expired,
                              service_id, copy_answer, rating, reason, language, duration_s,
                              age_band, gender, mode, confirmed_at)
            SELECT random() & 9223372036854775807, event_id,
                   strftime('%Y-%m-%dT%H:00:00Z', recorded_at), 3600, outcome, step, verified,
                   expired, service_id, copy_answer, rating, reason, language,
                   CAST(round(duration_s) AS INTEGER), age_band, gender, mode,
                   strftime('%Y-%m-%dT%H:00:00Z', confirmed_at)
            FROM visit_v3""",
        "DROP TABLE visit_v3",
        "CREATE INDEX visit_confirmed_at ON visit (confirmed_at)",
        "CREATE INDEX visit_period ON visit (period)",
        "ALTER TABLE outbox_message RENAME TO outbox_message_v3",
        """CREATE TABLE outbox_message (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            topic TEXT NOT NULL,
            payload TEXT NOT NULL,
            qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'published', 'confirmed', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at TEXT,
            reason_code INTEGER,
            created_at TEXT NOT NULL,
            not_before TEXT)""",
        """INSERT INTO outbox_message (id, event_id, topic, payload, qos, state, attempts,
                                       sent_at, reason_code, created_at, not_before)
            SELECT random() & 9223372036854775807, event_id, topic,
                   CASE WHEN topic LIKE '%/visit' AND json_extract(payload, '$.schema') = 1
                             AND json_type(payload, '$.instance') = 'text'
                   THEN json_set(json_remove(payload, '$.at', '$.mono_s', '$.seq', '$.epoch'),
                                 '$.schema', 2,
                                 '$.period', CASE WHEN json_extract(payload, '$.clock_synced')
                                             THEN strftime('%Y-%m-%dT%H:00:00Z',
                                                           json_extract(payload, '$.at')) END,
                                 '$.period_s', CASE WHEN json_extract(payload, '$.clock_synced')
                                               THEN 3600 END,
                                 '$.duration_s',
                                 CAST(round(json_extract(payload, '$.duration_s')) AS INTEGER))
                   WHEN topic LIKE '%/visit' AND json_extract(payload, '$.schema') = 1
                   THEN json_set(payload,
                                 '$.at', strftime('%Y-%m-%dT%H:00:00Z',
                                                  json_extract(payload, '$.at')),
                                 '$.mono_s', 0, '$.seq', 0, '$.epoch', 0)
                   ELSE payload END,
                   qos, state, attempts, strftime('%Y-%m-%dT%H:00:00Z', sent_at), reason_code,
                   strftime('%Y-%m-%dT%H:00:00Z', created_at), '1970-01-01T00:00:00Z'
            FROM outbox_message_v3""",
        "DROP TABLE outbox_message_v3",
        "CREATE INDEX outbox_message_state ON outbox_message (state, id)",
        "CREATE INDEX outbox_message_held ON outbox_message (event_id) WHERE not_before IS NULL",
        "DELETE FROM kiosk_state WHERE key IN ('seq', 'write_check')",  # a count, a mono time
    ):
        db.execute_sql(statement)


#: The last hand-written version; a field's ``since`` must be 1 or later than this.
HAND_WRITTEN = 4


def _visit_columns(version):
    """Store version ``version`` (after 4): the visit columns the schema says appeared in it."""
    def migrate(db):
        for statement in schema.add_column_statements(version):
            db.execute_sql(statement)

    migrate.__name__ = f"_schema_v{version}"
    return migrate


# Version N is MIGRATIONS[N - 1]. Append, never edit: kiosks in the field are at every version.
# Versions after 4 follow from the fields' ``since`` in kiosk.visit; a version that needs more
# than new columns is written here and calls schema.add_column_statements itself.
MIGRATIONS = (_schema_v1, _schema_v2, _schema_v3, _schema_v4,
              *(_visit_columns(version)
                for version in range(HAND_WRITTEN + 1, schema.STORE_VERSION + 1)))


# --- models (declared unbound; each Store binds its own, kiosk.sqlite.bind) --------------------


class _Model(peewee.Model):
    class Meta:
        legacy_table_names = False


def _visit_row_model():
    """The visit row: the store's own bookkeeping columns, then every stored field of the
    schema (nothing that identifies the citizen: the schema stores no repeat hash)."""
    columns = {
        "__doc__": "One visit: the citizen's answers and how far they got, nothing that "
                   "identifies them.",
        "__module__": __name__,
        "Meta": type("Meta", (), {"table_name": "visit"}),
        "id": peewee.BigIntegerField(primary_key=True),
        "event_id": peewee.TextField(unique=True),
        "period": peewee.TextField(null=True),  # its start; NULL: not dated (yet)
        "period_s": peewee.IntegerField(null=True),
        **schema_columns(schema.STORED),
        "mode": peewee.TextField(),
        "confirmed_at": peewee.TextField(null=True),
    }
    return type("VisitRow", (_Model,), columns)


VisitRow = _visit_row_model()


class OutboxMessage(_Model):
    """A message that must reach the collector; ``payload`` is the JSON text to publish.

    ``not_before`` is NULL while the row is held (its visit's period has not closed), else the
    wall time from which it may be sent.
    """

    id = peewee.BigIntegerField(primary_key=True)
    event_id = peewee.TextField(unique=True)
    topic = peewee.TextField()
    payload = peewee.TextField()
    qos = peewee.IntegerField()
    state = peewee.TextField()
    attempts = peewee.IntegerField(default=0)
    sent_at = peewee.TextField(null=True)
    reason_code = peewee.IntegerField(null=True)
    created_at = peewee.TextField()
    not_before = peewee.TextField(null=True)


class KioskState(_Model):
    """Small durable counters and settings (``epoch``, ``closed_through``, ...), as text."""

    key = peewee.TextField(primary_key=True)
    value = peewee.TextField()


# --- values handed to callers ------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxItem:
    """A message due for (re)sending; ``payload`` is JSON text ready to publish."""

    event_id: str
    topic: str
    payload: str
    qos: int
    state: str
    attempts: int
    sent_at: str | None


@dataclass(frozen=True)
class OutboxStats:
    """``depth`` counts the unconfirmed live messages released for sending, and the age is the
    oldest one's (None when there are none): neither moves with a visit until its period has
    closed. ``held`` counts the rows still waiting for their period to close."""

    depth: int
    oldest_unconfirmed_age_s: float | None
    dead: int
    held: int


@dataclass(frozen=True)
class Purged:
    visits: int
    messages: int


# --- time --------------------------------------------------------------------------------------


def _utc_now():
    return datetime.now(UTC)


def _aware(moment):
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"store times must be timezone-aware datetimes, got {moment!r}")
    return moment


def rfc3339(moment):
    """RFC 3339 UTC text to the second, as a period is written; one fixed width, so text order
    is time order."""
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    """The datetime back from :func:`rfc3339` text."""
    return datetime.fromisoformat(text)


def new_event_id():
    """uuid4 hex, redrawn when it holds 13 digits in a row: that is what a privacy scan of the
    wire looks for, and about 1 in 25 plain uuid4 hex strings would trip it."""
    while True:
        event_id = uuid.uuid4().hex
        if not logsafe.holds_id(event_id):
            return event_id


def _is_disk_full(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlite3.Error) and (
                getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "disk is full" in str(exc)):
            return True
        # peewee wraps the driver's exception as its first argument.
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = inner or exc.__cause__ or exc.__context__
    return False


def _unindexed(column):
    """``+column``: SQLite's documented way to keep a term from choosing an index.

    ``state IN (...)`` or ``confirmed_at IS NULL`` beside ``event_id IN (...)`` of a few dozen
    ids made the planner walk every live row or unconfirmed visit through the state or
    ``visit_confirmed_at`` index instead of looking the ids up: with 10,000 queued rows each
    PUBACK batch scanned them all, the outbox thread's main cost.
    """
    return peewee.NodeList((peewee.SQL("+"), column), glue="")


def _chunks(items):
    items = list(items)
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start:start + _IN_CHUNK]


def _stored_values(record):
    """The stored fields of ``record``, numbers rounded as the wire rounds them, so a row and
    its payload agree."""
    values = schema.values(record, schema.STORED)
    for f in schema.STORED:
        if f.digits is not None and values[f.name] is not None:
            values[f.name] = round(values[f.name], f.digits) if f.digits else round(values[f.name])
    return values


class Store:
    """The durable store. Create with :meth:`Store.open`.

    Safe to use from several threads: peewee gives each thread its own SQLite connection, and
    every multi-row change is one transaction. :meth:`close` closes the calling thread's
    connection, so every thread that used the store calls it when it is done.
    """

    def __init__(self, db, path, data_dir, *, retention_days, min_free_mb, clock, period_s, rng):
        self._db = db
        self.path = path
        self.data_dir = data_dir
        self.retention_days = retention_days
        self.min_free_mb = min_free_mb
        self.period_s = period_s
        self._clock = clock
        self._rng = rng
        # Set by a close that released visits, cleared by compact(): on the housekeeper's
        # thread, so an Event rather than a plain flag.
        self._is_closed_since_compact = threading.Event()
        self.instance = None  # this database's id, read or made by open()
        # Bound per store: two stores in one process (a test reopening a file, an ops tool)
        # never swap each other's database.
        self.VisitRow, self.OutboxMessage, self.KioskState = bind(
            db, VisitRow, OutboxMessage, KioskState)

    def __repr__(self):
        return f"<Store {self.path}>"

    @classmethod
    def open(cls, data_dir, *, retention_days=30, min_free_mb=200, checkpoint_pages=1000,
             clock=_utc_now, period_s=DEFAULT_S, rng=None, migrations=MIGRATIONS):
        """Open (creating if needed) the store under ``data_dir`` and bring its schema up to date.

        ``clock`` returns the aware UTC wall time; every time the store writes is floored to
        its ``period_s`` (``telemetry.period_s``). ``rng`` (a ``random.Random``; the system's
        CSPRNG when None) draws row ids and release delays. ``migrations`` is the schema
        history; only tests pass anything but :data:`MIGRATIONS`. Raises StoreError naming the
        file when the directory or database is unusable, or was written by a newer kiosk.
        """
        data_dir = Path(data_dir)
        path = data_dir / DB_NAME
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created owner-only before SQLite touches it: the -wal and -shm files copy its mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the kiosk database ({exc.strerror}); "
                             f"check that storage.data_dir exists and is writable") from exc
        db = peewee.SqliteDatabase(str(path), timeout=_BUSY_TIMEOUT_S, pragmas=[
            ("journal_mode", "wal"),
            ("synchronous", "full"),
            ("secure_delete", "on"),
            ("foreign_keys", "on"),
            ("wal_autocheckpoint", int(checkpoint_pages)),
        ])
        store = cls(db, path, data_dir, retention_days=retention_days, min_free_mb=min_free_mb,
                    clock=clock, period_s=period_s, rng=rng or random.SystemRandom())
        try:
            with store._guard("open the database"):
                mode = db.execute_sql("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"{path}: SQLite refused WAL mode (got {mode!r}); the data "
                                     f"directory must be on a local file system")
                store._migrate(migrations)
                store.instance = store._instance()
        except BaseException:
            db.close()
            raise
        return store

    def _migrate(self, migrations):
        version = self._db.execute_sql("PRAGMA user_version").fetchone()[0]
        if version > len(migrations):
            raise StoreError(f"{self.path}: schema version {version} is newer than this kiosk "
                             f"software knows ({len(migrations)}); install the newer release "
                             f"or move the file aside")
        for number, migration in enumerate(migrations[version:], start=version + 1):
            try:
                with self._db.atomic("IMMEDIATE"):
                    migration(self._db)
                    self._db.execute_sql(f"PRAGMA user_version = {number:d}")
            except (peewee.DatabaseError, sqlite3.Error) as exc:
                raise StoreError(f"{self.path}: upgrading the schema to version {number} failed "
                                 f"({exc}); the file is unchanged at version {number - 1}") from exc
        if version < len(migrations):
            # secure_delete zeroed what a step dropped (v3: repeat hashes, v4: visit times) in
            # the WAL only; the old pages stay in the main file until a checkpoint copies the
            # zeros over.
            self._db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def schema_version(self):
        return self._db.execute_sql("PRAGMA user_version").fetchone()[0]

    @contextlib.contextmanager
    def _guard(self, action):
        """Turn driver errors into StoreError/DiskFull that name the file and the action."""
        try:
            yield
        except (peewee.DatabaseError, sqlite3.Error) as exc:
            if _is_disk_full(exc):
                raise DiskFull(f"{self.path}: the disk filled up while trying to {action}; "
                               f"nothing of it was written and earlier rows are intact. Free "
                               f"space under {self.data_dir}") from exc
            raise StoreError(f"{self.path}: cannot {action}: {exc}") from exc

    def atomic(self):
        """One write transaction for several calls (e.g. a batch of delivery updates)."""
        return self._db.atomic("IMMEDIATE")

    def close(self):
        """Close the calling thread's connection."""
        self._db.close()

    # --- space ----------------------------------------------------------------------------------

    def free_mb(self):
        try:
            usage = os.statvfs(self.data_dir)
        except OSError as exc:  # the partition is gone or failing: a store fault, not a crash
            raise StoreError(f"{self.data_dir}: cannot read free space ({exc.strerror})") from exc
        return usage.f_bavail * usage.f_frsize / (1024 * 1024)

    def has_room(self):
        """False when free space under the data directory is below ``min_free_mb``."""
        return self.free_mb() >= self.min_free_mb

    def _require_room(self, action):
        free = self.free_mb()
        if free < self.min_free_mb:
            raise DiskFull(f"{self.data_dir}: only {free:.1f} MB free, below storage.min_free_mb "
                           f"= {self.min_free_mb}; refusing to {action} so the rows already in "
                           f"{self.path.name} stay safe. Free space on the data partition")

    # --- visits ---------------------------------------------------------------------------------

    def record_visit(self, record, *, topic, period, mode):
        """Commit one visit and its outbox message in one transaction (never the repeat hash).

        ``record`` is a :class:`kiosk.visit.Record`; the runner adds where it goes (``topic``),
        the :class:`kiosk.period.Period` it falls in (None while the clock is not synced: the
        visit waits undated, :meth:`date_visits`) and ``mode`` (``kiosk.mode``, kept so demo
        visits can be told apart). The store draws the ``event_id`` and the row ids and encodes
        the payload with :func:`kiosk.visit.payload`; the message is held until the period is
        closed (:meth:`close_periods`). A visit the schema refuses raises ValueError and writes
        nothing. Returns the visit row. Raises DiskFull without writing anything when space is
        short.
        """
        self._require_room("record a visit")
        with self._guard("record a visit"), self._db.atomic("IMMEDIATE"):
            row = self.VisitRow.create(
                id=self._new_id(), event_id=new_event_id(),
                period=None if period is None else period.text,
                period_s=None if period is None else period.length_s, mode=mode,
                **_stored_values(record))
            self._insert_message(row.event_id, topic, self._visit_payload(row), 1,
                                 not_before=None)
        return row

    def _visit_payload(self, row):
        """The visit message of a visit row, from its stored fields and period."""
        dated = None if row.period is None else Period.parse(row.period, row.period_s)
        return schema.payload(event_id=row.event_id, instance=self.instance, mode=row.mode,
                              period=dated, **schema.values(row, schema.SENT))

    def date_visits(self, periods):
        """Back-date held undated visits once the clock is synced: ``periods`` is
        ``{event_id: Period}`` (``kiosk.period.Book.date_held``). Each visit's row and its
        still held message get the period, in one transaction. Returns how many were dated."""
        V, M = self.VisitRow, self.OutboxMessage
        dated = 0
        with self._guard("date held visits"), self._db.atomic("IMMEDIATE"):
            for chunk in _chunks(periods):
                held = (V.select().join(M, on=(M.event_id == V.event_id))
                        .where(V.event_id.in_(chunk), V.period.is_null(), M.not_before.is_null()))
                for row in held:
                    row.period = periods[row.event_id].text
                    row.period_s = periods[row.event_id].length_s
                    row.save(only=(V.period, V.period_s))
                    # created_at too: before the sync it was the unsynced clock's (say 1970).
                    (M.update(payload=self._visit_payload(row).decode(), created_at=row.period)
                     .where(M.event_id == row.event_id).execute())
                    dated += 1
        return dated

    def close_periods(self, before, *, topic, mode, now=None):
        """Close every period that has ended by ``before`` (an aware datetime, a period
        start) and still holds messages, in one transaction.

        For each such period P: its held messages may be sent from P's end (or from ``now``,
        the wall clock, when that is earlier: a clock behind the closed periods closes P by
        monotonic time, before the wall clock reaches its end) plus a random delay of up to
        :func:`kiosk.period.release_jitter_s` each (in random order: row ids are random), and
        one ``period`` message on ``topic`` counts P's visits, due after all of them. Its event
        id is P's own (:func:`kiosk.period.count_event_id`), so closing P again queues nothing
        new. ``closed_through`` becomes ``before``. Returns ``[(P, visits)]``.

        Unlike a visit, a close goes ahead below ``min_free_mb``: it adds one small row a period
        and lets the held visits drain.
        """
        V, M = self.VisitRow, self.OutboxMessage
        closed = []
        with self._guard("close periods"), self._db.atomic("IMMEDIATE"):
            held = {}
            rows = (M.select(M.id, V.period, V.period_s)
                    .join(V, on=(V.event_id == M.event_id))
                    .where(M.not_before.is_null(), V.period.is_null(False)).tuples())
            for row_id, start, length_s in rows:
                dated = Period.parse(start, length_s)
                if dated.end <= before:  # ended: a day period outlives an hour's close
                    held.setdefault(dated, []).append(row_id)
            for dated, row_ids in sorted(held.items()):
                jitter_s = release_jitter_s(dated.length_s)
                ended = dated.end if now is None else min(dated.end, now)
                self._db.connection().executemany(
                    "UPDATE outbox_message SET not_before = ? WHERE id = ?",
                    [(self._release_time(ended, jitter_s), row_id) for row_id in row_ids])
                # Exactly the visits released now: every schema-2 visit is held until its period
                # closes, and a period closes once, so this is what the collector will count
                # (rows of an older schema, or migrated ones, are not held and not counted).
                visits = len(row_ids)
                event_id = count_event_id(self.instance, dated)
                if M.select().where(M.event_id == event_id).exists():
                    log.error("period %s was closed before: %d visit(s) filed in it later go "
                              "out without a count, and the collector will find it over",
                              dated, visits)
                self._insert_message(
                    event_id, topic,
                    topics.period_payload(event_id=event_id, instance=self.instance, mode=mode,
                                          period=dated, visits=visits),
                    1, not_before=rfc3339(ended + timedelta(seconds=math.ceil(jitter_s))))
                closed.append((dated, visits))
            (self.KioskState.insert(key="closed_through", value=rfc3339(before))
             .on_conflict_replace().execute())
        if closed:
            self._is_closed_since_compact.set()
        return closed

    def _release_time(self, ended, jitter_s):
        """When a message of a period closed at ``ended`` may go: then plus a random delay, to
        whole seconds (the end says nothing about a visit's moment within the period)."""
        return rfc3339(ended + timedelta(seconds=round(self._rng.uniform(0, jitter_s))))

    def closed_through(self):
        """Every period starting before this (aware UTC) is closed for good; None before the
        first close."""
        value = self.get_state("closed_through")
        return None if value is None else parse_rfc3339(value)

    def release_undated(self):
        """Release the held visits that have no period: recorded before the clock synced, and
        the kiosk restarted since, so the monotonic time that would date them is gone. They go
        out with ``period: null`` (the collector files them under the day they arrive), due at
        once. The runner calls this on start, before any new visit. Returns how many."""
        V, M = self.VisitRow, self.OutboxMessage
        with self._guard("release undated visits"), self._db.atomic("IMMEDIATE"):
            undated = V.select(V.event_id).where(V.period.is_null())
            # created_at was the unsynced clock's: say now (to the store's period), which is
            # when they go, so the outbox's age in health means something.
            return (M.update(not_before=DUE_AT_ONCE, created_at=self._floor(self._clock()))
                    .where(M.not_before.is_null(), M.event_id.in_(undated)).execute())

    def next_epoch(self):
        """A new, higher epoch (persisted); the link takes one on every connect."""
        with self._guard("advance the epoch"), self._db.atomic("IMMEDIATE"):
            return self._bump("epoch")

    def _instance(self):
        """This database's random id, made when it is created: a re-flashed kiosk (a new SD
        card) is a new instance, so the collector can start its epochs and count its periods
        anew instead of taking its status for a stale one."""
        with self._db.atomic("IMMEDIATE"):
            row = self.KioskState.get_or_none(self.KioskState.key == "instance")
            if row is not None:
                return row.value
            instance = new_event_id()
            self.KioskState.insert(key="instance", value=instance).execute()
            return instance

    def current_epoch(self):
        with self._guard("read the epoch"):
            return self._get_int("epoch")

    def get_state(self, key, default=None):
        """A small durable value (text) kept across restarts."""
        with self._guard(f"read state {key!r}"):
            row = self.KioskState.get_or_none(self.KioskState.key == key)
        return default if row is None else row.value

    def set_state(self, key, value):
        self._require_room(f"save state {key!r}")
        with self._guard(f"save state {key!r}"):
            (self.KioskState.insert(key=key, value=str(value))
             .on_conflict_replace().execute())

    def _get_int(self, key):
        row = self.KioskState.get_or_none(self.KioskState.key == key)
        return 0 if row is None else int(row.value)

    def _bump(self, key):
        # Callers hold a write transaction, so read-then-write cannot interleave.
        value = self._get_int(key) + 1
        self.KioskState.insert(key=key, value=str(value)).on_conflict_replace().execute()
        return value

    def _new_id(self):
        return self._rng.randrange(1, _ID_LIMIT)

    def _floor(self, moment):
        """``moment`` as the start of its period: the finest time the store writes."""
        return Period.of(_aware(moment), self.period_s).text

    # --- outbox (the outbox thread; its rules are kiosk.outbox_rules) -----------------------------

    def enqueue(self, topic, payload, qos=1, event_id=None):
        """Queue a non-visit message that must survive a restart, due at once; returns its
        event id.

        Enqueuing an event id that is already queued changes nothing.
        """
        self._require_room(f"queue a message for {topic}")
        event_id = event_id or new_event_id()
        with self._guard(f"queue a message for {topic}"), self._db.atomic("IMMEDIATE"):
            self._insert_message(event_id, topic, payload, qos, not_before=DUE_AT_ONCE)
        return event_id

    def _insert_message(self, event_id, topic, payload, qos, *, not_before):
        (self.OutboxMessage.insert(id=self._new_id(), event_id=event_id, topic=topic,
                                   payload=self._json_text(topic, payload), qos=qos,
                                   state=State.PENDING, attempts=0,
                                   created_at=self._floor(self._clock()), not_before=not_before)
         .on_conflict_ignore().execute())

    def _json_text(self, topic, payload):
        """JSON text from a dict, or from JSON already encoded as bytes or str (as
        ``kiosk.telemetry.topics`` builds it), checked so the pump never sends garbage."""
        try:
            if isinstance(payload, bytes | bytearray):
                payload = bytes(payload).decode("utf-8")
            if isinstance(payload, str):
                json.loads(payload)
                return payload
            return json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: the payload for {topic} is not JSON ({exc}); fix "
                             f"the payload builder") from exc

    def due_messages(self, limit, resend=()):
        """In id order, which is random: at most ``limit`` released messages due to be sent,
        and those of ``resend`` (event ids the outbox found overdue) that may still be resent,
        i.e. not yet confirmed.

        A message is due once the store's clock has reached its ``not_before``, or when that is
        further ahead than any release can be: a period is closed once it has ended (or, while
        the clock is behind, at the clock's time: :meth:`close_periods`), so a release lies at
        most its jitter ahead of the close. Further ahead, the clock was stepped back since,
        and a message must not wait for as long as the step (hours, or years).
        """
        M = self.OutboxMessage
        now = self._clock()
        horizon = now + timedelta(seconds=MAX_JITTER_S)
        released = M.not_before.is_null(False) & (
            (M.not_before <= rfc3339(now)) | (M.not_before > rfc3339(horizon)))
        # Plain tuples: building a model instance per row was 40 % of a refill.
        columns = (M.id, M.event_id, M.topic, M.payload, M.qos, M.state, M.attempts, M.sent_at)
        with self._guard("read the outbox"):
            rows = list(M.select(*columns).where(M.state == DUE, released)
                        .order_by(M.id).limit(int(limit)).tuples())
            for chunk in _chunks(resend):
                # Looked up by event id; a state index here would walk every published row.
                rows.extend(M.select(*columns)
                            .where(M.event_id.in_(chunk), _unindexed(M.state) == RESENDABLE)
                            .tuples())
        rows.sort()  # by id, the first column
        return [OutboxItem(*row[1:]) for row in rows]

    def published_ids(self):
        """Event ids of every message that may be resent, in id order: after a restart the
        outbox knows no send times, so it treats all of them as due."""
        M = self.OutboxMessage
        with self._guard("read the outbox"):
            return [event_id for (event_id,) in
                    M.select(M.event_id).where(M.state == RESENDABLE).order_by(M.id).tuples()]

    def mark_sent(self, event_ids, at):
        """The messages were handed to the broker link at ``at`` (wall time, kept for people
        reading the file as the start of its period; resends are timed by the outbox): count
        the attempt."""
        with self._guard("record a send"), self._db.atomic("IMMEDIATE"):
            return self._move(SEND, event_ids, attempts=self.OutboxMessage.attempts + 1,
                              sent_at=self._floor(at))

    def mark_published(self, event_ids, sent_at):
        """The broker accepted these messages (PUBACK); they now wait for the collector's ack.

        One statement per few hundred ids: at catch-up rates a statement per PUBACK was a third
        of the outbox thread's time. Returns how many rows changed.
        """
        with self._guard("mark messages published"):
            return self._move(ACCEPT, event_ids, sent_at=self._floor(sent_at))

    def mark_dead(self, event_id, reason_code):
        """The broker refused the message; park it until :meth:`replay_dead`."""
        with self._guard(f"mark {event_id} dead"):
            return bool(self._move(REFUSE, [event_id], reason_code=int(reason_code)))

    def confirm(self, event_ids):
        """The collector has these: confirm their messages and visits. Returns how many messages
        were newly confirmed; repeated and unknown ids change nothing."""
        V = self.VisitRow
        now = self._floor(self._clock())
        event_ids = list(event_ids)
        with self._guard("confirm delivered messages"), self._db.atomic("IMMEDIATE"):
            changed = self._move(CONFIRM, event_ids)
            for chunk in _chunks(event_ids):
                (V.update(confirmed_at=now)
                 .where(V.event_id.in_(chunk), _unindexed(V.confirmed_at).is_null())
                 .execute())
        return changed

    def replay_dead(self):
        """Dead letters go back to pending (after the ACL or credentials were fixed)."""
        M = self.OutboxMessage
        with self._guard("replay dead messages"):
            return (M.update(state=REPLAY.target, reason_code=None, sent_at=None)
                    .where(M.state.in_(REPLAY.sources)).execute())

    def _move(self, move, event_ids, **columns):
        """Apply ``move`` (kiosk.outbox_rules) to the rows of ``event_ids`` it allows, setting
        ``columns`` too; returns how many rows changed. Callers hold the guard."""
        M = self.OutboxMessage
        if move.target is not None:
            columns["state"] = move.target
        changed = 0
        for chunk in _chunks(event_ids):
            # Looked up by event id; a state index here would walk every live row.
            changed += (M.update(**columns)
                        .where(M.event_id.in_(chunk), _unindexed(M.state).in_(move.sources))
                        .execute())
        return changed

    def outbox_stats(self):
        M = self.OutboxMessage
        live = M.state.in_(LIVE) & M.not_before.is_null(False)
        with self._guard("count the outbox"):
            depth = M.select().where(live).count()
            oldest = M.select(peewee.fn.MIN(M.created_at)).where(live).scalar()
            dead = M.select().where(M.state == State.DEAD).count()
            held = M.select().where(M.not_before.is_null()).count()
        age = None
        if oldest is not None:
            age = max(0.0, (self._clock() - parse_rfc3339(oldest)).total_seconds())
        return OutboxStats(depth=depth, oldest_unconfirmed_age_s=age, dead=dead, held=held)

    # --- housekeeping ---------------------------------------------------------------------------

    def purge(self, chunk=PURGE_CHUNK):
        """Delete what no longer needs keeping: visits confirmed more than ``retention_days``
        ago, and confirmed messages.

        At most ``chunk`` rows a transaction: one transaction for 100,000 rows held the write
        lock for over half a second, and a visit the main loop records meanwhile waits for it.
        """
        visits_before = rfc3339(self._clock() - timedelta(days=self.retention_days))
        V, M = self.VisitRow, self.OutboxMessage
        return Purged(visits=self._delete_in_chunks(V, V.confirmed_at < visits_before, chunk),
                      messages=self._delete_in_chunks(M, M.state == State.CONFIRMED, chunk))

    def _delete_in_chunks(self, model, condition, chunk):
        key = model._meta.primary_key
        deleted = 0
        while True:
            with self._guard("purge old rows"), self._db.atomic("IMMEDIATE"):
                rows = model.select(key).where(condition).limit(chunk)
                count = model.delete().where(key.in_(rows)).execute()
            deleted += count
            if count < chunk:
                return deleted

    @property
    def needs_compact(self):
        """A period was closed since the last :meth:`compact`."""
        return self._is_closed_since_compact.is_set()

    def compact(self):
        """Rewrite the file in key order (VACUUM), then empty the WAL; call when idle.

        SQLite places each new row and index entry in its page in the order it was written,
        so the file itself keeps the order in which a period's visits were made, random row
        ids or not; the WAL keeps it too, frame by frame. Once a period is closed its visits
        are rewritten in the order of their keys (random ids, random event ids), and the old
        pages go with the WAL. Costs a copy of the database: milliseconds for a month of
        visits, seconds after a long outage (docs/benchmarks.md).
        """
        self._is_closed_since_compact.clear()  # first: a close during the VACUUM asks again
        try:
            with self._guard("compact the database"):
                self._db.execute_sql("VACUUM")
        except StoreError:
            self._is_closed_since_compact.set()
            raise
        return self.checkpoint()

    def checkpoint(self):
        """Copy the WAL into the main file and truncate it; call when idle.

        Returns False when another connection's reader kept part of the WAL (try again later).
        """
        with self._guard("checkpoint the WAL"):
            busy, _log, _done = self._db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0


class Housekeeper:
    """Purge, then checkpoint (compact, once a period was closed: :meth:`Store.compact`), on a
    thread with its own connection, whenever :meth:`request`-ed.

    On the main loop they cost frames: purging 100,000 visits takes hundreds of milliseconds,
    and behind another connection's write they wait up to the busy timeout (docs/benchmarks.md).
    Requests made while a run is under way make one more run; a failed run is logged and the
    next request tries again.
    """

    def __init__(self, store):
        self._store = store
        self._wanted = threading.Event()
        self._is_stopping = False
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._thread.start()

    def request(self):
        """Ask for a run; returns at once, from any thread."""
        self._wanted.set()

    def stop(self, timeout=5.0):
        """End the thread after the run under way, if any (a purge waiting on a lock may
        outlast ``timeout``; the thread is a daemon)."""
        if self._thread is None:
            return
        self._is_stopping = True
        self._wanted.set()
        self._thread.join(timeout)
        self._thread = None

    def _run(self):
        try:
            while True:
                self._wanted.wait()
                if self._is_stopping:
                    return
                self._wanted.clear()
                try:
                    self._store.purge()
                    if self._store.needs_compact:
                        self._store.compact()
                    else:
                        self._store.checkpoint()
                except StoreError as exc:
                    log.error("housekeeping failed, will retry: %s", exc)
                except Exception:  # a bug must not end housekeeping for the kiosk's life
                    log.exception("housekeeping failed, will retry")
        finally:
            self._store.close()  # this thread's own connection
