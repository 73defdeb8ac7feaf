"""The central schema's versions: numbered steps, each applied once and in order, recorded in
the ``schema_version`` table, on SQLite and PostgreSQL alike.

:func:`migrate` runs at every open. Two collectors starting together do not race: on
PostgreSQL the steps run under a transaction-scoped advisory lock, on SQLite in an immediate
(write-locked) transaction (:func:`kiosk.fleet.locks.exclusive`). A new step is appended to
:data:`STEPS`; a step never changes once released. Two things stay outside the numbered
steps because they follow other sources:

- before versions (a SQLite file of the collectors before 0.3), the schema-1 visit table, which
  timed each visit, is rebuilt coarsened by period, and columns added since are added (under
  the same lock: a second collector finds the file rebuilt);
- after them, a column for each field the visit schema (:mod:`kiosk.visit`) gained since, so a
  new field needs no step of its own.
"""

import datetime as dt
import logging

from peewee import BooleanField, CharField, FloatField, IntegerField, Model, PostgresqlDatabase
from peewee import __exception_wrapper__ as driver_errors_as_peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_operations

from kiosk import visit as schema
from kiosk.errors import StoreError
from kiosk.fleet import locks, rollups
from kiosk.period import DEFAULT_S, Period, local_day
from kiosk.sqlite import bind

log = logging.getLogger(__name__)

#: Columns of the schema-1 collector's visit table that timed or ordered each visit.
SCHEMA1_COLUMNS = frozenset({"seq", "epoch", "at", "mono_s", "received"})
#: Any constant both collectors agree on: the key of the PostgreSQL advisory lock.
_LOCK_KEY = 0x6B696F736B


class SchemaVersion(Model):
    """One applied step: its number, what it did, and the collector clock when it ran."""

    version = IntegerField(primary_key=True)
    name = CharField()
    applied = CharField()

    class Meta:
        table_name = "schema_version"


def _tables(fleet):
    fleet.database.create_tables([fleet.KioskRow, fleet.ServicePointRow, fleet.FleetVisit,
                                  fleet.PeriodCount, fleet.Alarm])


def _replies_and_period_index(fleet):
    fleet.database.create_tables([fleet.Reply])
    fleet.database.execute_sql('CREATE INDEX IF NOT EXISTS "visit_period" ON "visit" ("period")')


def _registry(fleet):
    # Imported here: the registry imports kiosk.fleet.db, which imports this module.
    from kiosk.fleet import registry

    registry.create_tables(fleet.database)


def _fleet_state_and_alarm_history(fleet):
    # Step 1 makes the kiosk table from today's model, so on a new database these are there.
    migrator = SchemaMigrator.from_database(fleet.database)
    have = {column.name for column in fleet.database.get_columns("kiosk")}
    run_operations(*(migrator.add_column("kiosk", name, field)
                     for name, field in (("outbox_oldest_s", FloatField(null=True)),
                                         ("reader", CharField(null=True)),
                                         ("disk_free_mb", FloatField(null=True)),
                                         ("clock_synced", BooleanField(null=True)))
                     if name not in have))
    fleet.database.create_tables([fleet.AlarmEvent])


def _visit_service_points(fleet):
    # A new database has the column from the model; an older one gets it here, before it is
    # filled (the columns the visit schema gained are otherwise added after the steps).
    if "service_point_id" not in {c.name for c in fleet.database.get_columns("visit")}:
        run_operations(SchemaMigrator.from_database(fleet.database).add_column(
            "visit", "service_point_id", CharField(null=True)))
    # As the statistics joined them until now: through each kiosk's pin.
    fleet.database.execute_sql(
        'UPDATE "visit" SET "service_point_id" = (SELECT "pin"."service_point_id" FROM "pin" '
        'WHERE "pin"."kiosk_id" = "visit"."kiosk_id") WHERE "service_point_id" IS NULL')


def _rollups_of_schema3(fleet):
    # The rebuild reads the visit columns schema 3 added, which are otherwise added after the
    # steps: an older table gets them here first, empty.
    _add_missing_columns(fleet, [fleet.FleetVisit])
    rollups.rebuild(fleet)


def _reconcile_indexes(fleet):
    execute = fleet.database.execute_sql
    execute('CREATE INDEX IF NOT EXISTS "period_count_open_arrived" ON "period_count" '
            "(\"arrived\") WHERE \"reconciled\" = 'open' AND NOT \"is_due\"")
    # One index by period, then the rest of a count's key, for both ranges of periods and a
    # count's visits: with one by period alone beside one by kiosk, PostgreSQL counted a
    # count's visits through the period's whole hour when its statistics were not yet fresh.
    execute('DROP INDEX IF EXISTS "fleetvisit_kiosk_id_instance_period_period_s"')
    execute('DROP INDEX IF EXISTS "visit_period"')
    execute('CREATE INDEX "visit_period" ON "visit" ("period", "kiosk_id", "instance", '
            '"period_s")')


