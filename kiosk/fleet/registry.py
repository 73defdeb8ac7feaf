"""The registry of service points in the central database, with its history.

The programme re-sends its whole list now and then. Each import is compared with what is valid
now, and only what changed is written, as versions valid from the import's time: a point's
attributes, its pin, its services' names, and each service's declared no-copy status. A version
replaced or left out of the file gets its ``valid_to``; nothing is deleted, so a visit of last
year is judged by :meth:`Registry.declared_status` against what its agency declared then.

Times are RFC 3339 UTC text at the millisecond, as the collector writes its clock, so they
order as strings; a version is valid on ``[valid_from, valid_to)``. The models are declared
unbound and bound per database (:func:`kiosk.sqlite.bind`); :func:`create_tables` makes them,
to be folded into the central schema's migrations. File decoding and row rules are pure, in
:mod:`kiosk.fleet.registry_csv`: a file with any bad row never reaches the database, and an
import is one transaction, one import at a time (:func:`kiosk.fleet.locks.exclusive`).
"""

import argparse
import datetime as dt
import functools
import sys
from dataclasses import astuple, dataclass
from importlib import resources
from pathlib import Path

from peewee import CharField, FloatField, IntegerField, Model, TextField
from peewee import __exception_wrapper__ as driver_errors_as_peewee  # driver -> peewee errors

from kiosk.errors import RegistryError
from kiosk.fleet import locks, registry_csv, registry_sample
from kiosk.fleet.db import DEFAULT_DB, open_database, utc_text
from kiosk.period import BANGKOK
from kiosk.sqlite import bind

#: Versions closed per UPDATE, within the variables a statement may bind (32,766 in SQLite
#: since 3.32, 65,535 in PostgreSQL).
BATCH = 2000
#: Key of the PostgreSQL advisory lock imports take turns under.
_IMPORT_LOCK_KEY = 0x7265676973747279


class PointVersion(Model):
    """A service point's own attributes over a time; ``province`` is the DOPA code."""

    service_point_id = CharField()
    ministry = CharField()
    department = CharField()
    name_th = CharField()
    name_en = CharField()
    province = CharField()
    district = CharField()
    valid_from = CharField()
    valid_to = CharField(null=True)

    class Meta:
        table_name = "registry_point"
        indexes = ((("service_point_id", "valid_from"), False),)


class PinVersion(Model):
    """Where a service point was pinned over a time; a point never pinned has none."""

    service_point_id = CharField()
    lat = FloatField()
    lon = FloatField()
    valid_from = CharField()
    valid_to = CharField(null=True)

    class Meta:
        table_name = "registry_pin"
        indexes = ((("service_point_id", "valid_from"), False),)


class ServiceVersion(Model):
    """A service offered at a point, by its names, over a time."""

    service_point_id = CharField()
    service_id = CharField()
    name_th = CharField()
    name_en = CharField()
    valid_from = CharField()
    valid_to = CharField(null=True)

    class Meta:
        table_name = "registry_service"
        indexes = ((("service_point_id", "service_id", "valid_from"), False),)


class NoCopyVersion(Model):
    """The no-copy status an agency declared for a service at a point, over a time."""

    service_point_id = CharField()
    service_id = CharField()
    no_copy = CharField()
    valid_from = CharField()
    valid_to = CharField(null=True)

    class Meta:
        table_name = "registry_no_copy"
        indexes = ((("service_point_id", "service_id", "valid_from"), False),)


class RegistryImport(Model):
    """One import run, changed or not: when it counts from, which file, what it found."""

    as_of = CharField(index=True)
    source = TextField()  # the file's name
    encoding = CharField()
    rows = IntegerField()
    points = IntegerField()
    changes = TextField()  # the summary line :class:`ImportSummary` prints
    imported = CharField()  # collector clock

    class Meta:
        table_name = "registry_import"


MODELS = (PointVersion, PinVersion, ServiceVersion, NoCopyVersion, RegistryImport)
#: Each versioned kind: its key columns and the value columns whose change makes a version.
KINDS = {
    "points": (("service_point_id",), ("ministry", "department", "name_th", "name_en",
                                       "province", "district")),
    "pins": (("service_point_id",), ("lat", "lon")),
    "services": (("service_point_id", "service_id"), ("name_th", "name_en")),
    "statuses": (("service_point_id", "service_id"), ("no_copy",)),
}


def create_tables(database):
    """Create the registry's tables (and indexes) in ``database`` if they are missing."""
    database.create_tables(bind(database, *MODELS))


@dataclass(frozen=True)
class Change:
    """Versions one import wrote for a kind: keys new, keys whose values changed, keys gone."""

    added: int = 0
    changed: int = 0
    closed: int = 0

    def __str__(self):
        return f"+{self.added} ~{self.changed} -{self.closed}"


