"""GPIO panel on gpiozero's MockFactory: buttons enqueue facts, the light follows the flow, and
a whole visit can be made with the buttons alone."""

import datetime as dt
import queue
import types

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk import flow
from kiosk.card.repeat import RepeatKeys
from kiosk.display.screens import PageTurned
from kiosk.display.settings import DisplaySettings
from kiosk.display.window import SETTLE_S
from kiosk.errors import GpioError
from kiosk.facts import ButtonPressed, MotionSeen
from kiosk.flow import Back, Beep, LanguageToggled, SetStatusLight, ShowScreen
from kiosk.gpio import Panel, is_raspberry_pi, make_pin_factory
from kiosk.runner import Runner
from kiosk.store import Store

RATING_PINS = (5, 6, 13, 19, 26)
BACK_PIN = 12


def gpio_section(**overrides):
    """A stand-in for cfg.gpio with the attribute names kiosk.config documents."""
    values = dict(pin_factory="mock", led_ready=17, led_busy=27, led_fault=22, buzzer=18,
                  rating_buttons=list(RATING_PINS), back_button=BACK_PIN, language_button=20,
                  pir=21)
    values.update(overrides)
    return types.SimpleNamespace(**values)


@pytest.fixture
def events():
    return queue.Queue()


@pytest.fixture
def panel(events):
    panel = Panel.from_config(gpio_section(), events.put, environ={})
    yield panel
    panel.close()


def pin(panel, number):
    return panel._factory.pin(number)


def test_gpio_each_choice_button_enqueues_its_number_and_back_enqueues_back(panel, events):
    """A choice button says which it was, not what it means: that depends on the screen."""
    for number, pin_number in enumerate(RATING_PINS, start=1):
        pin(panel, pin_number).drive_low()  # buttons pull up: pressed reads low
        assert events.get(timeout=5) == ButtonPressed(number)
        pin(panel, pin_number).drive_high()
    pin(panel, BACK_PIN).drive_low()
    assert events.get(timeout=5) == Back()
    assert events.empty()


def test_gpio_language_button_enqueues_language_toggled(panel, events):
    pin(panel, 20).drive_low()
    assert events.get(timeout=5) == LanguageToggled()


def test_gpio_pir_motion_enqueues_motion_seen(panel, events):
    # The sensor samples on its own thread; an edge needs a first "still" sample to rise from.
    assert panel.pir.wait_for_no_motion(timeout=5)
    pin(panel, 21).drive_high()
    assert events.get(timeout=5) == MotionSeen()


@pytest.mark.parametrize("light, lit_pin", [("ready", 17), ("busy", 27), ("fault", 22)])
def test_gpio_status_light_follows_set_status_light(panel, light, lit_pin):
    panel.set_status_light("fault" if light != "fault" else "ready")
    assert panel.apply(SetStatusLight(light)) is True
    assert panel.status_light == light
    for number in (17, 27, 22):
        assert pin(panel, number).state == (number == lit_pin)


def test_gpio_beep_drives_the_buzzer(panel):
    assert panel.apply(Beep("card")) is True
    buzzer_pin = pin(panel, 18)
    buzzer_pin.assert_states_and_times([(0.0, False), (0.0, True), (0.12, False)])


def test_gpio_other_effects_are_not_handled(panel):
    assert panel.apply(ShowScreen("idle")) is False


def test_gpio_beep_without_a_buzzer_is_left_to_the_display(events):
    panel = Panel.from_config(gpio_section(buzzer=None), events.put, environ={})
    try:
        assert panel.apply(Beep("reminder")) is False
        assert panel.apply(SetStatusLight("busy")) is True
    finally:
        panel.close()


def test_gpio_unknown_light_or_beep_is_refused(panel):
    with pytest.raises(ValueError, match="purple"):
        panel.set_status_light("purple")
    with pytest.raises(ValueError, match="siren"):
        panel.beep("siren")


def test_gpio_no_pins_needs_no_factory(events):
    section = gpio_section(pin_factory="", led_ready=None, led_busy=None, led_fault=None,
                           buzzer=None, rating_buttons=[], back_button=None,
                           language_button=None, pir=None)
    panel = Panel.from_config(section, events.put, environ={})
    panel.set_status_light("busy")
    panel.beep("tap")
    assert panel.status_light is None


