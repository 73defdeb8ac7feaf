"""The statistics page's charts: the 1-5 distribution and the weekly trends are the core's
figures, a hidden count is never drawn at a height, and the weeks never leave exactly one
hidden week beside the range's total."""

import datetime as dt
import re

from kiosk.fleet import registry, statistics
from kiosk.fleet.console import charts
from kiosk.fleet.db import open_database
from tests.fixtures.console import DAY


def figure(html, index):
    return re.findall(r'<figure class="chart">.*?</figure>', html, re.S)[index]


def test_charts_weeks_run_monday_to_sunday_and_add_up_to_the_range():
    found = charts.weeks(dt.date(2026, 11, 20), dt.date(2026, 12, 10))
    assert [(w.first.isoformat(), w.last.isoformat()) for w in found] == [
        ("2026-11-20", "2026-11-22"), ("2026-11-23", "2026-11-29"),
        ("2026-11-30", "2026-12-06"), ("2026-12-07", "2026-12-10")]
    assert all(a.end == b.start for a, b in zip(found, found[1:], strict=False))


def test_charts_never_leave_exactly_one_hidden_week():
    assert charts.weekly_visits([12, "<5", 30]) == ["<5", "<5", 30]
    assert charts.weekly_visits([None, 12, 9]) == ["<5", 12, "<5"]  # no visit is under 5
    assert charts.weekly_visits([12, 30]) == [12, 30]
    assert charts.weekly_visits(["<5", 12, "<5"]) == ["<5", 12, "<5"]


def test_charts_draw_a_hidden_count_as_its_mark_never_as_a_bar():
    svg = str(charts.bars("t", ["1", "2", "3"], [7, "<5", None]))
    assert re.findall(r'class="bar"[^>]*data-value="(\d+)"', svg) == ["7"]
    assert svg.count('class="hidden-count"') == 1 and "&lt;5" in svg
    drawn = str(charts.line("t", ["a", "b", "c"], ["<5", 10, None]))
    assert re.findall(r'class="point"[^>]*data-value="([^"]+)"', drawn) == ["10"]


def test_statistics_page_charts_are_the_cores_figures(browser, console_store):
    html = browser("vera").get(f"/stats?from={DAY}&to={DAY}").text
    db = open_database(console_store)
    try:
        first = dt.date.fromisoformat(DAY)
        (week,) = charts.weeks(first, first)
        core = statistics.compute(db, registry.Registry(db.database), week.start, week.end)
    finally:
        db.close()
    ratings = core.tables["ratings"].rows[()]
    bars = figure(html, 0)
    drawn = [int(v) for v in re.findall(r'class="bar"[^>]*data-value="(\d+)"', bars)]
    assert drawn == [ratings[f"rating_{r}"] for r in range(1, 6)
                     if isinstance(ratings[f"rating_{r}"], int)]
    assert bars.count('class="hidden-count"') == sum(
        isinstance(ratings[f"rating_{r}"], str) for r in range(1, 6))
    visits = re.findall(r'class="point"[^>]*data-value="([^"]+)"', figure(html, 1))
    assert visits == [str(core.tables["visits"].rows[()]["visits"])]
    csat = re.findall(r'class="point"[^>]*data-value="([^"]+)"', figure(html, 2))
    expected = core.tables["ratings"].rows[()]["csat"]
    assert csat == ([] if expected is None else [str(expected)])