def _revocation(fleet):
    # A new database has the columns from today's models; an older one gets them here.
    migrator = SchemaMigrator.from_database(fleet.database)
    for table, name in (("kiosk", "retired"), ("kiosk_cert", "revoked")):
        if name not in {c.name for c in fleet.database.get_columns(table)}:
            run_operations(migrator.add_column(table, name, CharField(null=True)))
    fleet.database.create_tables([fleet.CaCrl])


#: ``(version, what it does, step(fleet_db))``, oldest first.
STEPS = (
    (1, "kiosks, pins, visits by kiosk instance and period, period counts, alarms", _tables),
    (2, "command replies stored; visits indexed by period for range queries",
     _replies_and_period_index),
    (3, "the registry of service points, with validity times", _registry),
    (4, "kiosk reader, disk, outbox age and clock from health; alarm raised/cleared history",
     _fleet_state_and_alarm_history),
    (5, "visits carry their service point; those stored before get their kiosk's pin",
     _visit_service_points),
    (6, "visit rollups by local day and month, service point and service, built from the "
     "visits stored", rollups.create_and_rebuild),
    (7, "messages refused as malformed, counted by reason",
     lambda fleet: fleet.database.create_tables([fleet.Malformed])),
    (8, "visit rollups rebuilt with the schema-3 counters: not sure, the return_card and "
     "confirm steps, card left in, answer changed", _rollups_of_schema3),
    (9, "open period counts indexed by arrival, so reconciling finds those whose grace has "
     "passed without re-counting the visits of every open one; visits indexed by period, "
     "kiosk, instance and period length, for ranges and reconciling alike",
     _reconcile_indexes),
    (10, "staged rollouts of a release and the progress of each kiosk they target",
     lambda fleet: fleet.database.create_tables([fleet.Rollout, fleet.RolloutKiosk])),
    (11, "kiosks' client certificates: serial and validity, as provision issued them",
     lambda fleet: fleet.database.create_tables([fleet.KioskCert])),
    (12, "revocation: when a client certificate was revoked and a kiosk retired, and the CRLs "
     "issued for the agency CA", _revocation),
)
LATEST = STEPS[-1][0]


def migrate(fleet, now=None):
    """Bring ``fleet`` (a :class:`kiosk.fleet.db.FleetDb`) to :data:`LATEST`; returns the
    versions applied now (none when it was current)."""
    database = fleet.database
    is_postgres = isinstance(database, PostgresqlDatabase)
    (Version,) = bind(database, SchemaVersion)
    applied, rebuilt = [], False
    with locks.exclusive(database, _LOCK_KEY):
        if not is_postgres and not database.table_exists(SchemaVersion._meta.table_name):
            rebuilt = _before_versions(fleet)
        database.create_tables([Version])
        done = {v.version for v in Version.select()}
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for version, name, step in STEPS:
            if version in done:
                continue
            step(fleet)
            Version.create(version=version, name=name, applied=stamp)
            applied.append(version)
        _add_missing_columns(fleet, _growing(fleet))
    if rebuilt:
        _checkpoint(fleet)
    if applied:
        log.info("%s: central schema now at version %d (applied %s)", fleet.location, LATEST,
                 ", ".join(map(str, applied)))
    return applied


def version(fleet):
    """The highest step applied to ``fleet``'s database (0 before versions)."""
    (Version,) = bind(fleet.database, SchemaVersion)
    if not fleet.database.table_exists(SchemaVersion._meta.table_name):
        return 0
    return max((v.version for v in Version.select()), default=0)


def check(fleet):
    """For an open that may not write (:func:`kiosk.fleet.db.open_database` ``read_only``):
    :class:`StoreError` unless the schema is the current one, naming the version found, the
    one needed and the fix. Reads only."""
    found = version(fleet)
    if found > LATEST:
        raise StoreError(f"{fleet.location}: the fleet database is at schema version {found}, "
                         f"newer than this kiosk-fleet knows (it needs version {LATEST}): "
                         "upgrade kiosk-fleet here")
    missing = [f"{table}.{field.column_name}" for table, fields in
               _missing_columns(fleet, _growing(fleet)).items()
               for field in fields]
    if found == LATEST and not missing:
        return
    lacking = f" and lacks {', '.join(missing)}" if missing else ""
    raise StoreError(f"{fleet.location}: the fleet database is at schema version {found}"
                     f"{lacking}; this kiosk-fleet needs version {LATEST}. Start this "
                     "version's `kiosk-fleet collect --db ...` on it (on the primary, for a "
                     "replica): it migrates the database as it opens it")


