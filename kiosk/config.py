"""The one config schema and its layered loader (standard library only).

Every key's type, default, one-line doc, check and secrecy live in the section dataclasses below:
the loader, ``kiosk config check``/``show``, ``kiosk/defaults.toml`` and
``docs/kiosk.example.toml`` all follow them, so a key cannot be documented in one place and
validated in another. Layers, later wins: the packaged ``defaults.toml``, the agency's file
(``/etc/kiosk/kiosk.toml``), then the remote layer central ops send over MQTT, which telemetry
writes to ``<storage.data_dir>/remote-config.toml`` after :func:`apply_remote` accepted it.

Every problem is reported at once as ``section.key: message`` naming the bad value and the fix;
``services[N]`` counts ``[[services]]`` tables from 1, as a reader of the file would.
"""

import copy
import difflib
import ipaddress
import json
import logging
import os
import re
import sys
import tomllib
import types
import zoneinfo
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime, time
from pathlib import Path
from urllib.parse import urlsplit

from kiosk import period
from kiosk.accounts import is_reserved
from kiosk.errors import ConfigError
from kiosk.visit import OTHER_SERVICE

log = logging.getLogger(__name__)

DEFAULT_PATH = Path("/etc/kiosk/kiosk.toml")
DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
REMOTE_FILENAME = "remote-config.toml"
# Secrets never sit in the config itself, only the paths to them; those are masked too, since
# `kiosk config show` output gets pasted into support tickets.
MASK = "********"

_REQUIRED = object()  # marks a key the agency must set: it has no sane default


def key(default=_REQUIRED, *, doc, check=None, secret=False, example=None):
    """Declare one config key: the dataclass field carries its schema in ``metadata``."""
    return field(
        metadata={
            "default": default,
            "doc": doc,
            "check": check,
            "secret": secret,
            "example": example,
        },
    )


# --- checks: each returns None when the value is fine, else what is wrong and how to fix it ---


def between(low, high):
    def check(value):
        if not low <= value <= high:
            return f"{value!r} is out of range; use a value from {low} to {high}"
        return None

    return check


def one_of(*choices):
    def check(value):
        if value not in choices:
            return f"{value!r} is not allowed; use one of: {', '.join(choices)}"
        return None

    return check


def matches(pattern, rule):
    compiled = re.compile(pattern)

    def check(value):
        if not compiled.fullmatch(value):
            return f"{value!r} is not valid; use {rule}"
        return None

    return check


# What the telemetry contract (kiosk.telemetry.topics) will carry, checked here so a config
# that passes `kiosk config check` can never be refused later on the wire.
MAX_NAME_CHARS = 200
_ID_SHAPED = re.compile(r"\d{13}")


def _id_shaped(value):
    # The value is not repeated: it may be a citizen's ID typed in by mistake, and problems go
    # to the journal and to the boot partition.
    if _ID_SHAPED.search(value):
        return ("holds 13 digits in a row, which every privacy check takes for a citizen ID; "
                "remove or shorten the number")
    return None


def identifier(pattern, rule):
    """An id for topics and reports: ``pattern``, and never shaped like a citizen ID."""
    base = matches(pattern, rule)
    return lambda value: _id_shaped(value) or base(value)


def kiosk_id(value):
    problem = identifier(r"[a-z0-9][a-z0-9-]{2,39}",
                         '3-40 characters of a-z, 0-9 and -, starting with a letter or digit, '
                         'e.g. "bkk-bangrak-01"')(value)
    if problem is None and is_reserved(value):
        problem = f"{value!r} is reserved for the central side's broker account; choose another"
    return problem


def not_empty(value):
    if not value.strip():
        return "is empty; write the text"
    if len(value) > MAX_NAME_CHARS:
        return f"is {len(value)} characters; keep it to {MAX_NAME_CHARS}"
    return _id_shaped(value)


def thai_text(value):
    if _id_shaped(value):
        return _id_shaped(value)
    if not re.search("[\u0e00-\u0e7f]", value):
        return f"{value!r} has no Thai letters; write the name in Thai"
    return not_empty(value)


def absolute_path_or_empty(value):
    if value and not value.startswith("/"):
        return f'{value!r} is a relative path; use an absolute path (starting with /) or ""'
    return None


def absolute_path(value):
    if not value.startswith("/"):
        return f"{value!r} is not an absolute path; use one starting with /"
    return None


def data_folder(value):
    """An absolute path without ``..``: first boot hands this folder to the kiosk user, and
    ``/var/lib/kiosk/state/../..`` would hand it the whole system."""
    if ".." in value.split("/"):
        return f"{value!r} steps up with '..'; write the folder's own absolute path"
    return absolute_path(value)


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _is_host(value):
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(value))


def host_or_empty(value):
    if value and not _is_host(value):
        return (
            f"{value!r} is not a lower-case host name or IP address; "
            'use e.g. "mqtt.example.go.th" or ""'
        )
    return None


