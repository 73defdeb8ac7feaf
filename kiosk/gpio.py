"""The kiosk's physical parts on GPIO: status light, buzzer, choice, Back and language buttons,
PIR.

Why a module of its own: gpiozero is an I/O library, so it lives here and nowhere else, and its
callbacks run on gpiozero's threads, so they only *enqueue* facts for the main thread.

API for the runner (``kiosk.runner``)::

    panel = Panel.from_config(cfg.gpio, put=events.put)   # GpioError on a bad pin/factory
    panel.apply(effect)         # SetStatusLight, or Beep when a buzzer is wired -> True
    panel.set_status_light(light)  # a kiosk.flow.StatusLight
    panel.beep(kind)            # a kiosk.flow.BeepKind
    panel.cpu_temperature()     # float °C, or None where the sensor does not exist
    panel.close()

Facts it puts on the queue (from gpiozero threads, nothing else):

- :class:`kiosk.facts.ButtonPressed` ``(n)`` when choice button ``n`` (1–5, the config's
  ``rating_buttons``) is pressed. Not a flow event: the same button is a face on the rating
  screen, a service or an answer elsewhere, OK on an information screen, so the runner resolves
  it against the screen shown (``Display.choose``);
- ``kiosk.flow.Back()`` when the Back button is pressed, ``kiosk.flow.LanguageToggled()`` when
  the language button is: they mean the same on every screen;
- :class:`kiosk.facts.MotionSeen` when the PIR sensor sees someone. It is *not* a flow event:
  the runner passes it to the display to wake a blanked screen and does not step the flow with
  it.

Every pin is optional; a kiosk with none configured gets a panel that does nothing. The pin
factory is chosen explicitly (``gpio.pin_factory``, ``GPIOZERO_PIN_FACTORY``, else lgpio on a Pi
and mock elsewhere, logged) and passed to every device, so gpiozero never guesses and never warns
``PinFactoryFallback``.
"""

import importlib
import logging
import os
from pathlib import Path

from gpiozero import LED, Button, Buzzer, CPUTemperature, MotionSensor
from gpiozero.pins.mock import MockFactory

from kiosk.errors import GpioError
from kiosk.facts import ButtonPressed, MotionSeen
from kiosk.flow import Back, Beep, BeepKind, LanguageToggled, SetStatusLight, StatusLight

log = logging.getLogger(__name__)

# Name -> (module, class). Names are gpiozero's own, so GPIOZERO_PIN_FACTORY values work as-is.
PIN_FACTORIES = {
    "mock": ("gpiozero.pins.mock", "MockFactory"),
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
}

LIGHTS = tuple(StatusLight)

# (on seconds, off seconds, count): short enough not to startle, distinct enough to tell apart
# without looking; an error is the only pattern with three notes.
BEEPS = {
    BeepKind.TAP: (0.04, 0.0, 1),
    BeepKind.CARD: (0.12, 0.0, 1),
    BeepKind.REMINDER: (0.08, 0.12, 2),
    BeepKind.ERROR: (0.15, 0.1, 3),
}

CPU_SENSOR = "/sys/class/thermal/thermal_zone0/temp"


def is_raspberry_pi(model_file="/proc/device-tree/model"):
    """True on a Raspberry Pi (its device tree names the board)."""
    try:
        return "Raspberry Pi" in Path(model_file).read_text(errors="replace")
    except OSError:
        return False


def make_pin_factory(name, environ=os.environ, *, on_pi=None):
    """The pin factory named by config, else ``GPIOZERO_PIN_FACTORY``, else lgpio on a Pi and
    mock elsewhere, said in the log.

    Choosing here and passing the factory to every device is the point: gpiozero's own guess
    falls back silently (a Pi whose lgpio is missing would run on mock pins and ignore every
    button) and warns ``PinFactoryFallback``, which the test suite turns into errors.
    """
    chosen = (name or environ.get("GPIOZERO_PIN_FACTORY", "")).strip().lower()
    if not chosen:
        chosen = "lgpio" if (is_raspberry_pi() if on_pi is None else on_pi) else "mock"
        where = "a Raspberry Pi" if chosen == "lgpio" else "not a Raspberry Pi: pins are simulated"
        log.warning("gpio.pin_factory is not set: using %r (%s)", chosen, where)
    if chosen not in PIN_FACTORIES:
        raise GpioError(f"gpio.pin_factory: unknown factory {chosen!r}; use one of "
                        + ", ".join(PIN_FACTORIES))
    module_name, class_name = PIN_FACTORIES[chosen]
    try:
        factory_class = getattr(importlib.import_module(module_name), class_name)
        return factory_class()
    except Exception as exc:  # import or hardware errors differ per back-end
        hint = (" (on the image install Debian's python3-lgpio; the venv uses "
                "--system-site-packages)" if chosen == "lgpio" else "")
        raise GpioError(f"gpio.pin_factory: cannot start {chosen!r}: {exc}{hint}") from exc