@dataclass(frozen=True)
class ImportSummary:
    """What an import found and wrote; ``changes`` by kind (points, pins, services, statuses)."""

    as_of: str
    source: str
    encoding: str
    rows: int
    points: int
    changes: dict

    @property
    def is_unchanged(self):
        return not any(astuple(change) != (0, 0, 0) for change in self.changes.values())

    def __str__(self):
        return (f"{self.points} service point(s) in {self.rows} row(s) of {self.source} "
                f"({self.encoding}), valid from {self.as_of}: "
                + ", ".join(f"{kind} {change}" for kind, change in self.changes.items()))


class Registry:
    """The registry's bound models on one database, and its import and queries."""

    def __init__(self, database):
        self.database = database
        self.models = dict(zip(("points", "pins", "services", "statuses", "imports"),
                               bind(database, *MODELS), strict=True))

    def close(self):
        if not self.database.is_closed():
            self.database.close()

    # --- import ------------------------------------------------------------------------------

    def import_points(self, points, *, as_of, source, encoding="utf-8", rows=None):
        """Record ``points`` (a whole registry file) as valid from ``as_of`` (an aware
        datetime); returns an :class:`ImportSummary`. In one transaction: a point, pin,
        service or status that changed or is gone is closed at ``as_of`` and the new one opened
        there; a file equal to what is valid writes no version. ``as_of`` may not come before
        the latest import's, nor equal it with changes (history only grows forward)."""
        as_of = _instant(as_of)
        wanted = {
            "points": {(p.id,): p.attributes for p in points},
            "pins": {(p.id,): p.pin for p in points if p.pin is not None},
            "services": {(p.id, s.id): (s.name_th, s.name_en) for p in points
                         for s in p.services},
            "statuses": {(p.id, s.id): (s.no_copy,) for p in points for s in p.services},
        }
        Import = self.models["imports"]
        # One import at a time: two reading the same open versions would both close them.
        with locks.exclusive(self.database, _IMPORT_LOCK_KEY):
            latest = Import.select(Import.as_of).order_by(Import.as_of.desc()).scalar()
            if latest is not None and as_of < latest:
                raise RegistryError([f"valid from {as_of} is before the latest import's "
                                     f"{latest}; the history only grows forward"], source)
            changes = {kind: self._record(kind, wanted[kind], as_of) for kind in KINDS}
            summary = ImportSummary(as_of, source, encoding,
                                    sum(len(p.services) for p in points) if rows is None
                                    else rows, len(points), changes)
            if as_of == latest and not summary.is_unchanged:
                raise RegistryError([f"the latest import is valid from {as_of} too; give a "
                                     "later --as-of for a change"], source)
            Import.create(as_of=as_of, source=source, encoding=encoding, rows=summary.rows,
                          points=summary.points, changes=str(summary),
                          imported=utc_text(dt.datetime.now(dt.UTC)))
        return summary

    def _record(self, kind, wanted, as_of):
        model = self.models[kind]
        keys, value_names = KINDS[kind]
        width = len(keys)
        # The driver's own rows: a national registry has some 250,000 open versions per kind,
        # and peewee converting each value was most of a re-import's time.
        query = (model.select(model.id, *(getattr(model, name) for name in keys + value_names))
                 .where(model.valid_to.is_null()))
        current = {row[1:1 + width]: (row[0], row[1 + width:])
                   for row in self.database.execute(query)}
        closing = [row_id for key, (row_id, values) in current.items()
                   if wanted.get(key) != values]
        opening = [(*key, *values, as_of) for key, values in wanted.items()
                   if key not in current or current[key][1] != values]
        for start in range(0, len(closing), BATCH):
            (model.update(valid_to=as_of)
             .where(model.id.in_(closing[start:start + BATCH])).execute())
        if opening:
            # One prepared statement stepped over the rows: peewee building an INSERT of a
            # whole national registry took most of a first import's time.
            columns = ", ".join(f'"{name}"' for name in (*keys, *value_names, "valid_from"))
            marks = ", ".join([self.database.param] * (len(keys) + len(value_names) + 1))
            with driver_errors_as_peewee:
                self.database.cursor().executemany(
                    f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ({marks})',
                    opening)
        changed = sum(row[:width] in current for row in opening)
        return Change(added=len(opening) - changed, changed=changed,
                      closed=len(closing) - changed)

    # --- queries -----------------------------------------------------------------------------

    def _valid(self, kind, at):
        model = self.models[kind]
        return model.select().where((model.valid_from <= at)
                                    & (model.valid_to.is_null() | (model.valid_to > at)))

    def declared_status(self, service_point_id, service_id, at):
        """The no-copy status declared for the service at the point at ``at`` (an aware
        datetime, or RFC 3339 text such as a visit's period), or None if it was not registered
        then. Judge a visit by its period's start."""
        model = self.models["statuses"]
        row = (self._valid("statuses", _instant(at))
               .where((model.service_point_id == service_point_id)
                      & (model.service_id == service_id)).first())
        return None if row is None else row.no_copy

    def service_point(self, service_point_id, at):
        """The point as registered at ``at``, with its pin and services then, as a
        :class:`~kiosk.fleet.registry_csv.ServicePoint` (``province`` a DOPA code), or None."""
        at = _instant(at)
        points, pins = self.models["points"], self.models["pins"]
        services, statuses = self.models["services"], self.models["statuses"]
        point = (self._valid("points", at)
                 .where(points.service_point_id == service_point_id).first())
        if point is None:
            return None
        pin = self._valid("pins", at).where(pins.service_point_id == service_point_id).first()
        declared = {row.service_id: row.no_copy for row in self._valid("statuses", at)
                    .where(statuses.service_point_id == service_point_id)}
        offered = (self._valid("services", at)
                   .where(services.service_point_id == service_point_id)
                   .order_by(services.service_id))
        return registry_csv.ServicePoint(
            service_point_id, point.ministry, point.department, point.name_th, point.name_en,
            point.province, point.district, pin.lat if pin else None, pin.lon if pin else None,
            tuple(registry_csv.Service(s.service_id, s.name_th, s.name_en,
                                       declared[s.service_id]) for s in offered))

    def history(self, kind, service_point_id, service_id=None):
        """Every version of one point's (or its service's) ``kind``, oldest first, as
        ``(values, valid_from, valid_to)``; for the console and for checking an import."""
        model = self.models[kind]
        keys, value_names = KINDS[kind]
        query = model.select().where(model.service_point_id == service_point_id)
        if "service_id" in keys:
            query = query.where(model.service_id == service_id)
        return [(tuple(getattr(row, v) for v in value_names), row.valid_from, row.valid_to)
                for row in query.order_by(model.valid_from, model.id)]

    def imports(self):
        """Every import run, oldest first."""
        return list(self.models["imports"].select().order_by(self.models["imports"].id))


