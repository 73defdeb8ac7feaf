"""The statistics page's charts, drawn by the server as SVG images: the 1-5 distribution of
the node's ratings and its trends by week (visits, CSAT, copy-request rate).

SVG from the server rather than a chart library: the charts show without JavaScript, under
the console's strict CSP (presentation attributes, no inline style), and the suppression is
applied here, where the figures are. Each chart is an image of its own URL: a year's trend
reads 53 weekly publications, which the page's HTML must not wait for. A hidden count is
drawn as the mark ``<5`` with no bar, a withheld rate as a gap: neither is ever drawn at a
height.

A week's figures are the core's publication for that week (the range cut at Monday 00:00,
Thailand's time, so the weeks add up to the range). Publishing the weeks beside the range is
publishing a breakdown of the range's total, so :func:`weekly_visits` applies the
complementary rule of :mod:`kiosk.fleet.disclosure` across the weeks: never exactly one hidden
week, or the range's total less the others would give it back.
"""

import datetime as dt
import threading
from dataclasses import dataclass

from flask import Blueprint, Response, abort, request, url_for
from markupsafe import Markup, escape

from kiosk.fleet import disclosure
from kiosk.fleet.console.app import console, t
from kiosk.fleet.console.stats import date_range, node_of
from kiosk.period import BANGKOK

blueprint = Blueprint("charts", __name__)
CHARTS = ("distribution", "visits", "csat", "copy")
_computing = threading.Lock()

WIDTH, HEIGHT = 290, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 34


@dataclass(frozen=True)
class Week:
    first: dt.date
    last: dt.date  # included

    @property
    def start(self):
        return dt.datetime.combine(self.first, dt.time(), BANGKOK)

    @property
    def end(self):
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), BANGKOK)


def weeks(first, last):
    """The weeks (Monday to Sunday) of ``[first, last]``, the first and last cut to it."""
    found, day = [], first
    while day <= last:
        sunday = day + dt.timedelta(days=6 - day.weekday())
        found.append(Week(day, min(sunday, last)))
        day = sunday + dt.timedelta(days=1)
    return found


def weekly_visits(counts):
    """The weeks' published visits (an int, ``"<5"``, or None: no visit, which is a count
    under 5 as well) as the chart may show them: a week with no visit is ``"<5"``, and one
    more week is hidden, the smallest, wherever exactly one was: the range's published total
    less the others would otherwise give the hidden one back."""
    counts = [disclosure.mark() if c is None else c for c in counts]
    hidden = [i for i, c in enumerate(counts) if isinstance(c, str)]
    shown = [i for i, c in enumerate(counts) if not isinstance(c, str)]
    if len(hidden) == 1 and shown:
        counts[min(shown, key=lambda i: counts[i])] = disclosure.mark()
    return counts


def _svg(title, body, width=WIDTH, height=HEIGHT):
    return Markup(
        f'<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f"<title>{escape(title)}</title>{body}</svg>")


def _axis(top_value, text_of):
    """The y axis (0 and ``top_value``) and the baseline."""
    base = HEIGHT - BOTTOM
    return (f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" '
            f'stroke="#8a939c"/>'
            f'<text x="{LEFT - 6}" y="{base + 4}" text-anchor="end" font-size="11" '
            f'fill="#56606b">0</text>'
            f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="11" '
            f'fill="#56606b">{escape(text_of(top_value))}</text>'
            f'<line x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}" stroke="#e1e5e9"/>')


def _height(value, top):
    return (HEIGHT - BOTTOM - TOP) * value / top if top else 0


def bars(title, labels, values):
    """A bar per label; a hidden count (a str) is its mark at the baseline, no bar."""
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    top = max(numbers, default=0) or 1
    step = (WIDTH - LEFT - RIGHT) / len(labels)
    base = HEIGHT - BOTTOM
    parts = [_axis(top, str)]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = LEFT + i * step + step * 0.15
        middle = LEFT + i * step + step / 2
        if isinstance(value, int):
            h = _height(value, top)
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" '
                         f'width="{step * 0.7:.1f}" height="{h:.1f}" fill="#1f5f8b" '
                         f'data-value="{value}"/>'
                         f'<text x="{middle:.1f}" y="{base - h - 3:.1f}" text-anchor="middle" '
                         f'font-size="11" fill="#1b2733">{value}</text>')
        elif value is not None:
            parts.append(f'<text class="hidden-count" x="{middle:.1f}" y="{base - 4}" '
                         f'text-anchor="middle" font-size="11" fill="#8a939c">'
                         f'{escape(value)}</text>')
        parts.append(f'<text x="{middle:.1f}" y="{base + 15}" text-anchor="middle" '
                     f'font-size="11" fill="#1b2733">{escape(label)}</text>')
    return _svg(title, "".join(parts))


