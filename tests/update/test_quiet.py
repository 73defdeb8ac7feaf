"""When an update may stop the kiosk (kiosk.update.quiet): outside the kiosk's office hours, and
with nobody at it."""

import datetime as dt

import pytest

from kiosk.errors import ReleaseError
from kiosk.update import quiet

#: A Wednesday: 10:00 and 18:00 in Bangkok.
MORNING = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)
EVENING = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)


class Time:
    """Wall and monotonic clocks that move only when the waiter sleeps."""

    def __init__(self, wall):
        self.wall, self.now, self.slept = wall, 0.0, 0

    def sleep(self, seconds):
        self.wall += dt.timedelta(seconds=seconds)
        self.now += seconds
        self.slept += 1


def test_quiet_office_hours_are_the_kiosks_own(make_config):
    cfg = make_config(display={"office_hours_start": "08:30", "office_hours_end": "16:30",
                               "office_days": ["mon", "tue", "wed", "thu", "fri"]})
    is_office_hours = quiet.office_hours(cfg)
    assert is_office_hours(MORNING) and not is_office_hours(EVENING)
    assert not is_office_hours(MORNING + dt.timedelta(days=3))  # Saturday


def test_quiet_waits_for_closing_time_then_for_the_visit_to_end():
    time = Time(dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC))  # 16:00 in Bangkok
    screens = iter(["rating", "rating", "thank_you", "idle"])
    said = []
    quiet.wait_until_quiet(
        lambda wall: (wall.hour, wall.minute) < (9, 30), lambda: next(screens), limit_s=3600,
        on_wait=said.append, wall=lambda: time.wall, sleep=time.sleep, clock=lambda: time.now,
        every_s=60)
    assert said == ["office hours", "a citizen at the kiosk (screen rating)",
                    "a citizen at the kiosk (screen thank_you)"]
    assert time.wall >= dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)
    assert next(screens, None) is None  # it returned at the idle screen, not before


@pytest.mark.parametrize("screen", ["idle", "out_of_service", ""])
def test_quiet_returns_at_once_when_nobody_is_served(screen):
    time = Time(EVENING)
    quiet.wait_until_quiet(lambda wall: False, lambda: screen, limit_s=0, sleep=time.sleep,
                           wall=lambda: time.wall, clock=lambda: time.now)
    assert time.slept == 0


def test_quiet_gives_up_after_its_limit():
    time = Time(MORNING)
    with pytest.raises(ReleaseError, match="never free within 600 s \\(office hours\\)"):
        quiet.wait_until_quiet(lambda wall: True, lambda: "idle", limit_s=600,
                               wall=lambda: time.wall, sleep=time.sleep,
                               clock=lambda: time.now, every_s=60)
    assert time.slept == 10
