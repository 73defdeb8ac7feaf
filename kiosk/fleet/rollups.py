"""The visit rollups: what the statistics read instead of the visits.

Per local day, and again per local month, and per service point and service, one row of
counters of the non-demo visits whose period starts then: verified or not, each rating, each
copy answer, how the visit ended (completed, or abandoned at each step), each reason by the
rating it followed, whether the card was left in at the commit and whether a completed visit's
answer was changed. Every table of :mod:`kiosk.fleet.statistics` crosses a group of points and
services with one of these, so a year of a national fleet is read as a few rows per point and
service instead of one per visit. Demo visits never count, so they are never rolled up.

The rows are kept at ingest, in the transaction that stores the visits, from the visits that
transaction actually inserted (:meth:`kiosk.fleet.db.FleetDb.add_visits`): a resent visit
counts once. :func:`create_and_rebuild` makes them from the visits already stored (a fleet file
from before the rollups); :func:`rebuild` makes them again with a newer visit schema's counters.
A range that does not start or end at local midnight reads its partial days from the visits
themselves (:func:`counts`), through the index by period.
"""

import datetime as dt
from collections import defaultdict
from operator import itemgetter

from peewee import CharField, CompositeKey, IntegerField, Model, PostgresqlDatabase

from kiosk import visit as schema
from kiosk.period import BANGKOK

#: ``(column, fields, values)``: a counter counts the visits whose ``fields`` hold ``values``.
COUNTERS = (
    *((f"verified_{'yes' if flag else 'no'}", ("verified",), (flag,)) for flag in (True, False)),
    *((f"rating_{r}", ("rating",), (r,)) for r in schema.RATINGS),
    *((f"copy_{answer}", ("copy_answer",), (answer,)) for answer in schema.COPY_ANSWERS),
    ("ended_completed", ("outcome",), (schema.Outcome.COMPLETED.value,)),
    *((f"ended_{step}", ("outcome", "step"), (schema.Outcome.ABANDONED.value, step))
      for step in schema.STEPS),
    *((f"reason_{reason}_{r}", ("reason", "rating"), (reason, r))
      for reason in schema.REASONS for r in schema.RATINGS),
    # Schema 3: whether the card was still in at the commit (card visits only), and whether a
    # completed visit's answer was changed; a visit from before says neither (null).
    ("card_left_in", ("card_in_at_commit",), (True,)),
    ("card_taken", ("card_in_at_commit",), (False,)),
    ("completed_undone", ("outcome", "undone"), (schema.Outcome.COMPLETED.value, True)),
    ("completed_kept", ("outcome", "undone"), (schema.Outcome.COMPLETED.value, False)),
)
NAMES = tuple(name for name, _, _ in COUNTERS)
#: Stands for a visit with no service point or no service chosen: NULL is never equal to
#: itself in a key, so a row keyed by it could not be added to.
NONE = ""
KEY = ("bucket", "service_point_id", "service_id")
#: ``{fields: {values: counter index}}``: one lookup per kind of counter and visit (a single
#: field's values stand alone, as ``itemgetter`` gives them).
_BY_FIELDS = defaultdict(dict)
for _index, (_name, _fields, _values) in enumerate(COUNTERS):
    _BY_FIELDS[_fields][_values if len(_fields) > 1 else _values[0]] = _index
_LOOKUPS = tuple((itemgetter(*fields), values) for fields, values in _BY_FIELDS.items())


def _model(name, doc):
    return type(name, (Model,), {
        "__doc__": doc, "__module__": __name__,
        "Meta": type("Meta", (), {"table_name": name.lower().replace("visit", "visit_"),
                                  "primary_key": CompositeKey(*KEY)}),
        "bucket": CharField(),
        "service_point_id": CharField(),
        "service_id": CharField(),
        **{column: IntegerField(default=0) for column in NAMES},
    })


VisitDay = _model("VisitDay", "Counters of one local day (``bucket`` YYYY-MM-DD).")
VisitMonth = _model("VisitMonth", "Counters of one local month (``bucket`` YYYY-MM).")
MODELS = (VisitDay, VisitMonth)