def test_gpio_unset_factory_is_mock_off_the_pi_and_says_so(caplog):
    assert isinstance(make_pin_factory("", environ={}, on_pi=False), MockFactory)
    assert "pins are simulated" in caplog.text


def test_gpio_unset_factory_on_a_pi_is_lgpio(caplog):
    try:
        make_pin_factory("", environ={}, on_pi=True)
    except GpioError as exc:  # no lgpio off the Pi: the error must say how to get it
        assert "python3-lgpio" in str(exc)
    assert "using 'lgpio'" in caplog.text


def test_gpio_raspberry_pi_is_detected_from_the_device_tree(tmp_path):
    model = tmp_path / "model"
    model.write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    assert is_raspberry_pi(str(model))
    model.write_text("QEMU Virtual Machine")
    assert not is_raspberry_pi(str(model))
    assert not is_raspberry_pi(str(tmp_path / "missing"))


def test_gpio_factory_from_environment():
    assert isinstance(make_pin_factory("", environ={"GPIOZERO_PIN_FACTORY": "mock"}), MockFactory)


def test_gpio_unknown_factory_names_the_value():
    with pytest.raises(GpioError, match="'wiringpi'"):
        make_pin_factory("wiringpi", environ={})


def test_gpio_pin_conflict_is_a_gpio_error(events):
    with pytest.raises(GpioError, match="cannot set up pins"):
        Panel(MockFactory(), events.put, led_ready=17, buzzer=17)


def test_gpio_cpu_temperature_reads_the_sensor(tmp_path, events):
    sensor = tmp_path / "temp"
    sensor.write_text("48312\n")
    panel = Panel(None, events.put, cpu_sensor=str(sensor))
    assert panel.cpu_temperature() == 48.3
    panel.close()


def test_gpio_cpu_temperature_none_without_sensor(tmp_path, events):
    panel = Panel(None, events.put, cpu_sensor=str(tmp_path / "missing"))
    assert panel.cpu_temperature() is None


# --- a visit with the buttons alone ---------------------------------------------------------


def press(runner, clock, pin_number):
    """Once the screen drawn last has settled, press and release a button (MockPin calls back
    at once), then one turn of the loop: the runner resolves the press against that screen,
    and draws the next."""
    clock.advance(SETTLE_S)
    button = runner.panel._factory.pin(pin_number)
    button.drive_low()
    button.drive_high()
    runner.turn(timeout=0)


@pytest.fixture
def button_kiosk(make_config, make_display, tmp_path):
    """Seven services (more than five: the service screen pages), Back and rating buttons on
    mock pins, a headless screen, and rating without a card allowed so no card is needed."""
    services = [{"id": f"service-{i}", "name_th": f"บริการที่ {i}", "name_en": f"Service {i}",
                 "no_copy": "not_yet"} for i in range(1, 8)]
    cfg = make_config(tmp_path, services=services, flow={"allow_rating_without_card": True},
                      gpio={"pin_factory": "mock", "back_button": BACK_PIN, "pir": None},
                      audio={"enabled": False})
    settings = DisplaySettings.from_config(cfg)
    display, clock = make_display(services=settings.services,
                              choice_buttons=settings.choice_buttons)
    store = Store.open(tmp_path, min_free_mb=10)
    runner = Runner(cfg, store, keys=RepeatKeys(1800), display=display, clock=lambda: 1000.0)
    runner.panel = Panel.from_config(cfg.gpio, put=runner.events.put)
    runner.turn(timeout=0)
    yield runner, clock
    runner.panel.close()
    store.close()


def test_gpio_a_whole_visit_by_buttons_alone_pages_and_goes_back(button_kiosk):
    """Button n is the n-th choice of whatever screen is shown, the main action first: start
    without a card, page to the fifth service, go Back once from the copy question, answer,
    rate low, give a reason, and send and leave whatever the flow shows after."""
    runner, clock = button_kiosk
    pins = runner.cfg.gpio.rating_buttons
    chose_service = went_back = False
    for _ in range(20):
        screen, choices = runner.state.screen, runner.display.scene.choices
        assert len(choices) <= len(pins), f"{screen}: more choices than buttons"
        if screen is flow.Screen.IDLE and chose_service:
            break
        if screen is flow.Screen.CHOOSE_SERVICE:
            assert isinstance(choices[4], PageTurned), "the fifth slot of page one is more"
            press(runner, clock, pins[4])
            assert runner.display.scene.choices[0] == flow.ServiceChosen("service-5")
            press(runner, clock, pins[0])
            chose_service = True
        elif screen is flow.Screen.COPY_CHECK and not went_back:
            before = runner.state
            press(runner, clock, BACK_PIN)
            expected, _ = flow.step(before, flow.Back(), 1000.0, runner.settings)
            assert runner.state.screen is expected.screen
            went_back = True
        else:
            button = {flow.Screen.COPY_CHECK: 2, flow.Screen.RATING: 2}.get(screen, 1)
            press(runner, clock, pins[button - 1])
    else:
        pytest.fail(f"the visit did not end: stuck on {runner.state.screen}")
    (visit,) = runner.store.VisitRow.select()
    assert (visit.service_id, visit.copy_answer, visit.rating, visit.reason, visit.outcome) == (
        "service-5", "id_card", 2, "waiting_time", "completed")
    assert went_back


