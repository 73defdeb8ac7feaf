"""The statistics core: the published figures of the visits in a date range, at one level.

The levels are national, ministry, department, service point, service and province. A visit
is filed under the service point it carries (or, from a kiosk that sent none, its kiosk's pin
when it arrived: :meth:`kiosk.fleet.db.FleetDb.add_visits`), and ministry, department and
province come from the registry only, as it stood at the start of the visit's period; so does
the no-copy status a service was declared with. The visits are read as counts
(:mod:`kiosk.fleet.rollups`), not one by one. A visit whose point the registry did not hold then is
counted under :data:`UNKNOWN` (and so is one with no service chosen, at the service level).
Demo visits never count. The range is half-open, ``[start, end)``, on the period's start.

Each question is one cross table (groups of the level in rows) that goes whole through
:func:`kiosk.fleet.disclosure.suppress`; a share or mean is published through
:func:`kiosk.fleet.disclosure.derived`, so it is withheld (None) whenever it would tell more
than the row's published counts. A hidden count shows ``"<5"``. The tables:

* ``visits``: verified / unverified; ``visits`` and ``verified_share``.
* ``ratings``: 1-5; ``rated``, ``mean`` and ``csat`` (share of 4-5).
* ``copy``: asked (id_card, house_registration, both) / not asked (none) / not sure among
  visits with a copy answer; ``answered`` (all three), ``copy_request_rate`` (asked among asked
  and not asked: "not sure" is no answer to the question, so it is kept out of the rate) and
  ``not_sure_share`` (not sure among all answers).
* ``no_copy``: the same, by service and declared status as well; ``observed_rate`` (asked
  among asked and not asked) and ``contradiction`` (:class:`Thresholds`, on the same answers).
  The "other service" choice (:data:`kiosk.visit.OTHER_SERVICE`) is a service of its own,
  declared nothing (the registry may not hold it).
* ``abandoned``: completed, and abandoned at each step; ``abandoned_share_<step>``.
* ``reasons``: the reasons given after a low rating; ``top_reasons`` among published counts.
* ``card``: card visits (schema 3 on: a visit from before does not say) by whether the card was
  still in the reader when the visit was committed; ``card_visits`` and ``card_left_in_share``.
* ``undo``: completed visits (schema 3 on) by whether the citizen changed an answer on the
  confirm screen; ``completed`` and ``undone_share``.
* ``progress``: registered service points (as registered just before ``end``), split by pinned
  in the registry and reporting (a visit in the range); ``registered``, ``pinned``, ``reporting``.

Across tables: :mod:`kiosk.fleet.disclosure` protects one table at a time, but a ``copy`` row
is the sum of its group's ``no_copy`` rows and the ``visits`` and ``abandoned`` tables count
the same visits per row, so :func:`_hide_linked` hides a row whole wherever its partner hides a
figure (a row of a small service can thus hide its group's copy-request rate). A ``card`` row's
total can equal its ``visits`` row's verified count and an ``undo`` row's its ``abandoned``
row's completed count (when every visit is of schema 3), so those rows are hidden whole where
their partner hides a count, or where their own total is hidden. Other tables' rows are not
sums of each other. Service-point counts (``progress``) go through the same rule as visits,
though a point is no person.
"""

import argparse
import csv
import datetime as dt
import io
import itertools
import sys
from collections import defaultdict, namedtuple
from dataclasses import dataclass
from fractions import Fraction

from kiosk import visit as schema
from kiosk.fleet import disclosure, registry, rollups
from kiosk.fleet.db import DEFAULT_DB, open_database, utc_text
from kiosk.period import BANGKOK

#: Each level's key columns (the national level has one row, keyed by nothing).
LEVELS = {
    "national": (),
    "ministry": ("ministry",),
    "department": ("ministry", "department"),
    "service_point": ("service_point_id",),
    "service": ("service_id",),
    "province": ("province",),
}
#: The key of visits the registry cannot place (or with no service chosen).
UNKNOWN = "(unknown)"
ASKED = frozenset({"id_card", "house_registration", "both"})
#: Every key column a CSV row may fill, in order.
CSV_KEYS = ("ministry", "department", "service_point_id", "province", "service_id", "declared")
CSV_HEADER = ("table", *CSV_KEYS, "measure", "value")
BOM = "\ufeff"
#: Decimal places of a published share or mean.
DIGITS = 4


