"""GPIO panel on gpiozero's MockFactory: buttons enqueue facts, the light follows the flow."""

import queue
import types

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk.errors import GpioError
from kiosk.facts import MotionSeen
from kiosk.flow import Beep, LanguageToggled, RatingChosen, SetStatusLight, ShowScreen
from kiosk.gpio import Panel, is_raspberry_pi, make_pin_factory

RATING_PINS = (5, 6, 13, 19, 26)


def gpio_section(**overrides):
    """A stand-in for cfg.gpio with the attribute names kiosk.config documents."""
    values = dict(pin_factory="mock", led_ready=17, led_busy=27, led_fault=22, buzzer=18,
                  rating_buttons=list(RATING_PINS), language_button=20, pir=21)
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


def test_gpio_each_rating_button_enqueues_its_rating(panel, events):
    for rating, number in enumerate(RATING_PINS, start=1):
        pin(panel, number).drive_low()  # buttons pull up: pressed reads low
        assert events.get(timeout=5) == RatingChosen(rating)
        pin(panel, number).drive_high()
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
                           buzzer=None, rating_buttons=[], language_button=None, pir=None)
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
