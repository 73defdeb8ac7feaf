"""``kiosk demo``: the whole kiosk on one machine, with an emulated card, broker and collector.

Never part of a real kiosk. It starts pcscd + vpcd + the card emulator in a private namespace
(:mod:`kiosk.rigs.card_stack`), a Mosquitto on 127.0.0.1 with the fleet's accounts and ACLs
(:mod:`kiosk.rigs.broker`) and a collector, a simulated fleet and the ops console over the
collector's store (:mod:`kiosk.fleet.demo_console`, its URL and passwords printed), then the
kiosk itself. With a display it opens a window (``i`` inserts the next emulated card, ``r``
removes it, Esc quits); without one, or with ``--headless``, it plays N scripted visits, saves
a PNG of every screen it showed and of the console's pages, and prints what the collector
recorded. Every message is marked ``"mode": "demo"`` so it never
counts in the programme's statistics.
"""

import logging
import os
import signal
import tempfile
import threading
import tomllib
from contextlib import ExitStack
from pathlib import Path

import tomli_w

from kiosk import config as kiosk_config
from kiosk import period, script
from kiosk.assemble import Kiosk
from kiosk.errors import KioskError
from kiosk.facts import ButtonPressed
from kiosk.flow import Back

log = logging.getLogger(__name__)

DEMO_CONFIG = Path(__file__).with_name("demo.toml")
#: How long the headless demo waits for the collector to confirm its visits. A busy machine
#: (the demo's simulated fleet is stored by the same collector) can take a while; the wait ends
#: as soon as everything is confirmed.
CONFIRM_WAIT_S = 120.0
#: A demo resends an unconfirmed message after this many seconds, as often as its periods end,
#: rather than the production minute that would outlast the demo's wait.
DEMO_RESEND_S = 5
#: The demo window's stand-ins for the GPIO buttons (pygame key names -> what GPIO posts).
BUTTON_KEYS = {**{str(n): ButtonPressed(n) for n in range(1, 6)}, "backspace": Back()}

# The demo's citizens answer differently, so the statistics it prints are not all alike.
ANSWERS = (("id_card", 2, "waiting_time"), ("none", 5, None), ("both", 1, "skip"),
           ("none", 4, None), ("house_registration", 3, None))


def visit_script(cfg, visits):
    """A script of ``visits`` visits, each by a different emulated citizen.

    It follows the config's flow: the card is taken back after the read, the service is asked
    (even of one, since "other service" is a choice too), the reason question comes only at or below
    ``flow.ask_reason_at_or_below``, and the confirm screen is left to send the answers.
    """
    lines = []
    for n in range(visits):
        copy, rating, reason = ANSWERS[n % len(ANSWERS)]
        if n % 2:  # every other citizen switches to English first: the demo shows both
            lines.append("lang")
        # The card comes back first: the citizen takes it when asked.
        lines += [f"insert citizen-{n}", "wait return_card", "remove"]
        lines += ["wait choose_service", f"service {cfg.services[n % len(cfg.services)].id}"]
        lines += ["wait copy_check", f"copy {copy}", "wait rating", f"rating {rating}"]
        if rating <= cfg.flow.ask_reason_at_or_below:
            lines += ["wait reason", f"reason {reason or 'other'}"]
        # The answers stand once "change my answer" is no longer offered; then Done.
        lines += ["wait confirm", "wait thank_you 30", "ok", "wait idle 30"]
    return script.parse("\n".join(lines), "<demo>")


def demo_config(base_path, workdir, *, mqtt=None, password_file=None):
    """The kiosk config the demo runs: the given (or packaged demo) file, marked as a demo.

    The demo owns the data directory, the card backend, the period (the shortest a demo may
    have, so its visits reach the collector within seconds rather than after the hour), the
    resend delay unless the file sets one and, unless the file names a broker of its own, the
    MQTT settings.
    """
    raw = tomllib.loads(Path(base_path).read_text(encoding="utf-8"))
    raw.setdefault("kiosk", {})["mode"] = "demo"
    raw.setdefault("telemetry", {})["period_s"] = period.DEMO_MIN_S
    raw["telemetry"].setdefault("resend_after_s", DEMO_RESEND_S)
    raw.setdefault("storage", {})["data_dir"] = str(workdir / "data")
    raw.setdefault("card", {}).update(backend="pcsc", reader="")
    if mqtt is not None:
        raw["mqtt"] = {**raw.get("mqtt", {}), **mqtt, "password_file": str(password_file)}
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    return kiosk_config.parse(tomli_w.dumps(raw), source=f"{base_path} (demo)")