def host_list(value):
    bad = [item for item in value if not _is_host(item)]
    if bad:
        return f"{bad[0]!r} is not a lower-case host name or IP address; fix or remove it"
    return None


def non_empty_host_list(value):
    if not value:
        return 'is empty; list at least one host name, e.g. ["www.info.go.th"]'
    return host_list(value)


def clock_time(value):
    match = re.fullmatch(r"(\d\d):(\d\d)", value)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        return f'{value!r} is not a time of day; use 24-hour HH:MM, e.g. "08:00"'
    return None


def closing_time(value):
    """A time of day, or "24:00" for a service point open until midnight."""
    return None if value == "24:00" else clock_time(value)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def weekdays(value):
    bad = [day for day in value if day not in _DAYS]
    if bad:
        return f"{bad[0]!r} is not a day; use {', '.join(_DAYS)}"
    if len(set(value)) != len(value):
        return f"{list(value)!r} names a day twice; list each day once"
    return None


def timezone_name(value):
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f'{value!r} is not a known time zone; use an IANA name such as "Asia/Bangkok"'
    return None


def bcm_pin(value):
    if value is not None and not 0 <= value <= 27:
        return f"{value!r} is not a Raspberry Pi GPIO; use a BCM number from 0 to 27"
    return None


def rating_pins(value):
    if len(value) not in (0, 5):
        return (
            f"{list(value)!r} has {len(value)} pins; list exactly 5 (rating 1 to 5) "
            "or [] for touch only"
        )
    for pin in value:
        problem = bcm_pin(pin)
        if problem:
            return problem
    return None


def portal_url(value):
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return f'{value!r} is not an https URL; use e.g. "https://www.info.go.th/"'
    if parts.username or parts.password:
        return f"{value!r} carries a user name or password; remove it"
    if len(value) > 200:
        return f"is {len(value)} characters; keep it to 200 so the QR code stays easy to scan"
    return None


# --- the schema: one frozen dataclass per section ---


@dataclass(frozen=True)
class KioskSection:
    """Who and where this kiosk is. No defaults: the agency must say."""

    id: str = key(
        doc="Unique kiosk name, also its MQTT user name: 3-40 of a-z 0-9 -",
        check=kiosk_id,
        example="bkk-bangrak-01",
    )
    service_point_id: str = key(
        doc="The service point this kiosk belongs to, as registered with central ops",
        check=identifier(
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
            "1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ),
        example="bkk-1004-01",
    )
    name_th: str = key(
        doc="Service point name in Thai, shown on screen",
        check=thai_text,
        example="สำนักงานเขตบางรัก",
    )
    name_en: str = key(
        doc="Service point name in English, shown on screen",
        check=not_empty,
        example="Bang Rak District Office",
    )
    agency: str = key(
        doc="Agency running the service point, as in reports",
        check=not_empty,
        example="Bangkok Metropolitan Administration",
    )
    ministry: str = key(
        doc="Ministry the agency belongs to, as in reports",
        check=not_empty,
        example="Ministry of Interior",
    )
    province: str = key(
        doc="Province of the service point, as in reports", check=not_empty, example="Bangkok"
    )
    lat: float = key(
        doc="Latitude in degrees, inside Thailand (5.6 to 20.5)",
        check=between(5.6, 20.5),
        example=13.7294,
    )
    lon: float = key(
        doc="Longitude in degrees, inside Thailand (97.3 to 105.7)",
        check=between(97.3, 105.7),
        example=100.5215,
    )
    mode: str = key(
        doc="production, or demo (visits are marked as demo data)",
        check=one_of("production", "demo"),
        example="production",
    )


@dataclass(frozen=True)
class Service:
    """One service a citizen can rate, and whether its no-copy rule is in force yet."""

    id: str = key(
        doc="The service's id in the registry of service points (kiosk-fleet provision "
        "copies it), sent with each visit: 1-64 of A-Z a-z 0-9 _ . : -",
        check=identifier(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}",
                         "1-64 letters, digits or '_.:-', starting with a letter or digit, as "
                         "the registry of service points has it"),
    )
    name_th: str = key(doc="Service name in Thai, shown on its button", check=thai_text)
    name_en: str = key(doc="Service name in English, shown on its button", check=not_empty)
    no_copy: str = key(
        doc="No-copy rule status: cancelled (copies abolished), in_progress, or not_yet",
        check=one_of("cancelled", "in_progress", "not_yet"),
    )


