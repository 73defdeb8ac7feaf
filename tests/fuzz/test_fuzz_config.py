"""Fuzzing the config loader: any text an agency (or a broken SD card) puts in kiosk.toml, and
any remote layer on disk, gives a Config the wire accepts or a ConfigError listing problems,
none of which quotes a 13-digit number (an ID typed into the wrong cell)."""

import datetime
import logging
from dataclasses import fields

import tomli_w
from hypothesis import event, given
from hypothesis import strategies as st

from kiosk import config as kiosk_config
from kiosk.errors import ConfigError
from kiosk.telemetry import topics
from tests.fixtures.config import example_raw
from tests.fuzz.budget import budget
from tests.fuzz.mutations import assert_no_id, id_bearing_texts, id_numbers, logged_lines

EXAMPLE = example_raw()
KEYS = {name: sorted(f.name for f in fields(cls)) for name, cls in kiosk_config.SECTIONS.items()}
KEYS["services"] = sorted(f.name for f in fields(kiosk_config.Service))


def toml_scalars():
    """Values TOML can hold, biased to what the schema's checks meet at their edges."""
    return st.one_of(
        st.booleans(), st.integers(), st.integers(-1, 100_000), st.floats(),
        st.text(max_size=20), id_numbers(), id_bearing_texts(),
        st.datetimes(timezones=st.none() | st.just(datetime.UTC)), st.dates(), st.times(),
        st.sampled_from(["", " ", "demo", "production", "pcsc", "mock", "Asia/Bangkok",
                         "Mars/Olympus", "08:00", "24:00", "25:61", "/var/lib/kiosk/state",
                         "relative/path", "/a/../b", "https://www.info.go.th/",
                         "https://evil.example/", "localhost", "mqtt.example.go.th", "ไทย",
                         "bkk-bangrak-01", "other", "collector", 0, 5, 27, 28, 3600, 86400, 7,
                         60.0, -1.0]))


def toml_values():
    return st.recursive(toml_scalars(), lambda inner: st.lists(inner, max_size=5) |
                        st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@st.composite
def layers(draw, base=EXAMPLE):
    """``base`` (a parsed TOML layer) with a few keys of the schema set to drawn values,
    dropped, or added where they do not belong."""
    raw = {name: dict(value) if isinstance(value, dict) else
           [dict(t) for t in value] if isinstance(value, list) else value
           for name, value in base.items()}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(sorted(KEYS)) | st.text(max_size=8))
        keys = KEYS.get(section, [])
        key = draw(st.sampled_from(keys) if keys and draw(st.integers(0, 5)) else
                   st.text(max_size=10) | id_bearing_texts())
        action = draw(st.sampled_from(["set", "set", "set", "drop", "table"]))
        if section == "services":
            tables = raw.setdefault("services", [])
            if not tables or action == "table":
                tables.append({})
            table = tables[draw(st.integers(0, len(tables) - 1))]
        elif action == "table":
            raw[section] = draw(toml_values())
            continue
        else:
            if not isinstance(raw.get(section), dict):
                raw[section] = {}
            table = raw[section]
        if action == "drop":
            table.pop(key, None)
        else:
            table[key] = draw(toml_values())
    return raw


@st.composite
def toml_texts(draw):
    """A kiosk.toml: the documented example with keys changed, written out; sometimes with a
    few characters spoiled, or no TOML at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    text = tomli_w.dumps(draw(layers()))
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 4)) == 0 else 0):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=3) | st.sampled_from(['"', "[", "=", "\n"]))\
            + text[at + draw(st.integers(0, 3)):]
    return text


def sections(cfg):
    """What a config says, whatever file it was read from."""
    return cfg.services, *(getattr(cfg, name) for name in kiosk_config.SECTIONS)


@budget(100)
@given(text=toml_texts())
def test_fuzz_config_parse_gives_a_config_the_wire_accepts_or_a_config_error(text):
    """``kiosk.config.parse`` (``kiosk config check``): the packaged defaults, then the text."""
    try:
        cfg = kiosk_config.parse(text, "kiosk.toml")
    except ConfigError as exc:
        event("refused")
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
        assert_no_id(exc, *exc.problems)
        return
    event("accepted")
    # The schema promises a config it accepts is never refused on the wire later.
    topics.service_point_payload(cfg)
    # `kiosk config show` writes what parse reads back the same.
    assert sections(kiosk_config.parse(kiosk_config.dumps(cfg, mask_secrets=False))) == \
        sections(cfg)


@st.composite
def remote_layers(draw):
    """The remote layer's text on disk: what commands write (a version, services, flow,
    portal.url), changed, or spoiled."""
    base = {"version": 3, "flow": {"timeout_rating_s": 45.0},
            "portal": {"url": "https://info.go.th/citizen"}}
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=100))
    layer = draw(layers(base))
    if draw(st.booleans()):
        layer["version"] = draw(toml_scalars())
    return tomli_w.dumps(layer)


@budget(60)
@given(text=remote_layers())
def test_fuzz_config_load_skips_a_bad_remote_layer_and_never_writes(tmp_path, caplog, text):
    """``kiosk.config.load`` with a remote layer on disk (``kiosk.config.apply_remote``): the
    kiosk starts on its own file when the layer does not validate, logs why without an ID, and
    leaves the layer as it was (ops resend; nothing is half-rewritten)."""
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="kiosk")
    local = tmp_path / "kiosk.toml"
    local.write_text(tomli_w.dumps(example_raw(storage={"data_dir": str(tmp_path)})))
    remote = tmp_path / kiosk_config.REMOTE_FILENAME
    remote.write_text(text, encoding="utf-8")
    own = kiosk_config.load(local, remote_path=tmp_path / "absent.toml")
    cfg = kiosk_config.load(local)
    assert remote.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([local.name, remote.name])
    assert_no_id(*logged_lines(caplog))
    if cfg.remote_version is None:
        event("layer skipped")
        assert sections(cfg) == sections(own)
        return
    event("layer applied")
    assert cfg.remote_version >= 1 and type(cfg.remote_version) is int
    assert (cfg.kiosk, cfg.storage, cfg.mqtt) == (own.kiosk, own.storage, own.mqtt)


@budget(60)
@given(data=layers({"version": 3, "flow": {"timeout_rating_s": 45.0}}) | toml_values())
def test_fuzz_config_apply_remote_gives_a_config_or_a_config_error(data):
    """``kiosk.config.apply_remote`` on any decoded value, as commands hand it a layer."""
    cfg = OWN
    try:
        new = kiosk_config.apply_remote(cfg, data)
    except ConfigError as exc:
        assert_no_id(exc, *exc.problems)
        return
    assert new.remote_version == data["version"]
    assert (new.kiosk, new.storage, new.mqtt, new.card) == (cfg.kiosk, cfg.storage, cfg.mqtt,
                                                           cfg.card)


OWN = kiosk_config.parse(tomli_w.dumps(EXAMPLE), "kiosk.toml")
