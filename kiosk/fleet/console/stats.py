"""The statistics pages: :func:`kiosk.fleet.statistics.compute` for a date range, drilled from
national to ministry, department, service point and service (or by province), contradictions
first, and each table as CSV: the bytes ``kiosk-fleet stats`` writes for that table.

A page is a *node* (national, one ministry, one department, ...) and the level below it. The
node's figures are its rows of the core's tables at its own level; the level below is the next
level's rows that fall inside the node. Nothing is counted here: rows are only chosen.
"""

import datetime as dt
from dataclasses import dataclass

from flask import Blueprint, Response, abort, g, render_template, request, url_for

from kiosk.fleet import registry as registry_module
from kiosk.fleet import statistics
from kiosk.fleet.console.app import console, t
from kiosk.fleet.db import utc_text
from kiosk.period import BANGKOK
from kiosk.visit import OTHER_SERVICE

blueprint = Blueprint("stats", __name__)
NODE_PARAMS = ("ministry", "department", "province", "service_point_id", "service_id")


@dataclass(frozen=True)
class Node:
    """Where the page stands: its level, its key at that level, and the params that name it."""

    level: str
    key: tuple
    params: dict
    title: str


def date_range(args):
    """``(first day, last day, start, end)`` from ``from`` and ``to`` (Thailand's days),
    widened to whole months: two ranges a day apart would otherwise be one subtraction from
    that day's figures, the visits of a day someone was seen at the counter."""
    try:
        last = dt.date.fromisoformat(args["to"]) if args.get("to") else \
            dt.datetime.now(BANGKOK).date()
        first = dt.date.fromisoformat(args["from"]) if args.get("from") else last
    except ValueError:
        abort(400, t("stats.bad_range"))
    if last < first or (last - first).days > 3 * 366:
        abort(400, t("stats.bad_range"))
    first = first.replace(day=1)
    last = (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    start = dt.datetime.combine(first, dt.time(), BANGKOK)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), BANGKOK)
    return first, last, start, end


def province_name(code):
    found = registry_module.province(code)
    if found is None:
        return code
    return found.name_en if g.lang == "en" else found.name_th


def key_text(column, value):
    """A row key as the page shows it: a province by name, the "other service" choice by
    label (its CSV keeps the id, :data:`kiosk.visit.OTHER_SERVICE`), any other key as is."""
    if column == "province":
        return province_name(value)
    if column == "service_id" and value == OTHER_SERVICE:
        return t("service.other")
    return value


def node_of(args):
    params = {name: args[name] for name in NODE_PARAMS if args.get(name)}
    if "service_id" in params:
        return Node("service", (params["service_id"],), params,
                    key_text("service_id", params["service_id"]))
    if "service_point_id" in params:
        return Node("service_point", (params["service_point_id"],), params,
                    params["service_point_id"])
    if "department" in params and "ministry" in params:
        return Node("department", (params["ministry"], params["department"]), params,
                    params["department"])
    if "ministry" in params:
        return Node("ministry", (params["ministry"],), params, params["ministry"])
    if "province" in params:
        return Node("province", (params["province"],), params, province_name(params["province"]))
    return Node("national", (), {}, t("stats.national"))


def _points_where(registry, start, end, **columns):
    """Service point ids whose registered ``columns`` held at some time of the range."""
    model = registry.models["points"]
    start, end = utc_text(start), utc_text(end)
    query = model.select(model.service_point_id).where(
        (model.valid_from < end) & (model.valid_to.is_null() | (model.valid_to > start)))
    for column, value in columns.items():
        query = query.where(getattr(model, column) == value)
    return {row.service_point_id for row in query}


def _within(table, prefix, points=None):
    """``table``'s rows whose key starts with ``prefix`` (and, when ``points`` is a set, whose
    service point is one of them)."""
    rows = {}
    for key, row in table.rows.items():
        if key[:len(prefix)] != prefix:
            continue
        if points is not None and key[table.keys.index("service_point_id")] not in points:
            continue
        rows[key] = row
    return statistics.Table(table.name, table.keys, rows)


def _below(node, by, registry, start, end):
    """``(level, prefix, points)`` of the rows under ``node``; None at a service."""
    if node.level == "national":
        return by, (), None
    if node.level == "ministry":
        return "department", node.key, None
    if node.level == "department":
        ministry, department = node.key
        return "service_point", (), _points_where(registry, start, end, ministry=ministry,
                                                  department=department)
    if node.level == "province":
        return "service_point", (), _points_where(registry, start, end,
                                                  province=node.key[0])
    return None


def _scope_points(node, registry, start, end):
    """The node's service points (None: every point), for its contradictions."""
    if node.level == "ministry":
        return _points_where(registry, start, end, ministry=node.key[0])
    if node.level == "department":
        return _points_where(registry, start, end, ministry=node.key[0],
                             department=node.key[1])
    if node.level == "province":
        return _points_where(registry, start, end, province=node.key[0])
    if node.level == "service_point":
        return {node.key[0]}
    return None


