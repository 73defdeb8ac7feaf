"""The runner on its own: flow + real SQLite store, no card, screen or broker."""

import json
import os
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from kiosk import config, flow
from kiosk.card.repeat import RepeatKeys
from kiosk.card.thai_id import CardSummary
from kiosk.runner import Runner
from kiosk.store import Housekeeper, Store
from tests.fixtures.broker import wait_until
from tests.fixtures.disk import fill
from tests.fixtures.notify import receive


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def runner(make_config, tmp_path):
    cfg = make_config(tmp_path, flow={"allow_rating_without_card": True})
    store = Store.open(tmp_path, min_free_mb=1)
    clock = Clock()
    runner = Runner(cfg, store, keys=RepeatKeys(1800), clock=clock)
    runner.clock_source = clock
    yield runner
    store.close()


def play(runner, *events):
    for event in events:
        runner.events.put(event)
    runner.turn(timeout=0)


def service_id(runner):
    return runner.cfg.services[0].id


def test_runner_visit_without_card_is_committed_with_its_outbox_row(runner):
    play(runner, flow.StartedWithoutCard(), flow.ServiceChosen(service_id(runner)),
         flow.CopyAnswered("id_card"), flow.RatingChosen(4))
    assert runner.state.screen is flow.Screen.THANK_YOU
    (visit,) = runner.store.VisitRow.select()
    assert (visit.rating, visit.copy_answer, visit.verified, visit.outcome) == (
        4, "id_card", False, "completed")
    (message,) = runner.store.OutboxMessage.select()
    payload = json.loads(message.payload)
    assert message.topic == f"citizeninfo/v1/kiosk/{runner.cfg.kiosk.id}/visit"
    assert (payload["event_id"], payload["seq"], payload["rating"]) == (visit.event_id, 1, 4)


def test_runner_timeout_records_abandoned_visit(runner):
    play(runner, flow.StartedWithoutCard())
    runner.clock_source.now += runner.cfg.flow.timeout_choose_service_s + 1
    runner.turn(timeout=0)
    (visit,) = runner.store.VisitRow.select()
    assert (visit.outcome, visit.step) == ("abandoned", "choose_service")
    assert runner.state.screen is flow.Screen.IDLE


def test_runner_card_without_a_reader_is_a_card_problem(runner):
    play(runner, flow.CardInserted())
    runner.turn(timeout=0)
    assert (runner.state.screen, runner.state.problem) == (flow.Screen.CARD_PROBLEM, "no_reader")


def test_runner_repeat_card_is_decided_by_the_store(runner):
    def summary(cid):
        return CardSummary(repeat_hash=runner.keys.hash(cid),
                           repeat_candidates=runner.keys.candidates(cid), expired=False,
                           age_band=None, gender=None, atr="3B68", read_ms=1.0)

    play(runner, flow.CardInserted(), summary("1101700230708"),
         flow.ServiceChosen(service_id(runner)), flow.CopyAnswered("none"), flow.RatingChosen(5),
         flow.CardRemoved())
    runner.clock_source.now += 60
    runner.turn(timeout=0)
    assert runner.state.screen is flow.Screen.IDLE
    play(runner, flow.CardInserted(), summary("1101700230708"))
    assert runner.state.screen is flow.Screen.ALREADY_RATED
    play(runner, flow.Dismissed(), flow.CardRemoved(), flow.CardInserted(),
         summary("3101700230703"))
    assert runner.state.screen is flow.Screen.CHOOSE_SERVICE, "another citizen is no repeat"
    assert runner.store.VisitRow.select().count() == 1


def test_runner_unknown_fact_is_logged_and_ignored(runner, caplog):
    play(runner, object())
    assert runner.state.screen is flow.Screen.IDLE
    assert "ignored a fact of type object" in caplog.text


