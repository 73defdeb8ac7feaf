import datetime as dt

import pygame

from kiosk.display.blanking import Backlight, Blanker
from kiosk.flow import Screen, State

BKK = dt.timezone(dt.timedelta(hours=7))
TUESDAY_NOON = dt.datetime(2025, 3, 4, 12, 0, tzinfo=BKK)
TUESDAY_NIGHT = dt.datetime(2025, 3, 4, 21, 0, tzinfo=BKK)
SATURDAY_NOON = dt.datetime(2025, 3, 8, 12, 0, tzinfo=BKK)


def blanker(minutes=10):
    return Blanker(blank_after_min=minutes, office_hours_start="08:00",
                   office_hours_end="16:30", office_days=("mon", "tue", "wed", "thu", "fri"),
                   timezone="Asia/Bangkok", now=0.0)


def test_blanking_in_office_hours_after_the_quiet_minutes():
    b = blanker(10)
    assert not b.is_due(Screen.IDLE, 9 * 60, TUESDAY_NOON)
    assert b.is_due(Screen.IDLE, 10 * 60, TUESDAY_NOON)


def test_blanking_outside_office_hours_after_one_quiet_minute():
    b = blanker(10)
    assert not b.is_due(Screen.IDLE, 59, TUESDAY_NIGHT)
    assert b.is_due(Screen.IDLE, 60, TUESDAY_NIGHT)


def test_blanking_on_a_closed_day():
    assert not blanker(10).is_due(Screen.IDLE, 30, SATURDAY_NOON)
    assert blanker(10).is_due(Screen.IDLE, 61, SATURDAY_NOON)


def test_blanking_office_open_until_midnight():
    b = Blanker(blank_after_min=0, office_hours_start="00:00", office_hours_end="24:00",
                office_days=None, now=0.0)
    late = dt.datetime(2025, 3, 4, 23, 59, 30, tzinfo=BKK)
    assert b.is_office_hours(late) and not b.is_due(Screen.IDLE, 3600, late)


def test_blanking_office_hours_are_local_bangkok_time():
    # 02:00 UTC is 09:00 in Bangkok: open, though 02:00 would be closed in UTC.
    utc = dt.datetime(2025, 3, 4, 2, 0, tzinfo=dt.UTC)
    assert blanker().is_office_hours(utc)
    assert not blanker().is_office_hours(dt.datetime(2025, 3, 4, 10, 0, tzinfo=dt.UTC))


def test_blanking_activity_restarts_the_quiet_time():
    b = blanker(10)
    b.note_activity(9 * 60)
    assert not b.is_due(Screen.IDLE, 15 * 60, TUESDAY_NOON)
    assert b.is_due(Screen.IDLE, 19 * 60, TUESDAY_NOON)


def test_blanking_never_hides_a_visit_in_progress():
    assert not blanker(1).is_due(Screen.RATING, 3600, TUESDAY_NIGHT)


def test_blanking_zero_minutes_means_never_in_office_hours_but_still_after_hours():
    assert not blanker(0).is_due(Screen.IDLE, 10 * 3600, TUESDAY_NOON)
    assert blanker(0).is_due(Screen.IDLE, 10 * 3600, TUESDAY_NIGHT)


def test_blanking_backlight_uses_bl_power(tmp_path):
    device = tmp_path / "rpi_backlight"
    device.mkdir()
    (device / "bl_power").write_text("0")
    (device / "brightness").write_text("200")
    light = Backlight(tmp_path)
    light.set_on(False)
    assert (device / "bl_power").read_text() == "4"
    light.set_on(True)
    assert (device / "bl_power").read_text() == "0"


def test_blanking_backlight_falls_back_to_brightness_and_restores_it(tmp_path):
    device = tmp_path / "10-0045"
    device.mkdir()
    (device / "brightness").write_text("180\n")
    light = Backlight(tmp_path)
    light.set_on(False)
    assert (device / "brightness").read_text() == "0"
    light.set_on(True)
    assert (device / "brightness").read_text() == "180"


def test_blanking_without_backlight_draws_black_and_waking_tap_is_not_a_press(make_display):
    display, clock = make_display(blank_after_min=1,
                                  wall=dt.datetime(2025, 3, 4, 14, 0, tzinfo=dt.UTC))
    state = State()
    display.show(state)
    language = next(b for b in display.scene.buttons if b.label == "English")
    clock.advance(61)
    display.show(state)
    assert display.is_blank and display.screen_state() == "off"
    assert display._window.get_at(language.rect.center)[:3] == (0, 0, 0)
    for kind in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP):
        pygame.event.post(pygame.event.Event(kind, pos=language.rect.center, button=1,
                                             touch=False))
    assert display.poll_events() == []
    display.show(state)
    assert not display.is_blank
    assert display._window.get_at(language.rect.center)[:3] != (0, 0, 0)
    for kind in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP):
        pygame.event.post(pygame.event.Event(kind, pos=language.rect.center, button=1,
                                             touch=False))
    assert len(display.poll_events()) == 1


def test_blanking_backlight_is_switched_and_wake_call_lights_it(make_display, tmp_path):
    device = tmp_path / "sys" / "rpi_backlight"
    device.mkdir(parents=True)
    (device / "bl_power").write_text("0")
    display, clock = make_display(blank_after_min=1, backlight_dir=tmp_path / "sys",
                                  wall=dt.datetime(2025, 3, 4, 14, 0, tzinfo=dt.UTC))
    display.show(State())
    clock.advance(120)
    display.show(State())
    assert (device / "bl_power").read_text() == "4"
    display.wake()
    display.show(State())
    assert (device / "bl_power").read_text() == "0" and not display.is_blank