@dataclass(frozen=True)
class FlowSection:
    """Timing and questions of one visit; central ops may change the timing remotely."""

    timeout_reading_s: float = key(
        10.0, doc="Seconds to wait for the card read (3-60)", check=between(3, 60)
    )
    return_card_s: float = key(
        10.0,
        doc="Seconds to wait for the card to be taken after the read before the questions go "
        "on with a reminder (3-60)",
        check=between(3, 60),
    )
    timeout_card_problem_s: float = key(
        15.0, doc="Seconds a card problem stays on screen (3-120)", check=between(3, 120)
    )
    timeout_already_rated_s: float = key(
        15.0, doc="Seconds the already-rated notice stays on screen (3-120)", check=between(3, 120)
    )
    timeout_choose_service_s: float = key(
        30.0,
        doc="Seconds to choose a service before the visit is abandoned (5-300)",
        check=between(5, 300),
    )
    timeout_copy_check_s: float = key(
        30.0, doc="Seconds to answer the photocopy question (5-300)", check=between(5, 300)
    )
    timeout_rating_s: float = key(
        30.0, doc="Seconds to give a rating (5-300)", check=between(5, 300)
    )
    timeout_reason_s: float = key(
        30.0, doc="Seconds to pick a reason for a low rating (5-300)", check=between(5, 300)
    )
    confirm_s: float = key(
        6.0,
        doc="Seconds \"change my answer\" is offered after the last answer before the visit "
        "is sent (3-30)",
        check=between(3, 30),
    )
    thank_you_s: float = key(
        30.0,
        doc="Seconds the thank-you screen and QR code stay up unless Done is tapped (2-60)",
        check=between(2, 60),
    )
    take_card_s: float = key(
        20.0,
        doc="Seconds the take-your-card screen beeps; it stays until the card is taken (5-300)",
        check=between(5, 300),
    )
    reminder_s: float = key(
        5.0, doc="Seconds between take-your-card reminder beeps (1-60)", check=between(1, 60)
    )
    repeat_window_min: int = key(
        30,
        doc="Minutes in which the same card rating the same service again counts as a repeat "
            "(per service: another service is rated; 1-1440; local file only)",
        check=between(1, 1440),
    )
    allow_rating_without_card: bool = key(
        False,
        doc="true lets citizens rate without inserting a card (unverified visits; local file only)",
    )
    ask_reason_at_or_below: int = key(
        2,
        doc="Ask for a reason when the rating is at or below this (0 = never, 0-5)",
        check=between(0, 5),
    )
    collect_age_band: bool = key(
        False, doc="true records the age band read from the card (local file only)"
    )
    collect_gender: bool = key(
        False, doc="true records the gender read from the card (local file only)"
    )


@dataclass(frozen=True)
class StorageSection:
    """Where visits are kept until the collector confirms them."""

    data_dir: str = key(
        "/var/lib/kiosk/state",
        doc="The only folder the kiosk user may write: store, remote layer, prompt cache",
        check=data_folder,
    )
    retention_days: int = key(
        30, doc="Days a confirmed visit is kept on the kiosk (1-3650)", check=between(1, 3650)
    )
    min_free_mb: int = key(
        200,
        doc="Free MB below which the kiosk stops taking visits rather than lose them (10-100000)",
        check=between(10, 100000),
    )
    checkpoint_pages: int = key(
        1000,
        doc="SQLite WAL auto-checkpoint size in pages (100-100000)",
        check=between(100, 100000),
    )


@dataclass(frozen=True)
class CardSection:
    """The Thai ID card reader."""

    backend: str = key(
        "pcsc",
        doc="pcsc (a PC/SC reader), or none (no card reader fitted)",
        check=one_of("pcsc", "none"),
    )
    reader: str = key("", doc='Use the first reader whose name contains this ("" = first reader)')
    read_deadline_s: float = key(
        5.0, doc="Seconds a card read may take before it fails (1-30)", check=between(1, 30)
    )
    settle_s: float = key(
        0.2, doc="Seconds to let a freshly inserted card settle (0-3)", check=between(0, 3)
    )


@dataclass(frozen=True)
class MqttSection:
    """The link to the central collector (MQTT 5)."""

    host: str = key("", doc='Broker host name ("" = telemetry off)', check=host_or_empty)
    port: int = key(8883, doc="Broker port (1-65535)", check=between(1, 65535))
    transport: str = key(
        "tcp",
        doc="tcp, or websockets (where only HTTPS ports are open)",
        check=one_of("tcp", "websockets"),
    )
    tls: bool = key(True, doc="Encrypt the link; only a broker on localhost may go without")
    ca_file: str = key(
        "", doc='CA bundle that signs the broker ("" = system CAs)', check=absolute_path_or_empty
    )
    cert_file: str = key(
        "", doc='Client certificate for TLS client auth ("" = none)', check=absolute_path_or_empty
    )
    key_file: str = key(
        "", doc='Private key of cert_file ("" = none)', check=absolute_path_or_empty, secret=True
    )
    username: str = key(
        "",
        doc='MQTT user name ("" = kiosk.id, which the broker ACL expects)',
        check=matches(r"[^/+#\s]{0,64}", "no spaces, '/', '+' or '#'"),
    )
    password_file: str = key(
        "",
        doc='File holding the MQTT password ("" = no password)',
        check=absolute_path_or_empty,
        secret=True,
    )
    keepalive_s: int = key(60, doc="MQTT keep-alive in seconds (5-1200)", check=between(5, 1200))
    will_delay_s: int = key(
        45,
        doc="Seconds offline before the broker announces us gone (0-3600)",
        check=between(0, 3600),
    )
    reconnect_min_s: float = key(
        1.0, doc="First reconnect delay in seconds (0.1-60)", check=between(0.1, 60)
    )
    reconnect_max_s: float = key(
        120.0, doc="Longest reconnect delay in seconds (1-3600)", check=between(1, 3600)
    )
    renew_before_days: int = key(
        30,
        doc="Days before the client certificate expires that the kiosk asks for a new one (1-365)",
        check=between(1, 365),
    )


