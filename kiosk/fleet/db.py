"""The central store: kiosks, their service points, their anonymous visits and the kiosks' count
of visits per period, and the kiosks' replies to commands: peewee on SQLite (one office, the
demo) or PostgreSQL (the national store), through the same models.

Only fields the telemetry contract names are stored, taken from the validated message objects
of :mod:`kiosk.telemetry.topics`, so nothing a kiosk sent by mistake can land here. Visits are
keyed by event id: a visit delivered twice is stored once. Demo visits are kept (ops can see the
demo worked) but flagged, and every statistic here leaves them out.

A visit is filed under its period and nothing finer (docs/privacy.md): no time, sequence number
or arrival time of its own, so a row cannot be timed back to the counter's log. Lost visits are
found by :meth:`FleetDb.reconcile` instead, from each kiosk's count of a closed period.

The models are declared once and bound per database by :func:`open_database` (with
:func:`kiosk.sqlite.bind`), so two collectors in one process (tests) never share a binding.
The schema's versions are :mod:`kiosk.fleet.migrations`. Every write that could come twice is
keyed (``ON CONFLICT DO NOTHING`` on both databases), so several collectors in one share group
store each event once; a kiosk's row is updated column by column, each message its own, so two
collectors handling two messages of one kiosk keep both. Peewee opens one connection per
thread; on SQLite, WAL lets ``status`` and the tests read while the collector writes.
"""

import datetime as dt
import hashlib
import json
import logging
from collections import namedtuple
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from peewee import (
    EXCLUDED,
    SQL,
    BooleanField,
    Case,
    CharField,
    FloatField,
    IntegerField,
    Model,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
    fn,
)
from peewee import __exception_wrapper__ as driver_errors_as_peewee  # driver -> peewee errors

from kiosk import visit as schema
from kiosk.errors import StoreError
from kiosk.fleet import alarms, disclosure, locks, migrations, rollout, rollups
from kiosk.period import local_day
from kiosk.sqlite import bind, schema_columns

log = logging.getLogger(__name__)

DEFAULT_DB = "fleet.sqlite3"
#: Key of the PostgreSQL advisory lock collectors take turns under to evaluate alarms.
_ALARM_LOCK_KEY = 0x616C61726D


