import pygame
import pytest

from kiosk import flow
from kiosk.facts import KeyPressed, QuitRequested
from kiosk.flow import Screen, State


def finger(display, pos, touch_id=3):
    w, h = display.settings.width, display.settings.height
    pygame.event.post(pygame.event.Event(pygame.FINGERDOWN, touch_id=touch_id, finger_id=0,
                                         x=pos[0] / w, y=pos[1] / h, dx=0.0, dy=0.0,
                                         pressure=1.0))


def click(pos, *, touch=False, button=1):
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=pos, button=button,
                                         touch=touch))


@pytest.mark.parametrize("screen", [Screen.IDLE, Screen.CARD_PROBLEM, Screen.ALREADY_RATED,
                                    Screen.CHOOSE_SERVICE, Screen.COPY_CHECK, Screen.RATING,
                                    Screen.REASON, Screen.THANK_YOU])
@pytest.mark.parametrize("tap", ["finger", "mouse"])
def test_input_taps_on_each_button_give_its_flow_event(make_display, screen, tap):
    display, _ = make_display()
    display.show(State(screen=screen, problem="timeout", language="en"))
    expected = [b.action for b in display.scene.buttons]
    assert expected
    got = []
    for button in display.scene.buttons:
        if tap == "finger":
            finger(display, button.rect.center)
        else:
            click(button.rect.center)
        got.extend(display.poll_events())
    assert got == expected


def test_input_one_touch_is_one_event_though_sdl_reports_it_twice(make_display):
    display, _ = make_display()
    display.show(State(screen=Screen.RATING))
    face = next(b for b in display.scene.buttons if b.action == flow.RatingChosen(4))
    finger(display, face.rect.center)
    click(face.rect.center, touch=True)  # SDL's synthetic mouse click for the same finger
    assert display.poll_events() == [flow.RatingChosen(4)]


def test_input_fingers_synthesised_from_the_mouse_are_dropped(make_display):
    display, _ = make_display()
    display.show(State(screen=Screen.RATING))
    face = next(b for b in display.scene.buttons if b.action == flow.RatingChosen(2))
    click(face.rect.center)
    finger(display, face.rect.center, touch_id=-1)
    assert display.poll_events() == [flow.RatingChosen(2)]


def test_input_taps_between_buttons_and_other_mouse_buttons_do_nothing(make_display):
    display, _ = make_display()
    display.show(State(screen=Screen.RATING))
    face = display.scene.buttons[-1]
    click((face.rect.left - 2, face.rect.bottom + 2))
    click(face.rect.center, button=3)
    assert display.poll_events() == []


def test_input_no_key_or_close_quits_outside_debug(make_display):
    display, _ = make_display(debug=False, is_demo=False)
    display.show(State())
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0,
                                         unicode="\x1b", scancode=41))
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert display.poll_events() == []


def test_input_demo_passes_keys_and_debug_may_quit(make_display):
    demo, _ = make_display(is_demo=True)
    demo.show(State())
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_i, mod=0, unicode="i",
                                         scancode=12))
    assert demo.poll_events() == [KeyPressed("i")]
    demo.close()
    debug, _ = make_display(debug=True)
    debug.show(State())
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert debug.poll_events() == [QuitRequested()]


def test_input_more_services_turns_the_page_inside_the_display(make_display, display_settings):
    from kiosk.display.settings import ServiceInfo

    services = tuple(ServiceInfo(f"s{i}", f"บริการ {i}", f"Service {i}")
                     for i in range(12))
    display, _ = make_display(services=services)
    state = State(screen=Screen.CHOOSE_SERVICE)
    display.show(state)
    first = [b.action for b in display.scene.buttons]
    more = next(b for b in display.scene.buttons if "(1/" in b.label)
    click(more.rect.center)
    assert display.poll_events() == []
    display.show(state)
    assert [b.action for b in display.scene.buttons] != first