@dataclass(frozen=True)
class TelemetrySection:
    """What the kiosk reports and how hard it tries."""

    health_interval_s: int = key(
        60, doc="Seconds between health reports (10-3600)", check=between(10, 3600)
    )
    inflight_window: int = key(
        64,
        doc="Visits published but not yet acknowledged at once (1-500; the broker may lower it)",
        check=between(1, 500),
    )
    resend_after_s: int = key(
        60,
        doc="Seconds before an unacknowledged visit is sent again (5-3600)",
        check=between(5, 3600),
    )
    max_command_bytes: int = key(
        65536, doc="Largest command payload accepted (1024-1048576)", check=between(1024, 1048576)
    )
    period_s: int = key(
        period.DEFAULT_S,
        doc="Seconds in a visit's period, the only time a visit carries: 3600 keeps "
            "hour-of-day statistics, 86400 gives them up (60-86400 and dividing a day; "
            "5 in demo mode only)",
    )  # checked with kiosk.mode: _check_period


@dataclass(frozen=True)
class PortalSection:
    """The citizen portal the thank-you QR code points to."""

    url: str = key(
        "https://www.info.go.th/",
        doc="https URL in the QR code; host must be allowed",
        check=portal_url,
    )
    allowed_hosts: tuple[str, ...] = key(
        ("www.info.go.th", "info.go.th"),
        doc="Hosts the portal URL may use; only this file can change them, never remote config",
        check=non_empty_host_list,
    )


#: Where the card reader's slot is -> the ways its chip may face as the card goes in: a card
#: goes flat into a slot below the screen or in front of it, upright into one at the side.
CARD_SLOTS = {
    "below": ("up", "down"),
    "front": ("up", "down"),
    "left": ("towards", "away"),
    "right": ("towards", "away"),
}


def card_slot_problem(slot, chip):
    """None when the chip can face ``chip`` in a ``slot`` slot, else what to write instead."""
    if slot not in CARD_SLOTS:
        return f"{slot!r} is not allowed; use one of: {', '.join(CARD_SLOTS)}"
    if chip not in CARD_SLOTS[slot]:
        return (f"{chip!r} does not fit card_slot {slot!r}; use "
                f"{' or '.join(CARD_SLOTS[slot])}")
    return None


@dataclass(frozen=True)
class DisplaySection:
    """The touch screen."""

    width: int = key(800, doc="Screen width in pixels (320-3840)", check=between(320, 3840))
    height: int = key(480, doc="Screen height in pixels (240-2160)", check=between(240, 2160))
    fullscreen: bool = key(True, doc="false opens a window (development)")
    diagonal_in: float = key(
        7.0, doc="Screen diagonal in inches, for touch target sizes (3-32)", check=between(3, 32)
    )
    debug: bool = key(False, doc="true draws touch targets and frame times")
    fps: int = key(30, doc="Frames per second (1-60)", check=between(1, 60))
    blank_after_min: int = key(
        10,
        doc="Quiet minutes before the idle screen blanks in office hours (0 = never); "
            "after hours it blanks after one quiet minute",
        check=between(0, 1440),
    )
    office_hours_start: str = key("08:00", doc="Office opens (HH:MM, local time)", check=clock_time)
    office_hours_end: str = key(
        "16:30", doc='Office closes (HH:MM, local time; "24:00" = midnight)', check=closing_time
    )
    office_days: tuple[str, ...] = key(
        ("mon", "tue", "wed", "thu", "fri"),
        doc="Days the office is open: mon tue wed thu fri sat sun",
        check=weekdays,
    )
    backlight_dir: str = key(
        "",
        doc='sysfs backlight directory ("" = blank by drawing black)',
        check=absolute_path_or_empty,
    )
    card_slot: str = key(
        "below",
        doc="Where the card goes, as the idle screen's picture shows it: below (a slot under "
            "the screen), front (a reader in front of it), left or right (a slot at that side)",
        check=one_of(*CARD_SLOTS),
    )
    chip_facing: str = key(
        "",
        doc="Which way the gold chip faces as the card goes in: up or down (card_slot below or "
            'front), towards or away from the citizen (card_slot left or right); "" = the '
            "slot's usual way (up for below and front, towards for left and right)",
        check=lambda value: one_of("up", "down", "towards", "away")(value) if value else None,
    )  # and checked against card_slot: _check_card_slot; "" becomes the slot's usual way


