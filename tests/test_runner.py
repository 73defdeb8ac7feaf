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
from kiosk.errors import StoreError
from kiosk.period import BEHIND_STRETCH, MAX_JITTER_S, Period, count_event_id
from kiosk.runner import PERIOD_RETRY_S, Runner
from kiosk.store import Housekeeper, Store
from tests.fixtures.broker import wait_until
from tests.fixtures.disk import fill
from tests.fixtures.notify import receive

HOUR = 3600
#: 09:00 UTC, 16:00 in Bangkok: an hour starts.
T = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Wall:
    """The wall clock as ``kiosk.clock.system_wall`` reads it: ``(now, synced)``, moved and
    stepped by the test (a Pi has no RTC: before NTP it may say 1970)."""

    def __init__(self, now=T, synced=True):
        self.now, self.synced = now, synced

    def __call__(self):
        return self.now, self.synced


@pytest.fixture
def runner(make_config, tmp_path):
    cfg = make_config(tmp_path, flow={"allow_rating_without_card": True})
    wall = Wall()
    store = Store.open(tmp_path, min_free_mb=1, clock=lambda: wall.now)
    clock = Clock()
    runner = Runner(cfg, store, keys=RepeatKeys(1800), clock=clock, wall=wall)
    runner.clock_source, runner.wall_source = clock, wall
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
    assert runner.state.screen is flow.Screen.CONFIRM
    assert runner.store.VisitRow.select().count() == 0  # the answer may still change
    play(runner, flow.Dismissed())
    assert runner.state.screen is flow.Screen.THANK_YOU
    (visit,) = runner.store.VisitRow.select()
    assert (visit.rating, visit.copy_answer, visit.verified, visit.outcome) == (
        4, "id_card", False, "completed")
    (message,) = runner.store.OutboxMessage.select()
    payload = json.loads(message.payload)
    assert message.topic == f"citizeninfo/v1/kiosk/{runner.cfg.kiosk.id}/visit"
    assert (payload["event_id"], payload["period"], payload["rating"]) == (
        visit.event_id, "2026-01-05T09:00:00Z", 4)
    # Filed under the config's service point, on the kiosk and on the wire.
    assert (visit.service_point_id, payload["service_point_id"]) == (
        (runner.cfg.kiosk.service_point_id,) * 2)
    assert message.not_before is None  # held until its hour has closed


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


def summary_of(runner, cid):
    """What the card module hands the runner for the card ``cid``."""
    return CardSummary(repeat_hash=runner.keys.hash(cid), repeat_candidates=runner.keys.candidates(
        cid), expired=False, age_band=None, gender=None, atr="3B68", read_ms=1.0)


def card_visit(runner, cid, service, rating=5):
    """A citizen's visit with a card, taken when asked, up to the screen its service leads to."""
    play(runner, flow.CardInserted(), summary_of(runner, cid))
    assert runner.state.screen is flow.Screen.RETURN_CARD
    play(runner, flow.CardRemoved(), flow.ServiceChosen(service))
    if runner.state.screen is flow.Screen.COPY_CHECK:
        play(runner, flow.CopyAnswered("none"), flow.RatingChosen(rating), flow.Dismissed(),
             flow.Dismissed())


def test_runner_repeat_is_one_rating_per_card_and_service(runner):
    first, second = (service.id for service in runner.cfg.services[:2])
    card_visit(runner, "1101700230708", first)
    assert runner.state.screen is flow.Screen.IDLE
    (visit,) = runner.store.VisitRow.select()
    assert (visit.verified, visit.card_in_at_commit, visit.undone) == (True, False, False)
    card_visit(runner, "1101700230708", first)
    assert runner.state.screen is flow.Screen.ALREADY_RATED
    play(runner, flow.Dismissed())
    assert runner.state.screen is flow.Screen.IDLE
    card_visit(runner, "1101700230708", second)  # a second service within the window
    card_visit(runner, "3101700230703", first)  # another citizen is no repeat
    assert runner.state.screen is flow.Screen.IDLE
    assert sorted(v.service_id for v in runner.store.VisitRow.select()) == sorted(
        [first, second, first])


