"""The config schema: every check, the all-at-once report, layering, remote state, masking."""

import dataclasses
import logging
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
import tomli_w

from kiosk import config
from kiosk.cli import VERBS, run_verbs
from kiosk.errors import ConfigError

KIOSK = Path(sys.executable).with_name("kiosk")


def problems(make_config, **sections):
    """Return the problems ``make_config`` raises for these overrides (failing if it accepts)."""
    with pytest.raises(ConfigError) as caught:
        make_config(**sections)
    return caught.value.problems


def only_problem(make_config, **sections):
    found = problems(make_config, **sections)
    assert len(found) == 1, found
    return found[0]


# --- kiosk ---


@pytest.mark.parametrize("bad", ["bkk/01", "bkk+01", "bkk#01"])
def test_config_kiosk_id_rejects_mqtt_topic_characters(make_config, bad):
    problem = only_problem(make_config, kiosk={"id": bad})
    assert problem.startswith("kiosk.id: ") and repr(bad) in problem


def test_config_kiosk_id_rejects_too_short(make_config):
    assert only_problem(make_config, kiosk={"id": "k1"}).startswith("kiosk.id: 'k1' is not valid")


@pytest.mark.parametrize("reserved", ["collector", "ops", "collector-1", "collector2"])
def test_config_kiosk_id_refuses_the_central_accounts(make_config, reserved):
    problem = only_problem(make_config, kiosk={"id": reserved})
    assert problem.startswith("kiosk.id: ") and "reserved" in problem


def test_config_kiosk_keys_are_required(make_config):
    problem = only_problem(make_config, kiosk={"province": None})
    assert problem.startswith("kiosk.province: missing; add e.g. province = ")


def test_config_kiosk_lat_outside_thailand_is_rejected(make_config):
    problem = only_problem(make_config, kiosk={"lat": 1.3521})  # Singapore
    assert problem.startswith("kiosk.lat: 1.3521 is out of range") and "5.6 to 20.5" in problem


def test_config_kiosk_lon_outside_thailand_is_rejected(make_config):
    problem = only_problem(make_config, kiosk={"lon": 106.7})  # Ho Chi Minh City
    assert problem.startswith("kiosk.lon: 106.7 is out of range") and "97.3 to 105.7" in problem


def test_config_kiosk_mode_must_be_known(make_config):
    problem = only_problem(make_config, kiosk={"mode": "test"})
    assert problem == "kiosk.mode: 'test' is not allowed; use one of: production, demo"


def test_config_kiosk_name_th_needs_thai_letters(make_config):
    problem = only_problem(make_config, kiosk={"name_th": "Bang Rak"})
    assert problem.startswith("kiosk.name_th: 'Bang Rak' has no Thai letters")


# --- services ---

SERVICE = {"id": "id-card", "name_th": "ทำบัตร", "name_en": "ID card", "no_copy": "cancelled"}


def test_config_services_need_at_least_one(make_config):
    assert only_problem(make_config, services=[]).startswith("services: none listed")


def test_config_services_duplicate_id_is_rejected(make_config):
    problem = only_problem(make_config, services=[SERVICE, dict(SERVICE, name_en="Other")])
    assert problem.startswith("services[2].id: 'id-card' is already used by services[1]")


def test_config_services_may_not_take_the_other_service_choice_id(make_config):
    problem = only_problem(make_config, services=[SERVICE, dict(SERVICE, id="other")])
    assert problem.startswith("services[2].id: 'other' is kept for the \"other service\" choice")


def test_config_services_no_copy_must_be_known(make_config):
    problem = only_problem(make_config, services=[dict(SERVICE, no_copy="done")])
    assert problem.startswith("services[1].no_copy: 'done' is not allowed")
    assert "cancelled, in_progress, not_yet" in problem


def test_config_services_become_service_tuples(make_config):
    cfg = make_config(services=[SERVICE])
    assert cfg.services == (config.Service(**SERVICE),)


@pytest.mark.parametrize("bad", ["_id-card", "-id-card"])
def test_config_service_id_starts_with_a_letter_or_digit(make_config, bad):
    problem = only_problem(make_config, services=[dict(SERVICE, id=bad)])
    assert problem.startswith("services[1].id: ") and "starting with a letter or digit" in problem


