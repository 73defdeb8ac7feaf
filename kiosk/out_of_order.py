"""The out-of-order program (``kiosk run --out-of-order``, kiosk-out-of-order.service).

It shows only the out-of-service screen and lights the fault LED while the kiosk is down, and
it works even with a broken config: nothing here touches the card, the broker or the store, so
whatever brought the kiosk down cannot bring this screen down too.
"""

import logging
import tomllib
from pathlib import Path

from kiosk import config as kiosk_config
from kiosk import flow, gpio
from kiosk.bundle import BOOT_DIR, CONFIG_NAME, DATA_DIR, PROBLEMS_NAME
from kiosk.display.settings import DisplaySettings
from kiosk.errors import KioskError

log = logging.getLogger(__name__)

PROBLEMS_FILE = Path(DATA_DIR, PROBLEMS_NAME)


def _raw_gpio(path):
    """The ``[gpio]`` table of a TOML file nobody validated; {} when there is none."""
    try:
        table = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("gpio", {})
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def out_of_order(config_path, stop, *, headless=False, problems_file=PROBLEMS_FILE,
                 boot_file=None):
    """Show only the out-of-service screen until stopped; works even with a broken config.

    The reason shown is first boot's complaint when there is one, else a pointer to the
    journal.
    """
    # Here, not at the top: ``kiosk run`` imports this module, and a kiosk without a screen
    # must not load pygame.
    from kiosk.display.window import Display

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
        panel = gpio.Panel.from_config(cfg.gpio, put=lambda fact: None)
    else:
        # No usable config: the fault LED the refused first-boot file names, read as data.
        panel = gpio.show_fault_light(_raw_gpio(boot_file or BOOT_DIR / CONFIG_NAME))
    display = Display(cfg or DisplaySettings(), headless=headless)
    try:
        if panel:
            panel.set_status_light(flow.StatusLight.FAULT)
        while not stop.is_set():
            display.show(state)
            display.poll_events()  # taps do nothing here, but the queue must not fill
            stop.wait(0.2)
    finally:
        display.close()
        if panel:
            panel.close()
    return 0
