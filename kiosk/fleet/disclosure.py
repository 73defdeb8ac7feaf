"""Statistical disclosure control: the one rule every published table of visits goes through.

Standard library only (pure). A count under :data:`THRESHOLD` visits (zero included, as issue
11 asks: "any cell under 5 visits shows <5") is published as ``"<5"``, and so is every total
under it. Then complementary suppression: more counts are hidden until no hidden count can be
worked out from the published ones by adding and subtracting rows, columns and totals. Each
table is one set of sum equations (cells to row totals, to column totals, totals to the grand
total); a hidden count is exposed when those equations fix its value, which :func:`suppress`
checks by solving them, not only row by row. So a row or column with a published total never
has exactly one hidden count, and no sum of several rows and columns isolates one either. The
count hidden next is the smallest visible one of the line at fault: safe, if not always the
fewest hidden possible (finding those is a hard problem, and these tables are small).

What it guarantees, for one table: every published count is at least the threshold, and no
hidden count is determined by the published counts of that table. So a reader of the published
statistics alone cannot single out a group of fewer than 5 visits, such as the one visit of a
quiet hour. A derived value is published by :func:`derived` only when it adds nothing to the
table's published counts.

What it does not guarantee:

* Bounds. A line's hidden counts still have a known sum (its total less the visible cells): a
  hidden count lies between 0 and that sum, and a sum of 0 shows they are all zeros ("nobody"
  discloses no one). When all of a line's visits fall in one published cell, everyone in that
  line is known to have answered so.
* Differencing between tables, unless told. Two tables from overlapping visits (two periods,
  a kiosk and the fleet, a table and its breakdown) can be subtracted from each other. A
  breakdown's sums published a level up are told through ``groups`` and ``group_hidden``
  (the statistics do so for departments and service points); two periods are not, so the
  console publishes whole months only. Overlapping ranges of months remain: a month's
  figures are a subtraction away, at a month's resolution.
* The database. Suppression protects published tables only. Anyone holding both the
  collector's database and the counter's log can still link a single visit in an hour to the
  citizen served then (``docs/privacy.md``).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

#: Fewest visits a published count may show; fewer show as ``f"<{THRESHOLD}"``.
THRESHOLD = 5


@dataclass(frozen=True)
class Table:
    """A table as published: every count an int, or the hidden mark (``"<5"``).

    ``cells`` has the shape :func:`suppress` was given: ``{key: count}`` for a distribution,
    ``{row: {column: count}}`` for a cross table; ``row_totals`` and ``column_totals`` are
    ``{key: count}`` for a cross table and None for a distribution; ``total`` counts them all.
    """

    cells: dict
    total: int | str
    row_totals: dict | None = None
    column_totals: dict | None = None


@dataclass(frozen=True)
class _Line:
    """One published sum: ``members`` add up to ``total`` (entries are layout keys)."""

    members: tuple
    total: tuple

    @property
    def entries(self):
        return (*self.members, self.total)


def mark(threshold=THRESHOLD):
    """What a hidden count shows."""
    return f"<{threshold}"


def shown(count, *, threshold=THRESHOLD):
    """A count standing alone (no total beside it): itself, or the mark under ``threshold``."""
    return count if _checked(count) >= threshold else mark(threshold)


def suppress(cells, *, threshold=THRESHOLD, groups=None, group_hidden=()):
    """``cells`` (counts of visits) as a published :class:`Table`, hidden counts as ``"<5"``.

    ``cells`` is ``{key: count}`` (a distribution: ratings 1-5 and the number rated) or
    ``{row: {column: count}}`` with the same columns in every row (a cross table, e.g. service
    by rating, with row, column and grand totals). Every count is a whole number >= 0.

    ``groups`` (a cross table's ``{row: group}``) names rows whose sums are published in
    another table, a level up (the departments of a ministry, whose row the ministries' table
    shows), and ``group_hidden`` what that table hid of them: ``(group, column)`` for a count,
    ``(group,)`` for a row total. The sums it shows are known here and are never hidden by
    this table, so no hidden count of this table follows from them either. Without them, a
    ministry's row less its departments' shown rows gave a hidden department's count.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"threshold must be a whole number >= 1, not {threshold!r}")
    values, lines, columns = _layout(cells)
    known = {}
    if groups is not None and columns is not None:
        known = _add_groups(cells, columns, groups, values, lines)
    hidden = {entry: None for entry, count in values.items()
              if (count < threshold if entry not in known else known[entry] in group_hidden)}
    # A group's only member equals the group's sum: where the level above shows that sum,
    # hiding the member here hides nothing, so it is never chosen to hide.
    fixed = set(known) | {line.members[0] for line in lines if line.total in known
                          and len(line.members) == 1 and line.total not in hidden}
    while exposed := _exposed(lines, hidden):
        if (partner := _partner(exposed, lines, values, hidden, fixed)) is None:
            break  # nothing left this table can hide
        hidden[partner] = None

    def show(entry):
        return mark(threshold) if entry in hidden else values[entry]

    if columns is None:
        return Table({key: show(("cell", key)) for key in cells}, show(("total",)))
    return Table({r: {c: show(("cell", r, c)) for c in columns} for r in cells},
                 show(("total",)),
                 row_totals={r: show(("row", r)) for r in cells},
                 column_totals={c: show(("column", c)) for c in columns})


def derived(value, counts, total):
    """``value`` (a mean rating, a share) computed from published ``counts`` and ``total``, or
    None when it would tell more than they do.

    Published only when ``total`` is shown and the shown counts add up to it: then the hidden
    counts are all 0 and ``value`` follows from what is published anyway. Otherwise a mean is
    one more equation (its sum of ratings) that can solve the hidden counts, and a total under
    the threshold is hidden itself. For a cross table pass one row (or column) and its total.
    """
    if isinstance(total, str) or sum(c for c in counts if not isinstance(c, str)) != total:
        return None
    return value


def _checked(count):
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"a count must be a whole number >= 0, not {count!r}")
    return count


