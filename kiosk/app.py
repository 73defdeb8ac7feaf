"""The kiosk process: the composition root and the one main loop (``kiosk run``).

Rules of the house: only the main loop steps the flow, writes visits and draws. The card
monitor, paho's network thread, gpiozero callbacks and the scripted driver only put facts on
:attr:`Runner.events`; the outbox pump is the one other writer of live rows, touching only
delivery state on its own connection (the housekeeping thread deletes only confirmed rows).
A visit and its outbox row are committed in one transaction before the thank-you screen is
drawn; when that commit fails the citizen is not thanked and the kiosk goes out of service
instead.
"""

import logging
import queue
import signal
import threading
import time
import tomllib
from pathlib import Path

from kiosk import __version__, flow
from kiosk import config as kiosk_config
from kiosk.card.repeat import SeenCards
from kiosk.card.thai_id import CardSummary
from kiosk.errors import DiskFull, KioskError, StoreError

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 30.0  # purge request, key rotation, disk floor: often enough, cheap enough
HEADLESS_TURN_S = 0.1  # how late a deadline may be noticed without a display
DISK_REASON = "disk_full"
STORE_REASON = "store_error"
RECORD_REASON = "record_error"

#: Card reader states (kiosk.card.reader) as the health message names them.
READER_HEALTH = {
    "ok": "card_present", "no_card": "ready", "no_reader": "no_reader", "no_service": "error",
    "stopped": "disabled",
}


def flow_settings(cfg, *, rate_only=False):
    """The flow's view of the config."""
    return flow.FlowSettings.from_config(cfg, rate_only=rate_only)


