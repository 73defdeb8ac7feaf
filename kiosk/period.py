"""Periods: the only time a visit has, so a rating cannot be timed back to a citizen.

Standard library only (pure core). The counter's own system logs the citizen ID at each
service; a visit stamped to the second would name its citizen to anyone holding both records.
So a visit carries only the local (Asia/Bangkok) hour or day it falls in, and the kiosk sends a
period's visits only after it has ended (:class:`Book` says which periods are closed; the store
releases their rows with :func:`release_jitter_s` of random delay each, in random order).

A period is ``length_s`` seconds long, a divisor of a day, aligned to local midnight, and
written as the RFC 3339 UTC time it starts: 07:00 local on 1 December is
``2026-12-01T00:00:00Z``. Thailand keeps no daylight saving, so a fixed offset is exact.
"""

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

BANGKOK = dt.timezone(dt.timedelta(hours=7), "Asia/Bangkok")
DAY_S = 86_400
#: ``telemetry.period_s`` when the config is silent: hour-of-day statistics stay exact.
DEFAULT_S = 3600
#: Shortest and longest period in production; a demo (and the tests) may go down to DEMO_MIN_S.
MIN_S, MAX_S, DEMO_MIN_S = 60, DAY_S, 5
#: Longest random delay of a row's release after its period ends: spreads a fleet that would
#: otherwise publish at the top of every hour, and keeps the order of a period's visits unknown.
MAX_JITTER_S = 600
#: A clock behind its closed periods keeps each period open this many times its length, so
#: the wall clock catches up with them (Book.to_close).
BEHIND_STRETCH = 2

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_OFFSET_S = 7 * 3600
#: A period start in its wire form, as strptime("%Y-%m-%dT%H:%M:%SZ") reads it digit for digit.
_START = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")
_HEX_AS_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


def length_problem(length_s, *, demo=False):
    """Why ``length_s`` cannot be a period length (a sentence for the config error), or None."""
    low = DEMO_MIN_S if demo else MIN_S
    if isinstance(length_s, bool) or not isinstance(length_s, int):
        return "must be a whole number of seconds"
    if not low <= length_s <= MAX_S:
        return (f"must be from {low} to {MAX_S} seconds"
                + ("" if demo else f" ({DEMO_MIN_S} is allowed in demo mode only)"))
    if DAY_S % length_s:
        return "must divide a day (86400 s) evenly, e.g. 300, 900, 3600 or 86400"
    return None


def text(moment):
    """RFC 3339 UTC to the second (``2026-12-01T00:00:00Z``): no finer time exists here."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, order=True)
class Period:
    """One period: its start (aware UTC) and its length in seconds."""

    start: dt.datetime
    length_s: int

    @classmethod
    def of(cls, moment, length_s):
        """The period ``moment`` (an aware datetime) falls in, aligned to local midnight."""
        if moment.tzinfo is None:
            raise ValueError("Period.of() needs an aware datetime")
        problem = length_problem(length_s, demo=True)
        if problem:
            raise ValueError(f"period length {length_s!r} {problem}")
        local_s = (moment - _EPOCH) // dt.timedelta(seconds=1) + _OFFSET_S
        start_s = local_s - local_s % length_s - _OFFSET_S
        return cls(_EPOCH + dt.timedelta(seconds=start_s), length_s)

    @classmethod
    def parse(cls, start_text, length_s):
        """The period from its wire form; ValueError unless it is a period's own start."""
        exact = _START.fullmatch(start_text) if isinstance(start_text, str) else None
        if exact:  # strptime's result, read at a fraction of its cost (the collector's hot path)
            start = dt.datetime(*map(int, exact.groups()), tzinfo=dt.UTC)
        else:  # the lenient forms strptime also takes
            start = dt.datetime.strptime(start_text, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC)
        period = cls.of(start, length_s)
        if period.start != start:
            raise ValueError(f"{start_text} does not start a period of {length_s} s")
        return period

    @property
    def end(self):
        return self.start + dt.timedelta(seconds=self.length_s)

    @property
    def text(self):
        return text(self.start)

    def __str__(self):
        return f"{self.text}/{self.length_s}s"