def test_runner_below_the_disk_floor_goes_out_of_service_and_keeps_what_it_has(make_config,
                                                                            tiny_fs):
    disk = tiny_fs(24)
    cfg = make_config(disk, flow={"allow_rating_without_card": True},
                      storage={"min_free_mb": 10})
    store = Store.open(disk, min_free_mb=cfg.storage.min_free_mb)
    clock = Clock()
    runner = Runner(cfg, store, keys=RepeatKeys(1800), clock=clock)
    try:
        play(runner, flow.StartedWithoutCard(), flow.ServiceChosen(cfg.services[0].id),
             flow.CopyAnswered("none"), flow.RatingChosen(5))
        assert store.VisitRow.select().count() == 1
        # Fill the partition until less than the floor is left.
        fill(disk / "filler", leave_bytes=8 * 2**20)
        clock.now += 60
        play(runner, flow.Dismissed())
        runner.turn(timeout=0)
        assert runner.state.screen is flow.Screen.OUT_OF_SERVICE
        assert runner.state.out_of_service.startswith("disk_full: ")
        assert "MB needed" in runner.state.out_of_service
        play(runner, flow.StartedWithoutCard(), flow.CardInserted())
        assert runner.state.screen is flow.Screen.OUT_OF_SERVICE
        assert store.VisitRow.select().count() == 1  # nothing recorded was lost
        (disk / "filler").unlink()
        clock.now += 60
        runner.turn(timeout=0)
        assert runner.state.screen is flow.Screen.IDLE
    finally:
        store.close()


def test_runner_out_of_order_screen_survives_a_broken_config(tmp_path):
    """kiosk-out-of-order.service's command: up with a config first boot refused, stops on TERM."""
    import signal
    import sys

    bad = tmp_path / "kiosk.toml"
    bad.write_text("[kiosk]\nid = 'NOT VALID'\n")
    env = dict(os.environ, SDL_AUDIODRIVER="dummy")
    process = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "run", "--out-of-order", "--headless",
         "--config", str(bad)],
        env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if "showing the out-of-order screen" in line or not line:
            break
    assert any("kiosk.id" in line for line in lines), lines
    assert process.poll() is None, "the out-of-order screen died on a broken config"
    process.send_signal(signal.SIGTERM)
    process.stderr.close()
    assert process.wait(timeout=30) == 0


class HangingDisplay:
    """An honest stand-in screen: records what it drew and can hang in a draw call."""

    def __init__(self):
        self.shown = []
        self.is_hung = threading.Event()
        self.release = threading.Event()

    def show(self, state):
        self.shown.append(state.screen)
        if self.is_hung.is_set():
            self.release.wait(30)  # a draw call that does not return: a hung UI

    def poll_events(self):
        return []

    def beep(self, kind):
        pass


def receive_ping(sock, timeout):
    """The next WATCHDOG=1, skipping STATUS= lines; None when none comes in time."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        lines = receive(sock, left)
        if lines is None:
            return None
        if "WATCHDOG=1" in lines:
            return lines
    return None


def test_runner_watchdog_pings_come_from_the_main_loop_and_stop_when_it_hangs(runner,
                                                                           systemd_socket):
    from kiosk.watchdog import Watchdog

    path, sock = systemd_socket
    runner.clock = time.monotonic
    runner.display = HangingDisplay()
    runner.watchdog = Watchdog(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    stop = threading.Event()
    loop = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    loop.start()
    try:
        assert receive(sock, 5)[0] == "READY=1"
        assert receive_ping(sock, 5) and receive_ping(sock, 5)
        runner.display.is_hung.set()
        while receive_ping(sock, 0.3) is not None:  # pings sent before the hang began
            pass
        assert receive_ping(sock, 1.0) is None, "pinged while the main loop was stuck"
        runner.display.is_hung.clear()
        runner.display.release.set()
        assert receive_ping(sock, 5), "pings did not resume with the loop"
    finally:
        stop.set()
        runner.display.release.set()
        loop.join(5)
    assert runner.display.shown[0] is flow.Screen.IDLE


def test_runner_failed_write_is_not_thanked_and_the_kiosk_recovers_by_itself(runner, monkeypatch):
    """Another process holds the database: the visit is not thanked; once it lets go, idle."""
    import sqlite3

    monkeypatch.setattr(runner.store._db, "timeout", 0.05, raising=False)
    runner.store.close()  # reconnect with the short busy timeout
    blocker = sqlite3.connect(runner.store.path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        play(runner, flow.StartedWithoutCard(), flow.ServiceChosen(service_id(runner)),
             flow.CopyAnswered("none"), flow.RatingChosen(5))
        assert runner.state.screen is flow.Screen.OUT_OF_SERVICE
        assert runner.state.out_of_service.startswith("store_error: ")
    finally:
        blocker.rollback()
        blocker.close()
    runner.clock_source.now += 60
    runner.turn(timeout=0)
    assert runner.state.screen is flow.Screen.IDLE
    assert runner.store.VisitRow.select().count() == 0


@pytest.fixture
def panel_runner(make_config, tmp_path):
    """A runner with the GPIO panel on gpiozero's mock pins, the way Kiosk wires it."""
    from kiosk.gpio import Panel

    cfg = make_config(tmp_path, flow={"allow_rating_without_card": True},
                      gpio={"pin_factory": "mock"})
    store = Store.open(tmp_path, min_free_mb=10)
    runner = Runner(cfg, store, keys=RepeatKeys(1800), clock=Clock())
    runner.panel = Panel.from_config(cfg.gpio, put=runner.events.put)
    yield runner
    runner.panel.close()
    store.close()