@dataclass(frozen=True)
class Thresholds:
    """When an observed copy-request rate contradicts a declared ``cancelled`` (issue 12), and
    which ratings are low enough for their reasons to count."""

    contradiction_answers: int = 20
    contradiction_rate: Fraction = Fraction(1, 10)
    low_rating: int = 2
    top_reasons: int = 3


@dataclass(frozen=True)
class Table:
    """One published table: ``rows`` maps a key (a tuple of the ``keys`` columns) to its
    figures ``{measure: value}``; a count is an int or ``"<5"``, a derived value a number, a
    bool or None (withheld)."""

    name: str
    keys: tuple
    rows: dict


@dataclass(frozen=True)
class Statistics:
    """Every table of one level over ``[start, end)`` (RFC 3339 UTC)."""

    level: str
    start: str
    end: str
    tables: dict

    def figures(self):
        """``{(table, key, measure): value}``: every published figure, as :func:`read_csv`
        gives them back (``key`` as ``{column: value}`` items, sorted)."""
        return {(table.name, _key_items(table.keys, key), measure): value
                for table in self.tables.values() for key, row in table.rows.items()
                for measure, value in row.items()}


@dataclass(frozen=True)
class _Visits:
    """The visits of one service point and service judged alike (the registry point and
    declared status of one time), with their counters (:data:`kiosk.fleet.rollups.NAMES`)."""

    point: object  # the registry point version, or None
    service_point_id: str | None
    service_id: str | None
    declared: str | None
    counts: list


#: Every table of a publication, in order.
TABLES = ("visits", "ratings", "copy", "no_copy", "abandoned", "reasons", "card", "undo",
          "progress")