def test_runner_visit_left_before_the_rating_does_not_count_as_rated(runner):
    play(runner, flow.CardInserted(), summary_of(runner, "1101700230708"), flow.CardRemoved(),
         flow.ServiceChosen(service_id(runner)), flow.Back(), flow.Back())
    assert runner.state.screen is flow.Screen.IDLE
    (visit,) = runner.store.VisitRow.select()
    assert (visit.outcome, visit.step) == ("abandoned", "choose_service")
    card_visit(runner, "1101700230708", service_id(runner))
    assert runner.store.VisitRow.select().where(
        runner.store.VisitRow.outcome == "completed").count() == 1


def test_runner_card_left_in_is_recorded_and_the_kiosk_waits_for_it(runner):
    play(runner, flow.CardInserted(), summary_of(runner, "1101700230708"))
    runner.clock_source.now += runner.cfg.flow.return_card_s + 0.1
    runner.turn(timeout=0)
    assert runner.state.screen is flow.Screen.CHOOSE_SERVICE and runner.state.card_present
    play(runner, flow.ServiceChosen(service_id(runner)), flow.CopyAnswered("none"),
         flow.RatingChosen(4), flow.ChangeAnswer(), flow.RatingChosen(5))
    runner.clock_source.now += runner.cfg.flow.confirm_s + 0.1
    runner.turn(timeout=0)
    (visit,) = runner.store.VisitRow.select()
    assert (visit.outcome, visit.rating, visit.card_in_at_commit, visit.undone) == (
        "completed", 5, True, True)
    for _ in range(3):
        runner.clock_source.now += 600
        runner.turn(timeout=0)
        assert runner.state.screen is flow.Screen.TAKE_CARD
    play(runner, flow.CardRemoved())
    assert runner.state.screen is flow.Screen.IDLE


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
             flow.CopyAnswered("none"), flow.RatingChosen(5), flow.Dismissed())
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
        # Back in service with the card inserted meanwhile: asked for, never "insert a card".
        assert runner.state.screen is flow.Screen.TAKE_CARD
        play(runner, flow.CardRemoved())
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
             flow.CopyAnswered("none"), flow.RatingChosen(5), flow.Dismissed())
        assert runner.state.screen is flow.Screen.OUT_OF_SERVICE
        assert runner.state.out_of_service.startswith("store_error: ")
    finally:
        blocker.rollback()
        blocker.close()
    runner.clock_source.now += 60
    runner.turn(timeout=0)
    assert runner.state.screen is flow.Screen.IDLE
    assert runner.store.VisitRow.select().count() == 0
    assert runner.store.get_state("write_check") == "ok"  # no monotonic time kept on disk


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
    wait_for(lambda: runner.state.screen is flow.Screen.CONFIRM, runner)
    button.drive_high()
    play(runner, flow.Dismissed())
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
         flow.CopyAnswered("none"), flow.RatingChosen(5), flow.Dismissed())
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
    runner = Runner(cfg, store, keys=keys, clock=clock, wall=lambda: (wall.now, True))
    summary = CardSummary(repeat_hash=keys.hash("1101700230708"),
                          repeat_candidates=keys.candidates("1101700230708"), expired=False,
                          age_band=None, gender=None, atr="3B68", read_ms=1.0)
    try:
        play(runner, flow.CardInserted(), summary, flow.CardRemoved(),
             flow.ServiceChosen(cfg.services[0].id), flow.CopyAnswered("none"),
             flow.RatingChosen(5), flow.Dismissed())
        for step in (timedelta(hours=3), timedelta(hours=-6)):
            wall.now += step
            clock.now += 60  # housekeeping (purge) is due on every turn
            runner.turn(timeout=0)
            assert runner.state.screen is flow.Screen.IDLE
            play(runner, flow.CardInserted(), summary, flow.CardRemoved(),
                 flow.ServiceChosen(cfg.services[0].id))
            assert runner.state.screen is flow.Screen.ALREADY_RATED, step
            play(runner, flow.Dismissed())
        assert store.VisitRow.select().count() == 1
    finally:
        store.close()


