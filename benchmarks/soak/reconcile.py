"""The soak's reckoning: what the citizens saw against what the kiosks and the collector hold.

Pure. The inputs are gathered after the run (:mod:`benchmarks.soak.run`):

- ``thanked``: per kiosk, the thank-you screens the script driver saw, each as the window of
  kiosk wall-clock times (epoch seconds) its visit's period must meet;
- ``committed``: per kiosk, the visits in the kiosk's own database (event id, period start,
  period length, outcome);
- ``collected``: the collector's visits, one entry per stored row;
- ``counts``: the collector's ``period`` messages, the visits a kiosk instance counted in a
  period.

A visit carries no time finer than its period and nothing that orders it (privacy), so a
thank-you is matched to a completed visit whose period meets its window; ``uncommitted``
counts thank-yous no committed visit can account for.
"""

import bisect
from collections import Counter
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Committed:
    event_id: str
    period: str | None   # RFC 3339 start; None while the kiosk's clock was never synced
    period_s: int | None
    outcome: str


@dataclass(frozen=True)
class Reckoning:
    thanked: int
    committed: int
    collected: int
    lost: int           # committed at a kiosk, not at the collector
    duplicated: int     # stored twice, or stored without the kiosk having committed it
    uncommitted: int    # a thank-you no committed visit accounts for
    count_gaps: int     # periods whose count message disagrees with the visits stored

    @property
    def clean(self):
        return not (self.lost or self.duplicated or self.uncommitted or self.count_gaps)


#: A thank-you's visit was recorded at most this long before it showed, never after.
VISIT_SPAN_S = 90.0
AHEAD_S = 2.0


def thank_you_window(now, offsets, ahead_s=0.0):
    """The kiosk wall-clock times (epoch seconds) the period of a visit thanked at ``now``
    (this machine's clock) may start in, given the clock ``offsets`` the kiosk may have been
    reading (two near a step) and ``ahead_s``, the furthest its clock was ever stepped ahead:
    a kiosk stepped ahead and back files visits up to that far ahead until its wall clock has
    caught up (``kiosk.period.Book.to_close``)."""
    return (now + min(offsets) - VISIT_SPAN_S, now + max(*offsets, ahead_s) + AHEAD_S)


def epoch(rfc3339):
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def unaccounted_thanks(windows, visits):
    """How many thank-you windows ``(earliest, latest)`` find no completed visit of ``visits``
    whose period ``[start, end)`` meets them, each visit used once (tightest first)."""
    spans = sorted((epoch(v.period) + v.period_s, epoch(v.period)) for v in visits
                   if v.outcome == "completed" and v.period is not None)
    undated = sum(1 for v in visits if v.outcome == "completed" and v.period is None)
    missing = 0
    for earliest, latest in sorted(windows, key=lambda window: window[1]):
        at = bisect.bisect_left(spans, (earliest, float("-inf")))
        while at < len(spans) and spans[at][1] > latest:
            at += 1  # a later period: keep it for a later thank-you
        if at < len(spans):
            del spans[at]
        elif undated:
            undated -= 1
        else:
            missing += 1
    return missing


def reckon(thanked, committed, collected, counts):
    """The soak's :class:`Reckoning` from the four inputs above; ``collected`` holds
    ``(kiosk id, event id, instance, period)`` per stored visit and ``counts`` maps
    ``(kiosk id, instance, period)`` to the visits the kiosk instance counted in it."""
    stored = Counter((kiosk, event_id) for kiosk, event_id, _, _ in collected)
    made = {(kiosk, v.event_id) for kiosk, visits in committed.items() for v in visits}
    lost = len(made - stored.keys())
    duplicated = sum(n - 1 for n in stored.values()) + len(stored.keys() - made)
    uncommitted = sum(unaccounted_thanks(thanked.get(kiosk, ()), committed.get(kiosk, ()))
                      for kiosk in set(thanked) | set(committed))
    per_period = Counter((kiosk, instance, period) for kiosk, _, instance, period in collected)
    # Both ways: a count no stored visits match, and stored visits whose count never came.
    dated = {key for key in per_period if key[2] is not None}
    count_gaps = sum(1 for key in dated | counts.keys()
                     if per_period.get(key, 0) != counts.get(key))
    return Reckoning(
        thanked=sum(len(w) for w in thanked.values()),
        committed=len(made), collected=sum(stored.values()), lost=lost,
        duplicated=duplicated, uncommitted=uncommitted, count_gaps=count_gaps)