@pytest.mark.parametrize("section, key", [("kiosk", "id"), ("kiosk", "service_point_id"),
                                          ("kiosk", "name_en"), ("kiosk", "agency")])
def test_config_nothing_may_look_like_a_citizen_id(make_config, section, key):
    """Whatever the wire would refuse, the config refuses first."""
    problem = only_problem(make_config, **{section: {key: "k1234567890123"}})
    assert problem.startswith(f"{section}.{key}: ") and "citizen ID" in problem


@pytest.mark.parametrize("section, key", [("kiosk", "id"), ("kiosk", "name_th")])
def test_config_problem_never_repeats_an_id_shaped_value(make_config, section, key):
    problem = only_problem(make_config, **{section: {key: "1101700230708/"}})
    assert "1101700230708" not in problem and "citizen ID" in problem


def test_config_names_fit_the_telemetry_contract(make_config):
    problem = only_problem(make_config, services=[dict(SERVICE, name_en="x" * 201)])
    assert problem == "services[1].name_en: is 201 characters; keep it to 200"


# --- flow, storage, card, telemetry ---


def test_config_flow_value_out_of_range_names_value_and_range(make_config):
    problem = only_problem(make_config, flow={"thank_you_s": 0})
    assert problem == "flow.thank_you_s: 0.0 is out of range; use a value from 2 to 60"


def test_config_flow_card_return_and_confirm_windows_are_checked(make_config):
    assert only_problem(make_config, flow={"return_card_s": 1}) == (
        "flow.return_card_s: 1.0 is out of range; use a value from 3 to 60")
    assert only_problem(make_config, flow={"confirm_s": 60}) == (
        "flow.confirm_s: 60.0 is out of range; use a value from 3 to 30")
    assert only_problem(make_config, flow={"confirm_s": "soon"}) == (
        'flow.confirm_s: expected a number, got a string ("soon")')


def test_config_flow_integer_is_accepted_for_a_number(make_config):
    cfg = make_config(flow={"timeout_rating_s": 45})
    assert cfg.flow.timeout_rating_s == 45.0 and isinstance(cfg.flow.timeout_rating_s, float)


def test_config_wrong_type_says_expected_and_got(make_config):
    problem = only_problem(make_config, display={"width": "800"})
    assert problem == 'display.width: expected an integer, got a string ("800")'


def test_config_boolean_is_not_an_integer(make_config):
    problem = only_problem(make_config, flow={"ask_reason_at_or_below": True})
    assert problem == "flow.ask_reason_at_or_below: expected an integer, got true/false (true)"


def test_config_storage_data_dir_must_be_absolute(make_config):
    problem = only_problem(make_config, storage={"data_dir": "var/kiosk"})
    assert problem.startswith("storage.data_dir: 'var/kiosk' is not an absolute path")


@pytest.mark.parametrize("bad", ["/var/lib/kiosk/../../..", "/var/lib/kiosk/state/..",
                                 "/../var/lib/kiosk"])
def test_config_storage_data_dir_refuses_parent_steps(make_config, bad):
    """First boot gives data_dir to the kiosk user: a `..` could make that the root folder."""
    problem = only_problem(make_config, storage={"data_dir": bad})
    assert problem.startswith(f"storage.data_dir: {bad!r} ") and "'..'" in problem


def test_config_card_backend_must_be_known(make_config):
    assert only_problem(make_config, card={"backend": "usb"}).startswith("card.backend: 'usb'")


def test_config_telemetry_inflight_window_has_a_range(make_config):
    problem = only_problem(make_config, telemetry={"inflight_window": 0})
    assert problem == "telemetry.inflight_window: 0 is out of range; use a value from 1 to 500"


def test_config_telemetry_period_is_an_hour_unless_set(make_config):
    assert make_config().telemetry.period_s == 3600
    assert make_config(telemetry={"period_s": 86400}).telemetry.period_s == 86400


@pytest.mark.parametrize("bad, says", [
    (700, "must divide a day (86400 s) evenly"),
    (30, "must be from 60 to 86400 seconds (5 is allowed in demo mode only)"),
    (172800, "must be from 60 to 86400 seconds")])