def test_runner_repeat_card_caught_across_a_key_rotation(make_config, tmp_path):
    """Rated just before the repeat key rotates, back just after it: still a repeat (found by
    its previous key's hash); a window after the rating it is rated again."""
    cfg = make_config(tmp_path)
    clock = Clock()
    window_s = cfg.flow.repeat_window_min * 60
    store = Store.open(tmp_path, min_free_mb=1)
    keys = RepeatKeys(window_s, clock=clock)
    runner = Runner(cfg, store, keys=keys, clock=clock)

    def visit():
        summary = CardSummary(repeat_hash=keys.hash("1101700230708"),
                              repeat_candidates=keys.candidates("1101700230708"),
                              expired=False, age_band=None, gender=None, atr="3B68",
                              read_ms=1.0)
        play(runner, flow.CardInserted(), summary, flow.CardRemoved(),
             flow.ServiceChosen(cfg.services[0].id))
        if runner.state.screen is flow.Screen.COPY_CHECK:
            play(runner, flow.CopyAnswered("none"), flow.RatingChosen(5), flow.Dismissed())
        return runner.state.screen

    try:
        clock.now += window_s - 60  # the first key's last minute
        assert visit() is flow.Screen.THANK_YOU
        clock.now += 120  # the key has rotated since
        assert keys.rotate_if_due() and len(keys.candidates("1101700230708")) == 2
        assert visit() is flow.Screen.ALREADY_RATED
        play(runner, flow.Dismissed())
        clock.now += window_s  # a whole window after the rating
        assert visit() is flow.Screen.THANK_YOU
        assert store.VisitRow.select().count() == 2
    finally:
        store.close()


def test_runner_main_loop_keeps_turning_while_a_purge_waits_for_the_database(runner):
    """Housekeeping behind another connection's write lock (SQLite's busy timeout is 10 s)
    must not stop the loop from drawing: each turn stays well under one frame, and the purge
    goes through once the lock is let go."""
    import sqlite3

    # The kiosk has been running: its first turn released and closed what an earlier run left
    # (the runner's own writes, like a visit's, are not housekeeping's to hold up). Without a
    # housekeeper yet: its first run, asked for by that turn, could otherwise come late enough
    # to purge the row below before the lock is taken.
    runner.turn(timeout=0)
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


# --- periods: a visit carries only its hour ---------------------------------------------------


def rate(runner, rating=5):
    """One visit without a card, recorded, and the kiosk back at idle."""
    play(runner, flow.StartedWithoutCard(), flow.ServiceChosen(service_id(runner)),
         flow.CopyAnswered("none"), flow.RatingChosen(rating), flow.Dismissed())
    assert runner.state.screen is flow.Screen.THANK_YOU
    play(runner, flow.Dismissed())
    assert runner.state.screen is flow.Screen.IDLE


def payloads(store, kind="visit"):
    """``{event_id: payload}`` of the outbox's messages of one kind."""
    M = store.OutboxMessage
    return {m.event_id: json.loads(m.payload) for m in M.select()
            if m.topic.endswith(f"/{kind}")}


def period_counts(store):
    """``{period start: visits}`` of the queued period messages."""
    return {p["period"]: p["visits"] for p in payloads(store, "period").values()}


def test_runner_visit_before_the_clock_synced_is_back_dated_by_monotonic_time(runner):
    wall, mono = runner.wall_source, runner.clock_source
    wall.now, wall.synced = datetime(1970, 1, 1, 0, 5, tzinfo=UTC), False  # no RTC, no NTP
    mono.now = 100.0
    rate(runner)
    (visit,) = runner.store.VisitRow.select()
    assert (visit.period, visit.period_s) == (None, None)
    assert payloads(runner.store)[visit.event_id]["clock_synced"] is False
    runner.turn(timeout=0)
    assert runner.store.outbox_stats().held == 1  # nothing closes on an unsynced clock

    synced_at = datetime(2026, 1, 5, 9, 20, tzinfo=UTC)
    mono.now, wall.now, wall.synced = 1900.0, synced_at, True
    runner.turn(timeout=0)
    hour = Period.of(synced_at - timedelta(seconds=1800), HOUR)  # 08:50 UTC: the 08:00 hour
    visit = runner.store.VisitRow.get_by_id(visit.id)
    assert (visit.period, visit.period_s) == (hour.text, HOUR)
    payload = payloads(runner.store)[visit.event_id]
    assert (payload["period"], payload["period_s"], payload["clock_synced"]) == (
        hour.text, HOUR, True)
    # Its hour was over: closed at once, with its count.
    assert period_counts(runner.store) == {hour.text: 1}
    assert runner.store.outbox_stats().held == 0