def _layout(cells):
    """``({entry: count}, [lines], columns)`` of a distribution (columns None) or a cross
    table; totals are computed here from the counts, so they cannot disagree with them. A sum
    of nothing is left out: it tells only that its total is 0."""
    if not isinstance(cells, Mapping):
        raise TypeError("suppress() takes {key: count} or {row: {column: count}}")
    rows = list(cells.values())
    if rows and all(isinstance(row, Mapping) for row in rows):
        columns = list(rows[0])
        if any(list(row) != columns for row in rows):
            raise ValueError("every row of a cross table needs the same columns, in order")
        values = {("cell", r, c): _checked(n) for r, row in cells.items()
                  for c, n in row.items()}
        for r, row in cells.items():
            values["row", r] = sum(row.values())
        for c in columns:
            values["column", c] = sum(row[c] for row in rows)
        values["total",] = sum(values["row", r] for r in cells)
        lines = [_Line(tuple(("cell", r, c) for c in columns), ("row", r)) for r in cells]
        lines += [_Line(tuple(("cell", r, c) for r in cells), ("column", c)) for c in columns]
        lines += [_Line(tuple(("row", r) for r in cells), ("total",)),
                  _Line(tuple(("column", c) for c in columns), ("total",))]
        return values, [line for line in lines if line.members], columns
    values = {("cell", key): _checked(count) for key, count in cells.items()}
    values["total",] = sum(values.values())
    cells_line = _Line(tuple(values)[:-1], ("total",))
    return values, [cells_line] if cells_line.members else [], None


def _add_groups(cells, columns, groups, values, lines):
    """Each group's column sums and total, as entries and lines of the equations; returns
    ``{entry: its name in group_hidden}``."""
    members, known = {}, {}
    for row in cells:
        members.setdefault(groups[row], []).append(row)
    for group, rows in members.items():
        for column in columns:
            entry = ("group", group, column)
            values[entry], known[entry] = sum(cells[r][column] for r in rows), (group, column)
            lines.append(_Line(tuple(("cell", r, column) for r in rows), entry))
        values["group", group], known["group", group] = (
            sum(values["row", r] for r in rows), (group,))
        lines.append(_Line(tuple(("row", r) for r in rows), ("group", group)))
    return known


def _exposed(lines, hidden):
    """The hidden entries the published ones determine, in the order they were hidden.

    Gauss-Jordan elimination of the lines' equations in the hidden entries only: a hidden
    entry is determined exactly when it ends up alone in its reduced equation.
    """
    reduced = {}  # pivot entry -> its equation {entry: coefficient}, no other pivot in it
    for line in lines:
        equation = {entry: Fraction(1) for entry in line.members if entry in hidden}
        if line.total in hidden:
            equation[line.total] = Fraction(-1)
        for pivot, pivot_equation in reduced.items():
            if pivot in equation:
                equation = _minus(equation, pivot_equation, equation[pivot])
        if not equation:
            continue
        pivot = next(iter(equation))
        equation = {entry: c / equation[pivot] for entry, c in equation.items()}
        reduced = {p: _minus(e, equation, e[pivot]) if pivot in e else e
                   for p, e in reduced.items()}
        reduced[pivot] = equation
    alone = {pivot for pivot, equation in reduced.items() if len(equation) == 1}
    return [entry for entry in hidden if entry in alone]


def _minus(equation, other, factor):
    """``equation - factor * other`` without zero coefficients."""
    result = dict(equation)
    for entry, c in other.items():
        result[entry] = result.get(entry, 0) - factor * c
        if not result[entry]:
            del result[entry]
    return result


def _partner(exposed, lines, values, hidden, fixed=frozenset()):
    """The next count to hide (never one of ``fixed``): where an exposed count is the only
    hidden one of its line, the smallest visible cell of that line (its total when it has
    none); otherwise (a chain of lines exposes it) the smallest visible cell of a line through
    the first exposed count, or of any line at all; None when nothing is left to hide."""
    def smallest(entries):  # ``fixed``: shown by another table, so never hidden here
        visible = [e for e in entries if e not in hidden and e not in fixed]
        return min(visible, key=values.__getitem__) if visible else None

    for entry in exposed:
        for line in lines:
            if entry in line.entries and sum(e in hidden for e in line.entries) == 1:
                if (found := smallest(line.members) or smallest([line.total])) is not None:
                    return found
    through = [line for line in lines if exposed[0] in line.entries]
    for entries in ([e for line in through for e in line.members],
                    [line.total for line in through], values):
        if (found := smallest(entries)) is not None:
            return found
