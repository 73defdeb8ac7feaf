"""This machine's clocks: wall time, whether NTP set it, monotonic seconds. Standard library only.

Outside ``telemetry`` on purpose: the runner reads the wall clock (:func:`system_wall`) to put
each visit in its period whether or not the kiosk reports anywhere; status and health messages
carry the time stamp (:func:`stamp`) the telemetry contract (:mod:`kiosk.telemetry.topics`)
defines. A visit never carries a stamp (:mod:`kiosk.period`). A kiosk process reads the wall
clock only through one :class:`WallClock`, so a test or soak run can step it (``kiosk run
--clock-file``) without libfaketime, which breaks ``time.sleep`` when monotonic time stays real.
"""

import datetime as dt
import logging
import math
import threading
import time
from pathlib import Path

# systemd-timesyncd creates this file once the clock has been set from NTP; a Pi has no RTC, so
# until then wall-clock stamps are flagged as unsynced.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")

log = logging.getLogger(__name__)


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


class WallClock:
    """The kiosk's one wall clock: the system's, shifted by the offset in ``offset_file``.

    Test and soak runs only: the file holds seconds (a float, may be negative) to add to the
    system time. A missing or unreadable file means no offset (said once in the log, never a
    crash); the file is read again only when its mtime, size or inode change, so a read each
    turn costs one ``stat``. Whether the clock counts as synced is the system's, as without it.
    Safe to call from any thread. Without ``offset_file`` it is the system clock.
    """

    def __init__(self, offset_file=None, *, system_now=lambda: dt.datetime.now(dt.UTC),
                 is_synced=TIMESYNC_FLAG.exists, monotonic=time.monotonic):
        self.offset_file = None if offset_file is None else Path(offset_file)
        self._system_now, self._is_synced, self._monotonic = system_now, is_synced, monotonic
        self._lock = threading.Lock()
        self._seen = None  # (mtime_ns, size, inode) of the file last read, or the problem said
        self._offset_s = 0.0

    def offset_s(self):
        """The offset in force: re-read when the file changed, 0.0 when it cannot be read."""
        if self.offset_file is None:
            return 0.0
        with self._lock:
            try:
                info = self.offset_file.stat()
                seen = (info.st_mtime_ns, info.st_size, info.st_ino)
            except OSError as exc:
                seen = ("unreadable", type(exc).__name__)
            if seen != self._seen:
                self._seen = seen
                self._offset_s = self._read()
            return self._offset_s

    def _read(self):
        try:
            offset = float(self.offset_file.read_text(encoding="ascii").strip())
            if not math.isfinite(offset):
                raise ValueError("not a finite number")
        except (OSError, ValueError) as exc:
            log.warning("clock file %s unreadable (%s): no offset", self.offset_file,
                        type(exc).__name__)
            return 0.0
        log.info("clock file %s: wall clock offset %+.3f s", self.offset_file, offset)
        return offset

    def now(self):
        """Aware UTC now, shifted by the offset."""
        return self._system_now() + dt.timedelta(seconds=self.offset_s())

    def wall(self):
        """``(now, synced)``, as :func:`system_wall`."""
        return self.now(), self._is_synced()

    def stamp(self):
        """The time stamp for now, as :func:`system_stamp`."""
        return stamp(self.now(), self._is_synced(), self._monotonic())

    def today(self):
        """The local date now (what a card's expiry is compared with)."""
        return self.now().astimezone().date()