def test_runner_restart_before_the_clock_synced_sends_the_visit_without_a_period(runner):
    wall = runner.wall_source
    wall.now, wall.synced = datetime(1970, 1, 1, 0, 5, tzinfo=UTC), False
    rate(runner)
    (visit,) = runner.store.VisitRow.select()
    runner.store.close()  # the kiosk restarts, its clock still not synced
    again = Runner(runner.cfg, runner.store, keys=RepeatKeys(1800), clock=Clock(), wall=wall)
    again.turn(timeout=0)
    [due] = runner.store.due_messages(10)
    assert due.event_id == visit.event_id
    assert {key: json.loads(due.payload)[key] for key in ("period", "period_s",
                                                          "clock_synced")} == {
        "period": None, "period_s": None, "clock_synced": False}
    # Synced later, it is counted in no period: the collector files it by its arrival day.
    wall.now, wall.synced = T + timedelta(minutes=10), True
    again.turn(timeout=0)
    assert runner.store.VisitRow.get_by_id(visit.id).period is None
    assert period_counts(runner.store) == {}


def test_runner_period_message_counts_the_visits_of_each_hour(runner):
    wall = runner.wall_source
    for minutes in (5, 20, 50):
        wall.now = T + timedelta(minutes=minutes)
        rate(runner)
    assert runner.store.outbox_stats().held == 3
    assert period_counts(runner.store) == {}
    wall.now = T + timedelta(hours=1, seconds=1)
    runner.turn(timeout=0)
    assert period_counts(runner.store) == {"2026-01-05T09:00:00Z": 3}
    M = runner.store.OutboxMessage
    releases = [datetime.fromisoformat(m.not_before) for m in M.select()]
    assert all(T + timedelta(hours=1) <= r <= T + timedelta(hours=1, seconds=MAX_JITTER_S)
               for r in releases)
    assert runner.store.closed_through() == T + timedelta(hours=1)


def test_runner_clock_stepped_back_never_reopens_a_closed_period(runner):
    wall = runner.wall_source
    wall.now = T + timedelta(minutes=10)
    rate(runner)
    wall.now = T + timedelta(hours=1, minutes=5)
    runner.turn(timeout=0)  # closes the 09:00 hour
    assert period_counts(runner.store) == {"2026-01-05T09:00:00Z": 1}
    wall.now -= timedelta(hours=1)  # NTP steps the clock back into the closed hour
    rate(runner)
    later = runner.store.VisitRow.select().where(
        runner.store.VisitRow.period != "2026-01-05T09:00:00Z").get()
    assert later.period == "2026-01-05T10:00:00Z"  # the open hour, not the closed one
    wall.now -= timedelta(hours=2)
    runner.turn(timeout=0)
    assert period_counts(runner.store) == {"2026-01-05T09:00:00Z": 1}
    wall.now = T + timedelta(hours=2, seconds=1)
    runner.turn(timeout=0)
    assert period_counts(runner.store) == {"2026-01-05T09:00:00Z": 1,
                                           "2026-01-05T10:00:00Z": 1}
    assert runner.store.OutboxMessage.select().where(
        runner.store.OutboxMessage.event_id == count_event_id(
            runner.store.instance, Period.of(T, HOUR))).count() == 1


