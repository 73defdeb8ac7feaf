"""``kiosk run``: the kiosk process, a scripted run of it, or the out-of-order screen."""

import signal
import threading
from pathlib import Path

from kiosk import config as kiosk_config
from kiosk import script
from kiosk.assemble import Kiosk
from kiosk.clock import WallClock
from kiosk.errors import KioskError
from kiosk.out_of_order import out_of_order


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
    parser.add_argument("--first", type=int, default=0, metavar="N",
                        help="number the repetitions ({n} in the script) from N (default 0)")
    parser.add_argument("--progress", action="store_true",
                        help="print 'script: N SCREEN' for each screen a wait saw, then "
                             "'script: N done' or 'script: N recovered' (a soak's record)")
    parser.add_argument("--emulator", help="control socket of the card emulator the script uses")
    parser.add_argument("--keep-going", action="store_true",
                        help="a 'wait' that times out ends only its repetition: take the card "
                             "out, let the kiosk reach idle by itself, count it, play on (soak)")
    parser.add_argument("--recover-s", type=float, default=script.DEFAULT_RECOVER_S, metavar="S",
                        help="with --keep-going: longest wait for idle after a failed "
                             "repetition before the run fails (default %(default)g)")
    parser.add_argument("--wait-confirmed", type=float, default=0.0, metavar="S",
                        help="after the script, wait up to S seconds for the collector's acks")
    parser.add_argument("--clock-file", type=Path, metavar="PATH",
                        help="test and soak runs only: add the seconds in PATH (a float, may be "
                             "negative) to the wall clock; re-read when the file changes, "
                             "missing or unreadable = no offset")
    parser.add_argument("--repeat-key-seed", metavar="SEED",
                        help="test and soak runs only: derive the repeat-detection keys from "
                             "SEED instead of drawing them at random, so a privacy scan can "
                             "look for the keys and the hashes (refused unless kiosk.mode is "
                             "demo)")
    parser.add_argument("--scene-text", type=Path, metavar="PATH",
                        help="test and soak runs only: append every text and button label of "
                             "each screen as first drawn to PATH, for a privacy scan of what "
                             "was shown")
    parser.add_argument("--out-of-order", action="store_true",
                        help="only show the out-of-service screen and the fault light (what "
                             "kiosk-out-of-order.service runs while the kiosk is down)")


def main(args):
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.out_of_order:
        return out_of_order(args.config, stop, headless=args.headless)
    cfg = kiosk_config.load(args.config)  # with the remote layer saved in the data directory
    steps = script.parse(args.script.read_text(), str(args.script)) if args.script else None
    when_shown = _scene_text_writer(args.scene_text) if args.scene_text else None
    with Kiosk(cfg, display=not args.no_display, headless=args.headless or bool(args.script),
               rate_only=args.no_display, clock=WallClock(args.clock_file),
               repeat_key_seed=args.repeat_key_seed, when_shown=when_shown) as kiosk:
        if steps is None:
            kiosk.run(stop)
            return 0
        return _play(kiosk, steps, args, stop)


def _play(kiosk, steps, args, stop):
    card = None
    if args.emulator:
        # Here, not at the top: only a scripted run against the demo's emulated card needs the
        # rigs; a real kiosk never loads them.
        from kiosk.rigs.card_emulator import ControlClient

        card = ControlClient(args.emulator)
    driver = kiosk.play(steps, stop, card=card, repeat=args.repeat, first=args.first,
                        wait_confirmed_s=args.wait_confirmed, keep_going=args.keep_going,
                        recover_s=args.recover_s,
                        progress=_print_progress if args.progress else None)
    stats = kiosk.store.outbox_stats()
    print(f"kiosk: script played {driver.completed} time(s), {driver.recovered} recovered, "
          f"{kiosk.runner.recorded} visit(s) "
          f"recorded, {stats.depth} unconfirmed in the outbox, {stats.held} held until their "
          f"period ends")
    if driver.error:
        raise KioskError(f"script failed: {driver.error}")
    if args.wait_confirmed and stats.depth + stats.held:
        raise KioskError(f"{stats.depth + stats.held} message(s) still unconfirmed when the "
                         f"run ended (--wait-confirmed {args.wait_confirmed:g}; the log says "
                         "why the wait ended): they stay in the outbox and go with the next run")
    return 0


def _print_progress(n, what):
    # Flushed line by line: a soak that kills this process keeps every line printed before.
    print(f"script: {n} {what}", flush=True)


def _scene_text_writer(path):
    """``when_shown(runner)``: the words of the screen just drawn, appended to ``path``."""
    def write(runner):
        scene = runner.display.scene
        words = [box.text for box in scene.texts] + [button.label for button in scene.buttons]
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"# {runner.state.screen.value} {runner.state.language}\n")
            out.writelines(f"{word}\n" for word in words)
    return write