def compute(fleet_db, registry, start, end, level="national", thresholds=Thresholds(),
            tables=TABLES):
    """The :class:`Statistics` of the non-demo visits whose period starts in ``[start, end)``
    (aware datetimes), grouped at ``level`` (a key of :data:`LEVELS`). ``tables`` names the
    ones wanted (a page that lists the contradictions needs ``no_copy`` only); each is what
    the whole publication would hold."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if unknown := set(tables) - set(TABLES):
        raise ValueError(f"no such table: {', '.join(sorted(unknown))}")
    start, end = utc_text(start), utc_text(end)
    visits = _load(fleet_db, registry, start, end)
    group = _grouper(level)
    ups = _ups(visits, level, group)
    makers = {
        "visits": lambda: _visits_table(visits, level, group, ups),
        "ratings": lambda: _ratings_table(visits, level, group, ups),
        "copy": lambda: _copy_table(visits, level, group, ups),
        "no_copy": lambda: _no_copy_table(visits, level, group, thresholds, ups),
        "abandoned": lambda: _abandoned_table(visits, level, group, ups),
        "reasons": lambda: _reasons_table(visits, level, group, thresholds, ups),
        "card": lambda: _card_table(visits, level, group, ups),
        "undo": lambda: _undo_table(visits, level, group, ups),
        "progress": lambda: _progress_table(registry, visits, level, end),
    }
    # The tables linked across (_hide_linked) come as pairs: each can hide in the other.
    wanted = set(tables)
    for pair in ({"copy", "no_copy"}, {"visits", "abandoned", "card", "undo"}):
        if wanted & pair:
            wanted |= pair
    made = {name: makers[name]() for name in TABLES if name in wanted}
    _hide_linked(made, _no_copy_counts(visits, level, group))
    return Statistics(level, start, end, {name: made[name] for name in TABLES
                                          if name in tables})


def _hide_linked(tables, no_copy_counts):
    """Suppression across the tables of one publication, where one holds sums of another's.

    A ``copy`` row is the sum of its group's ``no_copy`` rows. Those rows publish their totals,
    and none hides a single count (:func:`kiosk.fleet.disclosure.suppress`), so a row with
    hidden counts hides both. With two or more such rows in a group, the group's sums leave
    them one free value or more; with exactly one, subtracting gives it back, unless its
    hidden counts are 0 (which discloses no one). So the copy row's split is hidden then, and
    the whole row whenever a no_copy row of its group hides its total. ``visits`` and
    ``abandoned`` count the same visits per row: a row whose total is hidden in either is
    hidden whole in both. A ``card`` row's total can be its ``visits`` row's verified count,
    an ``undo`` row's its ``abandoned`` row's completed count: such a row is hidden whole where
    the partner hides a count it could give away, and where its own total is hidden (the
    partner could give that total, and with it the split, away). Hiding more never reveals
    anything (fewer figures, fewer equations)."""
    no_copy, copy = tables.get("no_copy"), tables.get("copy")
    width = len(copy.keys) if copy else 0
    for key in copy.rows if copy else ():
        group = {other: row for other, row in no_copy.rows.items() if other[:width] == key}
        hiding = [other for other, row in group.items()
                  if any(isinstance(row[column], str) for column in _ASKED)]
        if any(isinstance(row["answered"], str) for row in group.values()):
            _hide_row(copy.rows[key])
        elif len(hiding) == 1 and any(no_copy_counts[hiding[0]].values()):
            # Its total is the sum of published totals: only the split gives a count away.
            row = copy.rows[key]
            row.update(dict.fromkeys(_ASKED, disclosure.mark()), copy_request_rate=None,
                       not_sure_share=None)
    visits, abandoned = tables.get("visits"), tables.get("abandoned")
    for key in visits.rows.keys() & abandoned.rows.keys() if visits else ():
        if isinstance(visits.rows[key]["visits"], str) or isinstance(
                abandoned.rows[key]["visits"], str):
            _hide_row(visits.rows[key])
            _hide_row(abandoned.rows[key])
    for name, total, partner, columns in (("card", "card_visits", visits, ("verified",
                                                                          "unverified")),
                                          ("undo", "completed", abandoned, ("completed",))):
        table = tables.get(name)
        for key, row in table.rows.items() if table else ():
            partner_row = partner.rows.get(key, {})
            if isinstance(row[total], str) or any(isinstance(partner_row.get(c), str)
                                                  for c in columns):
                _hide_row(row)


def _hide_row(row):
    """Every count of ``row`` becomes the mark, every derived value is withheld."""
    for measure, value in row.items():
        is_count = isinstance(value, int | str) and not isinstance(value, bool)
        row[measure] = disclosure.mark() if is_count else None


# --- reading the store and the registry ------------------------------------------------------

def _load(fleet_db, registry, start, end):
    """The range's visits as :class:`_Visits`, each judged by the registry point and declared
    status valid at its period's start.

    The registry only changes at its versions' bounds, so the range is cut there and each piece
    is read from the rollups (:func:`kiosk.fleet.rollups.counts`): a year of a national fleet
    comes back as a few rows per point and service."""
    points = _versions(registry, "points", start, end)
    statuses = _versions(registry, "statuses", start, end)
    bounds = sorted({start, end} | {b for versions in (*points.values(), *statuses.values())
                                    for v in versions for b in (v.valid_from, v.valid_to)
                                    if b is not None and start < b < end})
    visits = []
    for first, last in itertools.pairwise(bounds):
        found = rollups.counts(fleet_db, dt.datetime.fromisoformat(first),
                               dt.datetime.fromisoformat(last))
        for (spid, service_id), values in found.items():
            point = _valid(points.get((spid,)), first)
            status = _valid(statuses.get((spid, service_id)), first)
            visits.append(_Visits(point, spid if point else None, service_id,
                                  status.no_copy if status else None, values))
    return visits


def _versions(registry, kind, start, end):
    """``{key: [version]}`` of ``kind``, each valid at some time of ``[start, end)``."""
    model = registry.models[kind]
    found = defaultdict(list)
    query = model.select().where((model.valid_from < end)
                                 & (model.valid_to.is_null() | (model.valid_to > start)))
    for row in _rows(registry, query):
        key = ((row.service_point_id,) if kind in ("points", "pins")
               else (row.service_point_id, row.service_id))
        found[key].append(row)
    return found


def _rows(registry, query):
    """The rows of a registry ``query`` as named tuples of its model's fields, straight from
    the driver: peewee making a model object of each took most of a national query's time."""
    model = query.model
    row = namedtuple(model.__name__, [f.name for f in model._meta.sorted_fields])
    return [row(*values) for values in registry.database.execute(query)]


def _valid(versions, at):
    return next((v for v in versions or () if v.valid_from <= at
                 and (v.valid_to is None or v.valid_to > at)), None)


def _grouper(level):
    def group(v):
        point = v.point
        if level == "national":
            return ()
        if level == "service":
            return (v.service_id or UNKNOWN,)
        if level == "service_point":
            return (v.service_point_id or UNKNOWN,)
        if point is None:
            return (UNKNOWN,) * len(LEVELS[level])
        return tuple(getattr(point, column) for column in LEVELS[level])
    return group


# --- the tables ------------------------------------------------------------------------------