@dataclass(frozen=True)
class AudioSection:
    """Beeps and spoken prompts."""

    enabled: bool = key(True, doc="false keeps the kiosk silent")
    volume: float = key(0.8, doc="Volume from 0.0 to 1.0", check=between(0.0, 1.0))
    prompts_dir: str = key(
        "",
        doc='Recorded prompts as <dir>/<th|en>/<id>.wav or .ogg, ids as in wording.PROMPTS '
        '("" = espeak-ng)',
        check=absolute_path_or_empty,
    )


@dataclass(frozen=True)
class GpioSection:
    """Optional buttons, lights, buzzer and motion sensor (BCM pin numbers; unset = not fitted)."""

    pin_factory: str = key(
        "",
        doc='gpiozero pin factory ("" = GPIOZERO_PIN_FACTORY, or mock off the Pi)',
        check=one_of("", "lgpio", "rpigpio", "pigpio", "native", "mock"),
    )
    led_ready: int | None = key(None, doc="Green ready light pin", check=bcm_pin)
    led_busy: int | None = key(None, doc="Amber busy light pin", check=bcm_pin)
    led_fault: int | None = key(None, doc="Red fault light pin", check=bcm_pin)
    buzzer: int | None = key(None, doc="Buzzer pin", check=bcm_pin)
    rating_buttons: tuple[int, ...] = key(
        (),
        doc="Five choice button pins: rating 1 to 5, and the first five choices of any screen "
        "([] = touch only)",
        check=rating_pins,
    )
    back_button: int | None = key(None, doc="Back button pin (the previous question)",
                                  check=bcm_pin)
    language_button: int | None = key(None, doc="Thai/English button pin", check=bcm_pin)
    pir: int | None = key(None, doc="Motion sensor pin (wakes the screen)", check=bcm_pin)


@dataclass(frozen=True)
class TimeSection:
    """Clock settings; a Pi has no real-time clock."""

    ntp_servers: tuple[str, ...] = key((), doc="NTP servers ([] = the system's)", check=host_list)
    timezone: str = key("Asia/Bangkok", doc="IANA time zone for office hours", check=timezone_name)


@dataclass(frozen=True)
class Config:
    """The effective, validated config. Build it with :func:`load`, :func:`parse` or
    :func:`apply_remote`, never by hand: only they run the checks."""

    kiosk: KioskSection
    services: tuple[Service, ...]
    flow: FlowSection
    storage: StorageSection
    card: CardSection
    mqtt: MqttSection
    telemetry: TelemetrySection
    portal: PortalSection
    display: DisplaySection
    audio: AudioSection
    gpio: GpioSection
    time: TimeSection
    remote_version: int | None = None
    sources: tuple[str, ...] = ()
    # The merged local layers, kept so a new remote state replaces the old one instead of
    # stacking on it.
    _local: dict = field(default_factory=dict, repr=False, compare=False)


SECTIONS = {f.name: f.type for f in fields(Config) if is_dataclass(f.type)}
# The repeat window sets the in-memory key rotation when the kiosk starts, so only the local
# file may change it. What personal data a visit records (age band, gender, visits without a
# card) is the data controller's decision under the PDPA (docs/privacy.md): the agency makes it
# in its own file, central ops cannot widen it remotely. Every other flow key takes effect at
# once when sent remotely.
LOCAL_ONLY_FLOW_KEYS = {"repeat_window_min", "collect_age_band", "collect_gender",
                        "allow_rating_without_card"}
REMOTE_KEYS = {"flow": {f.name for f in fields(FlowSection)} - LOCAL_ONLY_FLOW_KEYS,
               "portal": {"url"}}


# --- reading layers ---


def _read_text(path):
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            ["file not found; create it from docs/kiosk.example.toml or give another path"],
            str(path),
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"], str(path)
        ) from None
    except OSError as exc:
        raise ConfigError(
            [f"cannot read: {exc.strerror}; check the path and its permissions"], str(path)
        ) from None


def _toml(text, source):
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\s*\(at (line \d+, column \d+|end of document)\)$", message)
        if where:
            message = f"{where[1]}: invalid TOML: {message[: where.start()]}"
        else:
            message = f"invalid TOML: {message}"
        raise ConfigError([message + "; fix the syntax there"], source) from None


def _describe(value):
    kinds = [
        (bool, "true/false"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (dict, "a table"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time of day"),
        (type(None), "null"),
    ]
    kind = next((name for cls, name in kinds if isinstance(value, cls)), type(value).__name__)
    shown = json.dumps(value, ensure_ascii=False, default=str)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} ({shown})"


_EXPECTED = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    tuple[str, ...]: "a list of strings",
    tuple[int, ...]: "a list of integers",
    int | None: "an integer",
}


