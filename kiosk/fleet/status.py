"""``kiosk-fleet status``: one line per kiosk from the collector's database.

State comes from the retained status messages (online, offline after a clean stop, lost when
the broker fired the Last Will); last seen is the collector's clock at the kiosk's latest
message; outbox depth is from the latest health report, the first sign of a kiosk that cannot
deliver its visits. Periods short or over come from reconciling the kiosk's period counts with
the visits stored (:meth:`kiosk.fleet.db.FleetDb.reconcile`).
"""

import datetime as dt
from pathlib import Path

from kiosk.errors import StoreError
from kiosk.fleet.db import DEFAULT_DB, is_url, open_database


def _age(last_seen, now):
    if not last_seen:
        return "never"
    seen = dt.datetime.strptime(last_seen, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - seen).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def status_lines(fleet_db, now=None):
    """The report as lines: kiosk id, state, last seen, outbox depth, version, then flags:
    periods short (visits lost, or late past the grace) and over (visits the kiosk never
    counted), alarms raised, demo."""
    now = now or dt.datetime.now(dt.UTC)
    lines = []
    for k in fleet_db.kiosks():
        outbox = "?" if k.outbox_depth is None else str(k.outbox_depth)
        verdicts = fleet_db.period_verdicts(k.kiosk_id)
        alarms = len(fleet_db.alarms(k.kiosk_id))
        flags = "".join(f"  periods {verdict} {verdicts[verdict]}"
                        for verdict in ("short", "over") if verdicts.get(verdict)) + (
            f"  alarms {alarms}" if alarms else "") + ("  demo" if k.mode == "demo" else "")
        lines.append(
            f"{k.kiosk_id:<24} {k.state or 'unknown':<8} last seen {k.last_seen or '-'} "
            f"({_age(k.last_seen, now)})  outbox {outbox}  version {k.version or '?'}{flags}"
        )
    return lines


def add_arguments(parser):
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the collector's database, a SQLite file or a postgresql:// URL "
                             "(default %(default)s)")


def main(args):
    if not is_url(args.db) and not Path(args.db).exists():
        raise StoreError(f"--db {args.db}: no such database; point it at the file "
                         "`kiosk-fleet collect --db` writes")
    fleet_db = open_database(args.db)
    try:
        lines = status_lines(fleet_db)
    finally:
        fleet_db.close()
    print("\n".join(lines) if lines else "no kiosk has reported yet")
    return 0
