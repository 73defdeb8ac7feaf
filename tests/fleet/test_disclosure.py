"""Suppression of published tables: nothing under 5 shows, and no hidden count can be worked out.

The tables here are checked by an independent judge: the sum equations of the published table
are written out again and their rank computed (dense, with fractions), so a hidden count is
"exposed" exactly when the published counts determine it. That is a different algorithm from
the module's own elimination, and the strongest reading of "a hidden cell cannot be recovered
by subtracting from a total".
"""

import random
from fractions import Fraction

import pytest

from kiosk.fleet.disclosure import THRESHOLD, Table, derived, shown, suppress

HIDDEN = "<5"


# --- the independent judge -----------------------------------------------------------------


def entries_and_lines(cells):
    """``({entry: true count}, [(members, total)])`` of a distribution or a cross table."""
    if cells and all(isinstance(row, dict) for row in cells.values()):
        columns = list(next(iter(cells.values())))
        truth = {("cell", r, c): n for r, row in cells.items() for c, n in row.items()}
        truth |= {("row", r): sum(row.values()) for r, row in cells.items()}
        truth |= {("column", c): sum(row[c] for row in cells.values()) for c in columns}
        truth["total",] = sum(truth["row", r] for r in cells)
        lines = [([("cell", r, c) for c in columns], ("row", r)) for r in cells]
        lines += [([("cell", r, c) for r in cells], ("column", c)) for c in columns]
        lines += [([("row", r) for r in cells], ("total",)),
                  ([("column", c) for c in columns], ("total",))]
    else:
        truth = {("cell", k): n for k, n in cells.items()}
        truth["total",] = sum(cells.values())
        lines = [([("cell", k) for k in cells], ("total",))]
    return truth, [(members, total) for members, total in lines if members]


def published(table):
    """``{entry: shown}`` of a :class:`Table`, keyed as :func:`entries_and_lines` keys them."""
    found = {("total",): table.total}
    if table.row_totals is None:
        found |= {("cell", k): v for k, v in table.cells.items()}
    else:
        found |= {("cell", r, c): v for r, row in table.cells.items() for c, v in row.items()}
        found |= {("row", r): v for r, v in table.row_totals.items()}
        found |= {("column", c): v for c, v in table.column_totals.items()}
    return found


def rank(rows):
    rows = [list(row) for row in rows]
    rank_found, width = 0, len(rows[0]) if rows else 0
    for column in range(width):
        pivot = next((i for i in range(rank_found, len(rows)) if rows[i][column]), None)
        if pivot is None:
            continue
        rows[rank_found], rows[pivot] = rows[pivot], rows[rank_found]
        for i in range(len(rows)):
            if i != rank_found and rows[i][column]:
                factor = Fraction(rows[i][column], rows[rank_found][column])
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[rank_found], strict=True)]
        rank_found += 1
    return rank_found


def exposed(cells, table):
    """Hidden entries the published ones determine: dropping one from the unknowns lowers the
    rank of the sum equations exactly when it is fixed by them."""
    _, lines = entries_and_lines(cells)
    shown_ = published(table)
    unknowns = [e for e, v in shown_.items() if v == HIDDEN]

    def matrix(columns):
        return [[(1 if e in members else 0) - (1 if e == total else 0) for e in columns]
                for members, total in lines]

    full = rank(matrix(unknowns))
    return [e for e in unknowns if rank(matrix([u for u in unknowns if u != e])) < full]


def assert_safe(cells, table):
    """Every visible count true and >= 5; every line with a published total hides 0 or >= 2
    counts; no hidden count is determined by the published ones."""
    truth, lines = entries_and_lines(cells)
    shown_ = published(table)
    assert shown_.keys() == truth.keys()
    for entry, value in shown_.items():
        assert value == HIDDEN or (value == truth[entry] and value >= THRESHOLD), entry
        if truth[entry] < THRESHOLD:
            assert value == HIDDEN, entry
    for members, total in lines:
        if shown_[total] != HIDDEN:
            assert sum(shown_[m] == HIDDEN for m in members) != 1, (members, total)
    assert exposed(cells, table) == []


def test_disclosure_judge_sees_a_count_a_subtraction_recovers():
    """The judge could fail: one hidden cell beside a published total is exposed."""
    cells = {1: 3, 2: 9, 3: 20}
    leaky = Table({1: HIDDEN, 2: 9, 3: 20}, 32)
    assert exposed(cells, leaky) == [("cell", 1)]
    with pytest.raises(AssertionError):
        assert_safe(cells, leaky)


# --- distributions -------------------------------------------------------------------------


def test_disclosure_every_count_under_five_shows_the_mark_zero_included():
    table = suppress({1: 0, 2: 1, 3: 4, 4: 5, 5: 12})
    assert table == Table({1: HIDDEN, 2: HIDDEN, 3: HIDDEN, 4: 5, 5: 12}, 22)