def test_config_telemetry_period_must_divide_a_day_within_range(make_config, bad, says):
    problem = only_problem(make_config, telemetry={"period_s": bad})
    assert problem.startswith(f"telemetry.period_s: {bad} {says}"), problem


def test_config_telemetry_period_of_seconds_is_for_demo_mode_only(make_config):
    problem = only_problem(make_config, telemetry={"period_s": 5})
    assert problem == ("telemetry.period_s: 5 must be from 60 to 86400 seconds (5 is allowed in "
                       "demo mode only); use 3600 (an hour) or 86400 (a day)")
    demo = make_config(kiosk={"mode": "demo"}, telemetry={"period_s": 5})
    assert demo.telemetry.period_s == 5
    assert only_problem(make_config, kiosk={"mode": "demo"}, telemetry={"period_s": 4}) == (
        "telemetry.period_s: 4 must be from 5 to 86400 seconds; use 3600 (an hour) or 86400 "
        "(a day)")
    assert only_problem(make_config, kiosk={"mode": "demo"}, telemetry={"period_s": 7}) \
        .startswith("telemetry.period_s: 7 must divide a day")


def test_config_apply_remote_may_not_change_the_period(make_config):
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), {"version": 1, "telemetry": {"period_s": 60}})
    assert caught.value.problems[0].startswith("telemetry: a remote config may only set")


# --- mqtt ---


def test_config_mqtt_tls_off_is_refused_for_a_remote_broker(make_config):
    problem = only_problem(make_config, mqtt={"host": "mqtt.example.go.th", "tls": False})
    assert problem.startswith("mqtt.tls: false would send visits to 'mqtt.example.go.th'")


def test_config_mqtt_tls_off_is_allowed_on_localhost(make_config):
    assert make_config(mqtt={"host": "127.0.0.1", "tls": False, "port": 1883}).mqtt.tls is False


def test_config_mqtt_reconnect_min_must_not_exceed_max(make_config):
    problem = only_problem(make_config, mqtt={"reconnect_min_s": 30, "reconnect_max_s": 10})
    assert problem.startswith("mqtt.reconnect_min_s: 30.0 is above reconnect_max_s (10.0)")


def test_config_mqtt_cert_needs_its_key(make_config):
    problem = only_problem(make_config, mqtt={"cert_file": "/etc/kiosk/kiosk.crt"})
    assert problem.startswith("mqtt.cert_file: cert_file and key_file go together")


def test_config_mqtt_host_must_be_a_host_name(make_config):
    problem = only_problem(make_config, mqtt={"host": "mqtt://broker"})
    assert problem.startswith("mqtt.host: 'mqtt://broker' is not a lower-case host name")


def test_config_mqtt_username_rejects_topic_characters(make_config):
    assert only_problem(make_config, mqtt={"username": "a/b"}).startswith("mqtt.username: 'a/b'")



def test_config_mqtt_renewal_is_asked_thirty_days_ahead_unless_set(make_config):
    assert make_config().mqtt.renew_before_days == 30
    assert make_config(mqtt={"renew_before_days": 60}).mqtt.renew_before_days == 60


@pytest.mark.parametrize("bad", [0, 366])
def test_config_mqtt_renew_before_days_has_a_range(make_config, bad):
    problem = only_problem(make_config, mqtt={"renew_before_days": bad})
    assert problem.startswith(f"mqtt.renew_before_days: {bad} is out of range; use a value from "
                              "1 to 365")


# --- portal ---


def test_config_portal_url_must_be_https(make_config):
    problem = only_problem(make_config, portal={"url": "http://www.info.go.th/"})
    assert problem.startswith("portal.url: 'http://www.info.go.th/' is not an https URL")


def test_config_portal_host_must_be_allowed(make_config):
    problem = only_problem(make_config, portal={"url": "https://evil.example/"})
    assert problem.startswith("portal.url: host 'evil.example' is not in portal.allowed_hosts")


def test_config_portal_host_may_be_added_locally(make_config):
    cfg = make_config(portal={"url": "https://bangrak.go.th/q", "allowed_hosts": ["bangrak.go.th"]})
    assert cfg.portal.url == "https://bangrak.go.th/q"