def wait_for(predicate, runner, timeout=5.0):
    """Turn the loop until ``predicate()`` holds: GPIO callbacks arrive on gpiozero's thread."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        runner.turn(timeout=0.05)


def test_runner_physical_rating_button_records_that_rating(panel_runner):
    runner = panel_runner
    pins = runner.cfg.gpio.rating_buttons
    play(runner, flow.StartedWithoutCard(), flow.ServiceChosen(service_id(runner)),
         flow.CopyAnswered("none"))
    assert runner.state.screen is flow.Screen.RATING
    button = runner.panel._factory.pin(pins[3])
    button.drive_low()  # pressed: the buttons pull up
    wait_for(lambda: runner.state.screen is flow.Screen.THANK_YOU, runner)
    button.drive_high()
    (visit,) = runner.store.VisitRow.select()
    assert visit.rating == 4


def test_runner_status_light_follows_the_visit(panel_runner):
    runner = panel_runner
    lit = {name: led for name, led in runner.panel.lights.items()}
    runner.turn(timeout=0)
    play(runner, flow.StartedWithoutCard())
    assert lit["busy"].is_lit and not lit["ready"].is_lit
    play(runner, flow.ServiceSuspended("test"))
    assert lit["fault"].is_lit and not lit["busy"].is_lit
    play(runner, flow.ServiceResumed())
    assert lit["ready"].is_lit and not lit["fault"].is_lit


def test_runner_pir_motion_wakes_the_blanked_screen(panel_runner, make_display):
    import datetime as dt

    runner = panel_runner
    sunday_night = dt.datetime(2025, 3, 9, 14, 0, tzinfo=dt.UTC)  # 21:00 in Bangkok
    display, clock = make_display(wall=sunday_night)
    runner.display = display
    runner.turn(timeout=0)
    clock.advance(120)
    runner.turn(timeout=0)
    assert display.is_blank
    assert runner.panel.pir.wait_for_no_motion(timeout=5)
    runner.panel._factory.pin(runner.cfg.gpio.pir).drive_high()
    wait_for(lambda: not display.is_blank, runner)
    assert runner.state.screen is flow.Screen.IDLE  # waking is not a tap


def test_runner_sigterm_stops_the_kiosk_cleanly_and_says_offline(make_config, tmp_path, broker,
                                                               mqtt_client):
    """`kiosk run` as systemd runs it: online after start, `offline` (not the will) on TERM."""
    import signal
    import sys

    from kiosk.telemetry import topics

    password_file = tmp_path / "mqtt-password"
    password_file.write_text(broker.add_kiosk("term-kiosk"))
    cfg_path = tmp_path / "kiosk.toml"
    cfg = make_config(tmp_path / "data", kiosk={"id": "term-kiosk"}, card={"backend": "none"},
                      mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False,
                            "password_file": str(password_file), "will_delay_s": 30})
    cfg_path.write_text(config.dumps(cfg, mask_secrets=False))
    watcher = mqtt_client("watcher", broker.add_observer("watcher"))
    status = topics.kiosk_topic("term-kiosk", "status")
    watcher.subscribe(status)

    def is_(state):
        return lambda message: json.loads(message.payload)["state"] == state

    env = dict(os.environ, SDL_AUDIODRIVER="dummy")
    process = subprocess.Popen([sys.executable, "-m", "kiosk", "run", "--headless",
                                "--config", str(cfg_path)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        online = watcher.wait_for_message(status, is_("online"), timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    offline = watcher.wait_for_message(status, is_("offline"), timeout=10)
    assert json.loads(offline.payload)["epoch"] == json.loads(online.payload)["epoch"]
    assert not [m for m in watcher.received(status) if is_("lost")(m)]


class BrokenSpeakerDisplay(HangingDisplay):
    """A screen whose sound fails in a way nobody foresaw."""

    def beep(self, kind):
        raise RuntimeError("sound card fell off")


def test_runner_unforeseen_fault_returns_to_idle_and_the_kiosk_goes_on(runner, caplog):
    runner.display = BrokenSpeakerDisplay()
    play(runner, flow.StartedWithoutCard())  # its tap beep fails
    assert runner.state.screen is flow.Screen.IDLE
    assert "unexpected fault while handling StartedWithoutCard" in caplog.text
    runner.display = HangingDisplay()
    play(runner, flow.StartedWithoutCard())
    assert runner.state.screen is flow.Screen.CHOOSE_SERVICE


def test_runner_visit_the_contract_refuses_suspends_until_a_new_config(runner, monkeypatch):
    from kiosk import visit
    from kiosk.errors import MessageRejected

    def refuse(**fields):
        raise MessageRejected("visit_payload: service_id must be a service id")

    monkeypatch.setattr(visit, "payload", refuse)
    play(runner, flow.StartedWithoutCard(), flow.ServiceChosen(service_id(runner)),
         flow.CopyAnswered("none"), flow.RatingChosen(5))
    assert runner.state.out_of_service.startswith("record_error: visit_payload: service_id")
    assert runner.store.VisitRow.select().count() == 0  # not kept, and not thanked
    runner.clock_source.now += 60
    runner.turn(timeout=0)
    assert runner.state.screen is flow.Screen.OUT_OF_SERVICE, "only a new config mends it"
    runner.reconfigure(runner.cfg)
    assert runner.state.screen is flow.Screen.IDLE


def test_runner_without_a_buzzer_the_display_sounds_the_reminder(make_config, tmp_path):
    from kiosk.gpio import Panel

    class RecordingDisplay(HangingDisplay):
        def __init__(self):
            super().__init__()
            self.beeps = []

        def beep(self, kind):
            self.beeps.append(kind)

    cfg = make_config(tmp_path, flow={"allow_rating_without_card": True},
                      gpio={"pin_factory": "mock", "buzzer": None})
    store = Store.open(tmp_path, min_free_mb=10)
    clock = Clock()
    runner = Runner(cfg, store, keys=RepeatKeys(1800), clock=clock)
    runner.panel = Panel.from_config(cfg.gpio, put=runner.events.put)
    runner.display = RecordingDisplay()
    try:
        play(runner, flow.CardInserted(), flow.CardFailed("not_thai_id"))
        assert "error" in runner.display.beeps
    finally:
        runner.panel.close()
        store.close()


def test_runner_out_of_order_lights_the_fault_led_the_refused_boot_file_names(tmp_path,
                                                                           monkeypatch):
    """First boot refused the file: nothing is installed, yet the fault LED must stay lit."""
    from kiosk import gpio, out_of_order

    boot_file = tmp_path / "kiosk.toml"
    boot_file.write_text('[kiosk]\nid = "BROKEN"\n[gpio]\npin_factory = "mock"\nled_fault = 22\n')
    asked, original = [], gpio.show_fault_light

    def light(gpio):
        asked.append(gpio)
        return original(gpio)

    monkeypatch.setattr(gpio, "show_fault_light", light)
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    stop = threading.Event()
    stop.set()
    assert out_of_order.out_of_order(tmp_path / "missing.toml", stop, headless=True,
                            problems_file=tmp_path / "none", boot_file=boot_file) == 0
    assert asked == [{"pin_factory": "mock", "led_fault": 22}]


class WallClock:
    """The store's UTC wall clock, stepped by hand like NTP steps a Pi that booted stale."""

    def __init__(self):
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