def test_disclosure_a_single_small_count_hides_the_smallest_other_one():
    cells = {1: 7, 2: 3, 3: 9, 4: 20, 5: 40}
    table = suppress(cells)
    assert table == Table({1: HIDDEN, 2: HIDDEN, 3: 9, 4: 20, 5: 40}, 79)
    # total - visible sum gives the two hidden counts together, never one of them
    assert table.total - sum(v for v in table.cells.values() if v != HIDDEN) == 7 + 3
    assert_safe(cells, table)


def test_disclosure_total_under_five_hides_everything():
    assert suppress({1: 0, 2: 1, 3: 0, 4: 2, 5: 1}) == Table(dict.fromkeys(range(1, 6), HIDDEN),
                                                             HIDDEN)
    assert suppress({}) == Table({}, HIDDEN)


def test_disclosure_nothing_small_hides_nothing():
    cells = {"none": 40, "id_card": 12, "house_registration": 5, "both": 6}
    assert suppress(cells) == Table(cells, 63)


def test_disclosure_threshold_is_a_parameter_and_names_the_mark():
    table = suppress({"a": 9, "b": 12, "c": 30}, threshold=10)
    assert table == Table({"a": "<10", "b": "<10", "c": 30}, 51)
    assert shown(9, threshold=10) == "<10"


def test_disclosure_a_count_standing_alone():
    assert [shown(n) for n in (0, 4, 5, 120)] == [HIDDEN, HIDDEN, 5, 120]


@pytest.mark.parametrize("cells", [{1: -1}, {1: 2.0}, {1: True}, {"a": {1: 3}, "b": 4}])
def test_disclosure_refuses_what_is_not_a_count(cells):
    with pytest.raises(ValueError, match="whole number"):
        suppress(cells)


def test_disclosure_refuses_a_ragged_cross_table_or_a_list():
    with pytest.raises(ValueError, match="same columns"):
        suppress({"a": {1: 5, 2: 6}, "b": {1: 5}})
    with pytest.raises(TypeError):
        suppress([3, 4, 5])
    with pytest.raises(ValueError, match="threshold"):
        suppress({1: 5}, threshold=0)


# --- cross tables ---------------------------------------------------------------------------

SERVICE_BY_RATING = {
    "id_card": {1: 2, 2: 9, 3: 14, 4: 30, 5: 61},
    "house_registration": {1: 6, 2: 8, 3: 11, 4: 25, 5: 40},
    "birth": {1: 7, 2: 12, 3: 10, 4: 9, 5: 33},
}


def test_disclosure_a_small_cell_forces_a_complement_in_its_row_and_its_column():
    table = suppress(SERVICE_BY_RATING)
    assert table.cells["id_card"][1] == HIDDEN
    row = table.cells["id_card"]
    column = [table.cells[s][1] for s in SERVICE_BY_RATING]
    assert sum(v == HIDDEN for v in row.values()) >= 2
    assert sum(v == HIDDEN for v in column) >= 2
    # the complement of the row is its smallest other cell, 9 (rating 2)
    assert row[2] == HIDDEN
    assert (table.total, table.row_totals["id_card"]) == (116 + 90 + 71, 116)
    assert_safe(SERVICE_BY_RATING, table)


def test_disclosure_complements_cascade_across_rows_and_columns():
    """One small cell (a, x) hides (a, y) in its row and (b, x) in its column; each of those
    leaves another line with one hidden count, and so on until none is left with one."""
    cells = {"a": {"x": 2, "y": 6, "z": 50},
             "b": {"x": 7, "y": 40, "z": 9},
             "c": {"x": 30, "y": 8, "z": 60}}
    table = suppress(cells)
    hidden = {(r, c) for r, row in table.cells.items() for c, v in row.items() if v == HIDDEN}
    assert hidden == {("a", "x"), ("a", "y"), ("b", "x"), ("c", "y"), ("b", "z"), ("c", "x"),
                      ("a", "z")}
    assert table.row_totals == {"a": 58, "b": 56, "c": 98}
    assert_safe(cells, table)


def test_disclosure_totals_under_five_are_hidden_and_complemented():
    cells = {"a": {"x": 1, "y": 2}, "b": {"x": 20, "y": 30}, "c": {"x": 9, "y": 40}}
    table = suppress(cells)
    assert table.row_totals["a"] == HIDDEN
    # the grand total is published, so one hidden row total would be total - the others
    assert table.total == 102
    assert sum(v == HIDDEN for v in table.row_totals.values()) >= 2
    assert_safe(cells, table)