def _cross(visits, group, columns, counters):
    """``{key: {column: count}}`` of ``visits``; ``counters[column]`` names the rollup counters
    a column adds up. A group is a row when it has a visit counted in some column; rows in key
    order."""
    indexes = [[rollups.NAMES.index(c) for c in counters[column]] for column in columns]
    counts = {}
    for v in visits:
        values = v.counts
        found = [sum(values[i] for i in each) for each in indexes]
        if any(found):
            row = counts.setdefault(group(v), [0] * len(columns))
            for i, n in enumerate(found):
                row[i] += n
    return {key: dict(zip(columns, counts[key], strict=True)) for key in sorted(counts)}


def _published(counts, ups=()):
    """``(key, true counts, published counts, published row total)`` of each row of a
    suppressed cross table; ``ups`` (:func:`_ups`) makes it hold against the sums the levels
    above publish too."""
    if not counts:
        return []
    table = _suppressed(counts, ups)
    return [(key, counts[key], table.cells[key], table.row_totals[key]) for key in counts]


def _suppressed(counts, ups):
    """:func:`kiosk.fleet.disclosure.suppress` of ``counts``, given what the level above
    shows and hides of their sums, itself suppressed so against the levels above it."""
    if not ups:
        return disclosure.suppress(counts)
    groups, sums = {}, {}
    for key, row in counts.items():
        groups[key] = ups[0](key)
        into = sums.setdefault(groups[key], dict.fromkeys(row, 0))
        for column, count in row.items():
            into[column] += count
    above = _suppressed({key: sums[key] for key in sorted(sums)}, ups[1:])
    hidden = {(group, column) for group, row in above.cells.items()
              for column, shown in row.items() if isinstance(shown, str)}
    hidden |= {(group,) for group, total in above.row_totals.items() if isinstance(total, str)}
    return disclosure.suppress(counts, groups=groups, group_hidden=hidden)


def _ups(visits, level, group):
    """From a row's key to its key a level up, for each level up to the one whose rows the
    table's own totals add up (the nation): the console shows a ministry's row beside its
    departments', and a department's beside its service points'."""
    to_ministry = lambda key: key[:1] + key[2:]  # noqa: E731 (ministry, department, ...)
    if level == "department":
        return (to_ministry,)
    if level == "service_point":
        where = {group(v): (v.point.ministry, v.point.department) if v.point is not None
                 else (UNKNOWN, UNKNOWN) for v in visits}
        return (lambda key: where.get(key[:1], (UNKNOWN, UNKNOWN)) + key[1:], to_ministry)
    return ()


def _share(part, whole):
    return round(part / whole, DIGITS) if whole else None


def _derived(value, shown, total):
    return disclosure.derived(value, shown.values(), total)


def _visits_table(visits, level, group, ups=()):
    counts = _cross(visits, group, ("verified", "unverified"),
                    {"verified": ("verified_yes",), "unverified": ("verified_no",)})
    rows = {}
    for key, true, shown, total in _published(counts, ups):
        rows[key] = {"visits": total, **shown, "verified_share": _derived(
            _share(true["verified"], sum(true.values())), shown, total)}
    return Table("visits", LEVELS[level], rows)


def _ratings_table(visits, level, group, ups=()):
    counts = _cross(visits, group, schema.RATINGS, {r: (f"rating_{r}",) for r in schema.RATINGS})
    rows = {}
    for key, true, shown, total in _published(counts, ups):
        rated = sum(true.values())
        mean = round(sum(r * n for r, n in true.items()) / rated, DIGITS) if rated else None
        rows[key] = {"rated": total, **{f"rating_{r}": n for r, n in shown.items()},
                     "mean": _derived(mean, shown, total),
                     "csat": _derived(_share(true[4] + true[5], rated), shown, total)}
    return Table("ratings", LEVELS[level], rows)


#: The copy answers' counters, asked for a copy or not.
_ASKED = {"asked": tuple(f"copy_{a}" for a in schema.COPY_ANSWERS if a in ASKED),
          "not_asked": ("copy_none",), "not_sure": ("copy_not_sure",)}


def _copy_rates(true, shown, total):
    """The copy-request rate (asked among those who knew) and the share not sure."""
    return {"copy_request_rate": _derived(
                _share(true["asked"], true["asked"] + true["not_asked"]), shown, total),
            "not_sure_share": _derived(_share(true["not_sure"], sum(true.values())), shown,
                                       total)}


def _copy_table(visits, level, group, ups=()):
    counts = _cross(visits, group, tuple(_ASKED), _ASKED)
    rows = {}
    for key, true, shown, total in _published(counts, ups):
        rows[key] = {"answered": total, **shown, **_copy_rates(true, shown, total)}
    return Table("copy", LEVELS[level], rows)