def test_runner_repeat_card_still_caught_after_the_wall_clock_steps(make_config, tmp_path):
    """Record at T, then NTP steps the wall clock +3 h and -3 h: the card is still a repeat."""
    cfg = make_config(tmp_path)
    wall, clock = WallClock(), Clock()
    store = Store.open(tmp_path, min_free_mb=1, clock=wall)
    keys = RepeatKeys(cfg.flow.repeat_window_min * 60, clock=clock)
    runner = Runner(cfg, store, keys=keys, clock=clock)
    summary = CardSummary(repeat_hash=keys.hash("1101700230708"),
                          repeat_candidates=keys.candidates("1101700230708"), expired=False,
                          age_band=None, gender=None, atr="3B68", read_ms=1.0)
    try:
        play(runner, flow.CardInserted(), summary, flow.ServiceChosen(cfg.services[0].id),
             flow.CopyAnswered("none"), flow.RatingChosen(5), flow.CardRemoved())
        for step in (timedelta(hours=3), timedelta(hours=-6)):
            wall.now += step
            clock.now += 60  # housekeeping (purge) is due on every turn
            runner.turn(timeout=0)
            assert runner.state.screen is flow.Screen.IDLE
            play(runner, flow.CardInserted(), summary)
            assert runner.state.screen is flow.Screen.ALREADY_RATED, step
            play(runner, flow.Dismissed(), flow.CardRemoved())
        assert store.VisitRow.select().count() == 1
    finally:
        store.close()