# --- display, time ---


def test_config_office_hours_must_be_hh_mm(make_config):
    problem = only_problem(make_config, display={"office_hours_start": "8am"})
    assert problem.startswith("display.office_hours_start: '8am' is not a time of day")


def test_config_office_may_close_at_midnight(make_config):
    cfg = make_config(display={"office_hours_start": "00:00", "office_hours_end": "24:00"})
    assert cfg.display.office_hours_end == "24:00"


def test_config_office_hours_must_end_after_start(make_config):
    problem = only_problem(make_config, display={"office_hours_end": "07:00"})
    assert problem.startswith("display.office_hours_end: '07:00' is not after")


def test_config_card_slot_names_the_choices(make_config):
    problem = only_problem(make_config, display={"card_slot": "top"})
    assert problem == ("display.card_slot: 'top' is not allowed; "
                       "use one of: below, front, left, right")


def test_config_chip_facing_names_the_choices(make_config):
    problem = only_problem(make_config, display={"chip_facing": "sideways"})
    assert problem == ("display.chip_facing: 'sideways' is not allowed; "
                       "use one of: up, down, towards, away")


def test_config_chip_facing_defaults_to_the_slot_s_usual_way(make_config):
    for slot, chip in (("below", "up"), ("front", "up"), ("left", "towards"),
                       ("right", "towards")):
        assert make_config(display={"card_slot": slot}).display.chip_facing == chip


def test_config_chip_facing_must_fit_the_card_slot(make_config):
    problem = only_problem(make_config, display={"card_slot": "left", "chip_facing": "up"})
    assert problem == "display.chip_facing: 'up' does not fit card_slot 'left'; use towards or away"
    cfg = make_config(display={"card_slot": "right", "chip_facing": "away"})
    assert (cfg.display.card_slot, cfg.display.chip_facing) == ("right", "away")


def test_config_office_days_must_be_known_days(make_config):
    problem = only_problem(make_config, display={"office_days": ["mon", "monday"]})
    assert problem.startswith("display.office_days: 'monday' is not a day")


def test_config_timezone_must_be_known(make_config):
    problem = only_problem(make_config, time={"timezone": "Asia/Bankok"})
    assert problem.startswith("time.timezone: 'Asia/Bankok' is not a known time zone")


def test_config_ntp_servers_must_be_host_names(make_config):
    problem = only_problem(make_config, time={"ntp_servers": ["time.navy.mi.th", "ntp server"]})
    assert problem.startswith("time.ntp_servers: 'ntp server' is not")


# --- gpio ---


def test_config_gpio_pin_used_twice_names_both_keys(make_config):
    problem = only_problem(make_config, gpio={"buzzer": 17})  # the example's led_ready
    assert problem.startswith("gpio.buzzer: pin 17 is also used by gpio.led_ready")


def test_config_gpio_rating_button_clash_names_the_button(make_config):
    problem = only_problem(make_config, gpio={"rating_buttons": [5, 6, 13, 19, 4]})  # 4 = pir
    assert problem.startswith("gpio.rating_buttons[5]: pin 4 is also used by gpio.pir")


def test_config_gpio_back_button_clash_names_both_keys(make_config):
    problem = only_problem(make_config, gpio={"back_button": 26})  # the example's fifth button
    assert problem.startswith("gpio.rating_buttons[5]: pin 26 is also used by gpio.back_button")


def test_config_gpio_back_button_is_optional(make_config):
    assert make_config(gpio={"back_button": None}).gpio.back_button is None


def test_config_gpio_rating_buttons_need_exactly_five(make_config):
    problem = only_problem(make_config, gpio={"rating_buttons": [5, 6, 13]})
    assert problem.startswith("gpio.rating_buttons: [5, 6, 13] has 3 pins; list exactly 5")


def test_config_gpio_rating_buttons_may_be_empty(make_config):
    assert make_config(gpio={"rating_buttons": []}).gpio.rating_buttons == ()