def test_runner_clock_stepped_forward_and_back_still_releases_each_period(runner):
    """A bad time source put the clock ten years ahead and closed that hour; corrected, the
    clock is behind the closed periods. Visits go into the first open period, which is closed
    after two hours of monotonic time (the wall clock catching up) rather than in ten years."""
    wall, mono = runner.wall_source, runner.clock_source
    wall.now = T + timedelta(days=3650)
    rate(runner)
    wall.now += timedelta(hours=1)
    runner.turn(timeout=0)  # closes the hour ten years ahead
    assert len(period_counts(runner.store)) == 1
    wall.now = T + timedelta(minutes=5)  # corrected
    rate(runner)
    runner.turn(timeout=0)
    assert len(period_counts(runner.store)) == 1 and runner.store.outbox_stats().held == 1
    mono.now += HOUR * BEHIND_STRETCH - 1
    wall.now += timedelta(seconds=HOUR * BEHIND_STRETCH - 1)
    runner.turn(timeout=0)
    assert runner.store.outbox_stats().held == 1  # not before twice its length has passed
    mono.now += 2
    runner.turn(timeout=0)
    assert len(period_counts(runner.store)) == 2 and runner.store.outbox_stats().held == 0


def stepped_ahead_and_back(runner):
    """A visit while a bad time source had the clock 3 h ahead, that hour closed, then the
    clock corrected to 09:05: behind the closed periods. Returns (wall, mono)."""
    wall, mono = runner.wall_source, runner.clock_source
    wall.now = T + timedelta(hours=3)
    rate(runner)
    wall.now += timedelta(hours=1)
    runner.turn(timeout=0)  # closes the hours through three ahead
    wall.now = T + timedelta(minutes=5)  # corrected
    return wall, mono


def test_runner_clock_stepped_forward_and_back_sends_the_period_within_its_jitter(runner):
    """Found by the soak (docs/reliability.md): a period closed by monotonic time while the
    clock is behind must not wait for the wall clock to reach the period's end (three hours
    after a 3-hour step) before its visits and count may go."""
    wall, mono = stepped_ahead_and_back(runner)
    rate(runner)
    mono.now += HOUR * BEHIND_STRETCH + 1
    wall.now += timedelta(seconds=HOUR * BEHIND_STRETCH + 1)
    runner.turn(timeout=0)  # the open period is closed after two hours of monotonic time
    assert runner.store.outbox_stats().held == 0
    # Released from now, with the jitter still ahead (the count goes after the whole jitter).
    assert not [m for m in runner.store.due_messages(10) if "visits" in json.loads(m.payload)
                and json.loads(m.payload)["period"] != Period.of(T + timedelta(hours=3),
                                                                 HOUR).text]
    wall.now += timedelta(seconds=MAX_JITTER_S + 1)
    due = [json.loads(m.payload) for m in runner.store.due_messages(10)]
    assert sorted(m.get("visits", 0) for m in due if "visits" in m) == [1, 1]
    assert len([m for m in due if "rating" in m]) == 2


def test_runner_clock_stepped_forward_and_back_files_visits_in_real_periods_again(runner):
    """Found by the soak (docs/reliability.md): after a 3-hour step ahead and back, every
    later visit went into a period 3 hours ahead, for good (the periods closed by monotonic
    time kept pace with the wall clock). Now the wall clock catches up within twice the step."""
    wall, mono = stepped_ahead_and_back(runner)
    for _ in range(7 * 60):  # seven hours, a turn a minute
        mono.now += 60
        wall.now += timedelta(minutes=1)
        runner.turn(timeout=0)
    rate(runner)
    periods = sorted(v.period for v in runner.store.VisitRow.select())
    assert periods[-1] == Period.of(wall.now, HOUR).text, (periods, wall.now)


def test_runner_in_demo_mode_the_wall_clock_counts_as_synced(make_config, tmp_path):
    cfg = make_config(tmp_path, kiosk={"mode": "demo"}, telemetry={"period_s": 5},
                      flow={"allow_rating_without_card": True})
    wall = Wall(synced=False)
    store = Store.open(tmp_path, min_free_mb=1, clock=lambda: wall.now, period_s=5)
    runner = Runner(cfg, store, keys=RepeatKeys(1800), clock=Clock(), wall=wall)
    try:
        rate(runner)
        (visit,) = store.VisitRow.select()
        assert (visit.period, visit.period_s, visit.mode) == (T.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                             5, "demo")
        wall.now += timedelta(seconds=5)
        runner.turn(timeout=0)
        assert period_counts(store) == {"2026-01-05T09:00:00Z": 1}
    finally:
        store.close()


