"""The statistics page's charts: the 1-5 distribution and the weekly trends are the core's
figures, a hidden count is never drawn at a height, and the weeks never leave exactly one
hidden week beside the range's total."""

import datetime as dt
import re
from html import unescape

from kiosk.fleet import registry, statistics
from kiosk.fleet.console import charts
from kiosk.fleet.db import open_database
from tests.fixtures.console import DAY


def chart(made, html, name):
    """The page's chart ``name`` as the browser gets it: the SVG its image's URL serves."""
    url = unescape(re.search(rf'<img src="(/stats/chart/{name}\.svg[^"]*)"', html).group(1))
    response = made.get(url)
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    return response.text


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
    made = browser("vera")
    html = made.get(f"/stats?from={DAY}&to={DAY}").text
    db = open_database(console_store)
    try:
        first = dt.date.fromisoformat(DAY)
        (week,) = charts.weeks(first, first)
        core = statistics.compute(db, registry.Registry(db.database), week.start, week.end)
    finally:
        db.close()
    ratings = core.tables["ratings"].rows[()]
    bars = chart(made, html, "distribution")
    drawn = [int(v) for v in re.findall(r'class="bar"[^>]*data-value="(\d+)"', bars)]
    assert drawn == [ratings[f"rating_{r}"] for r in range(1, 6)
                     if isinstance(ratings[f"rating_{r}"], int)]
    assert bars.count('class="hidden-count"') == sum(
        isinstance(ratings[f"rating_{r}"], str) for r in range(1, 6))
    visits = re.findall(r'class="point"[^>]*data-value="([^"]+)"', chart(made, html, "visits"))
    assert visits == [str(core.tables["visits"].rows[()]["visits"])]
    csat = re.findall(r'class="point"[^>]*data-value="([^"]+)"', chart(made, html, "csat"))
    expected = core.tables["ratings"].rows[()]["csat"]
    assert csat == ([] if expected is None else [str(expected)])


def test_a_chart_of_a_ministry_is_drawn_from_its_own_rows(browser, console_store):
    made = browser("vera")
    html = made.get(f"/stats?from={DAY}&to={DAY}&ministry=กระทรวงมหาดไทย").text
    db = open_database(console_store)
    try:
        first = dt.date.fromisoformat(DAY)
        (week,) = charts.weeks(first, first)
        core = statistics.compute(db, registry.Registry(db.database), week.start, week.end,
                                  "ministry")
    finally:
        db.close()
    row = core.tables["ratings"].rows[("กระทรวงมหาดไทย",)]
    bars = chart(made, html, "distribution")
    assert [int(v) for v in re.findall(r'class="bar"[^>]*data-value="(\d+)"', bars)] == [
        row[f"rating_{r}"] for r in range(1, 6) if isinstance(row[f"rating_{r}"], int)]
    assert bars.count('class="hidden-count"') == sum(
        isinstance(row[f"rating_{r}"], str) for r in range(1, 6)) > 0
    assert made.get("/stats/chart/nothing.svg").status_code == 404