def test_config_gpio_pin_must_exist_on_the_pi(make_config):
    assert only_problem(make_config, gpio={"pir": 40}).startswith("gpio.pir: 40 is not")


def test_config_gpio_unset_pin_is_none(make_config):
    assert make_config(gpio={"pir": None}).gpio.pir is None


def test_config_gpio_pin_factory_must_be_known(make_config):
    assert only_problem(make_config, gpio={"pin_factory": "wiringpi"}).startswith(
        "gpio.pin_factory: 'wiringpi' is not allowed"
    )


# --- structure and syntax ---


def test_config_unknown_key_suggests_close_match(make_config):
    assert only_problem(make_config, display={"widht": 800}) == (
        "display.widht: unknown; did you mean 'width'?"
    )


def test_config_unknown_section_suggests_close_match(make_config):
    assert only_problem(make_config, flw={"thank_you_s": 8}) == "flw: unknown; did you mean 'flow'?"


def test_config_key_in_wrong_section_points_to_its_section(make_config):
    assert only_problem(make_config, display={"thank_you_s": 8}) == (
        "display.thank_you_s: unknown here; did you mean 'flow.thank_you_s'?"
    )


def test_config_syntax_error_is_one_line_with_line_and_column():
    with pytest.raises(ConfigError) as caught:
        config.parse('[kiosk]\nid = "bkk-bangrak-01"\nname_en = Bang Rak\n', source="k.toml")
    assert caught.value.source == "k.toml"
    assert caught.value.problems == [
        "line 3, column 11: invalid TOML: Invalid value; fix the syntax there"
    ]


def test_config_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path / "kiosk.toml")
    assert caught.value.source == str(tmp_path / "kiosk.toml")
    assert caught.value.problems[0].startswith("file not found")


def test_config_is_frozen(make_config):
    cfg = make_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.flow.thank_you_s = 1


# --- layering and the remote layer ---


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def example_with(example_config_path, old, new):
    text = example_config_path.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new)


def minimal_file(path, example_config_path, **sections):
    """Write a kiosk file holding only [kiosk], [[services]] and ``sections``."""
    raw = tomllib.loads(example_config_path.read_text(encoding="utf-8"))
    return write(
        path, tomli_w.dumps({"kiosk": raw["kiosk"], "services": raw["services"], **sections})
    )


def test_config_load_layers_defaults_then_file_then_remote(tmp_path, example_config_path):
    path = minimal_file(
        tmp_path / "kiosk.toml",
        example_config_path,
        storage={"data_dir": str(tmp_path)},
        flow={"thank_you_s": 10, "take_card_s": 25},
    )
    assert config.load(path).flow.thank_you_s == 10.0  # file over defaults
    write(tmp_path / config.REMOTE_FILENAME, "version = 4\n[flow]\nthank_you_s = 12\n")
    cfg = config.load(path)
    assert (cfg.flow.thank_you_s, cfg.flow.take_card_s, cfg.flow.reminder_s) == (12.0, 25.0, 5.0)
    assert cfg.remote_version == 4
    assert cfg.sources == (
        str(config.DEFAULTS_PATH),
        str(path),
        str(tmp_path / config.REMOTE_FILENAME),
    )


def test_config_load_reads_the_packaged_defaults_layer(tmp_path, example_config_path, monkeypatch):
    defaults = config.DEFAULTS_PATH.read_text(encoding="utf-8")
    assert "\nreminder_s = 5.0\n" in defaults
    patched = write(
        tmp_path / "defaults.toml", defaults.replace("reminder_s = 5.0", "reminder_s = 7")
    )
    monkeypatch.setattr(config, "DEFAULTS_PATH", patched)
    path = minimal_file(tmp_path / "kiosk.toml", example_config_path)
    assert config.load(path, remote_path=tmp_path / "none.toml").flow.reminder_s == 7.0


def test_config_load_takes_an_explicit_remote_path(tmp_path, example_config_path):
    remote = write(
        tmp_path / "desired.toml", "version = 2\n[portal]\nurl = 'https://info.go.th/'\n"
    )
    cfg = config.load(example_config_path, remote_path=remote)
    assert (cfg.portal.url, cfg.remote_version) == ("https://info.go.th/", 2)