def counted(visit):
    """The counter indexes one visit (a ``{field: value}`` mapping) adds 1 to."""
    found = []
    for fields_of, values in _LOOKUPS:
        index = values.get(fields_of(visit))
        if index is not None:
            found.append(index)
    return found


def day_of(period_text):
    """The local day (``YYYY-MM-DD``) a period starting at ``period_text`` (UTC) falls in."""
    return (dt.datetime.fromisoformat(period_text).astimezone(BANGKOK)).strftime("%Y-%m-%d")


def add(database, visits):
    """Count ``visits`` (``{field: value}`` mappings of visits just stored, with ``period``,
    ``is_demo``, ``service_point_id`` and the answers) into the day and month rows."""
    days = {}
    rows = defaultdict(lambda: [0] * len(NAMES))
    for visit in visits:
        if visit["is_demo"]:
            continue
        period = visit["period"]
        day = days.get(period) or days.setdefault(period, day_of(period))
        row = rows[(day, visit["service_point_id"] or NONE, visit["service_id"] or NONE)]
        for index in counted(visit):
            row[index] += 1
    _upsert(database, rows)


def _upsert(database, rows):
    """Add ``{(day, point, service): counters}`` to the day rows and their months' rows, in
    key order (collectors adding to the same rows then wait for each other, not deadlock)."""
    months = defaultdict(lambda: [0] * len(NAMES))
    for (day, point, service), row in rows.items():
        month = months[(day[:7], point, service)]
        for i, n in enumerate(row):
            month[i] += n
    cursor = database.cursor()
    for model, found in ((VisitDay, rows), (VisitMonth, months)):
        if found:
            cursor.executemany(upsert_sql(database, model),
                               [(*key, *found[key]) for key in sorted(found)])


def upsert_sql(database, model):
    """The statement adding one row of counters to ``model``'s row of the same key."""
    table = model._meta.table_name
    columns = ", ".join(f'"{c}"' for c in (*KEY, *NAMES))
    marks = ", ".join([database.param] * (len(KEY) + len(NAMES)))
    added = ", ".join(f'"{c}" = "{table}"."{c}" + excluded."{c}"' for c in NAMES)
    return (f'INSERT INTO "{table}" ({columns}) VALUES ({marks}) '
            f'ON CONFLICT ({", ".join(KEY)}) DO UPDATE SET {added}')


def create_and_rebuild(fleet):
    """Make the rollup tables and count every visit already stored into them, in SQL (a year
    of a national fleet is too many rows to read out): the days from the visits, the months
    from the days."""
    database = fleet.database
    day, month = fleet.rollup_models
    database.create_tables([day, month])
    database.execute_sql(f'DELETE FROM "{day._meta.table_name}"')
    sums, params = _sums(database.param)
    # Thailand's time is UTC+7 all year (kiosk.period.BANGKOK), so a fixed offset.
    if isinstance(database, PostgresqlDatabase):
        local = ("to_char((\"period\"::timestamptz AT TIME ZONE 'UTC') + interval '7 hours', "
                 "'YYYY-MM-DD')")
    else:
        local = "date(\"period\", '+7 hours')"
    columns = ", ".join(f'"{c}"' for c in (*KEY, *NAMES))
    database.execute_sql(
        f'INSERT INTO "{day._meta.table_name}" ({columns}) SELECT {local}, '
        f'COALESCE("service_point_id", \'{NONE}\'), COALESCE("service_id", \'{NONE}\'), '
        f'{sums} FROM "{fleet.FleetVisit._meta.table_name}" WHERE NOT "is_demo" '
        'GROUP BY 1, 2, 3', params)
    rebuild_months(fleet)


def rebuild(fleet):
    """The rollup tables made again, with today's counters, from the visits: a table made
    before a counter existed has no column for it (the visit schema gained an answer)."""
    fleet.database.drop_tables(list(fleet.rollup_models))
    create_and_rebuild(fleet)


