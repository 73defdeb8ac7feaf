"""The fleet pages: every kiosk with its state and open alarms (filtered by province, ministry,
department and alarm), the table alone for the live refresh, and one page per kiosk.

State, health and alarms are the store's (:class:`kiosk.fleet.db.FleetDb`); the filters are
:class:`kiosk.fleet.status.Filters` over :func:`kiosk.fleet.status.places`, as
``kiosk-fleet status`` applies them.
"""

import datetime as dt
import json
from dataclasses import dataclass

from flask import Blueprint, abort, render_template, request

from kiosk.fleet import alarms, status
from kiosk.fleet import registry as registry_module
from kiosk.fleet.console.app import console
from kiosk.telemetry import topics

blueprint = Blueprint("fleet", __name__)
REPLIES_SHOWN = 50


@dataclass(frozen=True)
class Row:
    kiosk: object  # the store's KioskRow
    pin: object  # its ServicePointRow, or None
    open_alarms: tuple
    age: str
    province: object = None  # the registry's, where the kiosk's point is registered


def filters_from(args):
    """The page's (or a command's) filters: :class:`status.Filters` and an alarm kind."""
    def value(name):
        return (args.get(name) or "").strip() or None

    alarm = value("alarm")
    return status.Filters(value("province"), value("ministry"), value("department")), (
        alarm if alarm in alarms.KINDS else None)


def fleet_rows(fleet_db, filters, alarm=None, now=None):
    """The kiosks the filters select, by id."""
    now = now or dt.datetime.now(dt.UTC)
    open_alarms = {}
    for event in fleet_db.alarm_events(open_only=True):
        open_alarms.setdefault(event.kiosk_id, []).append(event.kind)
    pins = {pin.kiosk_id: pin for pin in fleet_db.ServicePointRow.select()}
    places = status.places(fleet_db, now)  # the province shown is the registry's, too
    nowhere = status.Place(None, None, frozenset())
    rows = []
    for kiosk in fleet_db.kiosks():
        if filters != status.NO_FILTERS and not filters.match(places.get(kiosk.kiosk_id,
                                                                         nowhere)):
            continue
        kinds = tuple(open_alarms.get(kiosk.kiosk_id, ()))
        if alarm is not None and alarm not in kinds:
            continue
        rows.append(Row(kiosk, pins.get(kiosk.kiosk_id), kinds,
                        status.age(kiosk.last_seen, now),
                        places.get(kiosk.kiosk_id, nowhere).province))
    return rows


def _choices(fleet_db):
    """The filters' choices: provinces from the registry's list, ministries and departments
    as registered for the kiosks' points."""
    places = status.places(fleet_db, dt.datetime.now(dt.UTC)).values()
    return {
        "provinces": registry_module.provinces(),
        "ministries": sorted({p.ministry for p in places if p.ministry}),
        "departments": sorted({p.department for p in places if p.department}),
        "alarms": tuple(kind for kind in alarms.KINDS if kind not in alarms.FLEET_KINDS),
    }


def _page_args():
    filters, alarm = filters_from(request.args)
    fleet_db = console().db
    return {"filters": filters, "alarm": alarm, "rows": fleet_rows(fleet_db, filters, alarm),
            # The fleet's own alarms (crl_expiring) above the table: no kiosk row is theirs.
            "fleet_alarms": fleet_db.alarm_events(alarms.FLEET_SUBJECT, open_only=True)}


@blueprint.get("/fleet")
def fleet_page():
    return render_template("fleet.html", **_page_args(), **_choices(console().db),
                           query=request.query_string.decode())


@blueprint.get("/fleet/table")
def fleet_table():
    """The table alone: what the page's script fetches to refresh it."""
    return render_template("fleet_table.html", **_page_args())


@blueprint.get("/kiosk/<kiosk_id>")
def kiosk_page(kiosk_id):
    fleet_db = console().db
    try:
        topics.check_kiosk_id(kiosk_id)
    except ValueError:
        abort(404)
    kiosk = fleet_db.KioskRow.get_or_none(fleet_db.KioskRow.kiosk_id == kiosk_id)
    if kiosk is None:
        abort(404)
    Reply = fleet_db.Reply
    replies = list(Reply.select().where(Reply.kiosk_id == kiosk_id)
                   .order_by(Reply.id.desc()).limit(REPLIES_SHOWN))
    now = dt.datetime.now(dt.UTC)
    cert = next(iter(fleet_db.certificates(kiosk_id)), None)  # the newest expiry first
    in_use = _reported_expiry(kiosk, cert)
    return render_template(
        "kiosk.html", kiosk=kiosk, cert=cert,
        cert_days_left=None if cert is None else _days_left(cert.not_after, now),
        cert_in_use=in_use, cert_in_use_days_left=in_use and _days_left(in_use, now),
        cert_not_installed=bool(in_use and cert and _instant(cert.not_after) > _instant(in_use)),
        pin=fleet_db.ServicePointRow.get_or_none(fleet_db.ServicePointRow.kiosk_id == kiosk_id),
        place=status.places(fleet_db, now).get(kiosk_id),
        events=list(reversed(fleet_db.alarm_events(kiosk_id))),
        recorded=fleet_db.alarms(kiosk_id), verdicts=fleet_db.period_verdicts(kiosk_id),
        replies=replies, last_seen_age=status.age(kiosk.last_seen, now))


def _reported_expiry(kiosk, cert):
    """The expiry of the certificate the kiosk's latest health says it connects with, when it
    is not the newest one recorded (a renewal signed but not installed, say); else None."""
    reported = json.loads(kiosk.health).get("cert_expires") if kiosk.health else None
    if reported is None or (cert and _instant(reported) == _instant(cert.not_after)):
        return None
    return reported


def _instant(text):
    return dt.datetime.fromisoformat(text)


def _days_left(not_after, now):
    """Whole days until ``not_after`` (RFC 3339 text); negative once it has passed."""
    return int((dt.datetime.fromisoformat(not_after) - now).total_seconds() // 86400)