class Runner:
    """One kiosk: the flow's state, and what carries out its effects.

    Every part but the store is optional, so tests and the headless runner can leave out the
    display, the card service, GPIO or telemetry. ``when_key(key)`` receives keys the display
    does not use itself (the demo's insert/remove keys); ``when_shown(runner)`` is called after
    a new screen (or language) was drawn (the demo's screenshots). ``seen`` holds the repeat
    hashes of the visits recorded within the repeat window, in memory only. ``housekeeper``
    (a :class:`kiosk.store.Housekeeper`) is asked to purge when the kiosk is idle.
    """

    def __init__(self, cfg, store, *, keys, card=None, display=None, panel=None,
                 telemetry=None, watchdog=None, housekeeper=None, rate_only=False,
                 clock=time.monotonic, when_key=None):
        self.cfg = cfg
        self.store = store
        self.keys = keys
        self.card = card
        self.display = display
        self.panel = panel
        self.telemetry = telemetry
        self.watchdog = watchdog
        self.housekeeper = housekeeper
        self.when_key = when_key
        self.when_shown = None
        self.clock = clock
        self.rate_only = rate_only
        self.events = queue.SimpleQueue()
        self.settings = flow_settings(cfg, rate_only=rate_only)
        self.state = flow.State()
        self.seen = SeenCards(cfg.flow.repeat_window_min * 60, clock=clock)
        self.recorded = 0
        self._next_housekeeping = clock()
        self._stop = threading.Event()
        self._shown = None

    # --- the loop --------------------------------------------------------------------------

    def run(self, stop):
        """Turn the loop until ``stop`` (a threading.Event) is set."""
        self._stop = stop
        self._check_disk()
        self._show()
        if self.watchdog:
            self.watchdog.ready("idle")
        while not stop.is_set():
            self.turn()
        if self.watchdog:
            self.watchdog.stopping()

    def turn(self, timeout=None):
        """One turn: take what happened, step the flow, draw, keep house, tell the watchdog."""
        if timeout is None:
            timeout = 1.0 / self.cfg.display.fps if self.display else HEADLESS_TURN_S
        try:
            facts = [self.events.get(timeout=timeout)]
        except queue.Empty:
            facts = []
        while True:
            try:
                facts.append(self.events.get_nowait())
            except queue.Empty:
                break
        for fact in facts:
            self.handle(fact)
        self.handle(flow.Tick())
        self._show()
        if self.clock() >= self._next_housekeeping:
            self._housekeeping()
        if self.watchdog:
            self.watchdog.kick()

    def _show(self):
        if self.display is None:
            return
        self.display.show(self.state)
        shown = (self.state.screen, self.state.language)
        if shown != self._shown:
            self._shown = shown
            if self.when_shown:
                self.when_shown(self)
        for fact in self.display.poll_events():
            self.handle(fact)

    # --- facts -----------------------------------------------------------------------------

    def handle(self, fact):
        """Take one fact from any adapter; the flow decides what it means.

        A fault nobody foresaw is logged and the kiosk returns to its idle screen rather than
        dying at the counter (a visit in progress is lost; everything recorded stays).
        """
        try:
            self._handle(fact)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("unexpected fault while handling %s; back to idle", type(fact).__name__)
            if self.state.screen is not flow.Screen.OUT_OF_SERVICE:
                self.state = flow.State(card_present=self.state.card_present)

    def _handle(self, fact):
        # Adapters' own facts are told apart by type name, so a kiosk without a screen, GPIO
        # or broker never imports pygame, gpiozero or paho just to recognise them.
        kind = type(fact).__name__
        if isinstance(fact, flow.EVENT_TYPES):
            self._step(fact)
        elif isinstance(fact, CardSummary):
            self._card_read(fact)
        elif kind == "CommandReceived" and self.telemetry:
            self.telemetry.commands.handle(fact)
        elif kind == "MotionSeen" and self.display:
            self.display.wake()
        elif kind == "KeyPressed" and self.when_key:
            self.when_key(fact.key)
        elif kind == "QuitRequested":
            log.info("quit requested from the keyboard (display.debug is on)")
            self._stop.set()
        else:
            log.warning("ignored a fact of type %s", kind)

    def _card_read(self, summary):
        """Turn the card module's summary into the flow's event: is it a repeat?"""
        # Current and previous key: a card seen just before a key rotation still counts.
        is_repeat = self.seen.is_repeat(summary.repeat_candidates)
        if self.telemetry:
            self.telemetry.health.note_card_read(self._stamp()["at"])
        self._step(flow.CardRead(is_repeat=is_repeat, repeat_hash=summary.repeat_hash,
                                 expired=summary.expired, age_band=summary.age_band,
                                 gender=summary.gender))

    def _step(self, event):
        before = self.state.screen
        self.state, effects = flow.step(self.state, event, self.clock(), self.settings)
        for effect in effects:
            if not self._execute(effect):
                break
        if self.state.screen is not before:
            log.info("screen %s -> %s", before.value, self.state.screen.value)

    # --- effects ---------------------------------------------------------------------------

    def _execute(self, effect):
        """Carry out one effect; False stops the rest of this step's effects."""
        if isinstance(effect, flow.RecordVisit):
            return self._record(effect.record)
        if isinstance(effect, flow.ReadCard):
            if self.card is None:
                self.events.put(flow.CardFailed("no_reader"))
            else:
                self.card.request_read()
        elif isinstance(effect, flow.Beep | flow.SetStatusLight):
            handled = self.panel is not None and self.panel.apply(effect)
            if not handled and isinstance(effect, flow.Beep) and self.display:
                self.display.beep(effect.kind)
        elif isinstance(effect, flow.ShowScreen):
            if self.watchdog:
                self.watchdog.status(effect.screen.value)
        return True

    def _record(self, record):
        try:
            self.store.record_visit(record, **visit_message(
                self.cfg.kiosk.id, self.cfg.kiosk.mode, self._stamp()))
        except (KioskError, ValueError) as exc:
            # Not kept, so not thanked: the kiosk stops taking visits until the cause is gone.
            log.error("visit not recorded, going out of service: %s", exc)
            if isinstance(exc, DiskFull):
                reason = self._disk_reason()
            elif isinstance(exc, StoreError):
                reason = f"{STORE_REASON}: {exc}"
            else:  # the contract refused the visit: only a new config can mend that
                reason = f"{RECORD_REASON}: {exc}"
            self._step(flow.ServiceSuspended(reason))
            return False
        self.recorded += 1
        if record.repeat_hash:
            self.seen.note(record.repeat_hash)  # only once kept: a lost visit was not rated
        if self.telemetry:
            self.telemetry.outbox.notify()
        return True

    def _stamp(self):
        from kiosk.telemetry.clock import system_stamp

        return system_stamp()

    # --- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self):
        self._next_housekeeping = self.clock() + HOUSEKEEPING_S
        self.keys.rotate_if_due()
        self._check_disk()
        if self.telemetry:
            self.telemetry.health.note_reader(
                READER_HEALTH.get(self.card.reader_state, "error") if self.card else "disabled")
        if self.housekeeper and self.state.screen is flow.Screen.IDLE:
            # Its thread does the work: a purge can take many frames (docs/benchmarks.md).
            self.housekeeper.request()

    def _check_disk(self):
        """Below the disk floor the kiosk stops taking visits instead of losing them.

        A suspension for the disk or a failed write ends by itself once the cause is gone, so
        a technician who frees space (or a storage hiccup that passes) needs no restart.
        """
        reason = self.state.out_of_service or ""
        try:
            has_room = self.store.has_room()
            if reason.startswith(STORE_REASON):
                # Reads may work while writes do not: only a write proves the store is back.
                self.store.set_state("write_check", str(self.clock()))
        except StoreError as exc:
            log.error("store still failing: %s", exc)
            return
        if not has_room and not reason.startswith(DISK_REASON):
            self._step(flow.ServiceSuspended(self._disk_reason()))
        elif has_room and reason.startswith((DISK_REASON, STORE_REASON)):
            self._step(flow.ServiceResumed())

    def _disk_reason(self):
        """What the technician reads on the out-of-service screen."""
        return (f"{DISK_REASON}: {self.store.free_mb():.0f} MB free under "
                f"{self.store.data_dir}, {self.store.min_free_mb} MB needed")

    def reconfigure(self, cfg):
        """A remote config was applied (telemetry has already re-published the pin).

        It takes effect at once, also for a visit in progress: new timeouts and catalogue,
        and above all what the card module may collect, so switching age band or gender off
        stops them with the next card.
        """
        self.cfg = cfg
        self.settings = flow_settings(cfg, rate_only=self.rate_only)
        if (self.state.out_of_service or "").startswith(RECORD_REASON):
            self._step(flow.ServiceResumed())
        if self.card:
            self.card.collect_age_band = cfg.flow.collect_age_band
            self.card.collect_gender = cfg.flow.collect_gender
        if self.display:
            self.display.reconfigure(cfg)