def rebuild_months(fleet):
    """Make the month rows again from the day rows."""
    day, month = fleet.rollup_models
    columns = ", ".join(f'"{c}"' for c in (*KEY, *NAMES))
    totals = ", ".join(f'SUM("{c}")' for c in NAMES)
    fleet.database.execute_sql(f'DELETE FROM "{month._meta.table_name}"')
    fleet.database.execute_sql(
        f'INSERT INTO "{month._meta.table_name}" ({columns}) SELECT substr("bucket", 1, 7), '
        f'"service_point_id", "service_id", {totals} FROM "{day._meta.table_name}" '
        'GROUP BY 1, 2, 3')


# --- reading -----------------------------------------------------------------------------------

def counts(fleet, start, end):
    """``{(service_point_id, service_id): [counter]}`` (in :data:`NAMES` order; None for no
    point or no service) of the non-demo visits whose period starts in ``[start, end)``
    (aware datetimes): whole local months and days from the rollups, the rest from the
    visits."""
    found = defaultdict(lambda: [0] * len(NAMES))

    def gather(rows):
        for point, service, *values in rows:
            row = found[(point or None, service or None)]
            for i, n in enumerate(values):
                row[i] += n

    first_day, last_day = _ceil_day(start), _floor_day(end)
    if first_day >= last_day:
        gather(_raw(fleet, start, end))
        return found
    if start < first_day:
        gather(_raw(fleet, start, first_day))
    if last_day < end:
        gather(_raw(fleet, last_day, end))
    day, month = fleet.rollup_models
    first_month, last_month = _ceil_month(first_day), _floor_month(last_day)
    if first_month < last_month:
        gather(_rolled(fleet, month, first_month.strftime("%Y-%m"),
                       last_month.strftime("%Y-%m")))
        days = ((first_day, first_month), (last_month, last_day))
    else:
        days = ((first_day, last_day),)
    for low, high in days:
        if low < high:
            gather(_rolled(fleet, day, low.strftime("%Y-%m-%d"), high.strftime("%Y-%m-%d")))
    return found


def _rolled(fleet, model, low, high):
    table = model._meta.table_name
    mark = fleet.database.param
    sums = ", ".join(f'SUM("{c}")' for c in NAMES)
    return fleet.database.execute_sql(
        f'SELECT "service_point_id", "service_id", {sums} FROM "{table}" '
        f'WHERE "bucket" >= {mark} AND "bucket" < {mark} '
        'GROUP BY "service_point_id", "service_id"', (low, high)).fetchall()


def _sums(mark):
    """The counters as SQL sums over visit rows, and their parameters."""
    sums, params = [], []
    for _, fields, values in COUNTERS:
        sums.append("SUM(CASE WHEN " + " AND ".join(f'"{f}" = {mark}' for f in fields)
                    + " THEN 1 ELSE 0 END)")
        params.extend(values)
    return ", ".join(sums), params


def _raw(fleet, start, end):
    """The counters straight from the visit table, of the visits in the range."""
    mark = fleet.database.param
    sums, params = _sums(mark)
    table = fleet.FleetVisit._meta.table_name
    return fleet.database.execute_sql(
        f'SELECT "service_point_id", "service_id", {sums} FROM "{table}" '
        f'WHERE NOT "is_demo" AND "period" >= {mark} AND "period" < {mark} '
        'GROUP BY "service_point_id", "service_id"',
        [*params, period_text(start), period_text(end)]).fetchall()


def period_text(instant):
    """The first period start at or after ``instant`` (aware), as periods are written: whole
    seconds (so ``period >= it`` is ``period >= instant``)."""
    if instant.microsecond:
        instant = instant.replace(microsecond=0) + dt.timedelta(seconds=1)
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor_day(instant):
    local = instant.astimezone(BANGKOK)
    return dt.datetime.combine(local.date(), dt.time(), BANGKOK)


def _ceil_day(instant):
    floor = _floor_day(instant)
    return floor if floor == instant else floor + dt.timedelta(days=1)


def _floor_month(day):
    return day.replace(day=1)


def _ceil_month(day):
    if day.day == 1:
        return day
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