def test_disclosure_a_chain_of_rows_and_columns_exposes_nothing():
    """Two hidden rectangles joined by one hidden cell: every row and column hides 0 or >= 2
    counts, yet rows 1+2 minus columns 1+2 would give the joining cell alone. suppress() solves
    the sums rather than counting per line, so it hides one more."""
    small = {(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 4), (4, 3), (4, 4), (1, 3)}
    cells = {r: {c: (2 if (r, c) in small else 10 * r + c) for c in range(1, 5)}
             for r in range(1, 5)}
    line_by_line = published(Table(
        {r: {c: HIDDEN if (r, c) in small else n for c, n in row.items()}
         for r, row in cells.items()},
        sum(map(sum, (row.values() for row in cells.values()))),
        {r: sum(row.values()) for r, row in cells.items()},
        {c: sum(cells[r][c] for r in cells) for c in range(1, 5)}))
    truth, _ = entries_and_lines(cells)

    def joining_cell(shown_):
        """(row 1 + row 2) - (column 1 + column 2), less the visible cells that remain."""
        plus = [("row", 1), ("row", 2), ("cell", 3, 1), ("cell", 3, 2), ("cell", 4, 1),
                ("cell", 4, 2)]
        minus = [("column", 1), ("column", 2), ("cell", 1, 4), ("cell", 2, 3), ("cell", 2, 4)]
        if any(shown_[e] == HIDDEN for e in plus + minus):
            return None
        return sum(shown_[e] for e in plus) - sum(shown_[e] for e in minus)

    assert joining_cell(line_by_line) == truth["cell", 1, 3]  # the attack works line by line
    table = suppress(cells)
    assert joining_cell(published(table)) is None
    assert_safe(cells, table)


def test_disclosure_one_row_or_one_column_hides_the_matching_totals():
    for cells in ({"a": {1: 3, 2: 10, 3: 12}}, {"a": {1: 3}, "b": {1: 7}, "c": {1: 9}}):
        assert_safe(cells, suppress(cells))


def test_disclosure_leaves_its_input_alone():
    cells = {"a": {"x": 2, "y": 6}, "b": {"x": 7, "y": 40}}
    before = {r: dict(row) for r, row in cells.items()}
    suppress(cells)
    assert cells == before


def test_disclosure_random_tables_never_leak():
    """Property-style, fixed seed: distributions and cross tables of every small shape, counts
    skewed towards the small ones a quiet kiosk has."""
    rng = random.Random(20261201)
    counts = [0, 0, 1, 2, 3, 4, 5, 6, 7, 9, 12, 20, 45]
    for _ in range(150):
        cells = {k: rng.choice(counts) for k in range(rng.randint(1, 6))}
        assert_safe(cells, suppress(cells))
    for _ in range(150):
        rows, columns = rng.randint(1, 5), rng.randint(1, 5)
        cells = {r: {c: rng.choice(counts) for c in range(columns)} for r in range(rows)}
        assert_safe(cells, suppress(cells))


# --- derived values -------------------------------------------------------------------------


def mean(cells):
    rated = sum(cells.values())
    return sum(r * n for r, n in cells.items()) / rated


def test_disclosure_derived_value_needs_a_published_count():
    cells = {1: 0, 2: 1, 3: 1, 4: 1, 5: 1}
    table = suppress(cells)
    assert derived(mean(cells), table.cells.values(), table.total) is None


def test_disclosure_derived_value_shown_when_only_zeros_are_hidden():
    cells = {1: 0, 2: 0, 3: 6, 4: 10, 5: 20}
    table = suppress(cells)
    assert table.cells[1] == table.cells[2] == HIDDEN
    assert derived(mean(cells), table.cells.values(), table.total) == mean(cells)


def test_disclosure_derived_value_withheld_when_it_would_solve_hidden_counts():
    """Hidden ratings 1 (3 visits) and 2 (4 visits): their sum is published (total - visible)
    and a mean would add the sum of their ratings, which together give each one."""
    cells = {1: 3, 2: 4, 3: 20, 4: 50, 5: 100}
    table = suppress(cells)
    hidden_visits = table.total - sum(v for v in table.cells.values() if v != HIDDEN)
    hidden_points = round(mean(cells) * table.total) - sum(
        r * v for r, v in table.cells.items() if v != HIDDEN)
    assert hidden_points - hidden_visits == cells[2]  # what a published mean would leak
    assert derived(mean(cells), table.cells.values(), table.total) is None


def test_disclosure_derived_value_of_one_row_of_a_cross_table():
    table = suppress(SERVICE_BY_RATING)
    birth = SERVICE_BY_RATING["birth"]
    assert derived(mean(birth), table.cells["birth"].values(),
                   table.row_totals["birth"]) == mean(birth)
    assert derived(1.0, table.cells["id_card"].values(), table.row_totals["id_card"]) is None
