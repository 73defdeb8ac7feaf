"""This machine's clocks: wall time, whether NTP set it, monotonic seconds. Standard library only.

Outside ``telemetry`` on purpose: the runner reads the wall clock (:func:`system_wall`) to put
each visit in its period whether or not the kiosk reports anywhere; status and health messages
carry the time stamp (:func:`stamp`) the telemetry contract (:mod:`kiosk.telemetry.topics`)
defines. A visit never carries a stamp (:mod:`kiosk.period`).
"""

import datetime as dt
import math
import time
from pathlib import Path

# systemd-timesyncd creates this file once the clock has been set from NTP; a Pi has no RTC, so
# until then wall-clock stamps are flagged as unsynced.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def stamp(wall_utc, clock_synced, mono_s):
    """The time fields every event payload carries: ``at``, ``clock_synced``, ``mono_s``.

    A Pi has no real-time clock, so ``at`` may be 1970 or last shutdown until NTP syncs;
    ``clock_synced`` says whether to trust it and ``mono_s`` (seconds since boot) still orders
    events within one boot.
    """
    if wall_utc.tzinfo is None or wall_utc.utcoffset() != dt.timedelta(0):
        raise ValueError("stamp() needs an aware UTC datetime (datetime.now(timezone.utc))")
    if not isinstance(clock_synced, bool):
        raise ValueError("clock_synced must be True or False")
    mono_s = float(mono_s)
    if not math.isfinite(mono_s) or mono_s < 0:
        raise ValueError("mono_s must be a finite number of seconds >= 0")
    return {
        "at": wall_utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{wall_utc.microsecond // 1000:03d}Z",
        "clock_synced": clock_synced,
        "mono_s": round(mono_s, 3),
    }


def system_stamp():
    """The time stamp for now: RFC 3339 UTC, whether NTP has set the clock, monotonic s."""
    return stamp(dt.datetime.now(dt.UTC), TIMESYNC_FLAG.exists(), time.monotonic())


def system_wall():
    """``(now, synced)``: the aware UTC wall time, and whether NTP has set it. Until it has,
    the time is 1970 or the last shutdown's, and no visit may be dated by it."""
    return dt.datetime.now(dt.UTC), TIMESYNC_FLAG.exists()


def counts_as_synced(synced, mode):
    """Whether a wall clock read with ``synced`` may date visits: in demo mode always, since a
    developer's machine may run no timesyncd and a demo's visits must still reach its
    collector. The runner (periods) and health (days) both ask this."""
    return synced or mode == "demo"
