import pygame
import pytest

from kiosk import flow
from kiosk.display.window import SETTLE_S
from kiosk.facts import KeyPressed, QuitRequested
from kiosk.flow import Screen, State


def finger(display, pos, touch_id=3, *, kinds=(pygame.FINGERDOWN, pygame.FINGERUP)):
    w, h = display.settings.width, display.settings.height
    for kind in kinds:
        pygame.event.post(pygame.event.Event(kind, touch_id=touch_id, finger_id=0,
                                             x=pos[0] / w, y=pos[1] / h, dx=0.0, dy=0.0,
                                             pressure=1.0))


def click(pos, *, touch=False, button=1, kinds=(pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP)):
    for kind in kinds:
        pygame.event.post(pygame.event.Event(kind, pos=pos, button=button, touch=touch))


def settle(clock):
    clock.advance(SETTLE_S)


@pytest.mark.parametrize("screen", [Screen.IDLE, Screen.CARD_PROBLEM, Screen.ALREADY_RATED,
                                    Screen.CHOOSE_SERVICE, Screen.COPY_CHECK, Screen.RATING,
                                    Screen.REASON, Screen.THANK_YOU])
@pytest.mark.parametrize("tap", ["finger", "mouse"])
def test_input_taps_on_each_button_give_its_flow_event(make_display, screen, tap):
    display, clock = make_display()
    display.show(State(screen=screen, problem="timeout", language="en"))
    settle(clock)
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
    display, clock = make_display()
    display.show(State(screen=Screen.RATING))
    settle(clock)
    face = next(b for b in display.scene.buttons if b.action == flow.RatingChosen(4))
    finger(display, face.rect.center)
    click(face.rect.center, touch=True)  # SDL's synthetic mouse click for the same finger
    assert display.poll_events() == [flow.RatingChosen(4)]


def test_input_fingers_synthesised_from_the_mouse_are_dropped(make_display):
    display, clock = make_display()
    display.show(State(screen=Screen.RATING))
    settle(clock)
    face = next(b for b in display.scene.buttons if b.action == flow.RatingChosen(2))
    click(face.rect.center)
    finger(display, face.rect.center, touch_id=-1)
    assert display.poll_events() == [flow.RatingChosen(2)]


def test_input_taps_between_buttons_and_other_mouse_buttons_do_nothing(make_display):
    display, clock = make_display()
    display.show(State(screen=Screen.RATING))
    settle(clock)
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
    display, clock = make_display(services=services)
    state = State(screen=Screen.CHOOSE_SERVICE)
    display.show(state)
    settle(clock)
    first = [b.action for b in display.scene.buttons]
    more = next(b for b in display.scene.buttons if "(1/" in b.label)
    click(more.rect.center)
    assert display.poll_events() == []
    display.show(state)
    settle(clock)
    assert [b.action for b in display.scene.buttons] != first


def test_input_a_second_tap_just_after_a_new_screen_chooses_nothing(make_display):
    """A double tap or a tremor: the second touch lands on whatever the next screen put under
    the finger (copy check's "No, none" sits over rating face 1)."""
    display, clock = make_display()
    display.show(State(screen=Screen.COPY_CHECK))
    settle(clock)
    no_copy = next(b for b in display.scene.buttons if b.action == flow.CopyAnswered("none"))
    finger(display, no_copy.rect.center)
    assert display.poll_events() == [flow.CopyAnswered("none")]
    display.show(State(screen=Screen.RATING))
    assert display.scene.hit(no_copy.rect.center) is not None, "a face under the finger"
    clock.advance(0.3)
    finger(display, no_copy.rect.center)
    assert display.poll_events() == []
    settle(clock)
    finger(display, no_copy.rect.center)
    assert [type(e) for e in display.poll_events()] == [flow.RatingChosen]


def test_input_a_tap_is_down_and_up_on_the_same_button_of_the_same_screen(make_display):
    display, clock = make_display()
    display.show(State(screen=Screen.RATING))
    settle(clock)
    two, four = (next(b for b in display.scene.buttons if b.action == flow.RatingChosen(n))
                 for n in (2, 4))
    finger(display, two.rect.center, kinds=(pygame.FINGERDOWN,))
    assert display.poll_events() == [], "nothing until the finger comes up"
    finger(display, four.rect.center, kinds=(pygame.FINGERUP,))
    assert display.poll_events() == [], "slid off to another face"
    click(four.rect.center, kinds=(pygame.MOUSEBUTTONUP,))
    assert display.poll_events() == [], "an up without its down"
    finger(display, four.rect.center, kinds=(pygame.FINGERDOWN,))
    assert display.poll_events() == []
    display.show(State(screen=Screen.REASON))
    clock.advance(SETTLE_S)
    finger(display, four.rect.center, kinds=(pygame.FINGERUP,))
    assert display.poll_events() == [], "pressed on the screen before"