def is_period_start(start_text, length_s):
    """True when ``start_text`` is the wire form of the start of a ``length_s`` period."""
    try:
        Period.parse(start_text, length_s)
    except (TypeError, ValueError):
        return False
    return True


def local_day(moment):
    """The local day ``moment`` falls in: what the collector files an undated visit under."""
    return Period.of(moment, DAY_S)


def release_jitter_s(length_s):
    """The longest random delay of a row after its period ends: a sixth of the period, at most
    :data:`MAX_JITTER_S` (10 minutes for an hour, under a second for a 5-second demo period)."""
    return min(length_s / 6, MAX_JITTER_S)


def count_event_id(instance, period):
    """The event id of the ``period`` message for ``period`` of ``instance``: the same every
    time the period is closed, so a close repeated after a crash queues it once."""
    digest = hashlib.sha256(f"{instance}|{period.text}|{period.length_s}".encode()).hexdigest()
    # Letters only: no run of digits a scan for citizen IDs would flag.
    return "period-" + digest[:24].translate(_HEX_AS_LETTERS)


class Book:
    """Which period a visit goes in and which periods are closed: the runner's, on its thread.

    ``closed_through`` (aware UTC, or None) is persisted by the store: every period starting
    before it is closed for good. A visit made while the wall clock is not synced has no period
    yet: :meth:`hold` keeps its monotonic time, in memory only, and :meth:`date_held` back-dates
    it once the clock is synced. A restart forgets that time, so such a visit goes out with
    ``period: null`` instead (the collector files it under the day it arrived).
    """

    def __init__(self, length_s, closed_through=None):
        self.length_s = length_s
        self.closed_through = closed_through
        self._held = {}  # event_id -> monotonic seconds when recorded
        self._behind_since = None  # monotonic seconds since the clock is behind closed periods

    def period_for(self, wall, synced):
        """The period a visit recorded now goes in: never a closed one, so a clock stepped back
        reopens nothing. None while the clock is not synced."""
        if not synced:
            return None
        if self.closed_through is not None and wall < self.closed_through:
            wall = self.closed_through
        return Period.of(wall, self.length_s)

    def hold(self, event_id, mono):
        """An undated visit (recorded while unsynced) at monotonic time ``mono``."""
        self._held[event_id] = mono

    @property
    def held(self):
        return len(self._held)

    def date_held(self, wall, mono):
        """``{event_id: Period}`` for every held visit, back-dated from the synced ``wall``
        clock by monotonic time; they are no longer held."""
        dated = {event_id: self.period_for(wall - dt.timedelta(seconds=max(0.0, mono - then)),
                                           True)
                 for event_id, then in self._held.items()}
        self._held.clear()
        return dated

    def to_close(self, wall, synced, mono):
        """The start of the current period when the periods before it are due to be closed
        (the clock is synced and has passed ``closed_through``), else None.

        A clock stepped forward (a bad time source) and then corrected is behind the closed
        periods: visits go into the first open period, which the wall clock would not reach
        for as long as the error. So while it is behind, that period is closed after
        :data:`BEHIND_STRETCH` times its length of monotonic time (``mono``) instead, and the
        next one opens: the wall clock catches up with the periods visits are filed in, within
        twice the error (at their length, the periods would stay that far ahead for good).
        """
        if not synced:
            return None
        current = Period.of(wall, self.length_s).start
        if self.closed_through is None or current > self.closed_through:
            self._behind_since = None
            return current
        if current == self.closed_through:
            return None
        if self._behind_since is None:
            self._behind_since = mono
        elif mono - self._behind_since >= self.length_s * BEHIND_STRETCH:
            self._behind_since = mono
            return self.closed_through + dt.timedelta(seconds=self.length_s)
        return None

    def closed(self, through):
        """The store closed every period before ``through``."""
        self.closed_through = through
