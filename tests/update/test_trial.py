"""The first run of an updated version (kiosk.update.trial): suspended on the "one moment" screen,
taking no visit, until the loop, the broker and the card monitor prove it healthy at idle."""

import threading
import time
from types import SimpleNamespace

import pytest

from kiosk import flow
from kiosk.card.repeat import RepeatKeys
from kiosk.display import wording
from kiosk.flow import Screen, State
from kiosk.runner import Runner
from kiosk.store import Store
from kiosk.telemetry.mqtt import MqttLink
from kiosk.update import trial
from tests.fixtures.broker import wait_until

VERSION = "9.9.0"


def test_trial_is_pending_only_for_the_version_the_updater_named(tmp_path):
    assert trial.Trial.pending(tmp_path, VERSION) is None  # no trial file: a normal start
    trial.write(tmp_path / trial.TRIAL, {"version": VERSION})
    assert trial.Trial.pending(tmp_path, VERSION).version == VERSION
    assert trial.Trial.pending(tmp_path, "9.8.0") is None  # the old version, rolled back to
    trial.write(tmp_path / trial.HEALTHY, {"version": VERSION})
    assert trial.Trial.pending(tmp_path, VERSION) is None  # proven already: no second trial
    (tmp_path / trial.HEALTHY).unlink()
    (tmp_path / trial.TRIAL).write_text("{not json")
    assert trial.Trial.pending(tmp_path, VERSION) is None


@pytest.mark.parametrize("pinged, connected, card, proven", [
    (True, True, "no_card", True),
    (True, True, "ok", True),
    (True, True, "no_reader", True),  # pcscd answers; the reader may come later
    (False, True, "no_card", False),  # the loop has not told systemd yet
    (True, False, "no_card", False),  # the broker is configured but not connected
    (True, True, "no_service", False),  # pcscd does not answer
    (True, True, "stopped", False),
])
def test_trial_is_proven_by_the_loop_the_broker_and_the_card_monitor_together(
        pinged, connected, card, proven):
    watchdog = SimpleNamespace(is_enabled=True, has_pinged=pinged)
    telemetry = SimpleNamespace(link=SimpleNamespace(is_connected=connected))
    checked = trial.Trial("/nowhere", VERSION).is_proven(
        watchdog=watchdog, telemetry=telemetry, card=SimpleNamespace(reader_state=card))
    assert checked is proven


def test_trial_asks_the_real_link_whether_it_is_connected(make_config, tmp_path):
    """The kiosk's own MqttLink, not a stand-in: asking it must not raise (a call on its
    ``is_connected`` property did, on the first turn of every updated kiosk with a broker)."""
    cfg = make_config(tmp_path)
    link = MqttLink(cfg.mqtt, cfg.kiosk.id, instance="i", next_epoch=lambda: 1, version="0",
                    facts=lambda fact: None, put=lambda fact: None)
    watchdog = SimpleNamespace(is_enabled=True, has_pinged=True)
    assert trial.Trial("/nowhere", VERSION).is_proven(
        watchdog=watchdog, telemetry=SimpleNamespace(link=link),
        card=SimpleNamespace(reader_state="no_card")) is False  # never connected


@pytest.fixture
def on_trial(make_config, tmp_path):
    """A runner of VERSION on trial, no broker configured, its card monitor still down."""
    cfg = make_config(tmp_path, flow={"allow_rating_without_card": True})
    trial.write(tmp_path / trial.TRIAL, {"version": VERSION})
    store = Store.open(tmp_path, min_free_mb=1)
    card = SimpleNamespace(reader_state="no_service")
    runner = Runner(cfg, store, keys=RepeatKeys(1800), card=card,
                    trial=trial.Trial.pending(tmp_path, VERSION))
    stop = threading.Event()
    loop = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    loop.start()
    yield runner, card, tmp_path
    stop.set()
    loop.join(10)
    store.close()


def test_trial_takes_no_visit_until_proven_then_declares_health_at_idle(on_trial):
    runner, card, state = on_trial
    wait_until(lambda: runner.state.screen is Screen.OUT_OF_SERVICE, "suspended on trial")
    assert runner.state.out_of_service == f"update_check: version {VERSION}"
    runner.events.put(flow.StartedWithoutCard())  # a citizen taps: nothing starts
    wait_until(lambda: runner.events.empty(), "the tap handled")
    time.sleep(0.3)  # a few more turns of the loop
    assert runner.state.screen is Screen.OUT_OF_SERVICE
    assert not (state / trial.HEALTHY).exists()

    runner.events.put(flow.CardInserted())  # a card is left in: not at idle, not healthy
    card.reader_state = "ok"  # pcscd answered
    time.sleep(0.3)
    assert runner.state.screen is Screen.OUT_OF_SERVICE
    assert not (state / trial.HEALTHY).exists()
    runner.events.put(flow.CardRemoved())  # taken: proven
    wait_until(lambda: (state / trial.HEALTHY).exists(), "health declared")
    assert trial.read(state / trial.HEALTHY) == {"version": VERSION}
    assert runner.state.screen is Screen.IDLE and runner.trial is None
    runner.events.put(flow.StartedWithoutCard())
    wait_until(lambda: runner.state.screen is Screen.CHOOSE_SERVICE, "a visit starts")


def test_trial_screen_says_one_moment_not_out_of_service(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    import pygame

    from kiosk.display.screens import Renderer, View
    from kiosk.display.screenshot import SAMPLE

    pygame.display.init()
    renderer = Renderer(SAMPLE, (800, 480))
    shown = {reason: " ".join(t.text for t in renderer.scene(View.of(State(
        screen=Screen.OUT_OF_SERVICE, out_of_service=reason))).texts)
        for reason in (f"{trial.REASON}: version {VERSION}", "disk_full: 12 MB free")}
    updating, broken = shown.values()
    for language in ("th", "en"):
        title, line = wording.SUSPENSION_TITLES[trial.REASON][language]
        assert title in updating and line in updating and title not in broken
        assert wording.TITLES[Screen.OUT_OF_SERVICE][language][0] in broken