def visit_message(kiosk_id, mode, stamp):
    """Where a finished visit goes and how it is marked: the keywords of
    ``Store.record_visit`` besides the visit. ``stamp`` is the one reading of the clock for the
    visit (the row's ``recorded_at`` and the payload's time); the mode goes in here only.
    """
    from kiosk.telemetry import topics

    return {"topic": topics.kiosk_topic(kiosk_id, "visit"), "stamp": stamp, "mode": mode}


class Telemetry:
    """The kiosk's reporting: MQTT link, outbox pump, health and remote commands, composed."""

    def __init__(self, cfg, store, put, *, remote_path, when_config_applied=None,
                 cpu_temperature=None, screen_state=None, outbox_poll_s=1.0):
        from kiosk.telemetry import topics
        from kiosk.telemetry.commands import Commands
        from kiosk.telemetry.health import Health
        from kiosk.telemetry.mqtt import MqttLink
        from kiosk.telemetry.outbox import Outbox

        self.outbox = Outbox(store, window=cfg.telemetry.inflight_window,
                             resend_after_s=cfg.telemetry.resend_after_s,
                             when_dead=self._dead_letter, poll_s=outbox_poll_s)
        self.link = MqttLink(cfg.mqtt, cfg.kiosk.id, instance=store.instance,
                             next_epoch=store.next_epoch,
                             version=__version__, facts=self.outbox.put, put=put,
                             pin=topics.pin_payload(cfg),
                             inflight_window=cfg.telemetry.inflight_window)
        self.commands = Commands(self.link, self.outbox, config=cfg, remote_path=remote_path,
                                 when_config_applied=when_config_applied)
        self.health = Health(store, self.link, interval_s=cfg.telemetry.health_interval_s,
                             version=__version__, mode=cfg.kiosk.mode,
                             applied_version=lambda: self.commands.config.remote_version,
                             cpu_temperature=cpu_temperature, screen_state=screen_state)

    def _dead_letter(self, event_id, reason_code):
        self.health.note_dead_letter(event_id, reason_code)

    def start(self):
        self.outbox.start(self.link)
        self.link.start()
        self.health.start()

    def stop(self):
        self.health.stop()
        self.link.stop()
        self.outbox.stop()