def test_config_load_skips_a_remote_layer_that_no_longer_validates(
    tmp_path, example_config_path, caplog
):
    remote = write(tmp_path / "desired.toml", "version = 3\n[flow]\nthank_you_s = 0\n")
    with caplog.at_level(logging.WARNING, logger="kiosk.config"):
        cfg = config.load(example_config_path, remote_path=remote)
    assert (cfg.flow.thank_you_s, cfg.remote_version) == (30.0, None)
    assert "flow.thank_you_s: 0.0 is out of range" in caplog.text


def test_config_load_skips_an_unreadable_remote_layer(tmp_path, example_config_path, caplog):
    unreadable = tmp_path / "remote-config.toml"
    unreadable.mkdir()
    with caplog.at_level(logging.WARNING, logger="kiosk.config"):
        cfg = config.load(example_config_path, remote_path=unreadable)
    assert cfg.remote_version is None
    assert f"{unreadable}: cannot read" in caplog.text


def test_config_apply_remote_refuses_a_host_not_allowed_locally(make_config):
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(
            make_config(), {"version": 1, "portal": {"url": "https://evil.example/"}}
        )
    assert caught.value.problems == [
        "portal.url: host 'evil.example' is not in portal.allowed_hosts (www.info.go.th, "
        "info.go.th); use one of those hosts or add it to allowed_hosts in the kiosk's own file"
    ]


def test_config_apply_remote_cannot_widen_allowed_hosts(make_config):
    desired = {
        "version": 1,
        "portal": {"url": "https://evil.example/", "allowed_hosts": ["evil.example"]},
    }
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), desired)
    keys = [p.split(":")[0] for p in caught.value.problems]
    assert keys == ["portal.allowed_hosts", "portal.url"]


def test_config_apply_remote_refuses_keys_outside_its_set(make_config):
    desired = {"version": 1, "mqtt": {"host": "attacker.example"}, "flow": {"thank_you_s": 9}}
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), desired)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("mqtt: a remote config may only set version")


def test_config_apply_remote_may_not_change_the_repeat_window(make_config):
    """The key rotation is fixed when the kiosk starts; only the local file sets the window."""
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), {"version": 1, "flow": {"repeat_window_min": 5}})
    assert caught.value.problems[0].startswith("flow.repeat_window_min: a remote config may not")


@pytest.mark.parametrize("scope", ["collect_age_band", "collect_gender",
                                   "allow_rating_without_card"])
def test_config_apply_remote_may_not_widen_what_is_collected(make_config, scope):
    """Under the PDPA what personal data is collected is the data controller's (the agency's)
    decision, made in the kiosk's own file, never by central ops over MQTT."""
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), {"version": 1, "flow": {scope: True}})
    assert caught.value.problems == [
        f"flow.{scope}: a remote config may not set this (only "
        f"{', '.join(sorted(config.REMOTE_KEYS['flow']))} in [flow]); change it in the kiosk's "
        "own file"]
    assert scope not in config.REMOTE_KEYS["flow"]


def test_config_apply_remote_requires_a_version(make_config):
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), {"flow": {"thank_you_s": 9}})
    assert caught.value.problems[0].startswith("version: missing")


def test_config_apply_remote_refuses_a_non_table(make_config):
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), [{"version": 1}])
    assert caught.value.problems[0].startswith("expected a table of settings, got a list")


def test_config_apply_remote_validates_values_by_the_schema(make_config):
    with pytest.raises(ConfigError) as caught:
        config.apply_remote(make_config(), {"version": 2, "flow": {"reminder_s": "5"}})
    assert caught.value.problems == ['flow.reminder_s: expected a number, got a string ("5")']
    assert caught.value.source == "remote config version 2"


def test_config_apply_remote_replaces_services(make_config):
    cfg = config.apply_remote(make_config(), {"version": 5, "services": [SERVICE]})
    assert [s.id for s in cfg.services] == ["id-card"] and cfg.remote_version == 5


def test_config_apply_remote_replaces_the_previous_remote_state(make_config):
    first = config.apply_remote(make_config(), {"version": 1, "flow": {"thank_you_s": 12}})
    second = config.apply_remote(first, {"version": 2, "flow": {"reminder_s": 3}})
    assert (second.flow.thank_you_s, second.flow.reminder_s) == (30.0, 3.0)