def _no_copy_counts(visits, level, group):
    """The true asked / not asked counts by group, service and declared status."""
    def by_service(v):
        service = (v.service_id or UNKNOWN,)
        return group(v) + (() if level == "service" else service) + (v.declared or UNKNOWN,)

    return _cross(visits, by_service, tuple(_ASKED), _ASKED)


def _no_copy_table(visits, level, group, thresholds, ups=()):
    keys = LEVELS[level] + tuple(c for c in ("service_id", "declared") if c not in LEVELS[level])
    counts = _no_copy_counts(visits, level, group)
    rows = {}
    for key, true, shown, total in _published(counts, ups):
        knew = true["asked"] + true["not_asked"]  # "not sure" tells neither way
        is_contradiction = (key[-1] == "cancelled"
                            and knew >= thresholds.contradiction_answers
                            and Fraction(true["asked"], knew) >= thresholds.contradiction_rate)
        rows[key] = {"answered": total, **shown,
                     "observed_rate": _derived(_share(true["asked"], knew), shown, total),
                     "not_sure_share": _copy_rates(true, shown, total)["not_sure_share"],
                     # Published with the row's total, hidden counts or not: it tells only
                     # that the asked share passed the threshold (a bound, which suppression
                     # never hid), and it is the programme's main signal.
                     "contradiction": None if isinstance(total, str) else is_contradiction}
    return Table("no_copy", keys, rows)


def _abandoned_table(visits, level, group, ups=()):
    columns = ("completed", *schema.STEPS)
    counts = _cross(visits, group, columns,
                    {column: (f"ended_{column}",) for column in columns})
    rows = {}
    for key, true, shown, total in _published(counts, ups):
        all_visits = sum(true.values())
        row = {"visits": total, "completed": shown["completed"]}
        for step in schema.STEPS:
            row[f"abandoned_{step}"] = shown[step]
            row[f"abandoned_share_{step}"] = _derived(_share(true[step], all_visits), shown,
                                                      total)
        rows[key] = row
    return Table("abandoned", LEVELS[level], rows)


def _reasons_table(visits, level, group, thresholds, ups=()):
    low = [r for r in schema.RATINGS if r <= thresholds.low_rating]
    counts = _cross(visits, group, schema.REASONS,
                    {reason: tuple(f"reason_{reason}_{r}" for r in low)
                     for reason in schema.REASONS})
    rows = {}
    for key, _true, shown, total in _published(counts, ups):
        # Only published counts are ranked: the order of hidden ones would tell about them.
        ranked = sorted((r for r in schema.REASONS if not isinstance(shown[r], str)),
                        key=lambda r: -shown[r])
        rows[key] = {"low_rated": total, **shown,
                     "top_reasons": " ".join(ranked[:thresholds.top_reasons])}
    return Table("reasons", LEVELS[level], rows)


def _card_table(visits, level, group, ups=()):
    counts = _cross(visits, group, ("card_left_in", "card_taken"),
                    {"card_left_in": ("card_left_in",), "card_taken": ("card_taken",)})
    rows = {}
    for key, true, shown, total in _published(counts, ups):
        rows[key] = {"card_visits": total, **shown, "card_left_in_share": _derived(
            _share(true["card_left_in"], sum(true.values())), shown, total)}
    return Table("card", LEVELS[level], rows)


def _undo_table(visits, level, group, ups=()):
    counts = _cross(visits, group, ("undone", "not_undone"),
                    {"undone": ("completed_undone",), "not_undone": ("completed_kept",)})
    rows = {}
    for key, true, shown, total in _published(counts, ups):
        rows[key] = {"completed": total, **shown, "undone_share": _derived(
            _share(true["undone"], sum(true.values())), shown, total)}
    return Table("undo", LEVELS[level], rows)