def test_runner_main_loop_keeps_turning_while_a_purge_waits_for_the_database(runner):
    """Housekeeping behind another connection's write lock (SQLite's busy timeout is 10 s)
    must not stop the loop from drawing: each turn stays well under one frame, and the purge
    goes through once the lock is let go."""
    import sqlite3

    runner.housekeeper = Housekeeper(runner.store)
    runner.housekeeper.start()
    event_id = runner.store.enqueue("citizeninfo/v1/kiosk/k1/reply", {"ok": True})
    runner.store.confirm([event_id])  # the purge deletes confirmed messages
    blocker = sqlite3.connect(runner.store.path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        runner.clock_source.now += 60  # housekeeping is due
        for _ in range(20):
            started = time.monotonic()
            runner.turn(timeout=0)
            assert time.monotonic() - started < 1 / 30, "a turn waited on the database"
        assert runner.store.OutboxMessage.select().count() == 1, "purged through the lock?"
    finally:
        blocker.rollback()
        blocker.close()
    try:
        wait_until(lambda: runner.store.OutboxMessage.select().count() == 0, "the purge")
    finally:
        runner.housekeeper.stop()


class TappingDisplay(HangingDisplay):
    """A stand-in screen that hands over one tap's flow event when its input is read."""

    def __init__(self, *taps):
        super().__init__()
        self.taps = list(taps)

    def poll_events(self):
        taps, self.taps = self.taps, []
        return taps


def test_runner_tap_goes_through_the_queue_and_is_drawn_in_the_turn_that_took_it(runner):
    """A tap is a fact like any other: stepped with the turn's facts, never inside drawing."""
    runner.display = TappingDisplay(flow.StartedWithoutCard())
    runner.turn(timeout=0)
    assert runner.state.screen is flow.Screen.CHOOSE_SERVICE
    assert runner.display.shown == [flow.Screen.CHOOSE_SERVICE], "drew a screen the tap had left"


def test_runner_fact_is_dispatched_by_its_class_not_its_name(runner, caplog):
    """A look-alike class named like an adapter's fact is not mistaken for it."""

    class WakingDisplay(HangingDisplay):
        woken = 0

        def wake(self):
            self.woken += 1

    class MotionSeen:
        pass

    from kiosk.facts import MotionSeen as Real

    runner.display = WakingDisplay()
    play(runner, MotionSeen())
    assert runner.display.woken == 0 and "ignored a fact of type MotionSeen" in caplog.text
    play(runner, Real())
    assert runner.display.woken == 1


def test_runner_remote_config_is_the_one_config_in_force(make_config, tmp_path, broker,
                                                      mqtt_client):
    """Ops changes the config: the kiosk, its runner and its telemetry all see the new one."""
    from kiosk.assemble import Kiosk
    from kiosk.telemetry import topics

    password_file = tmp_path / "mqtt-password"
    password_file.write_text(broker.add_kiosk("cfg-kiosk"))
    cfg = make_config(tmp_path / "data", kiosk={"id": "cfg-kiosk"}, card={"backend": "none"},
                      mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False,
                            "password_file": str(password_file)})
    ops = mqtt_client(*broker.ops_credentials)
    reply = topics.kiosk_topic("cfg-kiosk", "reply")
    ops.subscribe(reply)
    with Kiosk(cfg, display=False) as kiosk:
        assert kiosk.telemetry.link.wait_for_connected(10)
        ops.publish(topics.cmd_topic("cfg-kiosk", "config"),
                    topics.command_payload("config", "c1", version=4, flow={"thank_you_s": 5}))
        deadline = time.monotonic() + 10
        while not ops.received(reply) and time.monotonic() < deadline:
            kiosk.runner.turn(timeout=0.05)
        assert json.loads(ops.received(reply)[0].payload)["ok"]
        assert kiosk.cfg is kiosk.runner.cfg
        assert (kiosk.cfg.remote_version, kiosk.cfg.flow.thank_you_s) == (4, 5)
        assert kiosk.runner.settings.thank_you_s == 5
        assert not hasattr(kiosk.telemetry.commands, "config"), "a second config in force"