def test_runner_store_failure_while_closing_is_retried_and_loses_nothing(runner, monkeypatch,
                                                                         caplog):
    wall, mono = runner.wall_source, runner.clock_source
    wall.now = T + timedelta(minutes=10)
    rate(runner)
    failures, real = [], runner.store.close_periods

    def close_failing_once(*args, **kwargs):
        if not failures:
            failures.append("locked")
            raise StoreError("kiosk.db: cannot close periods: database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner.store, "close_periods", close_failing_once)
    wall.now = T + timedelta(hours=1, minutes=1)
    runner.turn(timeout=0)
    assert failures and "periods not kept" in caplog.text
    assert runner.store.outbox_stats().held == 1
    assert runner.book.closed_through == T  # not the 10:00 it failed to persist
    runner.turn(timeout=0)
    assert runner.store.outbox_stats().held == 1, "retried on every frame"
    mono.now += PERIOD_RETRY_S
    runner.turn(timeout=0)
    assert runner.store.outbox_stats().held == 0
    assert period_counts(runner.store) == {"2026-01-05T09:00:00Z": 1}


class FakeHealth:
    """What health is told: card reads (never with a time) and reader states."""

    def __init__(self):
        self.card_reads = 0
        self.readers = []

    def note_card_read(self):
        self.card_reads += 1

    def note_reader(self, state):
        self.readers.append(state)


class FakeOutbox:
    def __init__(self):
        self.notified = 0

    def notify(self):
        self.notified += 1


class FakeTelemetry:
    relay = None  # a kiosk without the certificate renewal

    def __init__(self):
        self.health, self.outbox = FakeHealth(), FakeOutbox()


class CardInReader:
    """A card service whose reader holds a card: ``reader_state`` ``ok``."""

    reader_state = "ok"

    def request_read(self):
        pass


def test_runner_tells_health_of_card_reads_without_a_time_and_never_a_card_present(runner):
    runner.telemetry, runner.card = FakeTelemetry(), CardInReader()
    runner.turn(timeout=0)  # the first turn keeps house
    assert runner.telemetry.health.readers == ["ready"]
    assert runner.telemetry.outbox.notified == 1  # undated visits of an earlier run: none
    summary = CardSummary(repeat_hash=runner.keys.hash("1101700230708"),
                          repeat_candidates=runner.keys.candidates("1101700230708"),
                          expired=False, age_band=None, gender=None, atr="3B68", read_ms=1.0)
    play(runner, flow.CardInserted(), summary, flow.CardRemoved())
    assert runner.state.screen is flow.Screen.CHOOSE_SERVICE
    assert runner.telemetry.health.card_reads == 1
    play(runner, flow.ServiceChosen(service_id(runner)), flow.CopyAnswered("none"),
         flow.RatingChosen(5), flow.Dismissed())
    assert runner.telemetry.outbox.notified == 1, "a held visit has nothing to send"
    runner.wall_source.now += timedelta(hours=1)
    runner.turn(timeout=0)
    assert runner.telemetry.outbox.notified == 2  # the hour closed: its visit released


# --- the client certificate: expired, and a new one installed -------------------------------


def client_cert_file(path, *, not_after):
    """A client certificate from a test CA expiring at ``not_after``; its serial."""
    from tests.renewal import pki

    cert = pki.Ca(now=T).issue(pki.new_key().public_key(), "kiosk-a",
                               not_before=T - timedelta(days=365), not_after=not_after)
    path.write_bytes(pki.pem(cert))
    return cert.serial_number


def write_installed(renewal_dir, serial, *, mtime=None):
    """The root unit's install record; ``mtime`` as its clock stamped it (default now)."""
    record = renewal_dir / "installed.json"
    record.write_text(json.dumps({"serial": f"{serial:x}", "not_after": "2027-01-05T09:00:00Z",
                                  "installed": "2026-01-05T09:00:00Z"}))
    if mtime is not None:
        os.utime(record, (mtime, mtime))


@pytest.fixture
def cert_runner(runner, tmp_path, monkeypatch):
    """The runner with a client certificate valid for a day and no install record yet; it
    keeps house every turn."""
    from kiosk import runner as runner_module
    from kiosk.renewal.client_cert import ClientCert

    monkeypatch.setattr(runner_module, "HOUSEKEEPING_S", 0.0)

    runner.cert_path, runner.renewal_dir = tmp_path / "client.crt", tmp_path / "renewal"
    runner.renewal_dir.mkdir()
    runner.serial = client_cert_file(runner.cert_path, not_after=T + timedelta(days=1))
    runner.client_cert = ClientCert(runner.cert_path, renewal_dir=runner.renewal_dir)
    return runner


def housekeeping(runner):
    runner.turn(timeout=0)


def test_runner_new_certificate_installed_restarts_at_the_first_quiet_moment(cert_runner,
                                                                             caplog):
    caplog.set_level("INFO", logger="kiosk.runner")
    stop = threading.Event()
    cert_runner._stop = stop  # as run() sets it
    play(cert_runner, flow.StartedWithoutCard(), flow.ServiceChosen(service_id(cert_runner)))
    write_installed(cert_runner.renewal_dir, cert_runner.serial + 1)
    housekeeping(cert_runner)
    assert not stop.is_set(), "a citizen is at the kiosk"
    play(cert_runner, flow.CopyAnswered("none"), flow.RatingChosen(5), flow.Dismissed())
    assert cert_runner.state.screen is flow.Screen.THANK_YOU
    assert not stop.is_set(), "the citizen is still thanked"
    play(cert_runner, flow.Dismissed())
    assert cert_runner.state.screen is flow.Screen.IDLE
    assert stop.is_set()
    assert cert_runner.recorded == 1
    assert [r.getMessage() for r in caplog.records if "restarting" in r.getMessage()] == [
        f"new client certificate installed (serial {cert_runner.serial + 1:x}, expires "
        "2027-01-05T09:00:00Z); restarting to load it"]


def test_runner_install_record_of_the_loaded_certificate_restarts_nothing(cert_runner):
    cert_runner._stop = stop = threading.Event()
    write_installed(cert_runner.renewal_dir, cert_runner.serial)
    housekeeping(cert_runner)
    housekeeping(cert_runner)
    assert not stop.is_set()


def test_runner_install_record_already_there_at_start_restarts_nothing(cert_runner):
    """The process started after that install (a technician may since have put the previous
    pair back): what it loaded is what it runs."""
    from kiosk.renewal.client_cert import ClientCert

    cert_runner._stop = stop = threading.Event()
    write_installed(cert_runner.renewal_dir, cert_runner.serial + 1)
    cert_runner.client_cert = ClientCert(cert_runner.cert_path,
                                         renewal_dir=cert_runner.renewal_dir)
    housekeeping(cert_runner)
    housekeeping(cert_runner)
    assert not stop.is_set()


def test_runner_install_stamped_before_the_start_by_a_clock_set_back_still_restarts(
        cert_runner):
    """NTP stepped the clock back after boot: the record written since looks older than the
    process. Still a new install, so still a restart."""
    cert_runner._stop = stop = threading.Event()
    housekeeping(cert_runner)
    write_installed(cert_runner.renewal_dir, cert_runner.serial + 1, mtime=time.time() - 3600)
    housekeeping(cert_runner)
    assert stop.is_set()


def test_runner_expired_certificate_suspends_on_a_synced_clock_until_a_valid_one_is_in(
        cert_runner):
    wall = cert_runner.wall_source
    wall.now, wall.synced = T + timedelta(days=2), False
    housekeeping(cert_runner)
    assert cert_runner.state.out_of_service is None, "judged on a clock NTP has not set"
    play(cert_runner, flow.StartedWithoutCard())
    wall.synced = True
    housekeeping(cert_runner)
    assert cert_runner.state.screen is flow.Screen.CHOOSE_SERVICE, "a visit was cut short"
    play(cert_runner, flow.Back())
    housekeeping(cert_runner)
    assert cert_runner.state.out_of_service == (
        "cert_expired: client certificate expired 2026-01-06; the broker refuses it: install "
        "a new bundle")
    client_cert_file(cert_runner.cert_path, not_after=T + timedelta(days=365))
    housekeeping(cert_runner)
    assert cert_runner.state.screen is flow.Screen.IDLE
    assert cert_runner.state.out_of_service is None
