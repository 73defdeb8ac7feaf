"""When the screen goes dark: after N quiet minutes, and outside office hours.

In office hours the attract screen goes dark once nobody has touched it for
``display.blank_after_min`` minutes (0 = never): it saves the panel, and a touch or the PIR
lights it again (the waking tap never counts as a press). Outside office hours nobody is served,
so it goes dark after one quiet minute, whatever N is; a cleaner's touch lights it for that
minute. Time is an input:
:meth:`Blanker.is_due` takes the monotonic ``now`` and an aware wall-clock datetime, so the
rules are tested with explicit times. Only the idle screen ever blanks; a visit in progress is
never hidden. Where the panel has a sysfs backlight it is switched off (it saves
power and panel life); otherwise the display draws a black frame.
"""

import logging
from pathlib import Path
from zoneinfo import ZoneInfo

from kiosk.flow import Screen

log = logging.getLogger(__name__)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(text):
    """``HH:MM`` as minutes since midnight; ``24:00`` is 1440, the end of the day."""
    hours, minutes = (int(n) for n in str(text).split(":"))
    return hours * 60 + minutes


def _iso_day(day):
    """``mon``…``sun`` (any case, or a full name) or ISO 1–7 → ISO weekday number."""
    if isinstance(day, int):
        return day
    return _DAYS.index(str(day).strip().lower()[:3]) + 1


#: Quiet seconds before the screen goes dark outside office hours.
AFTER_HOURS_QUIET_S = 60.0


class Blanker:
    """Decides whether the screen should be dark; holds only the time of the last activity."""

    def __init__(self, *, blank_after_min, office_hours_start, office_hours_end, office_days,
                 timezone="Asia/Bangkok", now=0.0):
        self.blank_after_s = float(blank_after_min) * 60
        self.start = _minutes(office_hours_start) if office_hours_start else None
        self.end = _minutes(office_hours_end) if office_hours_end else None
        self.days = frozenset(_iso_day(d) for d in office_days) if office_days else None
        self.zone = ZoneInfo(timezone)
        self.last_activity = now

    def note_activity(self, now):
        self.last_activity = now

    def is_office_hours(self, wall):
        """Whether the aware datetime ``wall`` falls in the configured local office hours."""
        local = wall.astimezone(self.zone)
        if self.days is not None and local.isoweekday() not in self.days:
            return False
        if self.start is None or self.end is None or self.start == self.end:
            return True
        t = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # hours that run past midnight

    def is_due(self, screen, now, wall):
        """Whether the screen should be dark now; only the idle screen ever is."""
        if screen is not Screen.IDLE:
            return False
        quiet = now - self.last_activity
        if not self.is_office_hours(wall):
            return quiet >= AFTER_HOURS_QUIET_S
        return self.blank_after_s > 0 and quiet >= self.blank_after_s


class Backlight:
    """The panel's sysfs backlight under ``backlight_dir`` (e.g. /sys/class/backlight).

    Prefers ``bl_power`` (0 = on, 4 = FB_BLANK_POWERDOWN) and falls back to ``brightness``
    (0, then the brightness it had). ``is_present`` is False when there is none or it cannot be
    written, and the display draws black instead.
    """

    def __init__(self, backlight_dir):
        self.path = None
        self.kind = None
        self._brightness = None
        for device in sorted(Path(backlight_dir).glob("*")) if backlight_dir else ():
            for kind in ("bl_power", "brightness"):
                if (device / kind).is_file():
                    self.path, self.kind = device / kind, kind
                    break
            if self.path:
                break

    @property
    def is_present(self):
        return self.path is not None

    def set_on(self, on):
        if not self.path:
            return
        try:
            if self.kind == "bl_power":
                self.path.write_text("0" if on else "4")
            elif on:
                self.path.write_text(self._brightness or self._max_brightness())
            else:
                self._brightness = self.path.read_text().strip() or None
                self.path.write_text("0")
        except OSError as exc:
            log.warning("backlight %s cannot be written (%s); blanking with a black frame "
                        "instead (the kiosk user needs write access, see the udev rule)",
                        self.path, exc)
            self.path = None

    def _max_brightness(self):
        limit = self.path.parent / "max_brightness"
        return limit.read_text().strip() if limit.is_file() else "255"
