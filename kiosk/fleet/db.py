"""The central store: kiosks, their service points and their anonymous visits (peewee on SQLite).

Only fields the telemetry contract names are stored, taken from the validated message objects
of :mod:`kiosk.telemetry.topics`, so nothing a kiosk sent by mistake can land here. Visits are
keyed by event id: a visit delivered twice is stored once. Demo visits are kept (ops can see the
demo worked) but flagged, and every statistic here leaves them out.

The models are declared once and bound per database by :func:`open_database` (with
:func:`kiosk.sqlite.bind`), so two collectors in one process (tests) never share a binding.
Peewee opens one connection per thread; WAL lets ``status`` and the tests read while the
collector writes.
"""

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

from peewee import (
    BooleanField,
    CharField,
    FloatField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
    fn,
)
from peewee import __exception_wrapper__ as driver_errors_as_peewee  # sqlite3 -> peewee errors
from playhouse.migrate import SqliteMigrator, migrate

from kiosk import visit as schema
from kiosk.sqlite import bind, schema_columns

DEFAULT_DB = "fleet.sqlite3"


def utc_now():
    """The collector's clock as an RFC 3339 UTC string (kiosk clocks may be unsynced)."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


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
    health = TextField(null=True)  # the last health report, JSON of its known fields
    stale_statuses = IntegerField(default=0)

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


# The envelope and the collector's own columns, around the fields the visit schema says the
# collector keeps.
FleetVisit = type("FleetVisit", (Model,), {
    "__doc__": "One visit a kiosk delivered, stored once by its event id.",
    "__module__": __name__,
    "Meta": type("Meta", (), {"table_name": "visit"}),
    "event_id": CharField(primary_key=True),
    "kiosk_id": CharField(index=True),
    "instance": CharField(null=True),  # None from kiosks before 0.2
    "seq": IntegerField(),  # counts visits per instance
    "epoch": IntegerField(),
    "is_demo": BooleanField(index=True),
    **schema_columns(schema.KEPT, text=CharField),
    "at": CharField(),
    "clock_synced": BooleanField(),
    "mono_s": FloatField(),
    "schema": IntegerField(),
    "received": CharField(),
})


class Alarm(Model):
    """Something about one kiosk that ops must look at, once per kind: ``instance_changed``
    (re-flashed, or a copy of its credentials in use) or ``epoch_went_back`` (online at a
    lower epoch than a status it had sent). A repeat counts instead of adding a row, so a
    kiosk flipping between two instances cannot grow the table."""

    kiosk_id = CharField()
    kind = CharField()
    detail = TextField()  # the latest occurrence
    raised = CharField()  # collector clock, first occurrence
    last_raised = CharField()
    count = IntegerField(default=1)

    class Meta:
        table_name = "alarm"
        indexes = ((("kiosk_id", "kind"), True),)


class FleetDb:
    """One open fleet database: its own bound ``KioskRow``, ``ServicePointRow``, ``FleetVisit``
    and ``Alarm`` models, plus the queries."""

    def __init__(self, path):
        self.path = Path(path)
        self.database = SqliteDatabase(
            str(self.path),
            pragmas={"journal_mode": "wal", "synchronous": "full", "busy_timeout": 10_000},
        )
        self.KioskRow, self.ServicePointRow, self.FleetVisit, self.Alarm = bind(
            self.database, KioskRow, ServicePointRow, FleetVisit, Alarm)
        self._visit_fields = self.FleetVisit._meta.sorted_fields
        # Written once: peewee rebuilding a 22-column INSERT per row was over a third of the
        # collector's time at catch-up rates.
        columns = ", ".join(f'"{field.column_name}"' for field in self._visit_fields)
        marks = ", ".join("?" * len(self._visit_fields))
        # ON CONFLICT names the key: OR IGNORE would also drop a row breaking NOT NULL, silently,
        # and the visit would then be acked without being stored.
        self._insert_visit = (f'INSERT INTO "{FleetVisit._meta.table_name}" ({columns}) '
                              f'VALUES ({marks}) ON CONFLICT ("event_id") DO NOTHING')
        self.database.connect(reuse_if_open=True)
        self.database.create_tables([self.KioskRow, self.ServicePointRow, self.FleetVisit,
                                     self.Alarm])
        self._add_missing_columns([self.KioskRow, self.ServicePointRow, self.FleetVisit])

    def _add_missing_columns(self, models):
        """A file made by an older collector lacks the columns added since (``instance``, a
        field the visit schema gained): add them, empty, or every insert would fail and the
        collector retry its first batch for ever. The fleet database has no migrations of its
        own; they come with its move to PostgreSQL."""
        migrator = SqliteMigrator(self.database)
        for model in models:
            table = model._meta.table_name
            have = {column.name for column in self.database.get_columns(table)}
            missing = [field for field in model._meta.sorted_fields
                       if field.column_name not in have]
            # Empty in the rows already there, so nullable whatever the model says.
            migrate(*(migrator.add_column(table, field.column_name, type(field)(null=True))
                      for field in missing))

    def close(self):
        if not self.database.is_closed():
            self.database.close()

    # --- writes (the collector's worker thread, inside one transaction per batch) ----------

    def _kiosk(self, kiosk_id, received):
        kiosk, _ = self.KioskRow.get_or_create(kiosk_id=kiosk_id)
        kiosk.last_seen = received
        return kiosk

    def add_visits(self, visits, received):
        """Store :class:`~kiosk.telemetry.topics.VisitMessage` objects; returns how many were new.

        One upsert per kiosk and one prepared insert stepped over the batch, rather than four
        queries per visit: at catch-up rates those were the collector's ceiling. The event id
        key makes storing idempotent in the database itself: a visit already stored (a resend),
        or twice in the batch, is stored once and not counted.
        """
        KioskRow = self.KioskRow
        for kiosk_id in {visit.kiosk_id for visit in visits}:
            (KioskRow.insert(kiosk_id=kiosk_id, last_seen=received)
             .on_conflict(conflict_target=[KioskRow.kiosk_id],
                          update={KioskRow.last_seen: received})
             .execute())
        if not visits:
            return 0
        rows = []
        for visit in visits:
            # Two columns are the collector's own; every other one is a field of the message.
            own = {"is_demo": visit.mode == "demo", "received": received}
            rows.append(tuple(
                field.db_value(own[field.name] if field.name in own
                               else getattr(visit, field.name))
                for field in self._visit_fields))
        with driver_errors_as_peewee:
            cursor = self.database.cursor()
            cursor.executemany(self._insert_visit, rows)
        return cursor.rowcount  # summed over the rows; a skipped duplicate adds 0

    def apply_status(self, status, received):
        """Record a status unless it is stale; False if it was.

        Only ``lost`` and ``offline`` can be stale: a kiosk that reconnects before the broker
        fires the previous connection's Last Will has a higher epoch already, so that ``lost``
        must not mark it dead, and a will of a kiosk's previous instance (its old SD card) is
        over too. ``online`` always counts, because only a live connection sends it: a forged
        epoch of 2³¹−1 or a re-flashed kiosk starting again at epoch 1 is corrected by the real
        kiosk's next connect, and raises an alarm instead of hiding the kiosk for good.
        """
        kiosk = self._kiosk(status.kiosk_id, received)
        same_instance = kiosk.instance == status.instance  # None: a kiosk before 0.2
        went_back = same_instance and kiosk.epoch is not None and status.epoch < kiosk.epoch
        if status.state != "online" and kiosk.epoch is not None and (
                not same_instance or went_back):
            kiosk.stale_statuses += 1
            kiosk.save()
            return False
        if kiosk.instance is not None and not same_instance:
            self._alarm(kiosk.kiosk_id, "instance_changed", received,
                        f"instance {kiosk.instance} (epoch {kiosk.epoch}) replaced by "
                        f"{status.instance} (epoch {status.epoch}): re-flashed, or a copy of "
                        "its credentials is in use")
        elif went_back:
            self._alarm(kiosk.kiosk_id, "epoch_went_back", received,
                        f"online at epoch {status.epoch} after epoch {kiosk.epoch}: a status "
                        "with a higher epoch was forged, or the kiosk's store was restored")
        if (kiosk.state, kiosk.instance, kiosk.epoch) != (status.state, status.instance,
                                                           status.epoch):
            kiosk.state_changed = received
        kiosk.state, kiosk.instance = status.state, status.instance
        kiosk.epoch, kiosk.version = status.epoch, status.version
        kiosk.save()
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
        kiosk = self._kiosk(service_point.kiosk_id, received)
        kiosk.mode = service_point.mode
        kiosk.save()
        fields = asdict(service_point)
        fields["services"] = json.dumps(fields["services"], ensure_ascii=False)
        fields.pop("schema")
        self.ServicePointRow.replace(**fields, received=received).execute()

    def apply_health(self, health, received):
        kiosk = self._kiosk(health.kiosk_id, received)
        report = asdict(health)
        report.pop("kiosk_id")
        kiosk.outbox_depth, kiosk.dead_letters = health.outbox_depth, health.dead_letters
        kiosk.config_version, kiosk.version = health.config_version, health.version
        kiosk.mode = health.mode
        kiosk.health = json.dumps(report, ensure_ascii=False)
        kiosk.save()

    def touch(self, kiosk_id, received):
        self._kiosk(kiosk_id, received).save()

    # --- reads ------------------------------------------------------------------------------

    def alarms(self, kiosk_id=None):
        """Alarms raised, oldest first."""
        query = self.Alarm.select().order_by(self.Alarm.id)
        if kiosk_id is not None:
            query = query.where(self.Alarm.kiosk_id == kiosk_id)
        return list(query)

    def missing_visits(self, kiosk_id):
        """Per instance, how many visit numbers between the lowest and highest received are
        missing.

        Keyed by instance, so a kiosk re-flashed after visit 900 is not 899 visits short; from
        the lowest received, because a store that gained its instance in an upgrade goes on
        counting from where it was. A gap closes when the kiosk's outbox delivers the visit; one
        that stays open is a lost visit.
        """
        FleetVisit = self.FleetVisit
        query = (FleetVisit.select(FleetVisit.instance, fn.MIN(FleetVisit.seq),
                                   fn.MAX(FleetVisit.seq), fn.COUNT(fn.DISTINCT(FleetVisit.seq)))
                 .where(FleetVisit.kiosk_id == kiosk_id).group_by(FleetVisit.instance).tuples())
        return {instance: top - low + 1 - seen for instance, low, top, seen in query}

    def kiosks(self):
        """Every kiosk the collector has heard from, by id."""
        return list(self.KioskRow.select().order_by(self.KioskRow.kiosk_id))

    def visits(self, kiosk_id=None, *, include_demo=True):
        query = self.FleetVisit.select().order_by(self.FleetVisit.kiosk_id, self.FleetVisit.seq)
        if kiosk_id is not None:
            query = query.where(self.FleetVisit.kiosk_id == kiosk_id)
        if not include_demo:
            query = query.where(~self.FleetVisit.is_demo)
        return list(query)

    def statistics(self, kiosk_id=None):
        """Counts for reports, demo visits excluded: visits, completed, ratings 1-5, copy
        answers, mean rating (None without ratings)."""
        visits = self.visits(kiosk_id, include_demo=False)
        ratings = {r: 0 for r in range(1, 6)}
        copies = {}
        for v in visits:
            if v.rating is not None:
                ratings[v.rating] += 1
            if v.copy_answer is not None:
                copies[v.copy_answer] = copies.get(v.copy_answer, 0) + 1
        rated = sum(ratings.values())
        return {
            "visits": len(visits),
            "completed": sum(v.outcome == schema.Outcome.COMPLETED for v in visits),
            "ratings": ratings,
            "mean_rating": sum(r * n for r, n in ratings.items()) / rated if rated else None,
            "copy_answers": copies,
        }


def open_database(path=DEFAULT_DB):
    """Open (creating if needed) the fleet database at ``path``."""
    return FleetDb(path)