def test_gpio_a_press_meant_for_a_screen_already_left_chooses_nothing(button_kiosk):
    """Two quick presses of button 1 on idle: the second is not taken as the first service."""
    runner, clock = button_kiosk
    clock.advance(SETTLE_S)
    for _ in range(2):
        runner.panel._factory.pin(runner.cfg.gpio.rating_buttons[0]).drive_low()
        runner.panel._factory.pin(runner.cfg.gpio.rating_buttons[0]).drive_high()
    runner.turn(timeout=0)
    assert runner.state.screen is flow.Screen.CHOOSE_SERVICE
    assert runner.state.visit.service_id is None


def test_gpio_a_press_on_a_dark_screen_only_wakes_it(make_display):
    """As a tap does: the citizen cannot have chosen what was not lit (idle's first choice is
    rating without a card)."""
    display, clock = make_display(blank_after_min=1,
                                  wall=dt.datetime(2025, 3, 4, 14, 0, tzinfo=dt.UTC))
    idle = flow.State()
    display.show(idle)
    clock.advance(61)
    display.show(idle)
    assert display.is_blank
    assert display.choose(1, flow.Screen.IDLE) is None
    display.show(idle)
    assert not display.is_blank
    assert display.choose(1, flow.Screen.IDLE) == flow.StartedWithoutCard()
    assert display.choose(2, flow.Screen.IDLE) is None, "no second choice on idle"


def test_gpio_a_press_just_after_a_new_screen_chooses_nothing(make_display):
    """A bouncing or doubled press must not answer the question that just appeared."""
    display, clock = make_display()
    display.show(flow.State(screen=flow.Screen.RATING))
    clock.advance(0.3)
    assert display.choose(1, flow.Screen.RATING) is None
    clock.advance(SETTLE_S)
    assert isinstance(display.choose(1, flow.Screen.RATING), flow.RatingChosen)


class ListeningDisplay:
    """A stand-in screen that records the beeps it is asked to sound (or say)."""

    def __init__(self):
        self.beeps = []

    def show(self, state):
        pass

    def poll_events(self):
        return []

    def beep(self, kind):
        self.beeps.append(kind)


class BuzzingPanel:
    """A stand-in panel with a buzzer: it takes every beep and light."""

    def __init__(self):
        self.applied = []

    def apply(self, effect):
        self.applied.append(effect)
        return True


def test_gpio_with_a_buzzer_the_card_reminder_is_still_said(make_config, tmp_path):
    """The buzzer beeps; the display is still asked, because the reminder is also spoken."""
    store = Store.open(tmp_path, min_free_mb=10)
    runner = Runner(make_config(tmp_path), store, keys=RepeatKeys(1800),
                    display=ListeningDisplay(), panel=BuzzingPanel(), clock=lambda: 1000.0)
    try:
        runner.state = flow.State(screen=flow.Screen.TAKE_CARD, card_present=True,
                                  deadline=2000.0, next_reminder=1000.0)
        runner.turn(timeout=0)
        assert runner.panel.applied == [Beep(flow.BeepKind.REMINDER)]
        assert runner.display.beeps == [flow.BeepKind.REMINDER]
        for event in (flow.CardRemoved(), flow.CardInserted()):  # no reader: a card problem
            runner.handle(event)
        runner.turn(timeout=0)
        assert Beep(flow.BeepKind.ERROR) in runner.panel.applied
        assert runner.display.beeps == [flow.BeepKind.REMINDER], "other beeps are the buzzer's"
    finally:
        store.close()
