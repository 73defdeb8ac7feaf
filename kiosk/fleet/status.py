"""``kiosk-fleet status``: one line per kiosk from the collector's database, with its open alarms.

State comes from the retained status messages (online, offline after a clean stop, lost when
the broker fired the Last Will); last seen is the collector's clock at the kiosk's latest
message; outbox, dead letters, reader, disk and clock come from the latest health report.
Periods short or over come from reconciling the kiosk's period counts with the visits stored
(:meth:`kiosk.fleet.db.FleetDb.reconcile`); open alarms from the collector's evaluation
(:meth:`kiosk.fleet.db.FleetDb.update_alarms`). Ministry, department and province are the
registry's (the pin has no department); a kiosk whose point is not registered falls back to its
pin's ministry and province. A kiosk ``kiosk-fleet revoke`` retired says ``RETIRED`` and when;
the fleet's own open alarms (``crl_expiring``) come first, on a line of their own.
"""

import datetime as dt
import time
from dataclasses import dataclass

from kiosk.errors import StoreError
from kiosk.fleet import alarms as alarms_module
from kiosk.fleet import registry as registry_module
from kiosk.fleet.db import DEFAULT_DB, open_database, utc_text


@dataclass(frozen=True)
class Place:
    """Where a kiosk stands, as the filters see it."""

    ministry: str | None
    department: str | None
    provinces: frozenset  # the names and code a --province matches, lowercased
    province: object = None  # the registry's province (names in Thai and English), if known


@dataclass(frozen=True)
class Filters:
    """``--province`` (a name in Thai or English, or the DOPA code), ``--ministry``,
    ``--department``; None matches every kiosk."""

    province: str | None = None
    ministry: str | None = None
    department: str | None = None

    def match(self, place):
        def same(wanted, have):
            return wanted is None or (have or "").casefold() == wanted.casefold()

        return (same(self.ministry, place.ministry) and same(self.department, place.department)
                and (self.province is None or self.province.casefold() in place.provinces))


NO_FILTERS = Filters()


def age(last_seen, now):
    if not last_seen:
        return "never"
    seen = dt.datetime.strptime(last_seen, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - seen).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def places(fleet_db, now):
    """``{kiosk_id: Place}`` from each kiosk's pin and, where registered, the registry as it
    stands at ``now`` (the console's filters use it too). The registry is read in one query: a
    query per kiosk took seconds for a thousand."""
    registry = registry_module.Registry(fleet_db.database)
    points = registry.models["points"]
    at = utc_text(now)
    registered = {row.service_point_id: row for row in points.select().where(
        (points.valid_from <= at) & (points.valid_to.is_null() | (points.valid_to > at)))}
    found = {}
    for pin in fleet_db.ServicePointRow.select():
        point = registered.get(pin.service_point_id)
        if point is None:
            found[pin.kiosk_id] = Place(pin.ministry, None, frozenset({pin.province.casefold()}))
            continue
        province = registry_module.province(point.province)
        names = {point.province} | ({province.name_th, province.name_en} if province else set())
        found[pin.kiosk_id] = Place(point.ministry, point.department,
                                    frozenset(name.casefold() for name in names), province)
    return found


def _known(value, unit=""):
    return "?" if value is None else f"{value:g}{unit}" if isinstance(value, float) else (
        f"{value}{unit}")


def status_lines(fleet_db, now=None, filters=NO_FILTERS):
    """The report as lines: kiosk id, state, last seen, outbox depth (and oldest age), dead
    letters, reader, disk free, clock, version, then flags: periods short (visits lost, or
    late past the grace) and over (visits the kiosk never counted), alarms recorded (the
    events of :meth:`FleetDb.alarms`), the kinds of alarm open now, demo."""
    now = now or dt.datetime.now(dt.UTC)
    where = places(fleet_db, now) if filters != NO_FILTERS else {}
    open_alarms = {}
    for event in fleet_db.alarm_events(open_only=True):
        open_alarms.setdefault(event.kiosk_id, []).append(event.kind)
    lines = []
    for k in fleet_db.kiosks():
        if filters != NO_FILTERS and not filters.match(
                where.get(k.kiosk_id, Place(None, None, frozenset()))):
            continue
        verdicts = fleet_db.period_verdicts(k.kiosk_id)
        recorded = len(fleet_db.alarms(k.kiosk_id))
        alarms = open_alarms.get(k.kiosk_id)
        clock = {None: "?", True: "synced", False: "unsynced"}[k.clock_synced]
        oldest = "" if k.outbox_oldest_s is None else f" (oldest {k.outbox_oldest_s:g} s)"
        flags = "".join(f"  periods {verdict} {verdicts[verdict]}"
                        for verdict in ("short", "over") if verdicts.get(verdict)) + (
            f"  alarms {recorded}" if recorded else "") + (
            f"  OPEN {','.join(alarms)}" if alarms else "") + (
            "  demo" if k.mode == "demo" else "") + (
            f"  RETIRED {k.retired}" if k.retired else "")
        lines.append(
            f"{k.kiosk_id:<24} {k.state or 'unknown':<8} last seen {k.last_seen or '-'} "
            f"({age(k.last_seen, now)})  outbox {_known(k.outbox_depth)}{oldest}  "
            f"dead {_known(k.dead_letters)}  reader {_known(k.reader)}  "
            f"disk {_known(k.disk_free_mb, ' MB')}  clock {clock}  "
            f"version {k.version or '?'} config {_known(k.config_version)}"
            f"  instance {k.instance or '?'}{flags}"
        )
    return lines


def fleet_lines(fleet_db):
    """The fleet's own open alarms (not a kiosk's), a line each: ``FLEET OPEN kind: detail``."""
    return [f"FLEET OPEN {event.kind}: {event.detail}"
            for event in fleet_db.alarm_events(alarms_module.FLEET_SUBJECT, open_only=True)]


def add_arguments(parser):
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the collector's database, a SQLite file or a postgresql:// URL "
                             "(default %(default)s)")
    parser.add_argument("--province", help="only kiosks in this province (Thai or English "
                                           "name, or DOPA code)")
    parser.add_argument("--ministry", help="only kiosks of this ministry (as registered)")
    parser.add_argument("--department", help="only kiosks of this department (as registered)")
    parser.add_argument("--watch", type=float, metavar="SECONDS",
                        help="print the report again every SECONDS until Ctrl-C")


def main(args):
    if args.watch is not None and args.watch <= 0:
        raise StoreError("--watch: the refresh interval must be above 0 seconds")
    filters = Filters(args.province, args.ministry, args.department)
    fleet_db = open_database(args.db, read_only=True)
    try:
        while True:
            lines = fleet_lines(fleet_db) + status_lines(fleet_db, filters=filters)
            print("\n".join(lines) if lines else "no kiosk has reported yet"
                  if filters == NO_FILTERS else "no kiosk matches", flush=True)
            if args.watch is None:
                return 0
            time.sleep(args.watch)
            print(flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        fleet_db.close()