def key_links(table, key, args):
    """The page each key column of a row opens (None where it drills nowhere): a service
    under a service point opens that service at that point."""
    dates = {name: args[name] for name in ("from", "to") if args.get(name)}
    columns = dict(zip(table.keys, key, strict=True))
    links = []
    for column, value in columns.items():
        params = None
        if value == statistics.UNKNOWN or column == "declared":
            params = None
        elif column == "service_id" and "service_point_id" in columns:
            params = {"service_point_id": columns["service_point_id"], "service_id": value}
        elif column == "department":
            params = {"ministry": columns["ministry"], "department": value}
        else:
            params = {column: value}
        links.append(None if params is None else url_for("stats.stats_page", **dates,
                                                         **params))
    return links


def value_text(value):
    """A figure as the page shows it: the CSV's text (so the two compare), flags translated."""
    if isinstance(value, bool):
        return "✔" if value else "–"
    return "" if value is None else str(value)


@blueprint.get("/stats")
def stats_page():
    from kiosk.fleet.console import charts  # noqa: PLC0415 (it draws this module's nodes)

    state = console()
    first, last, start, end = date_range(request.args)
    node = node_of(request.args)
    by = "province" if request.args.get("by") == "province" else "ministry"
    compute = _computer(state, start, end)

    def no_copy_by_point():  # all the contradictions need: the rest of that level is slow
        return compute("service_point", ("no_copy",)).tables["no_copy"]

    node_tables = [(node.level, _within(table, node.key))
                   for table in compute(node.level).tables.values()]
    if node.level == "service" and "service_point_id" in node.params:
        point = (node.params["service_point_id"], node.key[0])
        node_tables.insert(0, ("service_point", _within(no_copy_by_point(), point)))
    below = _below(node, by, state.registry, start, end)
    below_level, below_tables = None, []
    if below is not None:
        below_level, prefix, points = below
        below_tables = [_within(table, prefix, points)
                        for table in compute(below_level).tables.values()]
    points = _scope_points(node, state.registry, start, end)
    contradictions = [
        (key, row) for key, row in _within(no_copy_by_point(), (), points).rows.items()
        if row["contradiction"] and (node.level != "service" or key[1] == node.key[0])]
    return render_template(
        "stats.html", first=first, last=last, node=node, by=by,
        trail=_trail(node, request.args), node_tables=node_tables,
        charts=charts.urls(request.args),
        below_level=below_level,
        below_tables=below_tables, contradictions=contradictions, args=request.args,
        key_links=key_links, value_text=value_text, key_text=key_text,
        no_copy_keys=statistics.Table("no_copy", ("service_point_id", "service_id",
                                                  "declared"), {}))


def _computer(state, start, end):
    """``compute(level)`` for this range, from :meth:`Console.statistics` (a short cache)."""
    return lambda level, tables=statistics.TABLES: state.statistics(level, start, end, tables)


def _trail(node, args):
    """The breadcrumb: ``[(label, url)]`` from national down to the node."""
    dates = {name: args[name] for name in ("from", "to") if args.get(name)}
    trail = [(t("stats.national"), url_for("stats.stats_page", **dates))]
    p = node.params
    if "province" in p:
        trail.append((province_name(p["province"]),
                      url_for("stats.stats_page", **dates, province=p["province"])))
    if "ministry" in p:
        trail.append((p["ministry"], url_for("stats.stats_page", **dates,
                                             ministry=p["ministry"])))
        if "department" in p:
            trail.append((p["department"], url_for("stats.stats_page", **dates,
                                                   ministry=p["ministry"],
                                                   department=p["department"])))
    if "service_point_id" in p:
        trail.append((p["service_point_id"], url_for(
            "stats.stats_page", **dates, service_point_id=p["service_point_id"])))
    if "service_id" in p:
        trail.append((key_text("service_id", p["service_id"]), url_for(
            "stats.stats_page", **dates,
            **{k: p[k] for k in ("service_point_id", "service_id") if k in p})))
    return trail


@blueprint.get("/stats/<level>/<table>.csv")
def stats_csv(level, table):
    """One table of one level, whole: the rows ``kiosk-fleet stats --level`` writes for it,
    under the same header, byte for byte."""
    state = console()
    first, last, start, end = date_range(request.args)
    if level not in statistics.LEVELS:
        abort(404)
    computed = state.statistics(level, start, end)
    if table not in computed.tables:
        abort(404)
    one = statistics.Statistics(computed.level, computed.start, computed.end,
                                {table: computed.tables[table]})
    name = f"statistics-{level}-{table}-{first}-{last}.csv"
    return Response(statistics.to_csv(one), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