class Panel:
    """gpiozero devices for one kiosk; callbacks only call ``put``."""

    def __init__(self, factory, put, *, led_ready=None, led_busy=None, led_fault=None,
                 buzzer=None, rating_buttons=(), back_button=None, language_button=None,
                 pir=None, cpu_sensor=CPU_SENSOR):
        self._put = put
        self._factory = factory
        self._cpu_sensor = cpu_sensor
        self._cpu = None
        self._devices = []
        try:
            self.lights = {
                light: self._add(LED(pin, pin_factory=factory))
                for light, pin in zip(LIGHTS, (led_ready, led_busy, led_fault), strict=True)
                if pin is not None
            }
            self.buzzer = (self._add(Buzzer(buzzer, pin_factory=factory))
                           if buzzer is not None else None)
            self.rating_buttons = [self._button(pin, ButtonPressed(number))
                                   for number, pin in enumerate(rating_buttons, start=1)]
            self.back_button = self._button(back_button, Back())
            self.language_button = self._button(language_button, LanguageToggled())
            self.pir = None
            if pir is not None:
                self.pir = self._add(MotionSensor(pir, pin_factory=factory))
                self.pir.when_motion = self._enqueue(MotionSeen())
        except GpioError:
            self.close()
            raise
        except Exception as exc:  # gpiozero raises PinInvalidPin, PinInUse, OSError, ...
            self.close()
            raise GpioError(f"gpio: cannot set up pins: {exc}") from exc

    @classmethod
    def from_config(cls, gpio, put, *, environ=os.environ):
        """Build from the ``[gpio]`` config section; no factory is needed when no pin is set."""
        pins = dict(
            led_ready=_pin(gpio.led_ready), led_busy=_pin(gpio.led_busy),
            led_fault=_pin(gpio.led_fault), buzzer=_pin(gpio.buzzer),
            rating_buttons=tuple(_pin(p) for p in (gpio.rating_buttons or ())),
            back_button=_pin(gpio.back_button), language_button=_pin(gpio.language_button),
            pir=_pin(gpio.pir),
        )
        if not any(v not in (None, ()) for v in pins.values()):
            return cls(None, put)
        return cls(make_pin_factory(gpio.pin_factory, environ), put, **pins)

    def _add(self, device):
        self._devices.append(device)
        return device

    def _button(self, pin, fact):
        """A push button on ``pin`` that enqueues ``fact`` when pressed; None when not wired."""
        if pin is None:
            return None
        button = self._add(Button(pin, pin_factory=self._factory))
        button.when_pressed = self._enqueue(fact)
        return button

    def _enqueue(self, fact):
        # gpiozero passes the device to one-argument callbacks; a zero-argument one gets nothing.
        return lambda: self._put(fact)

    def apply(self, effect):
        """Carry out a flow effect that belongs to GPIO; False when it did not.

        A beep without a buzzer is not done here (False), so the runner lets the display
        sound it instead: a kiosk without a buzzer must still remind about a forgotten card.
        """
        if isinstance(effect, SetStatusLight):
            self.set_status_light(effect.light)
            return True
        if isinstance(effect, Beep) and self.buzzer is not None:
            self.beep(effect.kind)
            return True
        return False

    def set_status_light(self, light):
        """Light exactly one of ready/busy/fault (those that are wired)."""
        if light not in LIGHTS:
            raise ValueError(f"status light {light!r} is not one of {', '.join(LIGHTS)}")
        for name, led in self.lights.items():
            led.value = name == light

    @property
    def status_light(self):
        """The lit light's name, or None when none is lit or none is wired."""
        return next((name for name, led in self.lights.items() if led.is_lit), None)

    def beep(self, kind):
        """Sound the buzzer pattern for ``kind`` without blocking the main loop."""
        if kind not in BEEPS:
            raise ValueError(f"beep kind {kind!r} is not one of {', '.join(BEEPS)}")
        if self.buzzer is None:
            return
        on_time, off_time, count = BEEPS[kind]
        self.buzzer.blink(on_time=on_time, off_time=off_time, n=count, background=True)

    def cpu_temperature(self):
        """CPU temperature in °C for health reports; None off the Pi or when unreadable."""
        if not Path(self._cpu_sensor).exists():
            return None
        try:
            if self._cpu is None:
                # Its own mock factory: the sensor is a file, not a pin, and must not need one.
                self._cpu = self._add(CPUTemperature(
                    self._cpu_sensor, pin_factory=self._factory or MockFactory()))
            return round(self._cpu.temperature, 1)
        except (OSError, ValueError) as exc:
            log.warning("cannot read CPU temperature from %s: %s", self._cpu_sensor, exc)
            return None

    def close(self):
        """Release every pin (safe to call twice)."""
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()


def _pin(value):
    """Config uses "" or None for an unwired pin; gpiozero wants None."""
    return None if value in (None, "", -1) else value


def show_fault_light(gpio):
    """Light the fault LED a raw, unvalidated ``[gpio]`` table names, if any; best effort (the
    pins may be wrong). First boot's refusal and the out-of-order screen use it."""
    pin = gpio.get("led_fault")
    if not isinstance(pin, int) or isinstance(pin, bool):
        return None
    try:
        factory = make_pin_factory(gpio.get("pin_factory") or "")
        panel = Panel(factory, lambda fact: None, led_fault=pin)
        panel.set_status_light(StatusLight.FAULT)
        return panel
    except GpioError as exc:
        log.warning("cannot light the fault LED: %s", exc)
        return None
