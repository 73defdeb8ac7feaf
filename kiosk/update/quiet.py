"""When an update may stop the kiosk: outside office hours, and with nobody at it.

Office hours are the kiosk's own (``display.office_hours_*``, ``display.office_days``,
``time.timezone``), judged as the screen blanking judges them. The kiosk tells systemd which
screen it shows (``STATUS=``, :mod:`kiosk.watchdog`), so the updater, root, reads it with
``systemctl show`` without asking the kiosk anything.
"""

import datetime as dt
import time

from kiosk.display.blanking import Blanker
from kiosk.update.release import Transient

#: Screens at which stopping the kiosk interrupts nobody ("": the kiosk is not running).
QUIET_SCREENS = ("", "idle", "out_of_service")


def office_hours(cfg):
    """``is_office_hours(aware datetime)`` for the kiosk config ``cfg``."""
    d = cfg.display
    return Blanker(blank_after_min=0, office_hours_start=d.office_hours_start,
                   office_hours_end=d.office_hours_end, office_days=d.office_days,
                   timezone=cfg.time.timezone).is_office_hours


def wait_until_quiet(is_office_hours, screen, *, limit_s, on_wait=lambda why: None,
                     wall=lambda: dt.datetime.now(dt.UTC), sleep=time.sleep,
                     clock=time.monotonic, every_s=30.0):
    """Return once it is outside office hours and ``screen()`` names a quiet screen; say why
    it waits (once per reason); :class:`~kiosk.update.release.Transient` after ``limit_s``
    seconds of waiting (not the release's fault: the request is tried again later)."""
    said, deadline = None, clock() + limit_s
    while True:
        if is_office_hours(wall()):
            why = "office hours"
        else:
            shown = screen()
            if shown in QUIET_SCREENS:
                return
            why = f"a citizen at the kiosk (screen {shown})"
        if why != said:
            on_wait(why)
            said = why
        if clock() >= deadline:
            raise Transient(f"the kiosk was never free within {limit_s:.0f} s ({why}); "
                               "the update is left for later")
        sleep(every_s)