def _coerce(kind, value):
    """Return ``(ok, value)`` with TOML lists as tuples and integers widened to floats."""
    if kind is bool:
        return isinstance(value, bool), value
    if kind in (int, int | None):
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if kind is str:
        return isinstance(value, str), value
    if isinstance(kind, types.GenericAlias):  # tuple[str, ...] or tuple[int, ...]
        item = kind.__args__[0]
        ok = isinstance(value, list) and all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        )
        return ok, tuple(value) if ok else value
    raise TypeError(f"the schema uses an unsupported type {kind!r}")


def _unknown(name, candidates, where, *, elsewhere=None):
    hint = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if hint:
        return f"{where}: unknown; did you mean '{hint[0]}'?"
    if elsewhere:
        return f"{where}: unknown here; did you mean '{elsewhere}'?"
    return f"{where}: unknown; remove it (see docs/kiosk.example.toml for every key)"


def _section_of(name):
    return next((s for s, cls in SECTIONS.items() if name in {f.name for f in fields(cls)}), None)


def _split_layer(raw, *, remote=False):
    """Keep the known parts of one parsed layer; return ``(clean, problems)``."""
    clean, problems = {}, []
    allowed = set(REMOTE_KEYS) | {"services", "version"} if remote else set(SECTIONS) | {"services"}
    for name, value in raw.items():
        if name == "version" and remote:
            continue
        if name not in allowed:
            if remote and (name in SECTIONS):
                problems.append(
                    f"{name}: a remote config may only set version, services, flow (but not "
                    "what is collected) and portal.url; change it in the kiosk's own file"
                )
            else:
                problems.append(
                    _unknown(
                        name,
                        sorted(allowed),
                        name,
                        elsewhere=None if remote else _dotted(_section_of(name), name),
                    )
                )
            continue
        if name == "services":
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                problems.append(f"services: expected [[services]] tables, got {_describe(value)}")
                continue
            names = [f.name for f in fields(Service)]
            clean["services"] = []
            for number, table in enumerate(value, 1):
                for k in table:
                    if k not in names:
                        problems.append(_unknown(k, names, f"services[{number}].{k}"))
                clean["services"].append({k: v for k, v in table.items() if k in names})
            continue
        if not isinstance(value, dict):
            problems.append(f"{name}: expected a [{name}] table, got {_describe(value)}")
            continue
        names = [f.name for f in fields(SECTIONS[name])]
        permitted = REMOTE_KEYS[name] if remote else set(names)
        clean[name] = {}
        for k, v in value.items():
            if k in permitted:
                clean[name][k] = v
            elif k in names:
                problems.append(
                    f"{name}.{k}: a remote config may not set this (only "
                    f"{', '.join(sorted(REMOTE_KEYS[name]))} in [{name}]); "
                    "change it in the kiosk's own file"
                )
            else:
                owner = _section_of(k)
                problems.append(
                    _unknown(
                        k, names, f"{name}.{k}", elsewhere=_dotted(owner, k) if owner else None
                    )
                )
    return clean, problems


def _dotted(section, name):
    return f"{section}.{name}" if section else None


def _merge(base, layer):
    merged = copy.deepcopy(base)
    for name, value in layer.items():
        if name == "services":
            merged["services"] = copy.deepcopy(value)
        else:
            merged.setdefault(name, {}).update(copy.deepcopy(value))
    return merged


# --- building the Config ---


def _section_values(cls, raw, where):
    """Return ``(values, problems)``: every valid value, so cross checks still run on them."""
    values, problems = {}, []
    for f in fields(cls):
        meta = f.metadata
        if f.name not in raw:
            if meta["default"] is _REQUIRED:
                example = (
                    f"e.g. {f.name} = {_toml_value(meta['example'])}"
                    if (meta["example"] is not None)
                    else f"{f.name} = ..."
                )
                problems.append(f"{where}.{f.name}: missing; add {example} \u2014 {meta['doc']}")
            else:
                values[f.name] = meta["default"]
            continue
        ok, value = _coerce(f.type, raw[f.name])
        if not ok:
            problems.append(
                f"{where}.{f.name}: expected {_EXPECTED[f.type]}, got {_describe(raw[f.name])}"
            )
            continue
        problem = meta["check"](value) if meta["check"] else None
        if problem:
            problems.append(f"{where}.{f.name}: {problem}")
            continue
        values[f.name] = value
    return values, problems


def _services_values(raw_list):
    if not raw_list:
        return [], [
            "services: none listed; add at least one [[services]] table with "
            "id, name_th, name_en and no_copy"
        ]
    tables, problems, first_use = [], [], {}
    for number, table in enumerate(raw_list, 1):
        values, found = _section_values(Service, table, f"services[{number}]")
        problems += found
        tables.append(values)
        service_id = values.get("id")
        if service_id == OTHER_SERVICE:
            problems.append(
                f"services[{number}].id: {service_id!r} is kept for the \"other service\" "
                "choice every kiosk offers; give this service another id"
            )
        elif service_id in first_use:
            problems.append(
                f"services[{number}].id: {service_id!r} is already used by "
                f"services[{first_use[service_id]}]; give each service its own id"
            )
        elif service_id is not None:
            first_use[service_id] = number
    return tables, problems


