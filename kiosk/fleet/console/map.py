"""The map: every registered service point, coloured by its kiosks' status, by satisfaction or
by copy-request rate, from a GeoJSON endpoint the page's script draws (Leaflet, clustered), and
the same points as a table that needs no script.

The figures are the statistics core's service-point rows for the page's date range (through
:meth:`kiosk.fleet.console.app.Console.statistics`, so suppressed exactly as the statistics
tables: a hidden count is ``"<5"`` and a withheld rate is None, never a number). The status is
the store's: the worst state of the kiosks pinned at the point, an open alarm counting as worse
than online.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, render_template, request, url_for

from kiosk.fleet import registry as registry_module
from kiosk.fleet.console import assets
from kiosk.fleet.console.app import console, t
from kiosk.fleet.console.stats import date_range, value_text
from kiosk.fleet.db import utc_text

blueprint = Blueprint("map", __name__)
OPENSTREETMAP = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
COLOURINGS = ("status", "csat", "copy")
#: A point's statuses, as the legend lists them; WORSE orders a kiosk's, the worst wins.
STATUSES = ("online", "alarm", "offline", "lost", "unknown", "no_kiosk")
WORSE = ("online", "unknown", "alarm", "offline", "lost")
GRADES = ("good", "fair", "poor", "none")
#: Bounds of the colour classes (good, fair, poor) of the rates.
CSAT_GOOD, CSAT_FAIR = 0.8, 0.6
COPY_GOOD, COPY_FAIR = 0.05, 0.2


@dataclass(frozen=True)
class Point:
    service_point_id: str
    name: str
    province: str
    lat: float | None
    lon: float | None
    kiosks: tuple
    status: str
    visits: object  # a count, "<5", or None (no visit)
    csat: float | None
    copy_request_rate: float | None

    def colour(self, by):
        """The point's colour class under the colouring ``by``."""
        if by == "status":
            return self.status
        if by == "csat":
            return _grade(self.csat, lambda v: v >= CSAT_GOOD, lambda v: v >= CSAT_FAIR)
        return _grade(self.copy_request_rate, lambda v: v <= COPY_GOOD,
                      lambda v: v <= COPY_FAIR)


def _grade(value, good, fair):
    if value is None:
        return "none"
    return "good" if good(value) else "fair" if fair(value) else "poor"


def tile_origin(template):
    """The scheme and host the tiles come from (the page's CSP allows images from it)."""
    if not template:
        return None
    parts = urlsplit(template.replace("{s}", "a"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else None


def points(state, start, end, lang):
    """Every service point registered just before ``end``, with its figures over the range."""
    registry, fleet_db = state.registry, state.db
    at = utc_text(end)

    def current(kind):
        model = registry.models[kind]
        return model.select().where((model.valid_from < at)
                                    & (model.valid_to.is_null() | (model.valid_to >= at)))

    pins = {row.service_point_id: row for row in current("pins")}
    kiosks = {}
    for pin in fleet_db.ServicePointRow.select(fleet_db.ServicePointRow.kiosk_id,
                                               fleet_db.ServicePointRow.service_point_id):
        kiosks.setdefault(pin.service_point_id, []).append(pin.kiosk_id)
    states = {row.kiosk_id: row.state for row in fleet_db.KioskRow.select(
        fleet_db.KioskRow.kiosk_id, fleet_db.KioskRow.state)}
    alarmed = {event.kiosk_id for event in fleet_db.alarm_events(open_only=True)}
    tables = state.statistics("service_point", start, end).tables
    found = []
    for point in sorted(current("points"), key=lambda p: p.service_point_id):
        spid = point.service_point_id
        here = tuple(sorted(kiosks.get(spid, ())))
        key = (spid,)
        visits = tables["visits"].rows.get(key, {}).get("visits")
        province = registry_module.province(point.province)
        pin = pins.get(spid)
        found.append(Point(
            spid, point.name_en if lang == "en" else point.name_th,
            (province.name_en if lang == "en" else province.name_th) if province
            else point.province,
            pin.lat if pin else None, pin.lon if pin else None, here,
            point_status(here, states, alarmed), visits,
            tables["ratings"].rows.get(key, {}).get("csat"),
            tables["copy"].rows.get(key, {}).get("copy_request_rate")))
    return found


def point_status(kiosk_ids, states, alarmed):
    """The worst of the kiosks' states (a kiosk with no status yet is better than a lost
    one)."""
    if not kiosk_ids:
        return "no_kiosk"
    each = [("alarm" if kiosk in alarmed else "online") if states.get(kiosk) == "online"
            else states.get(kiosk) if states.get(kiosk) in WORSE else "unknown"
            for kiosk in kiosk_ids]
    return max(each, key=WORSE.index)


def _page(args):
    first, last, start, end = date_range(args)
    by = args.get("colour") if args.get("colour") in COLOURINGS else "status"
    return first, last, start, end, by


def _dates(args):
    return {name: args[name] for name in ("from", "to") if args.get(name)}


@blueprint.get("/map")
def map_page():
    first, last, start, end, by = _page(request.args)
    tiles = current_app.config.get("TILES")
    return render_template(
        "map.html", first=first, last=last, by=by, colourings=COLOURINGS,
        points=points(console(), start, end, g.lang),
        tiles=tiles or "", data_url=url_for("map.map_points", **_dates(request.args)),
        dates=_dates(request.args), statuses=STATUSES, grades=GRADES,
        value_text=value_text, vendor_integrity=assets.pinned().get)


@blueprint.get("/map/points.json")
def map_points():
    """The points as GeoJSON (pinned points only: an unpinned one has no place on a map), and
    the provinces' capitals for the labels shown when no tile server answers."""
    _first, _last, start, end, _by = _page(request.args)
    dates = _dates(request.args)
    features = []
    for point in points(console(), start, end, g.lang):
        if point.lat is None:
            continue
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [point.lon, point.lat]},
            "properties": {
                "id": point.service_point_id, "name": point.name, "province": point.province,
                "status": point.status, "status_text": t(f"map.status.{point.status}"),
                "visits": point.visits, "csat": point.csat,
                "copy_request_rate": point.copy_request_rate,
                "colour": {by: point.colour(by) for by in COLOURINGS},
                "url": url_for("stats.stats_page", **dates,
                               service_point_id=point.service_point_id),
                "kiosks": [{"id": kiosk, "url": url_for("fleet.kiosk_page", kiosk_id=kiosk)}
                           for kiosk in point.kiosks],
            }})
    provinces = [{"name": p.name_en if g.lang == "en" else p.name_th, "lat": p.lat,
                  "lon": p.lon} for p in registry_module.provinces()]
    labels = {key: t(f"map.{key}") for key in ("visits", "csat", "copy", "kiosks")}
    return jsonify({"type": "FeatureCollection", "features": features,
                    "provinces": provinces, "labels": labels})