def open_registry(db=DEFAULT_DB):
    """The registry in the fleet database ``db`` (a path, or a ``postgresql://`` URL), whose
    migrations created its tables (step 3 of :mod:`kiosk.fleet.migrations`)."""
    return Registry(open_database(db).database)


def import_file(registry, path, *, as_of=None):
    """Read, check and import a registry CSV; raises :class:`RegistryError` naming every bad
    row, and then nothing is imported."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError([f"cannot read it: {exc.strerror}"], str(path)) from None
    registry_file = registry_csv.read(data, provinces(), source=str(path))
    return registry.import_points(registry_file.points,
                                  as_of=as_of or dt.datetime.now(dt.UTC), source=path.name,
                                  encoding=registry_file.encoding, rows=registry_file.rows)


def _instant(at):
    """``at`` (aware datetime or RFC 3339 text) as the collector's time text."""
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    if at.tzinfo is None:
        raise ValueError(f"{at} has no time zone; registry times are absolute")
    return utc_text(at)


# --- the shipped sample data ----------------------------------------------------------------

def _data(name):
    return resources.files("kiosk.fleet").joinpath("data", name).read_text(encoding="utf-8")


@functools.cache
def provinces():
    """The 77 provinces (``kiosk/fleet/data/provinces.csv``), by DOPA code order."""
    return registry_csv.parse_provinces(_data("provinces.csv"))


@functools.cache
def offices():
    """The sample's ministries, departments and their services (``offices.csv``)."""
    return registry_sample.parse_offices(_data("offices.csv"))


def sample_csv():
    """The sample registry as CSV text, made afresh (equal to the shipped
    ``registry-sample.csv``)."""
    return registry_csv.write(registry_sample.generate(provinces(), offices()), provinces())


def province(code):
    """The province of a DOPA code, or None."""
    return next((p for p in provinces() if p.code == code), None)


# --- kiosk-fleet registry ---------------------------------------------------------------------

def _as_of(text):
    """``--as-of``: a date (from local midnight in Thailand) or an RFC 3339 time with zone."""
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), BANGKOK)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a date (2026-12-01) or a time with its zone (2026-12-01T09:00+07:00)")
    return moment


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = actions.add_parser("import", help="import the programme's list of service points",
                              description="Import a registry CSV (docs/registry.md); a change "
                              "is kept as a new version, a point left out is closed.")
    load.add_argument("file", type=Path, metavar="FILE")
    # Text, not a Path: a Path would fold postgresql:// into postgresql:/.
    load.add_argument("--db", default=DEFAULT_DB,
                      help="the fleet database (default %(default)s)")
    load.add_argument("--as-of", type=_as_of, metavar="WHEN",
                      help="when the file's declarations take effect: a date (local midnight) "
                      "or an RFC 3339 time (default: now)")
    sample = actions.add_parser("sample", help="write the sample registry CSV",
                                description="Write the sample registry: every department's "
                                "office in all 77 provinces.")
    sample.add_argument("--out", type=Path, metavar="FILE", help="(default: standard output)")


def main(args):
    if args.action == "sample":
        text = sample_csv()
        if args.out:
            args.out.write_text(text, encoding="utf-8", newline="")
        else:
            sys.stdout.write(text)
        return 0
    registry = open_registry(args.db)
    try:
        summary = import_file(registry, args.file, as_of=args.as_of)
    except RegistryError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        print(f"registry: nothing imported ({len(exc.problems)} problem(s))", file=sys.stderr)
        return 1
    finally:
        registry.close()
    print(f"registry: {summary}")
    return 0