# --- showing the config ---


def test_config_dumps_masks_secrets(make_config):
    cfg = make_config(mqtt={"password_file": "/etc/kiosk/mqtt-password"})
    assert 'password_file = "********"' in config.dumps(cfg)
    assert "/etc/kiosk/mqtt-password" not in config.dumps(cfg)
    assert 'password_file = "/etc/kiosk/mqtt-password"' in config.dumps(cfg, mask_secrets=False)


def test_config_dumps_round_trips_through_parse(make_config):
    cfg = make_config(gpio={"pir": None}, mqtt={"password_file": "/etc/kiosk/pw"})
    assert config.parse(config.dumps(cfg, mask_secrets=False), source="make_config") == cfg


def test_config_dumps_writes_an_unset_pin_as_a_comment(make_config):
    assert "\n# pir = (not set)\n" in config.dumps(make_config(gpio={"pir": None}))


def test_config_check_cli_reports_every_problem_at_once(tmp_path, example_config_path):
    text = example_with(example_config_path, 'id = "bkk-bangrak-01"', 'id = "BKK/01"')
    text = text.replace("width = 800", "widht = 800").replace("volume = 0.8", "volume = 8")
    path = write(tmp_path / "kiosk.toml", text)
    result = subprocess.run(
        [str(KIOSK), "config", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert [line.split(": ")[1] for line in lines] == ["display.widht", "kiosk.id", "audio.volume"]
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_config_check_cli_accepts_the_example(example_config_path, capsys):
    assert run_verbs("kiosk", VERBS, ["config", "check", str(example_config_path)]) == 0
    assert capsys.readouterr().out == f"{example_config_path}: OK\n"


def test_config_show_cli_prints_the_effective_config_masked(tmp_path, example_config_path, capsys):
    text = example_with(
        example_config_path, 'password_file = ""', 'password_file = "/etc/kiosk/pw"'
    )
    path = write(tmp_path / "kiosk.toml", text.replace("/var/lib/kiosk", str(tmp_path)))
    assert run_verbs("kiosk", VERBS, ["config", "show", str(path)]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["mqtt"]["password_file"] == config.MASK
    assert shown["flow"]["thank_you_s"] == 30.0


# --- the files that follow the schema ---


def test_config_example_lists_every_schema_key(example_config_path):
    text = example_config_path.read_text(encoding="utf-8")
    schema = [(name, f) for name, cls in config.SECTIONS.items() for f in fields(cls)]
    schema += [("services", f) for f in fields(config.Service)]
    missing = [
        f"{name}.{f.name}"
        for name, f in schema
        if f"# {f.metadata['doc']}\n{f.name} = " not in text
        and f"# {f.metadata['doc']}\n# {f.name} = " not in text
    ]
    assert missing == []


def test_config_example_checks_clean(example_config_path):
    cfg = config.load(example_config_path, remote_path=example_config_path.with_name("none"))
    assert cfg.kiosk.id == "bkk-bangrak-01" and len(cfg.services) == 3


def test_config_defaults_file_matches_schema_defaults():
    packaged = tomllib.loads(config.DEFAULTS_PATH.read_text(encoding="utf-8"))
    schema = {
        name: {
            f.name: f.metadata["default"] for f in fields(cls) if f.metadata["default"] is not None
        }
        for name, cls in config.SECTIONS.items()
        if name != "kiosk"
    }
    as_lists = {
        name: {k: list(v) if isinstance(v, tuple) else v for k, v in keys.items()}
        for name, keys in schema.items()
    }
    assert packaged == as_lists


def test_config_imports_only_the_standard_library():
    blocked = ["pygame", "smartcard", "paho", "gpiozero", "peewee", "tomli_w", "qrcode", "icu"]
    code = f"import sys; sys.modules.update(dict.fromkeys({blocked!r}));import kiosk.config"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr


def test_config_make_config_points_data_dir_at_tmp_path(make_config, tmp_path):
    assert make_config(tmp_path).storage.data_dir == str(tmp_path)