# Cross checks see the valid values of every section (a failed key is simply absent), so one
# mistake does not hide another.


def _check_pins(values):
    gpio = values["gpio"]
    used, problems = {}, []
    named = [
        (f"gpio.{n}", gpio.get(n))
        for n in ("led_ready", "led_busy", "led_fault", "buzzer", "back_button",
                  "language_button", "pir")
    ]
    named += [
        (f"gpio.rating_buttons[{i}]", pin)
        for i, pin in enumerate(gpio.get("rating_buttons", ()), 1)
    ]
    for name, pin in named:
        if pin is None:
            continue
        if pin in used:
            problems.append(
                f"{name}: pin {pin} is also used by {used[pin]}; give each device its own pin"
            )
        used.setdefault(pin, name)
    return problems


def _check_portal(values):
    portal = values["portal"]
    if "url" not in portal or "allowed_hosts" not in portal:
        return []
    host = urlsplit(portal["url"]).hostname
    if host not in portal["allowed_hosts"]:
        return [
            f"portal.url: host {host!r} is not in portal.allowed_hosts "
            f"({', '.join(portal['allowed_hosts'])}); use one of those hosts or add it to "
            "allowed_hosts in the kiosk's own file"
        ]
    return []


def _check_mqtt(values):
    mqtt = values["mqtt"]
    problems = []
    low, high = mqtt.get("reconnect_min_s"), mqtt.get("reconnect_max_s")
    if low is not None and high is not None and low > high:
        problems.append(
            f"mqtt.reconnect_min_s: {low} is above reconnect_max_s ({high}); make it smaller"
        )
    host = mqtt.get("host")
    if host and mqtt.get("tls") is False and host not in ("localhost", "127.0.0.1", "::1"):
        problems.append(
            f"mqtt.tls: false would send visits to {host!r} unencrypted; "
            "set tls = true (only a broker on localhost may go without)"
        )
    if bool(mqtt.get("cert_file", "")) != bool(mqtt.get("key_file", "")):
        problems.append("mqtt.cert_file: cert_file and key_file go together; set both or neither")
    return problems


def _check_office_hours(values):
    start = values["display"].get("office_hours_start")
    end = values["display"].get("office_hours_end")
    if start is None or end is None or start < end:
        return []
    return [
        f"display.office_hours_end: {end!r} is not after office_hours_start ({start!r}); "
        "fix the order"
    ]


def _check_card_slot(values):
    display = values["display"]
    slot, chip = display.get("card_slot"), display.get("chip_facing")
    if slot is None or not chip:
        return []
    problem = card_slot_problem(slot, chip)
    return [f"display.chip_facing: {problem}"] if problem else []


def _check_period(values):
    length = values["telemetry"].get("period_s")
    if length is None:
        return []
    problem = period.length_problem(length, demo=values["kiosk"].get("mode") == "demo")
    if problem is None:
        return []
    return [f"telemetry.period_s: {length!r} {problem}; use 3600 (an hour) or 86400 (a day)"]


_CROSS_CHECKS = (_check_pins, _check_portal, _check_mqtt, _check_office_hours, _check_card_slot,
                 _check_period)


def _build(raw, *, sources, remote_version, local, source):
    values, problems = {}, []
    for name, cls in SECTIONS.items():
        if name == "flow":  # file order: [kiosk], [[services]], then the rest
            services, found = _services_values(raw.get("services"))
            problems += found
        values[name], found = _section_values(cls, raw.get(name, {}), name)
        problems += found
    for check in _CROSS_CHECKS:
        problems += check(values)
    if problems:
        raise ConfigError(problems, source)
    display = values["display"]
    if not display["chip_facing"]:  # not given: the way a card usually goes into that slot
        display["chip_facing"] = CARD_SLOTS[display["card_slot"]][0]
    return Config(
        services=tuple(Service(**s) for s in services),
        remote_version=remote_version,
        sources=tuple(sources),
        _local=local,
        **{name: cls(**values[name]) for name, cls in SECTIONS.items()},
    )


def _defaults_layer():
    clean, problems = _split_layer(_toml(_read_text(DEFAULTS_PATH), str(DEFAULTS_PATH)))
    if problems:
        raise ConfigError(problems, str(DEFAULTS_PATH))
    return clean


def _local(text, source):
    defaults = _defaults_layer()
    layer, problems = _split_layer(_toml(text, source))
    local = _merge(defaults, layer)
    try:
        cfg = _build(
            local,
            sources=(str(DEFAULTS_PATH), source),
            remote_version=None,
            local=local,
            source=source,
        )
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems, source) from None
    if problems:
        raise ConfigError(problems, source)
    return cfg