def line(title, labels, values, *, share=False):
    """A line through the weeks' values; a hidden or withheld value breaks it (a hidden count
    shows its mark at the baseline, never a point at a height)."""
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    top = 1.0 if share else (max(numbers, default=0) or 1)
    text_of = (lambda v: f"{v:.0%}") if share else str
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    base = HEIGHT - BOTTOM
    parts, segment = [_axis(top, text_of)], []

    def flush():
        if len(segment) > 1:
            parts.append(f'<polyline fill="none" stroke="#1f5f8b" stroke-width="2" '
                         f'points="{" ".join(segment)}"/>')
        segment.clear()

    every = max(1, len(labels) // 6)  # at most about six dates under the axis
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = LEFT + i * step + step / 2
        if isinstance(value, int | float) and not isinstance(value, bool):
            y = base - _height(value, top)
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                         f'fill="#1f5f8b" data-value="{value}"><title>{escape(label)}: '
                         f'{escape(text_of(value))}</title></circle>')
        else:
            flush()
            if isinstance(value, str):
                parts.append(f'<text class="hidden-count" x="{x:.1f}" y="{base - 4}" '
                             f'text-anchor="middle" font-size="10" fill="#8a939c">'
                             f'{escape(value)}</text>')
        if i % every == 0:
            parts.append(f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle" '
                         f'font-size="10" fill="#1b2733">{escape(label)}</text>')
    flush()
    return _svg(title, "".join(parts))


def _draw(compute, level, key, first, last, name):
    """The chart ``name`` of :data:`CHARTS` for the node ``key`` at ``level``;
    ``compute(level, start, end)`` is the core's (cached) publication."""
    if name == "distribution":
        start = dt.datetime.combine(first, dt.time(), BANGKOK)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), BANGKOK)
        ratings = compute(level, start, end).tables["ratings"].rows.get(key, {})
        return bars(name, [str(r) for r in range(1, 6)],
                    [ratings.get(f"rating_{r}") for r in range(1, 6)])
    found = weeks(first, last)
    rows = [compute(level, week.start, week.end).tables for week in found]
    labels = [f"{week.first:%d/%m}" for week in found]
    if name == "visits":
        return line(name, labels, weekly_visits(
            tables["visits"].rows.get(key, {}).get("visits") for tables in rows))
    table, measure = ("ratings", "csat") if name == "csat" else ("copy", "copy_request_rate")
    return line(name, labels, [tables[table].rows.get(key, {}).get(measure) for tables in rows],
                share=True)


@blueprint.get("/stats/chart/<name>.svg")
def chart_svg(name):
    """One chart of the statistics page's node and range, as an image: the page's HTML never
    waits for the weeks' publications, and the charts still need no script."""
    if name not in CHARTS:
        abort(404)
    first, last, _start, _end = date_range(request.args)
    node = node_of(request.args)
    with _computing:  # the page's charts come together: the first computes, the rest reuse
        svg = _draw(console().statistics, node.level, node.key, first, last, name)
    return Response(str(svg), mimetype="image/svg+xml")


def urls(args):
    """``[(title, url)]`` of the page's charts, for the same node and range."""
    return [(t(f"chart.{name}"), url_for("charts.chart_svg", name=name, **args.to_dict()))
            for name in CHARTS]