def _growing(fleet):
    """The models whose tables an open completes with the columns they lack."""
    return [fleet.KioskRow, fleet.ServicePointRow, fleet.FleetVisit, fleet.PeriodCount,
            fleet.Reply]


def _missing_columns(fleet, models):
    """``{table: [field]}``: the columns each model has and its existing table lacks."""
    missing = {}
    for model in models:
        table = model._meta.table_name
        if not fleet.database.table_exists(table):
            continue
        have = {column.name for column in fleet.database.get_columns(table)}
        fields = [field for field in model._meta.sorted_fields
                  if field.column_name not in have]
        if fields:
            missing[table] = fields
    return missing


def _add_missing_columns(fleet, models):
    """Add, empty, the columns a model has and its table lacks (a field the visit schema
    gained; a SQLite file older than ``instance``): without them every insert would fail and
    the collector retry its first batch for ever."""
    migrator = SchemaMigrator.from_database(fleet.database)
    # Empty in the rows already there, so nullable whatever the model says.
    run_operations(*(migrator.add_column(table, field.column_name, type(field)(null=True))
                     for table, fields in _missing_columns(fleet, models).items()
                     for field in fields))


def _before_versions(fleet):
    """A SQLite file from before versions: the schema-1 visit table rebuilt by period, the
    columns added since added; the numbered steps then find their tables there. Under the
    migration lock, so a second collector opening the file waits and finds it rebuilt. Whether
    the visits were rebuilt (their old pages then want a checkpoint)."""
    rebuilt = _rebuild_schema1_visits(fleet)
    _add_missing_columns(fleet, [fleet.KioskRow, fleet.ServicePointRow, fleet.FleetVisit])
    return rebuilt


def _rebuild_schema1_visits(fleet):
    """A file written by the schema-1 collector holds each visit's time to the millisecond,
    its sequence number, epoch, monotonic time and arrival time, and its NOT NULL ``seq``
    would refuse every new visit. Rebuild the table with each row coarsened as the parser
    coarsens a schema-1 visit (its time to the hour when the clock was synced, else the
    local day it arrived); True if it did. :func:`_checkpoint` then wipes the old times."""
    database = fleet.database
    table = fleet.FleetVisit._meta.table_name
    if not database.table_exists(table):
        return False
    have = {column.name for column in database.get_columns(table)}
    if not have & SCHEMA1_COLUMNS:
        return False
    old = f"{table}_schema1"
    copied = [name for name in ("event_id", "kiosk_id", "instance", "is_demo",
                                *(f.name for f in schema.KEPT), "clock_synced", "schema",
                                "at", "received") if name in have]
    with database.atomic():
        # The old indexes go first: renamed along with the table, their names would keep
        # the new table's indexes from being made.
        for (index,) in database.execute_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL", (table,)).fetchall():
            database.execute_sql(f'DROP INDEX "{index}"')
        database.execute_sql(f'ALTER TABLE "{table}" RENAME TO "{old}"')
        database.create_tables([fleet.FleetVisit])
        columns = ", ".join(f'"{name}"' for name in copied)
        # In random order: in arrival order the new rows (and the file's pages) would keep
        # the old sequence, the very order of the visits.
        rows = database.execute_sql(f'SELECT {columns} FROM "{old}" ORDER BY random()')
        with driver_errors_as_peewee:
            database.cursor().executemany(
                fleet.insert_visit_sql,
                (fleet.visit_row(_coarsened(dict(zip(copied, row, strict=True))))
                 for row in rows))
        database.execute_sql(f'DROP TABLE "{old}"')
    return True


def _checkpoint(fleet):
    """After the rebuild has committed (a checkpoint cannot run inside its transaction): with
    secure_delete, the old times are then gone from the file and its write-ahead log."""
    database = fleet.database
    busy, _, _ = database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("%s: visits rebuilt without their old times, but another connection "
                    "kept the checkpoint from finishing; the old pages are overwritten "
                    "at the next checkpoint", fleet.location)
    else:
        log.info("%s: visit table of the schema-1 collector rebuilt by period", fleet.location)


def _coarsened(row):
    """A row of the schema-1 collector's visit table as schema 2 stores it: its time becomes
    the default period (as :mod:`kiosk.telemetry.topics` coarsens a schema-1 visit), or, from
    an unsynced clock, the local day it arrived; its duration whole seconds."""
    at, received = row.pop("at"), row.pop("received")
    if row["clock_synced"]:
        period = Period.of(dt.datetime.fromisoformat(at), DEFAULT_S)
    else:
        period = local_day(dt.datetime.fromisoformat(received))
    if row.get("duration_s") is not None:
        row["duration_s"] = round(row["duration_s"])
    return {**row, "period": period.text, "period_s": period.length_s}
