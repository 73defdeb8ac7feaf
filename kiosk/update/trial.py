"""The first run of a newly switched version: no visits until it has proven itself healthy.

After the switch, the updater writes :data:`TRIAL` into the kiosk's state folder, naming the
version it switched to. A kiosk of that version starts suspended (the "one moment" screen) and
resumes once all hold at one turn of its loop: the loop turns (systemd's watchdog was pinged), the
broker is connected (when one is configured), the card monitor talks to pcscd, and no card is
in the reader (the flow resumes at idle). It writes :data:`HEALTHY` first, then takes visits.
The updater waits for that file; past its deadline it stops the kiosk, looks once more, and
rolls back (:mod:`kiosk.update.slots`). A rollback loses no visit: none was taken.
"""

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

TRIAL, HEALTHY = "update-trial.json", "update-healthy.json"
#: The suspension's reason while on trial: the technician's line of the "one moment" screen.
REASON = "update_check"
#: Card monitor states that prove it reached pcscd (kiosk.card.reader.READER_STATES).
CARD_UP = ("no_reader", "no_card", "ok")


class Trial:
    """The trial of ``version`` in ``state_dir``, as the kiosk runs it (see the module)."""

    def __init__(self, state_dir, version):
        self.state_dir, self.version = Path(state_dir), version

    @classmethod
    def pending(cls, state_dir, version):
        """The Trial to run, when the updater asked for one for this very version; else None."""
        asked = read(Path(state_dir) / TRIAL)
        if asked is None or asked.get("version") != version:
            return None
        if (read(Path(state_dir) / HEALTHY) or {}).get("version") == version:
            return None  # proven already; the updater was cut before it removed the trial
        return cls(state_dir, version)

    @property
    def reason(self):
        return f"{REASON}: version {self.version}"

    def is_proven(self, *, watchdog, telemetry, card):
        """Whether this turn shows all three: the loop pinged, the broker, the card monitor."""
        pinged = watchdog is None or not watchdog.is_enabled or watchdog.has_pinged
        connected = telemetry is None or telemetry.link.is_connected
        card_up = card is None or card.reader_state in CARD_UP
        return pinged and connected and card_up

    def declare_healthy(self):
        write(self.state_dir / HEALTHY, {"version": self.version})
        log.info("update: version %s declared healthy", self.version)


def read(path):
    """A trial file's content, or None when it is missing or unreadable."""
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def write(path, content):
    """Write a trial file whole or not at all, durably. Root writes these in the kiosk user's
    folder: the temporary name is created afresh (``O_EXCL``) and never followed if it is a
    symlink (``O_NOFOLLOW``), so nothing planted there redirects root's write."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(content) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