def _rollout_lock_key(rollout_id):
    """The advisory lock key of one rollout: 64 bits of SHA-256 of its id (a signed bigint)."""
    digest = hashlib.sha256(f"rollout/{rollout_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)

#: The kiosk columns a health report sets, each its report's field of the same name (the whole
#: report also goes to ``health`` as JSON).
_HEALTH_COLUMNS = ("outbox_depth", "dead_letters", "config_version", "version",
                   "outbox_oldest_s", "reader", "disk_free_mb", "clock_synced", "mode")

#: The kiosk columns the alarms' conditions read (:meth:`FleetDb.update_alarms`).
_AlarmKiosk = namedtuple("_AlarmKiosk", (
    "kiosk_id", "state", "last_seen", "reader", "disk_free_mb", "outbox_depth",
    "outbox_oldest_s", "dead_letters", "retired", "clock_synced"))


def utc_text(moment):
    """An aware datetime as the collector writes its clock: RFC 3339 UTC to the millisecond."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_now():
    """The collector's clock as an RFC 3339 UTC string (kiosk clocks may be unsynced)."""
    return utc_text(dt.datetime.now(dt.UTC))


class KioskRow(Model):
    """What the collector knows of one kiosk, from its status and health messages."""

    kiosk_id = CharField(primary_key=True)
    state = CharField(null=True)  # online | offline | lost; None until a status arrives
    instance = CharField(null=True)  # the kiosk's store (None from kiosks before 0.2)
    epoch = IntegerField(null=True)  # of that instance
    version = CharField(null=True)
    mode = CharField(null=True)
    last_seen = CharField(null=True)  # collector clock
    state_changed = CharField(null=True)  # collector clock
    outbox_depth = IntegerField(null=True)
    dead_letters = IntegerField(null=True)
    config_version = IntegerField(null=True)
    # From the latest health report (migration 4); clock_synced from status messages too.
    outbox_oldest_s = FloatField(null=True)
    reader = CharField(null=True)
    disk_free_mb = FloatField(null=True)
    clock_synced = BooleanField(null=True)
    health = TextField(null=True)  # the last health report, JSON of its known fields
    stale_statuses = IntegerField(default=0)
    # When ``kiosk-fleet revoke`` retired it (migration 12): its alarms end, the console
    # shows it retired. None for a kiosk in service.
    retired = CharField(null=True)

    class Meta:
        table_name = "kiosk"


class ServicePointRow(Model):
    """The service point a kiosk stands at, from its retained message (the ``pin`` topic)."""

    kiosk_id = CharField(primary_key=True)
    service_point_id = CharField()
    name_th = CharField()
    name_en = CharField()
    agency = CharField()
    ministry = CharField()
    province = CharField()
    lat = FloatField(null=True)
    lon = FloatField(null=True)
    mode = CharField()
    services = TextField()  # JSON list of {id, name_th, name_en, no_copy}
    received = CharField()

    class Meta:
        table_name = "pin"


#: The Python type a visit column's peewee field converts a value to (its ``adapt``): a value
#: of exactly that type is passed as it is.
_NATIVE = {CharField: str, IntegerField: int, BooleanField: bool}

# The envelope and the collector's own columns, around the fields the visit schema says the
# collector keeps. Its index by period is the migrations' (``visit_period``, docs/scale.md).
FleetVisit = type("FleetVisit", (Model,), {
    "__doc__": "One visit a kiosk delivered, stored once by its event id, filed by period.",
    "__module__": __name__,
    "Meta": type("Meta", (), {"table_name": "visit"}),
    "event_id": CharField(primary_key=True),
    "kiosk_id": CharField(),
    "instance": CharField(null=True),  # None from kiosks before 0.2
    "is_demo": BooleanField(index=True),
    **schema_columns(schema.KEPT, text=CharField),
    # The start of the visit's period; for a visit that came undated (``period: null``), of
    # the local day it arrived, with clock_synced false.
    "period": CharField(),
    "period_s": IntegerField(),
    "clock_synced": BooleanField(),
    "schema": IntegerField(),
})


class PeriodCount(Model):
    """A kiosk instance's count of its visits in one closed period (the ``period`` message),
    and the verdict of reconciling it with the visits stored: ``open`` (not yet, or short but
    within the grace), ``ok`` (they match), ``short`` (fewer once the grace has passed) or
    ``over`` (more; final, since stored visits only grow).

    ``arrived`` is the collector's clock when the count came: one time for a whole period,
    which times no visit in it. ``is_due`` marks a count :meth:`FleetDb.reconcile` must look at
    (again): a new one, or one a visit has been stored for since. An open count nothing came
    for is looked at again only once its grace has passed (by ``arrived``, migration 9's
    index): re-counting every open count's visits after each batch was most of PostgreSQL's
    work at the national rate.
    """

    kiosk_id = CharField()
    instance = CharField()
    period = CharField()
    period_s = IntegerField()
    visits = IntegerField()
    is_demo = BooleanField()
    arrived = CharField()
    reconciled = CharField(default="open")
    is_due = BooleanField(default=True, index=True)

    class Meta:
        table_name = "period_count"
        indexes = ((("kiosk_id", "instance", "period", "period_s"), True),)


@dataclass(frozen=True)
class PeriodVerdict:
    """A period count whose verdict changed in one :meth:`FleetDb.reconcile` run."""

    kiosk_id: str
    instance: str
    period: str
    period_s: int
    expected: int  # the kiosk's count
    stored: int  # dated visits stored for it
    before: str
    after: str


class Alarm(Model):
    """Something about one kiosk that ops must look at, once per kind: ``instance_changed``
    (re-flashed, or a copy of its credentials in use), ``epoch_went_back`` (online at a
    lower epoch than a status it had sent), ``period_count_over`` (more visits stored for a
    period than the kiosk counted), ``period_count_short`` (fewer, once the grace for
    late ones has passed) or ``revoked`` (``kiosk-fleet revoke``, with its reason). A
    repeat counts instead of adding a row, so a kiosk flipping between two instances cannot
    grow the table; the row stays when a short period heals
    later (:meth:`FleetDb.period_verdicts` says what is short now)."""

    kiosk_id = CharField()
    kind = CharField()
    detail = TextField()  # the latest occurrence
    raised = CharField()  # collector clock, first occurrence
    last_raised = CharField()
    count = IntegerField(default=1)

    class Meta:
        table_name = "alarm"
        indexes = ((("kiosk_id", "kind"), True),)


class AlarmEvent(Model):
    """One alarm of :mod:`kiosk.fleet.alarms` on one kiosk, from the evaluation that saw its
    condition start (``raised``, collector clock) to the one that saw it end (``cleared``; None
    while open). A condition that comes back opens a new row: the rows are the history."""

    kiosk_id = CharField()
    kind = CharField()
    detail = TextField()  # when raised
    raised = CharField()
    cleared = CharField(null=True, index=True)

    class Meta:
        table_name = "alarm_event"
        indexes = ((("kiosk_id", "kind"), False),)


class Reply(Model):
    """A kiosk's answer to one command (the ``reply`` message), kept for ops to read back:
    ``data`` is its JSON; ``received`` the collector's clock. A command is about a kiosk, not
    a visit, so its time tells nothing of a citizen. A resent reply is stored once."""

    kiosk_id = CharField()
    correlation_id = CharField()
    ok = BooleanField()
    error = TextField(null=True)
    data = TextField(null=True)
    received = CharField()

    class Meta:
        table_name = "reply"
        indexes = ((("kiosk_id", "correlation_id"), True),)


class Rollout(Model):
    """A staged rollout of one release (:mod:`kiosk.fleet.rollout`): the retained ``update``
    command's version, URL and manifest hash (plain hex), the share and filters that chose its
    kiosks, the share of rollbacks that pauses it, and where it stands. Times are the
    collector's (or the verb's) clock; nothing here is about a citizen."""

    rollout_id = CharField(primary_key=True)
    version = CharField()
    url = TextField()
    sha256 = CharField()
    percent = FloatField()
    province = CharField(null=True)
    ministry = CharField(null=True)
    department = CharField(null=True)
    threshold_percent = FloatField()
    state = CharField()  # active | paused | done
    created = CharField()
    changed = CharField()
    paused_reason = TextField(null=True)
    created_by = CharField(null=True)  # the broker account or console user that started it

    class Meta:
        table_name = "rollout"


class RolloutKiosk(Model):
    """One kiosk a rollout targets: ``position`` in the rollout's order, its ``state``
    (``sent``, then the updater's as health reports it), the reason of a rollback or refusal,
    ``updated`` (collector clock), and whether its retained command is ``is_withdrawn``."""

    rollout_id = CharField()
    kiosk_id = CharField()
    position = IntegerField()
    state = CharField()
    reason = TextField(null=True)
    updated = CharField()
    is_withdrawn = BooleanField(default=False)

    class Meta:
        table_name = "rollout_kiosk"
        indexes = ((("rollout_id", "kiosk_id"), True),)


@dataclass(frozen=True)
class PausedRollout:
    """A rollout the collector paused in a batch: its commands to withdraw once committed."""

    rollout_id: str
    version: str
    reason: str
    kiosk_id: str  # the kiosk whose rollback passed the threshold (the alarm's)
    withdraw: tuple  # kiosk ids whose retained update command goes


class Malformed(Model):
    """Messages the collectors refused as malformed, by the parser's reason (which names no
    value), kept so that ``/metrics`` and ops see them whichever collector counted them and
    however often it restarted. :data:`MAX_MALFORMED_REASONS` reasons apart, the rest as
    ``other``: a kiosk making up new ones cannot grow the table. A monitoring count, at least
    once: a batch whose store process died before its report is stored again, and its
    rejections added again."""

    reason = CharField(primary_key=True)
    messages = IntegerField()

    class Meta:
        table_name = "malformed"


#: Distinct reasons :class:`Malformed` keeps apart.
MAX_MALFORMED_REASONS = 50


class KioskCert(Model):
    """A client certificate ``kiosk-fleet provision`` issued to a kiosk (mutual TLS): its
    serial as lower-case hex (up to 159 bits, more than any integer column holds), and its
    validity and issue time as RFC 3339 UTC text, which order as strings. A kiosk may have
    several; the newest ``not_after`` is the one the ``cert_expiring`` alarm watches. About a
    kiosk's credential, never a citizen."""

    kiosk_id = CharField(index=True)
    serial = CharField()
    not_before = CharField()
    not_after = CharField()
    issued = CharField()
    revoked = CharField(null=True)  # when it went on the CRL (migration 12); None: valid

    class Meta:
        table_name = "kiosk_cert"
        indexes = ((("kiosk_id", "serial"), True),)


class CaCrl(Model):
    """A certificate revocation list issued for the agency CA (migration 12): its CRL number,
    its ``thisUpdate`` and ``nextUpdate`` (RFC 3339 UTC text), and how many serials it
    lists. The newest ``next_update`` is what the ``crl_expiring`` alarm watches: past it,
    OpenSSL refuses every kiosk certificate the broker checks against the CRL."""

    number = IntegerField(primary_key=True)
    this_update = CharField()
    next_update = CharField()
    revoked_count = IntegerField()

    class Meta:
        table_name = "ca_crl"


class FleetDb:
    """One open fleet database: its own bound ``KioskRow``, ``ServicePointRow``, ``FleetVisit``,
    ``PeriodCount``, ``Alarm``, ``Reply``, ``KioskCert`` (and more) models, plus the queries.
    ``location`` names it in logs (a path, or the URL without its password). Opened
    ``read_only``, it migrates nothing and requires the current schema
    (:func:`kiosk.fleet.migrations.check`)."""

    def __init__(self, database, location, *, read_only=False):
        self.database, self.location = database, location
        (self.KioskRow, self.ServicePointRow, self.FleetVisit, self.PeriodCount, self.Alarm,
         self.Reply, self.AlarmEvent, self.Malformed, self.Rollout, self.RolloutKiosk,
         self.KioskCert, self.CaCrl) = bind(
            self.database, KioskRow, ServicePointRow, FleetVisit, PeriodCount, Alarm, Reply,
            AlarmEvent, Malformed, Rollout, RolloutKiosk, KioskCert, CaCrl)
        self.rollup_models = bind(self.database, *rollups.MODELS)
        self._marked = frozenset()  # kiosks marked seen by the open batch (batch())
        self._visit_fields = self.FleetVisit._meta.sorted_fields
        self._visit_columns = tuple((field.name, _NATIVE[type(field)], field.db_value)
                                    for field in self._visit_fields)
        # Written once: peewee rebuilding a 22-column INSERT per row was over a third of the
        # collector's time at catch-up rates.
        columns = ", ".join(f'"{field.column_name}"' for field in self._visit_fields)
        marks = ", ".join([self.database.param] * len(self._visit_fields))
        # ON CONFLICT names the key: OR IGNORE would also drop a row breaking NOT NULL, silently,
        # and the visit would then be acked without being stored.
        self.insert_visit_sql = (f'INSERT INTO "{FleetVisit._meta.table_name}" ({columns}) '
                                 f'VALUES ({marks}) ON CONFLICT ("event_id") DO NOTHING')
        self.database.connect(reuse_if_open=True)
        try:
            if read_only:
                migrations.check(self)
            else:
                migrations.migrate(self)
        except Exception:  # a refused schema, or a failed migration: no connection left open
            self.close()
            raise

    def visit_row(self, values):
        """The visit's column values, in the prepared insert's order; None where absent. A
        value already of its column's own type is its own database value: peewee's conversion
        of each of 23 columns was a tenth of the store process's time for a visit."""
        return tuple([value if value is None or value.__class__ is native else db_value(value)
                      for name, native, db_value in self._visit_columns
                      for value in (values.get(name),)])

    def close(self):
        if not self.database.is_closed():
            self.database.close()

    # --- writes (the collector's worker thread, inside one transaction per batch) ----------

    def seen(self, kiosk_ids, received):
        """Mark the kiosks seen at ``received``, making rows for new ones: one upsert of that
        one column, in id order. A message of a kiosk another collector is handling keeps its
        columns, and the rows stay locked (PostgreSQL; SQLite's file) until the transaction
        ends; a batch that takes all its kiosks' rows first, in this one order, never waits on
        another collector's in a circle (:meth:`kiosk.fleet.ingest.Store.commit`)."""
        kiosk_ids = sorted(set(kiosk_ids) - self._marked)
        if not kiosk_ids:
            return
        KioskRow = self.KioskRow
        # Written only when it changes (on PostgreSQL every write is a new row version; three a
        # kiosk and batch were most of the server's work).
        (KioskRow.insert_many([{"kiosk_id": kiosk_id, "last_seen": received}
                               for kiosk_id in kiosk_ids])
         .on_conflict(conflict_target=[KioskRow.kiosk_id],
                      update={KioskRow.last_seen: EXCLUDED.last_seen},
                      where=(KioskRow.last_seen.is_null()
                             | (KioskRow.last_seen != EXCLUDED.last_seen)))
         .execute())

    def _seen(self, kiosk_id, received):
        self.seen([kiosk_id], received)

    @contextmanager
    def batch(self, kiosk_ids, received):
        """Inside a transaction: mark a batch's kiosks :meth:`seen` at once, and let the writes
        within skip marking them again (an upsert of up to a batch's rows each: at the national
        rate, four a batch were a fifth of the store process's time)."""
        self.seen(kiosk_ids, received)
        self._marked = frozenset(kiosk_ids)
        try:
            yield
        finally:
            self._marked = frozenset()

    def add_visits(self, visits, received):
        """Store :class:`~kiosk.telemetry.topics.VisitMessage` objects; returns how many were new.

        ``received`` is the collector's clock (RFC 3339 UTC): a visit that came undated is filed
        under the local day of ``received``, and one without a service point under its kiosk's
        pin now. One upsert per kiosk and one prepared insert stepped over the batch, rather
        than four queries per visit: at catch-up rates those were the collector's ceiling. The
        event id key makes storing idempotent in the database itself: a visit already stored (a
        resend), or twice in the batch, is stored once and not counted, in the rollups
        (:mod:`kiosk.fleet.rollups`) either. The counts of the periods the visits are in are due
        a look again.
        """
        if not visits:
            return 0
        self.seen([visit.kiosk_id for visit in visits], received)
        # A visit from a kiosk before it sent its service point is filed under its pin now.
        missing = sorted({v.kiosk_id for v in visits if v.service_point_id is None})
        pinned = dict(self.ServicePointRow.select(self.ServicePointRow.kiosk_id,
                                                  self.ServicePointRow.service_point_id)
                      .where(self.ServicePointRow.kiosk_id.in_(missing)).tuples()
                      ) if missing else {}
        arrival_day = None
        rows = []
        for visit in sorted(visits, key=lambda visit: visit.event_id):
            values = {**vars(visit), "is_demo": visit.mode == "demo"}  # the collector's own
            if visit.period is None:
                arrival_day = arrival_day or local_day(dt.datetime.fromisoformat(received))
                values.update(period=arrival_day.text, period_s=arrival_day.length_s)
            if visit.service_point_id is None:
                values["service_point_id"] = pinned.get(visit.kiosk_id)
            rows.append(values)
        with driver_errors_as_peewee:
            cursor = self.database.cursor()
            stored = self._insert_visits(cursor, rows)
            # Counted from the rows this transaction inserted: a resend adds nothing.
            rollups.add(self.database, stored)
            # An over verdict is final: stored visits only ever grow.
            mark = self.database.param
            cursor.executemany(
                f'UPDATE "{self.PeriodCount._meta.table_name}" SET "is_due" = {mark} '
                f'WHERE "kiosk_id" = {mark} AND "instance" = {mark} AND "period" = {mark} '
                f'AND "period_s" = {mark} AND "reconciled" != {mark}',
                [(True, *key, "over") for key in {(v.kiosk_id, v.instance, v.period,
                                                   v.period_s)
                                                  for v in visits
                                                  if v.clock_synced and v.schema >= 2}])
        return len(stored)

    def _insert_visits(self, cursor, rows):
        """Insert the visits ``rows`` (``{column: value}``), skipping event ids stored
        already; returns the rows inserted. PostgreSQL says which through RETURNING (another
        collector of the group may be inserting the same events); SQLite has one writer at a
        time, and a prepared statement stepped row by row says it by its row count."""
        if isinstance(self.database, PostgresqlDatabase):
            cursor.executemany(self.insert_visit_sql + ' RETURNING "event_id"',
                               [self.visit_row(values) for values in rows], returning=True)
            inserted = set()
            while True:
                inserted.update(event_id for (event_id,) in cursor.fetchall())
                if not cursor.nextset():
                    break
            stored = []
            for values in rows:  # a visit twice in the batch was inserted once
                if values["event_id"] in inserted:
                    inserted.discard(values["event_id"])
                    stored.append(values)
            return stored
        stored = []
        for values in rows:
            cursor.execute(self.insert_visit_sql, self.visit_row(values))
            if cursor.rowcount == 1:
                stored.append(values)
        return stored

    def add_period(self, count, received):
        """Store a :class:`~kiosk.telemetry.topics.PeriodMessage`; False when that kiosk
        instance's period was counted before (a resend), which replaces nothing."""
        self._seen(count.kiosk_id, received)
        PeriodCount = self.PeriodCount
        query = (PeriodCount.insert(
            kiosk_id=count.kiosk_id, instance=count.instance, period=count.period,
            period_s=count.period_s, visits=count.visits, is_demo=count.mode == "demo",
            arrived=received)
            .on_conflict(conflict_target=[PeriodCount.kiosk_id, PeriodCount.instance,
                                          PeriodCount.period, PeriodCount.period_s],
                         action="NOTHING"))
        return self.database.execute(query).rowcount == 1

    def reconcile(self, now, grace_s):
        """Compare each period count due a look with the dated visits stored for it; returns a
        :class:`PeriodVerdict` for each count whose verdict changed.

        More visits than counted is ``over`` at once; fewer is ``short`` once ``grace_s`` has
        passed since the count arrived (``now``, an aware datetime, is the collector's clock),
        and ``open`` until then, since the visits of a period are released with random delays
        and resent when unacknowledged. A period turning ``short`` or ``over`` raises its alarm
        once; one that stays so raises nothing more, and a short one whose visits arrive later
        turns ``ok``. Undated visits (filed by arrival) never count: the kiosk counted them in
        no period. Call it inside a transaction.
        """
        Visit, PeriodCount = self.FleetVisit, self.PeriodCount
        stored = (Visit.select(fn.COUNT(Visit.event_id))
                  .where((Visit.kiosk_id == PeriodCount.kiosk_id)
                         & (Visit.instance == PeriodCount.instance)
                         & (Visit.period == PeriodCount.period)
                         & (Visit.period_s == PeriodCount.period_s) & Visit.clock_synced
                         # A kiosk counts only what it held and released as schema 2: the
                         # schema-1 visits it sent before its upgrade are coarsened into the
                         # same hour here, but are in no count.
                         & (Visit.schema >= 2)))
        grace = dt.timedelta(seconds=grace_s)
        # Due, or open with the grace passed (a millisecond early at most: judged below). The
        # index is partial: 'open' is written out, as a bound value SQLite would not use it.
        expired = ((PeriodCount.reconciled == SQL("'open'")) & ~PeriodCount.is_due
                   & (PeriodCount.arrived <= utc_text(now - grace)))
        counts = []
        # "is_due = true", not the bare column, which SQLite would not look up in its index.
        for condition in (PeriodCount.is_due.in_([True]), expired):  # one index each
            query = PeriodCount.select(PeriodCount, stored.alias("stored")).where(condition)
            if isinstance(self.database, PostgresqlDatabase):
                # Collectors of one share group reconcile the same table: each takes the
                # counts no other holds, and a visit stored meanwhile (which marks its count
                # due again) waits for this transaction instead of being overwritten by its
                # verdict. SQLite has one writer at a time anyway.
                query = query.for_update("FOR UPDATE OF t1 SKIP LOCKED")
            counts.extend(query)  # read before writing the same table
        changed, looked_at = [], []
        for count in counts:
            if count.stored > count.visits:
                verdict = "over"
            elif count.stored == count.visits:
                verdict = "ok"
            elif now - dt.datetime.fromisoformat(count.arrived) > grace:
                verdict = "short"
            else:
                verdict = "open"
            if verdict == "open" and count.reconciled == "open":
                if count.is_due:
                    looked_at.append(count.id)  # until a visit comes or the grace passes
                continue
            (PeriodCount.update(reconciled=verdict, is_due=verdict == "open")
             .where(PeriodCount.id == count.id).execute())
            if verdict == count.reconciled:
                continue
            changed.append(PeriodVerdict(count.kiosk_id, count.instance, count.period,
                                         count.period_s, count.visits, count.stored,
                                         count.reconciled, verdict))
            if verdict in ("short", "over"):
                self._alarm(count.kiosk_id, f"period_count_{verdict}", utc_text(now),
                            f"period {count.period} ({count.period_s} s) of instance "
                            f"{count.instance}: the kiosk counted {count.visits} visits, "
                            f"{count.stored} are stored"
                            + (f" {grace_s:g} s after the count came: lost, or still queued"
                               if verdict == "short"
                               else ": a visit forged, or counted in no period by the kiosk"))
        if looked_at:
            PeriodCount.update(is_due=False).where(PeriodCount.id.in_(looked_at)).execute()
        return changed

    def apply_status(self, status, received):
        """Record a status unless it is stale; False if it was.

        Only ``lost`` and ``offline`` can be stale: a kiosk that reconnects before the broker
        fires the previous connection's Last Will has a higher epoch already, so that ``lost``
        must not mark it dead, and a will of a kiosk's previous instance (its old SD card) is
        over too. ``online`` always counts, because only a live connection sends it: a forged
        epoch of 2³¹−1 or a re-flashed kiosk starting again at epoch 1 is corrected by the real
        kiosk's next connect, and raises an alarm instead of hiding the kiosk for good.

        Each message writes only its own columns, and the rule is the UPDATE's condition, so
        it judges the epoch stored when the status is written, whichever collector wrote last.
        """
        KioskRow = self.KioskRow
        mine = KioskRow.kiosk_id == status.kiosk_id
        self._seen(status.kiosk_id, received)
        instance, epoch = (KioskRow.select(KioskRow.instance, KioskRow.epoch).where(mine)
                           .tuples().get())
        same_instance = _equal(KioskRow.instance, status.instance)
        fresh = mine if status.state == "online" else mine & (
            KioskRow.epoch.is_null() | (same_instance & (KioskRow.epoch <= status.epoch)))
        unchanged = (_equal(KioskRow.state, status.state) & same_instance
                     & (KioskRow.epoch == status.epoch))
        if not (KioskRow.update(state=status.state, instance=status.instance,
                                epoch=status.epoch, version=status.version,
                                clock_synced=status.clock_synced,
                                state_changed=Case(None, [(unchanged, KioskRow.state_changed)],
                                                   received))
                .where(fresh).execute()):
            KioskRow.update(stale_statuses=KioskRow.stale_statuses + 1).where(mine).execute()
            return False
        if instance is not None and instance != status.instance:
            self._alarm(status.kiosk_id, "instance_changed", received,
                        f"instance {instance} (epoch {epoch}) replaced by "
                        f"{status.instance} (epoch {status.epoch}): re-flashed, or a copy of "
                        "its credentials is in use")
        elif instance == status.instance and epoch is not None and status.epoch < epoch:
            self._alarm(status.kiosk_id, "epoch_went_back", received,
                        f"online at epoch {status.epoch} after epoch {epoch}: a status "
                        "with a higher epoch was forged, or the kiosk's store was restored")
        return True

    def _alarm(self, kiosk_id, kind, received, detail):
        Alarm = self.Alarm
        (Alarm.insert(kiosk_id=kiosk_id, kind=kind, detail=detail, raised=received,
                      last_raised=received)
         .on_conflict(conflict_target=[Alarm.kiosk_id, Alarm.kind],
                      update={Alarm.detail: detail, Alarm.last_raised: received,
                              Alarm.count: Alarm.count + 1})
         .execute())

    def apply_service_point(self, service_point, received):
        """Keep the service point a kiosk announced (its retained ``pin`` message)."""
        self._seen(service_point.kiosk_id, received)
        (self.KioskRow.update(mode=service_point.mode)
         .where(self.KioskRow.kiosk_id == service_point.kiosk_id).execute())
        fields = asdict(service_point)
        fields["services"] = json.dumps(fields["services"], ensure_ascii=False)
        fields.pop("schema")
        fields["received"] = received
        ServicePointRow = self.ServicePointRow
        (ServicePointRow.insert(**fields)
         .on_conflict(conflict_target=[ServicePointRow.kiosk_id],
                      update={getattr(ServicePointRow, name): value
                              for name, value in fields.items() if name != "kiosk_id"})
         .execute())

    def apply_health(self, reports, received):
        """Keep each kiosk's latest of ``reports`` (health messages), in its own columns only;
        returns how many reports were applied.
        All at once: at the national rate a statement or two per report was more than a
        collector's whole time, one UPDATE over many rows costs a twentieth of it. Kiosks are
        written in id order."""
        latest = {health.kiosk_id: health for health in reports}  # a kiosk's last one wins
        if not latest:
            return 0
        KioskRow = self.KioskRow
        self.seen(latest, received)
        rows = []
        for kiosk_id in sorted(latest):
            health = latest[kiosk_id]
            report = dict(vars(health))  # its fields are scalars: asdict's deep copy was slow
            report.pop("kiosk_id")
            if health.update is not None:  # the one field that is not (schema 3's update)
                report["update"] = dict(vars(health.update))
            rows.append((*(getattr(health, name) for name in _HEALTH_COLUMNS),
                         json.dumps(report, ensure_ascii=False), kiosk_id))
        mark = self.database.param
        assignments = ", ".join(f'"{name}" = {mark}' for name in (*_HEALTH_COLUMNS, "health"))
        with driver_errors_as_peewee:
            self.database.cursor().executemany(
                f'UPDATE "{KioskRow._meta.table_name}" SET {assignments} '
                f'WHERE "kiosk_id" = {mark}', rows)
        return len(reports)

    def add_reply(self, reply, received):
        """Store a :class:`~kiosk.telemetry.topics.Reply`; False when this kiosk's reply to
        that command was stored before (a resend), which replaces nothing."""
        self._seen(reply.kiosk_id, received)
        Reply = self.Reply
        data = None if reply.data is None else json.dumps(reply.data, ensure_ascii=False)
        query = (Reply.insert(kiosk_id=reply.kiosk_id, correlation_id=reply.correlation_id,
                              ok=reply.ok, error=reply.error, data=data, received=received)
                 .on_conflict(conflict_target=[Reply.kiosk_id, Reply.correlation_id],
                              action="NOTHING"))
        return self.database.execute(query).rowcount == 1

    # --- rollouts (kiosk.fleet.rollout) ---------------------------------------------------

    def add_rollout(self, *, rollout_id, version, url, sha256, percent, filters,
                    threshold_percent, targets, now, created_by=None):
        """Record a rollout, ``active``, and its ``targets`` (kiosk ids in its order), each
        ``sent``; ``filters`` is a :class:`kiosk.fleet.status.Filters`. One transaction."""
        with self.database.atomic():
            self.Rollout.create(
                rollout_id=rollout_id, version=version, url=url, sha256=sha256,
                percent=percent, province=filters.province, ministry=filters.ministry,
                department=filters.department, threshold_percent=threshold_percent,
                state="active", created=now, changed=now, created_by=created_by)
            self.add_rollout_targets(rollout_id, targets, now)

    def add_rollout_targets(self, rollout_id, kiosk_ids, now):
        """Add ``kiosk_ids`` (in order) after the rollout's targets, each ``sent``; a kiosk
        targeted already keeps its row."""
        RolloutKiosk = self.RolloutKiosk
        start = RolloutKiosk.select().where(RolloutKiosk.rollout_id == rollout_id).count()
        rows = [{"rollout_id": rollout_id, "kiosk_id": kiosk_id, "position": start + index,
                 "state": "sent", "updated": now} for index, kiosk_id in enumerate(kiosk_ids)]
        if rows:
            (RolloutKiosk.insert_many(rows)
             .on_conflict(conflict_target=[RolloutKiosk.rollout_id, RolloutKiosk.kiosk_id],
                          action="NOTHING").execute())

    def rollout(self, rollout_id):
        """The :class:`Rollout` row, or None."""
        return self.Rollout.get_or_none(self.Rollout.rollout_id == rollout_id)

    def rollouts(self):
        """Every rollout, newest first."""
        return list(self.Rollout.select().order_by(self.Rollout.created.desc(),
                                                   self.Rollout.rollout_id))

    def rollout_kiosks(self, rollout_id):
        """The rollout's targeted kiosks, in its order."""
        RolloutKiosk = self.RolloutKiosk
        return list(RolloutKiosk.select().where(RolloutKiosk.rollout_id == rollout_id)
                    .order_by(RolloutKiosk.position))

    def set_rollout_state(self, rollout_id, state, now, *, reason=None, percent=None,
                          only_from=None):
        """Set the rollout's state (and ``paused_reason``, and ``percent`` when given); only
        if its state is one of ``only_from`` when given. Whether it changed."""
        Rollout = self.Rollout
        changes = {Rollout.state: state, Rollout.paused_reason: reason, Rollout.changed: now}
        if percent is not None:
            changes[Rollout.percent] = percent
        mine = Rollout.rollout_id == rollout_id
        if only_from is not None:
            mine &= Rollout.state.in_(list(only_from))
        return Rollout.update(changes).where(mine).execute() == 1

    def set_withdrawn(self, rollout_id, kiosk_ids, is_withdrawn):
        """Mark the retained commands of ``kiosk_ids`` withdrawn (or sent again)."""
        RolloutKiosk = self.RolloutKiosk
        (RolloutKiosk.update(is_withdrawn=is_withdrawn)
         .where((RolloutKiosk.rollout_id == rollout_id)
                & RolloutKiosk.kiosk_id.in_(list(kiosk_ids))).execute())

    def rollout_lock(self, rollout_id):
        """A transaction (or a savepoint of the open one) holding the rollout's own lock
        (:func:`kiosk.fleet.locks.exclusive`): the collector's progress and threshold step, and
        ``pause``, ``resume`` and ``widen``, read its state and rows and write them one at a
        time, so two collectors cannot each count one rollback of two, and an operator's
        action never acts on a state the collector has just changed."""
        return locks.exclusive(self.database, _rollout_lock_key(rollout_id))

    def apply_rollout_progress(self, reports, received):
        """Take the ``update`` of each health report (in order) into its rollout's row for that
        kiosk, if the rollout targets it (a report cannot add a kiosk, nor speak for another
        release: :func:`kiosk.fleet.rollout.state_of`); then pause each active rollout whose
        rollbacks passed its threshold, raising the ``rollout_paused`` alarm on the kiosk
        whose report did it, or mark it ``done`` when every target is healthy. Inside the
        batch's transaction; returns the :class:`PausedRollout` list, whose commands the
        collector withdraws once committed.

        Each rollout's lock (:meth:`rollout_lock`, taken in id order so two collectors never
        wait on each other crosswise) is held from before its rows are read until the batch
        commits: a second collector counts only after the first's rows are in, so the report
        that passes the threshold pauses the rollout, once."""
        reports = [h for h in reports if h.update is not None and h.update.rollout]
        if not reports:
            return []
        Rollout = self.Rollout
        mentioned = sorted({h.update.rollout for h in reports})
        known = [rollout_id for (rollout_id,) in Rollout.select(Rollout.rollout_id)
                 .where(Rollout.rollout_id.in_(mentioned)).order_by(Rollout.rollout_id)
                 .tuples()]
        if not known:
            return []
        with ExitStack() as held:
            for rollout_id in known:
                held.enter_context(self.rollout_lock(rollout_id))
            return self._apply_rollout_progress(reports, known, received)

    def _apply_rollout_progress(self, reports, known, received):
        Rollout, RolloutKiosk = self.Rollout, self.RolloutKiosk
        # Read under the locks: under READ COMMITTED each statement sees what the collector
        # that held them before committed.
        found = {r.rollout_id: r for r in Rollout.select().where(Rollout.rollout_id.in_(known))}
        rows = {(row.rollout_id, row.kiosk_id): row for row in RolloutKiosk.select().where(
            RolloutKiosk.rollout_id.in_(sorted(found))
            & RolloutKiosk.kiosk_id.in_(sorted({h.kiosk_id for h in reports})))}
        touched = {}  # rollout id -> the kiosk of its latest change
        for health in reports:
            row = rows.get((health.update.rollout, health.kiosk_id))
            if row is None:
                continue
            state = rollout.state_of(found[row.rollout_id].version, health.version,
                                     health.update)
            reason = health.update.reason if state in ("rolled_back", "refused") else None
            if state is None or (state, reason) == (row.state, row.reason):
                continue
            (RolloutKiosk.update(state=state, reason=reason, updated=received)
             .where(RolloutKiosk.id == row.id).execute())
            row.state, row.reason = state, reason
            touched[row.rollout_id] = health.kiosk_id
        paused = []
        for rollout_id, kiosk_id in sorted(touched.items()):
            wanted = found[rollout_id]
            if wanted.state != "active":
                continue
            states = [state for (state,) in RolloutKiosk.select(RolloutKiosk.state)
                      .where(RolloutKiosk.rollout_id == rollout_id).tuples()]
            if rollout.is_past_threshold(states, wanted.threshold_percent):
                reason = rollout.pause_reason(states, wanted.threshold_percent)
                if not self.set_rollout_state(rollout_id, "paused", received, reason=reason,
                                              only_from=("active",)):
                    continue
                withdraw = tuple(self.unswitched(rollout_id))
                self.set_withdrawn(rollout_id, withdraw, True)
                self._alarm(kiosk_id, "rollout_paused", received,
                            f"rollout {rollout_id} of version {wanted.version} paused: {reason}")
                paused.append(PausedRollout(rollout_id, wanted.version, reason, kiosk_id,
                                            withdraw))
            elif rollout.is_done(states):
                self.set_rollout_state(rollout_id, "done", received, only_from=("active",))
        return paused

    def unswitched(self, rollout_id, states=None):
        """The rollout's kiosks in one of ``states`` (by default
        :data:`kiosk.fleet.rollout.NOT_SWITCHED`: not switched to it), in its order."""
        RolloutKiosk = self.RolloutKiosk
        states = rollout.NOT_SWITCHED if states is None else states
        return [kiosk_id for (kiosk_id,) in RolloutKiosk.select(RolloutKiosk.kiosk_id).where(
            (RolloutKiosk.rollout_id == rollout_id) & RolloutKiosk.state.in_(list(states)))
            .order_by(RolloutKiosk.position).tuples()]

    def to_resend(self, rollout_id):
        """The rollout's kiosks a resume sends the command to again
        (:func:`kiosk.fleet.rollout.is_resent`: not switched nor failed, or refused only
        because the command was withdrawn), in its order."""
        RolloutKiosk = self.RolloutKiosk
        return [kiosk_id for kiosk_id, state, reason in RolloutKiosk.select(
            RolloutKiosk.kiosk_id, RolloutKiosk.state, RolloutKiosk.reason)
            .where(RolloutKiosk.rollout_id == rollout_id)
            .order_by(RolloutKiosk.position).tuples()
            if rollout.is_resent(state, reason)]

    def sent_again(self, rollout_id, kiosk_ids, now):
        """Mark the commands of ``kiosk_ids`` sent again: no longer withdrawn, and a refusal
        because of the withdrawal is ``sent`` again (that report is about the command taken
        back, not the one sent now)."""
        RolloutKiosk = self.RolloutKiosk
        kiosk_ids = list(kiosk_ids)
        self.set_withdrawn(rollout_id, kiosk_ids, False)
        refused = [kiosk_id for kiosk_id, reason in RolloutKiosk.select(
            RolloutKiosk.kiosk_id, RolloutKiosk.reason).where(
            (RolloutKiosk.rollout_id == rollout_id) & (RolloutKiosk.state == "refused")
            & RolloutKiosk.kiosk_id.in_(kiosk_ids)).tuples()
            if rollout.is_withdrawal("refused", reason)]
        if refused:
            (RolloutKiosk.update(state="sent", reason=None, updated=now)
             .where((RolloutKiosk.rollout_id == rollout_id)
                    & RolloutKiosk.kiosk_id.in_(refused)).execute())

    def withdrawn_of_paused(self):
        """``[(rollout_id, kiosk_id)]`` of every paused rollout's rows marked withdrawn, in
        rollout and position order: what a collector publishes the withdrawal of again at its
        start (one that died between committing a pause and publishing left them retained)."""
        Rollout, RolloutKiosk = self.Rollout, self.RolloutKiosk
        return list(RolloutKiosk.select(RolloutKiosk.rollout_id, RolloutKiosk.kiosk_id)
                    .join(Rollout, on=(Rollout.rollout_id == RolloutKiosk.rollout_id))
                    .where((Rollout.state == "paused") & RolloutKiosk.is_withdrawn)
                    .order_by(RolloutKiosk.rollout_id, RolloutKiosk.position).tuples())

    def update_alarms(self, now, thresholds):
        """Raise the alarms whose condition (:func:`kiosk.fleet.alarms.conditions`) started and
        clear those whose condition ended, at ``now`` (aware, the collector's clock); returns
        ``(raised, cleared)`` as lists of AlarmEvent rows. Several collectors in one group take
        turns (:func:`kiosk.fleet.locks.exclusive`, from before the first read), so each alarm
        is raised once; its own transaction, or a savepoint of one that took the lock."""
        with locks.exclusive(self.database, _ALARM_LOCK_KEY):
            return self._update_alarms(now, thresholds)

    def _update_alarms(self, now, thresholds):
        AlarmEvent, Alarm = self.AlarmEvent, self.Alarm
        stamp = utc_text(now)
        open_now = {}
        for event in AlarmEvent.select().where(AlarmEvent.cleared.is_null()):
            open_now.setdefault(event.kiosk_id, {})[event.kind] = event
        changed_at = dict(Alarm.select(Alarm.kiosk_id, Alarm.last_raised)
                          .where(Alarm.kind == "instance_changed").tuples())
        PeriodCount, KioskRow = self.PeriodCount, self.KioskRow
        verdicts = {}  # only the mismatched: a year of counts is big, these are few
        for kiosk_id, verdict, n in (PeriodCount.select(
                PeriodCount.kiosk_id, PeriodCount.reconciled, fn.COUNT(PeriodCount.id))
                .where(PeriodCount.reconciled.in_(("short", "over")))
                .group_by(PeriodCount.kiosk_id, PeriodCount.reconciled).tuples()):
            verdicts.setdefault(kiosk_id, {})[verdict] = n
        # The newest expiry of each kiosk's certificates, one grouped query (kiosks with a
        # password have none).
        KioskCert = self.KioskCert
        cert_not_after = dict(KioskCert.select(KioskCert.kiosk_id, fn.MAX(KioskCert.not_after))
                              .group_by(KioskCert.kiosk_id).tuples())
        # The expiry each kiosk's latest health says it connects with: a renewal recorded above
        # may never have been installed. Taken out of the JSON by the database (a national
        # fleet's every report parsed here would cost more than the evaluation).
        reported = self._health_field("cert_expires")
        cert_reported = dict(KioskRow.select(KioskRow.kiosk_id, reported)
                             .where(reported.is_null(False)).tuples())
        raised, cleared = [], []
        # The columns the conditions read, as the driver's tuples: a national fleet is 78,000
        # rows, and peewee converting each value was half the time of an evaluation.
        query = KioskRow.select(*(getattr(KioskRow, name) for name in _AlarmKiosk._fields))
        found_by = {}
        for *columns, synced in self.database.execute(query):  # clock_synced last
            kiosk = _AlarmKiosk(*columns, None if synced is None else bool(synced))  # SQLite: 0/1
            # A retired kiosk is off the broker for good: nothing about it is ops' to act on.
            found_by[kiosk.kiosk_id] = {} if kiosk.retired else alarms.conditions(
                kiosk, verdicts.get(kiosk.kiosk_id, {}), changed_at.get(kiosk.kiosk_id), now,
                thresholds, cert_not_after=cert_not_after.get(kiosk.kiosk_id),
                cert_reported=cert_reported.get(kiosk.kiosk_id))
        CaCrl = self.CaCrl
        newest_crl = CaCrl.select(CaCrl.next_update).order_by(CaCrl.number.desc()).first()
        found_by[alarms.FLEET_SUBJECT] = alarms.fleet_conditions(
            newest_crl and newest_crl.next_update, now, thresholds)
        for subject, found in found_by.items():
            opened = open_now.get(subject, {})
            for kind, detail in found.items():
                if kind not in opened:
                    raised.append(AlarmEvent.create(kiosk_id=subject, kind=kind,
                                                    detail=detail, raised=stamp))
            for kind, event in opened.items():
                if kind not in found:
                    event.cleared = stamp
                    event.save()
                    cleared.append(event)
        return raised, cleared

    def _health_field(self, key):
        """An expression for the text of top-level ``key`` of each kiosk's stored health JSON
        (NULL when the report lacks it or holds null)."""
        if isinstance(self.database, PostgresqlDatabase):
            return SQL('(CAST("health" AS json) ->> %s)', (key,))
        return fn.json_extract(self.KioskRow.health, f"$.{key}")

    def alarm_events(self, kiosk_id=None, *, open_only=False):
        """The alarm history (of one kiosk), oldest first; only those still open if asked."""
        AlarmEvent = self.AlarmEvent
        query = AlarmEvent.select().order_by(AlarmEvent.id)
        if kiosk_id is not None:
            query = query.where(AlarmEvent.kiosk_id == kiosk_id)
        if open_only:
            query = query.where(AlarmEvent.cleared.is_null())
        return list(query)

    def add_malformed(self, reasons):
        """Add ``reasons`` (``{reason: messages}``, one batch's rejections) to the stored
        counts, inside the batch's transaction so a retried batch counts once."""
        if not reasons:
            return
        Malformed = self.Malformed
        known = {reason for (reason,) in Malformed.select(Malformed.reason).tuples()}
        merged = {}
        for reason, messages in reasons.items():
            if reason not in known and len(known) >= MAX_MALFORMED_REASONS:
                reason = "other"
            known.add(reason)
            merged[reason] = merged.get(reason, 0) + messages
        (Malformed.insert_many([{"reason": r, "messages": n} for r, n in sorted(merged.items())])
         .on_conflict(conflict_target=[Malformed.reason],
                      update={Malformed.messages: Malformed.messages + EXCLUDED.messages})
         .execute())

    def add_certificate(self, kiosk_id, *, serial, not_before, not_after, issued):
        """Record a client certificate issued to ``kiosk_id``: ``serial`` in hex (any case,
        stored lower-case), the dates aware datetimes. Its own statement (autocommit outside a
        transaction); the same serial recorded again for the kiosk changes nothing. Whether
        it was new."""
        KioskCert = self.KioskCert
        query = (KioskCert.insert(kiosk_id=kiosk_id, serial=serial.lower(),
                                  not_before=utc_text(not_before), not_after=utc_text(not_after),
                                  issued=utc_text(issued))
                 .on_conflict(conflict_target=[KioskCert.kiosk_id, KioskCert.serial],
                              action="NOTHING"))
        return self.database.execute(query).rowcount == 1

    def retire(self, kiosk_id, now, detail):
        """``kiosk-fleet revoke``'s record, one transaction: every certificate of the kiosk
        marked revoked, the kiosk retired (its row made if the collector never heard from it),
        its open alarms cleared, and a ``revoked`` event with ``detail`` kept among its
        recorded ones. Repeating it changes nothing but that event's count. Returns
        ``(serials newly revoked, when it was retired)``."""
        stamp = utc_text(now)
        KioskCert, KioskRow, AlarmEvent = self.KioskCert, self.KioskRow, self.AlarmEvent
        # The alarms' lock: an evaluation running meanwhile must not raise again what this
        # clears (and on SQLite a read that later writes must hold the write lock first).
        with locks.exclusive(self.database, _ALARM_LOCK_KEY):
            serials = [serial for (serial,) in KioskCert.select(KioskCert.serial).where(
                (KioskCert.kiosk_id == kiosk_id) & KioskCert.revoked.is_null()).tuples()]
            (KioskCert.update(revoked=stamp)
             .where((KioskCert.kiosk_id == kiosk_id) & KioskCert.revoked.is_null()).execute())
            KioskRow.insert(kiosk_id=kiosk_id).on_conflict_ignore().execute()
            (KioskRow.update(retired=stamp)
             .where((KioskRow.kiosk_id == kiosk_id) & KioskRow.retired.is_null()).execute())
            (AlarmEvent.update(cleared=stamp)
             .where((AlarmEvent.kiosk_id == kiosk_id) & AlarmEvent.cleared.is_null()).execute())
            self._alarm(kiosk_id, "revoked", stamp, detail)
            retired = KioskRow.get_by_id(kiosk_id).retired
        return serials, retired

    # --- reads ------------------------------------------------------------------------------

    def certificates(self, kiosk_id=None):
        """Client certificates recorded (of one kiosk, or all), by kiosk, newest expiry first."""
        KioskCert = self.KioskCert
        query = KioskCert.select().order_by(KioskCert.kiosk_id, KioskCert.not_after.desc(),
                                            KioskCert.id.desc())
        if kiosk_id is not None:
            query = query.where(KioskCert.kiosk_id == kiosk_id)
        return list(query)

    def malformed(self):
        """``{reason: messages}`` the collectors refused as malformed, ever."""
        return dict(self.Malformed.select(self.Malformed.reason, self.Malformed.messages)
                    .tuples())

    def replies(self, correlation_id=None):
        """Replies stored (of one command, or all), oldest first, ``data`` decoded."""
        query = self.Reply.select().order_by(self.Reply.id)
        if correlation_id is not None:
            query = query.where(self.Reply.correlation_id == correlation_id)
        rows = list(query)
        for row in rows:
            row.data = None if row.data is None else json.loads(row.data)
        return rows

    def alarms(self, kiosk_id=None):
        """Alarms raised, oldest first."""
        query = self.Alarm.select().order_by(self.Alarm.id)
        if kiosk_id is not None:
            query = query.where(self.Alarm.kiosk_id == kiosk_id)
        return list(query)

    def period_verdicts(self, kiosk_id):
        """``{verdict: periods}`` of the kiosk's period counts (verdicts no count has are left
        out): ``short`` ones are visits lost or still queued, ``over`` ones visits the kiosk
        never counted."""
        PeriodCount = self.PeriodCount
        query = (PeriodCount.select(PeriodCount.reconciled, fn.COUNT(PeriodCount.id))
                 .where(PeriodCount.kiosk_id == kiosk_id).group_by(PeriodCount.reconciled)
                 .tuples())
        return dict(query)

    def kiosks(self):
        """Every kiosk the collector has heard from, by id."""
        return list(self.KioskRow.select().order_by(self.KioskRow.kiosk_id))

    def visits(self, kiosk_id=None, *, include_demo=True):
        FleetVisit = self.FleetVisit
        # The event id, random, only makes the order repeatable: there is no order of visits.
        query = FleetVisit.select().order_by(FleetVisit.kiosk_id, FleetVisit.period,
                                             FleetVisit.event_id)
        if kiosk_id is not None:
            query = query.where(FleetVisit.kiosk_id == kiosk_id)
        if not include_demo:
            query = query.where(~FleetVisit.is_demo)
        return list(query)

    def statistics(self, kiosk_id=None):
        """The published statistics of the visits (of one kiosk, or all), demo visits left out:
        ``visits``, ``completed``, ``ratings`` (1-5), ``rated``, ``mean_rating`` and
        ``copy_answers`` (every answer). Each table goes through :func:`disclosure.suppress`,
        so a count under 5 shows ``"<5"`` and none can be worked out from a total; the mean is
        withheld (None) whenever it would tell more than the published counts."""
        visits = self.visits(kiosk_id, include_demo=False)
        completed = sum(v.outcome == schema.Outcome.COMPLETED for v in visits)
        ratings = {r: 0 for r in schema.RATINGS}
        copies = dict.fromkeys(schema.COPY_ANSWERS, 0)
        for v in visits:
            if v.rating is not None:
                ratings[v.rating] += 1
            if v.copy_answer is not None:
                copies[v.copy_answer] += 1
        rated = sum(ratings.values())
        mean = sum(r * n for r, n in ratings.items()) / rated if rated else None
        outcomes = disclosure.suppress({"completed": completed,
                                        "abandoned": len(visits) - completed})
        ratings = disclosure.suppress(ratings)
        return {
            "visits": outcomes.total,
            "completed": outcomes.cells["completed"],
            "ratings": ratings.cells,
            "rated": ratings.total,
            "mean_rating": disclosure.derived(mean, ratings.cells.values(), ratings.total),
            "copy_answers": disclosure.suppress(copies).cells,
        }


def open_database(where=DEFAULT_DB, *, read_only=False):
    """Open (creating and migrating if needed) the fleet database ``where``: a path,
    ``sqlite:///relative`` or ``sqlite:////absolute`` for SQLite; ``postgresql://...`` for
    PostgreSQL (a Unix socket as ``postgresql:///dbname?host=/socket/dir``).

    ``read_only``, for the verbs that only read (``status``, ``stats``): nothing is created or
    migrated, and nothing can be written (SQLite's ``mode=ro``; PostgreSQL's
    ``default_transaction_read_only``), so a replica, a role with only SELECT or a file the
    operator may only read will do; the schema must be the current one (StoreError naming
    the fix otherwise)."""
    where = str(where)
    if where.startswith(("postgresql://", "postgres://")):
        options = {"options": "-c default_transaction_read_only=on"} if read_only else {}
        database = PostgresqlDatabase(where, prefer_psycopg3=True, **options)
        return FleetDb(database, _without_password(where), read_only=read_only)
    path = Path(where.removeprefix("sqlite:///"))  # sqlite:////abs or sqlite:///relative
    if read_only:
        if not path.is_file():
            raise StoreError(f"{path}: no such database; point --db at the file "
                             "`kiosk-fleet collect --db` writes")
        # A WAL file read-only still needs its -shm: the directory must let SQLite make it,
        # unless a writer has it open already (docs/telemetry.md).
        database = SqliteDatabase(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                  pragmas={"busy_timeout": 10_000})
        return FleetDb(database, str(path), read_only=True)
    database = SqliteDatabase(
        str(path),
        # secure_delete: a deleted row's bytes are overwritten, not left in free pages.
        pragmas={"journal_mode": "wal", "synchronous": "full", "busy_timeout": 10_000,
                 "secure_delete": "on"},
    )
    return FleetDb(database, str(path))


def _equal(field, value):
    """``field`` equals ``value``, NULL matching None (SQL's ``=`` is never true on NULL)."""
    return field.is_null() if value is None else field == value


def is_url(where):
    """Whether ``where`` names a database server rather than a SQLite file."""
    return str(where).startswith(("postgresql://", "postgres://"))


def _without_password(url):
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}{at}{host}" if at else url