def test_runner_remote_config_that_fails_to_apply_is_answered_and_the_visit_goes_on(
        make_config, tmp_path, broker, mqtt_client, monkeypatch):
    """A part that cannot take the new config: ops get an error reply, the service-point
    message is already the new one, and the citizen's visit is not thrown back to idle."""
    from kiosk.assemble import Kiosk
    from kiosk.telemetry import topics

    password_file = tmp_path / "mqtt-password"
    password_file.write_text(broker.add_kiosk("cfg-kiosk"))
    cfg = make_config(tmp_path / "data", kiosk={"id": "cfg-kiosk"}, card={"backend": "none"},
                      flow={"allow_rating_without_card": True},
                      mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False,
                            "password_file": str(password_file)})
    ops = mqtt_client(*broker.ops_credentials)
    reply, service_point = (topics.kiosk_topic("cfg-kiosk", kind) for kind in ("reply", "pin"))
    ops.subscribe(reply)
    ops.subscribe(service_point)
    with Kiosk(cfg, display=False) as kiosk:
        assert kiosk.telemetry.link.wait_for_connected(10)
        kiosk.runner.handle(flow.StartedWithoutCard())
        assert kiosk.runner.state.screen is flow.Screen.CHOOSE_SERVICE

        def broken(_cfg):
            raise OSError("prompt cache unwritable")

        kiosk.runner.display = type("Display", (), {"reconfigure": staticmethod(broken),
                                                    "show": lambda self, state: None,
                                                    "poll_events": lambda self: []})()
        renamed = [{"id": "id-card", "name_th": "บัตร", "name_en": "ID card renamed",
                    "no_copy": "cancelled"}]
        ops.publish(topics.cmd_topic("cfg-kiosk", "config"),
                    topics.command_payload("config", "c2", version=7, services=renamed))
        deadline = time.monotonic() + 10
        while not ops.received(reply) and time.monotonic() < deadline:
            kiosk.runner.turn(timeout=0.05)
        answer = json.loads(ops.received(reply)[0].payload)
        assert (answer["ok"], answer["error"]) == (False, "not put in force: OSError")
        assert kiosk.runner.state.screen is flow.Screen.CHOOSE_SERVICE
        ops.wait_for_message(service_point,
                             lambda m: b"ID card renamed" in m.payload)