def _progress_table(registry, visits, level, end):
    """Service points registered just before ``end`` (for the service level: point and service
    pairs), as pinned or not in the registry and reporting or not in the range."""
    points, pins, services = (registry.models[kind] for kind in ("points", "pins", "services"))

    def current(model):
        return _rows(registry, model.select().where(
            (model.valid_from < end) & (model.valid_to.is_null() | (model.valid_to >= end))))

    pinned = {row.service_point_id for row in current(pins)}
    reporting = {(v.service_point_id, v.service_id) for v in visits if v.service_point_id}
    reporting_points = {spid for spid, _ in reporting}
    registered = {row.service_point_id: row for row in current(points)}
    if level == "service":
        units = [((row.service_id,), row.service_point_id,
                  (row.service_point_id, row.service_id) in reporting)
                 for row in current(services) if row.service_point_id in registered]
    else:
        units = [(tuple(getattr(point, c) for c in LEVELS[level]), spid,
                  spid in reporting_points) for spid, point in registered.items()]
    columns = ("pinned_reporting", "pinned_silent", "unpinned_reporting", "unpinned_silent")
    counts = defaultdict(lambda: dict.fromkeys(columns, 0))
    for key, spid, is_reporting in units:
        counts[key][("pinned" if spid in pinned else "unpinned")
                    + ("_reporting" if is_reporting else "_silent")] += 1
    rows = {}
    for key, _true, shown, total in _published({k: counts[k] for k in sorted(counts)}):
        rows[key] = {"registered": total, **shown,
                     "pinned": _sum_shown(shown, "pinned_reporting", "pinned_silent"),
                     "reporting": _sum_shown(shown, "pinned_reporting", "unpinned_reporting")}
    return Table("progress", LEVELS[level], rows)


def _sum_shown(shown, *columns):
    """The sum of published counts, or None when one of them is hidden."""
    values = [shown[c] for c in columns]
    return None if any(isinstance(v, str) for v in values) else sum(values)


# --- CSV -------------------------------------------------------------------------------------

def _key_items(keys, key):
    return tuple(sorted(zip(keys, key, strict=True)))


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def to_csv(statistics):
    """The figures as CSV bytes: UTF-8 with a BOM (so Excel reads the Thai names), one row per
    figure: its table, key columns (blank when not part of the key), measure and value. A
    hidden count is ``<5``, a withheld value blank, a flag ``yes``/``no``."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for (table, items, measure), value in statistics.figures().items():
        key = dict(items)
        writer.writerow((table, *(key.get(c, "") for c in CSV_KEYS), measure, _text(value)))
    return (BOM + out.getvalue()).encode("utf-8")


def read_csv(data):
    """``{(table, key, measure): text}`` from :func:`to_csv` bytes, for checks and re-use: the
    same keys as :meth:`Statistics.figures`, the values as the CSV writes them."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    return {(row["table"], tuple(sorted((c, row[c]) for c in CSV_KEYS if row[c])),
             row["measure"]): row["value"] for row in reader}


def csv_text_of(figures):
    """``figures`` (from :meth:`Statistics.figures`) with the values as the CSV writes them."""
    return {name: _text(value) for name, value in figures.items()}


# --- kiosk-fleet stats -----------------------------------------------------------------------

def _day(text):
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a date such as 2026-12-01") from None


def add_arguments(parser):
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the fleet database, a path or postgresql:// URL (default "
                        "%(default)s)")
    parser.add_argument("--from", dest="first", type=_day, required=True, metavar="DAY",
                        help="the first day counted (Thailand's calendar)")
    parser.add_argument("--to", dest="last", type=_day, required=True, metavar="DAY",
                        help="the last day counted, included")
    parser.add_argument("--level", choices=LEVELS, default="national",
                        help="the rows of every table (default %(default)s)")
    parser.add_argument("--out", metavar="FILE",
                        help="write the CSV here (default: standard output)")
    defaults = Thresholds()
    parser.add_argument("--contradiction-answers", type=int,
                        default=defaults.contradiction_answers, metavar="N",
                        help="fewest copy answers for a contradiction (default %(default)s)")
    parser.add_argument("--contradiction-rate", type=Fraction,
                        default=defaults.contradiction_rate, metavar="RATE",
                        help="lowest observed copy-request rate for a contradiction, e.g. 0.1 "
                        "or 1/10 (default %(default)s)")


def main(args):
    if args.last < args.first:
        print(f"stats: --to {args.last} is before --from {args.first}", file=sys.stderr)
        return 2
    start = dt.datetime.combine(args.first, dt.time(), BANGKOK)
    end = dt.datetime.combine(args.last + dt.timedelta(days=1), dt.time(), BANGKOK)
    fleet_db = open_database(args.db, read_only=True)
    try:
        thresholds = Thresholds(contradiction_answers=args.contradiction_answers,
                                contradiction_rate=args.contradiction_rate)
        data = to_csv(compute(fleet_db, registry.Registry(fleet_db.database), start, end,
                              args.level, thresholds))
    finally:
        fleet_db.close()
    if args.out:
        with open(args.out, "wb") as out:
            out.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