class Kiosk:
    """Everything one kiosk process runs, built from a config; a context manager.

    ``headless`` uses SDL's dummy video driver; ``display=False`` runs without screens at all
    (the runner of the telemetry issue, soak runs). pyscard finds pcscd through
    ``PCSCLITE_CSOCK_NAME`` in the environment.
    """

    def __init__(self, cfg, *, display=True, headless=False, rate_only=False, when_key=None):
        from kiosk.card.repeat import RepeatKeys
        from kiosk.store import Housekeeper, Store

        self.cfg = cfg
        data_dir = Path(cfg.storage.data_dir)
        self.remote_path = kiosk_config.remote_layer_path(cfg)
        self.store = Store.open(data_dir, retention_days=cfg.storage.retention_days,
                                min_free_mb=cfg.storage.min_free_mb,
                                checkpoint_pages=cfg.storage.checkpoint_pages)
        self.keys = RepeatKeys(cfg.flow.repeat_window_min * 60)
        self._parts = []
        try:
            housekeeper = Housekeeper(self.store)
            housekeeper.start()
            self._parts.append(housekeeper)
            self.runner = Runner(cfg, self.store, keys=self.keys, housekeeper=housekeeper,
                                 rate_only=rate_only, when_key=when_key)
            self._build(display, headless)
        except BaseException:
            self.close()
            raise

    def _build(self, display, headless):
        from kiosk.gpio import Panel
        from kiosk.watchdog import Watchdog

        cfg, runner = self.cfg, self.runner
        runner.watchdog = Watchdog()
        runner.panel = Panel.from_config(cfg.gpio, put=runner.events.put)
        self._parts.append(runner.panel)
        if display:
            from kiosk.display import Display

            runner.display = Display(cfg, headless=headless,
                                     has_buzzer=cfg.gpio.buzzer is not None)
            self._parts.append(runner.display)
        if cfg.card.backend == "pcsc":
            from kiosk.card.reader import CardService

            runner.card = CardService(
                runner.events.put, self.keys, reader=cfg.card.reader or None,
                read_deadline_s=cfg.card.read_deadline_s, settle_s=cfg.card.settle_s,
                collect_age_band=cfg.flow.collect_age_band,
                collect_gender=cfg.flow.collect_gender)
            runner.card.start()
            self._parts.append(runner.card)
        else:
            log.warning("card.backend = %r: no card reader, ratings only without a card",
                        cfg.card.backend)
        if cfg.mqtt.host:
            runner.telemetry = Telemetry(
                cfg, self.store, runner.events.put, remote_path=self.remote_path,
                when_config_applied=runner.reconfigure,
                cpu_temperature=runner.panel.cpu_temperature,
                screen_state=runner.display.screen_state if runner.display else None)
            runner.telemetry.start()
            self._parts.append(runner.telemetry)
        else:
            log.warning("mqtt.host is empty: telemetry is off, visits stay in the local outbox")

    def run(self, stop):
        self.runner.run(stop)

    def play(self, steps, stop, *, card=None, repeat=1, wait_confirmed_s=0.0):
        """Run the main loop while a script plays, then until the collector confirmed.

        The loop stays on this thread; the script's driver only enqueues. Returns the driver
        (``completed``, ``error``). ``stop`` ends it early (SIGTERM).
        """
        from kiosk import script

        driver = script.ScriptDriver(self.runner, steps, repeat=repeat, card=card)

        def finish():
            driver.done.wait()
            deadline = time.monotonic() + wait_confirmed_s
            try:
                while time.monotonic() < deadline and not stop.is_set():
                    if self.store.outbox_stats().depth == 0:
                        break
                    stop.wait(0.1)
            finally:
                self.store.close()  # this thread's own connection only
                stop.set()

        driver.start()
        threading.Thread(target=finish, name="script-finish", daemon=True).start()
        self.run(stop)
        driver.stop()
        return driver

    def close(self):
        for part in reversed(self._parts):
            try:
                part.stop() if hasattr(part, "stop") else part.close()
            except Exception:  # noqa: BLE001 - one part failing must not keep others running
                log.exception("error while stopping %s", type(part).__name__)
        self._parts.clear()
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def add_arguments(parser):
    parser.add_argument("--config", type=Path, default=None,
                        help=f"kiosk config file (default {kiosk_config.DEFAULT_PATH})")
    parser.add_argument("--headless", action="store_true",
                        help="no window: SDL's dummy video driver (tests, soak runs)")
    parser.add_argument("--no-display", action="store_true",
                        help="run without screens at all (a kiosk with physical buttons only)")
    parser.add_argument("--script", type=Path,
                        help="play scripted visits from FILE, then stop (see kiosk.script)")
    parser.add_argument("--repeat", type=int, default=1, help="play the script N times")
    parser.add_argument("--emulator", help="control socket of the card emulator the script uses")
    parser.add_argument("--wait-confirmed", type=float, default=0.0, metavar="S",
                        help="after the script, wait up to S seconds for the collector's acks")
    parser.add_argument("--out-of-order", action="store_true",
                        help="only show the out-of-service screen and the fault light (what "
                             "kiosk-out-of-order.service runs while the kiosk is down)")