class DemoWorld:
    """The card stack, and unless the config names a broker, a broker and a collector.

    A context manager; everything it started is stopped on exit, even after an error.
    """

    def __init__(self, workdir, config_path=None, *, fleet=0, tiles=None):
        self.workdir = Path(workdir)
        self.config_path = Path(config_path or DEMO_CONFIG)
        self.fleet, self.tiles = fleet, tiles
        self.broker = None
        self.collector = None
        self.console = None
        self._exit = ExitStack()

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc):
        self._exit.close()

    def _start(self):
        from kiosk.rigs.card_stack import CardStack

        print("demo: starting the emulated card stack (pcscd + vpcd + emulator, private "
              "namespace) ...", flush=True)
        self.stack = self._exit.enter_context(CardStack(self.workdir / "card"))
        os.environ.update(self.stack.env)  # pyscard finds this pcscd, never the system's
        base = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        if base.get("mqtt", {}).get("host"):
            print(f"demo: reporting to the broker in {self.config_path}: "
                  f"{base['mqtt']['host']}", flush=True)
            self.cfg = demo_config(self.config_path, self.workdir)
            return
        self._start_fleet(base["kiosk"]["id"])

    def _start_fleet(self, kiosk_id):
        from kiosk.fleet.collector import Collector
        from kiosk.rigs.broker import Broker

        print("demo: starting a local Mosquitto and collector on 127.0.0.1 ...", flush=True)
        self.broker = Broker(self.workdir / "broker")
        self.broker.start()
        self._exit.callback(self.broker.stop)
        password_file = self.workdir / "mqtt-password"
        password_file.write_text(self.broker.add_kiosk(kiosk_id))
        password_file.chmod(0o600)
        self.collector = Collector(self.workdir / "fleet.db", "127.0.0.1", self.broker.port,
                                   *self.broker.collector_credentials)
        self.collector.start()
        self._exit.callback(self.collector.stop)
        if self.fleet:
            from kiosk.fleet.demo_console import DemoConsole

            self.console = self._exit.enter_context(DemoConsole(
                self.workdir / "console", self.broker, self.workdir / "fleet.db", self.fleet,
                tiles=self.tiles))
        mqtt = {"host": "127.0.0.1", "port": self.broker.port, "tls": False,
                "username": kiosk_id, "will_delay_s": 30}
        self.cfg = demo_config(self.config_path, self.workdir, mqtt=mqtt,
                               password_file=password_file)


def has_display():
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def add_arguments(parser):
    parser.add_argument("--headless", action="store_true",
                        help="no window: play scripted visits and save every screen as PNG")
    parser.add_argument("--visits", type=int, default=3, help="scripted visits (headless mode)")
    parser.add_argument("--out", type=Path, default=Path("demo-screens"),
                        help="folder for the screenshots (headless mode)")
    parser.add_argument("--fleet", type=int, default=300, metavar="N",
                        help="simulated kiosks beside the demo kiosk, shown in the ops console "
                             "the demo serves (default %(default)s; 0: no console)")
    parser.add_argument("--config", type=Path, default=None,
                        help="kiosk config to demo (default: the packaged demo kiosk); "
                             "a broker named in its [mqtt] is used instead of a local one")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the demo's data, logs and databases here (default: a temp "
                             "folder removed at the end)")


def main(args):
    from kiosk.rigs.card_profiles import CITIZENS

    if not 1 <= args.visits <= CITIZENS:
        raise KioskError(f"--visits {args.visits}: the emulator has {CITIZENS} citizens; "
                         f"choose 1 to {CITIZENS}")
    if args.fleet < 0:
        raise KioskError(f"--fleet {args.fleet}: give 0 (no console) or more kiosks")
    if args.config is not None:
        kiosk_config.load(args.config)  # refuse a bad file before starting anything
    headless = args.headless or not has_display()
    if not headless:
        print("demo: a window opens; keys: i insert a card, r remove it, 1-5 the choice "
              "buttons, Backspace the Back button, Esc quit", flush=True)
    elif not args.headless:
        print("demo: no display found ($DISPLAY unset): playing a headless demo", flush=True)
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="kiosk-demo-")))
        from kiosk.fleet.console.map import OPENSTREETMAP

        world = stack.enter_context(DemoWorld(workdir, args.config, fleet=args.fleet,
                                              tiles=None if headless else OPENSTREETMAP))
        if headless:
            return _headless(world, args)
        return _window(world)


def _window(world):
    inserted = [0]
    running = []

    def key(name):
        if name == "i":
            world.stack.emulator.insert(f"citizen-{inserted[0]}")
            inserted[0] += 1
        elif name == "r":
            world.stack.emulator.remove()
        elif name in BUTTON_KEYS and running:
            # What the kiosk's GPIO buttons would post, so the button path can be tried too.
            running[0].runner.events.put(BUTTON_KEYS[name])

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with Kiosk(world.cfg, when_key=key) as kiosk:
        running.append(kiosk)
        kiosk.run(stop)
    _report(world)
    return 0


def _headless(world, args):
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    steps = visit_script(world.cfg, args.visits)
    shots = []

    def shoot(runner):
        path = out / f"{len(shots):03d}-{runner.state.screen.value}-{runner.state.language}.png"
        runner.display.save_png(path)
        shots.append(path)

    # Headless means no one listens: SDL's dummy audio keeps ALSA from complaining on stderr.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    stop = threading.Event()
    print(f"demo: playing {args.visits} scripted visit(s) through the real card stack, then "
          f"waiting (up to {CONFIRM_WAIT_S:g} s) for the collector to confirm them ...", flush=True)
    with Kiosk(world.cfg, headless=True, when_shown=shoot) as kiosk:
        driver = kiosk.play(steps, stop, card=world.stack.emulator,
                            wait_confirmed_s=CONFIRM_WAIT_S)
        stats = kiosk.store.outbox_stats()
    if driver.error:
        raise KioskError(f"demo visit failed: {driver.error}")
    print(f"demo: {args.visits} visit(s) done, {len(shots)} screenshots in {out}/, "
          f"{stats.depth + stats.held} message(s) not yet confirmed by the collector")
    _report(world)
    if world.console is not None:
        world.console.screenshots(out / "console")
    return 0


def _report(world):
    if world.collector is None:
        print("demo: visits were reported to the configured broker; ask its collector")
        return
    # The simulated fleet's visits are the console's to show; these are the demo kiosk's.
    visits = world.collector.db.visits(world.cfg.kiosk.id)
    print(f"demo: the collector recorded {len(visits)} visit(s) (all marked demo, kept out "
          "of statistics):")
    for visit in visits:
        print(f"  period {visit.period}: service {visit.service_id}, copy asked: "
              f"{visit.copy_answer}, rating {visit.rating}, reason {visit.reason or '-'}, "
              f"{visit.outcome}, {'verified' if visit.verified else 'no card'}")