def parse(text, source="<text>"):
    """Validate ``text`` as one layer over the packaged defaults; raise ``ConfigError``."""
    return _local(text, source)


def apply_remote(cfg, data, *, source=None):
    """Return ``cfg`` with the remote desired state ``data`` in place of any earlier one.

    ``data`` may only hold an integer ``version``, ``services``, the ``flow`` keys in
    :data:`REMOTE_KEYS` and ``portal.url``;
    the portal host must be in the local ``portal.allowed_hosts``, which no remote state can
    change. Comparing versions (stale or replayed states) is the caller's business.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            [f"expected a table of settings, got {_describe(data)}"], source or "remote config"
        )
    source = source or f"remote config version {data.get('version')}"
    problems = []
    version = data.get("version")
    if version is None:
        problems.append("version: missing; a remote config carries an integer version >= 1")
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append(f"version: expected an integer >= 1, got {_describe(version)}")
    layer, found = _split_layer(data, remote=True)
    problems += found
    try:
        result = _build(
            _merge(cfg._local, layer),
            sources=cfg.sources[:2] + (source,),
            remote_version=version,
            local=cfg._local,
            source=source,
        )
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems, source)
    return result


def without_remote(cfg):
    """``cfg`` with no remote layer (``remote_version`` None): the packaged defaults and the
    kiosk's own file only, what :func:`load` returns once the remote layer file is gone."""
    return _build(cfg._local, sources=cfg.sources[:2], remote_version=None, local=cfg._local,
                  source=cfg.sources[1])


def remote_layer_path(cfg):
    """Where telemetry keeps the accepted remote layer, read back by :func:`load`."""
    return Path(cfg.storage.data_dir) / REMOTE_FILENAME


def load(path=None, *, remote_path=None):
    """Load defaults, the kiosk's file, then the remote layer if one was saved.

    A broken file raises ``ConfigError``. A remote layer that no longer validates (say after
    an upgrade) is logged and skipped: the kiosk starts on its own file rather than not at all,
    and reports ``remote_version`` None so central ops resend.
    """
    path = str(path or DEFAULT_PATH)
    cfg = _local(_read_text(path), path)
    remote_file = str(remote_path or remote_layer_path(cfg))
    try:
        text = _read_text(remote_file)
    except ConfigError as exc:
        if not os.path.exists(remote_file):  # no remote state sent yet: the usual case
            return cfg
        log.warning("ignoring the remote config layer: %s", exc)
        return cfg
    try:
        return apply_remote(cfg, _toml(text, remote_file), source=remote_file)
    except ConfigError as exc:
        log.warning("ignoring the remote config layer: %s", exc)
        return cfg


# --- writing TOML (stdlib has no writer) ---


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _key_lines(obj, with_docs, mask_secrets):
    lines = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if with_docs:
            lines.append(f"# {f.metadata['doc']}")
        if value is None:
            lines.append(f"# {f.name} = (not set)")
            continue
        if mask_secrets and f.metadata["secret"] and value:
            value = MASK
        lines.append(f"{f.name} = {_toml_value(value)}")
    return lines


def dumps(cfg, mask_secrets=True, *, with_docs=False):
    """Render ``cfg`` as TOML; secrets as ``********`` unless ``mask_secrets`` is false."""
    lines = [f"# Effective kiosk config from: {', '.join(cfg.sources)}"]
    if cfg.remote_version is not None:
        lines.append(f"# Remote config version: {cfg.remote_version}")
    for name in SECTIONS:
        if name == "flow":
            for service in cfg.services:
                lines += ["", "[[services]]"] + _key_lines(service, with_docs, mask_secrets)
        section = getattr(cfg, name)
        lines += ["", f"[{name}]"]
        if with_docs and type(section).__doc__:
            lines.append(f"# {type(section).__doc__.splitlines()[0]}")
        lines += _key_lines(section, with_docs, mask_secrets)
    return "\n".join(lines) + "\n"


# --- the `kiosk config` verb ---


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate a config file; exit 1 listing every problem")
    check.add_argument(
        "file", nargs="?", default=str(DEFAULT_PATH), help=f"config file (default {DEFAULT_PATH})"
    )
    show = actions.add_parser("show", help="print the effective config, secrets masked")
    show.add_argument(
        "file", nargs="?", default=str(DEFAULT_PATH), help=f"config file (default {DEFAULT_PATH})"
    )
    show.add_argument(
        "--remote",
        metavar="FILE",
        help="remote layer to apply (default: the one under storage.data_dir)",
    )
    show.add_argument("--docs", action="store_true", help="write each key's doc above it")


def main(args):
    try:
        if args.action == "check":
            _local(_read_text(args.file), args.file)
            print(f"{args.file}: OK")
        else:
            cfg = load(args.file, remote_path=args.remote)
            sys.stdout.write(dumps(cfg, with_docs=args.docs))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}")
        return 1
    return 0