def main(args):
    from kiosk import script

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.out_of_order:
        return out_of_order(args.config, stop, headless=args.headless)
    cfg = kiosk_config.load(args.config)  # with the remote layer saved in the data directory
    steps = script.parse(args.script.read_text(), str(args.script)) if args.script else None
    with Kiosk(cfg, display=not args.no_display, headless=args.headless or bool(args.script),
               rate_only=args.no_display) as kiosk:
        if steps is None:
            kiosk.run(stop)
            return 0
        return _play(kiosk, steps, args, stop)


def _play(kiosk, steps, args, stop):
    from kiosk.rigs.card_emulator import ControlClient

    card = ControlClient(args.emulator) if args.emulator else None
    driver = kiosk.play(steps, stop, card=card, repeat=args.repeat,
                        wait_confirmed_s=args.wait_confirmed)
    depth = kiosk.store.outbox_stats().depth
    print(f"kiosk: script played {driver.completed} time(s), {kiosk.runner.recorded} visit(s) "
          f"recorded, {depth} unconfirmed in the outbox")
    if driver.error:
        raise KioskError(f"script failed: {driver.error}")
    return 0


PROBLEMS_FILE = Path("/var/lib/kiosk/firstboot-problems.txt")


def _raw_gpio(path):
    """The ``[gpio]`` table of a TOML file nobody validated; {} when there is none."""
    try:
        gpio = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("gpio", {})
    except (OSError, ValueError):
        return {}
    return gpio if isinstance(gpio, dict) else {}


def out_of_order(config_path, stop, *, headless=False, problems_file=PROBLEMS_FILE,
                 boot_file=None):
    """Show only the out-of-service screen until stopped; works even with a broken config.

    Nothing here touches the card, the broker or the store, so whatever brought the kiosk down
    cannot bring this screen down too. The reason shown is first boot's complaint when there is
    one, else a pointer to the journal.
    """
    from kiosk.bundle import BOOT_DIR, CONFIG_NAME
    from kiosk.display import Display
    from kiosk.display.settings import DisplaySettings
    from kiosk.gpio import Panel, show_fault_light

    try:
        cfg = kiosk_config.load(config_path)
    except KioskError as exc:
        log.error("config unusable, showing the out-of-order screen with defaults: %s", exc)
        cfg = None
    try:
        reason = problems_file.read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, IndexError):
        reason = "kiosk stopped; see journalctl -u kiosk"
    state = flow.State(screen=flow.Screen.OUT_OF_SERVICE, out_of_service=reason)
    if cfg:
        panel = Panel.from_config(cfg.gpio, put=lambda fact: None)
    else:
        # No usable config: the fault LED the refused first-boot file names, read as data.
        panel = show_fault_light(_raw_gpio(boot_file or BOOT_DIR / CONFIG_NAME))
    display = Display(cfg or DisplaySettings(), headless=headless)
    try:
        if panel:
            panel.set_status_light("fault")
        while not stop.is_set():
            display.show(state)
            display.poll_events()  # taps do nothing here, but the queue must not fill
            stop.wait(0.2)
    finally:
        display.close()
        if panel:
            panel.close()
    return 0

