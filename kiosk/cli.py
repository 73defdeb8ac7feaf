"""The ``kiosk`` command: one verb per module that owns it.

Only the chosen verb's module is imported, so ``kiosk config check`` stays fast and works on a
machine without pygame or a card reader. Each module provides ``add_arguments(parser)`` and
``main(args) -> int``. A :class:`~kiosk.errors.KioskError` ends the command with its message and
exit status 1, never a traceback.
"""

import argparse
import importlib
import logging
import sys

from kiosk import __version__, logsafe
from kiosk.errors import KioskError

VERBS = {
    "config": ("kiosk.config", "check or show a kiosk config file"),
    "card": ("kiosk.card.probe", "probe the card reader and card (technician tool)"),
    "run": ("kiosk.run", "run the kiosk"),
    "demo": ("kiosk.demo", "run the kiosk with an emulated card, a local broker and collector"),
    "screenshot": ("kiosk.screenshot", "render every screen to PNG files"),
    "firstboot": ("kiosk.firstboot", "apply the agency's boot-partition config (first boot)"),
    "update": ("kiosk.update.updater", "install a signed release into the other slot, switch"),
    "cert": ("kiosk.renewal.unit", "renew the MQTT client certificate: request, install (root)"),
}


def run_verbs(prog, verbs, argv):
    """Parse ``argv`` against ``verbs`` and run the chosen one; shared with ``kiosk-fleet``."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    modules = {}
    for verb, (module_name, help_text) in verbs.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        if verb == chosen:
            modules[verb] = importlib.import_module(module_name)
            modules[verb].add_arguments(verb_parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logsafe.install()
    try:
        return modules[args.verb].main(args)
    except KioskError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv=None):
    sys.exit(run_verbs("kiosk", VERBS, sys.argv[1:] if argv is None else argv))
