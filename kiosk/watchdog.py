"""systemd service notifications (sd_notify) and the main-loop watchdog, standard library only.

Why: kiosk.service is ``Type=notify`` with ``WatchdogSec=``. systemd restarts the kiosk when
``WATCHDOG=1`` stops arriving, so the ping must come from the main loop itself: a hung UI, a
stuck database call or a deadlock stops the pings, and the kiosk is restarted.

API for the runner (``kiosk.runner``)::

    watchdog = Watchdog()            # reads NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID
    watchdog.ready("showing idle")  # READY=1 (+ STATUS=) once start-up is done
    while running:
        ...one turn: take events, step the flow, draw...
        watchdog.kick()             # once per turn; sends WATCHDOG=1 at most every WatchdogSec/2
    watchdog.status("out of service: disk full")
    watchdog.stopping()             # STOPPING=1 on a clean shutdown

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op, so tests and ``kiosk demo``
need nothing special. A failed send is logged, never raised: losing a ping must not crash the
kiosk (systemd will then restart it, which is the intended outcome).
"""

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def notify_address(environ=os.environ):
    """The socket address from ``NOTIFY_SOCKET`` (``@name`` is an abstract socket), or None."""
    path = environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]
    return path


def notify(*fields, environ=os.environ):
    """Send ``KEY=value`` lines to systemd in one datagram; False when not under systemd."""
    address = notify_address(environ)
    if address is None:
        return False
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
        return True
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", environ.get("NOTIFY_SOCKET"), exc)
        return False


def watchdog_interval(environ=os.environ, pid=None):
    """Seconds between pings (half of WatchdogSec), or None when no watchdog is asked for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid and watchdog_pid != str(pid if pid is not None else os.getpid()):
        return None  # the watchdog belongs to a parent process, not to us
    try:
        usec = int(usec)
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


class Watchdog:
    """Sends READY/STATUS/STOPPING and rate-limited WATCHDOG=1 pings for one process."""

    def __init__(self, *, environ=os.environ, clock=time.monotonic):
        self._environ = dict(environ)
        self._clock = clock
        self.interval = watchdog_interval(self._environ)
        self._last_ping = None

    @property
    def is_enabled(self):
        """True when systemd listens and expects watchdog pings from this process."""
        return self.interval is not None and notify_address(self._environ) is not None

    @property
    def has_pinged(self):
        """Whether systemd has heard from this process since start-up (READY or WATCHDOG)."""
        return self._last_ping is not None

    def ready(self, status=None):
        """Start-up is done: systemd moves the unit to active (and starts counting WatchdogSec)."""
        fields = ["READY=1"] + ([f"STATUS={status}"] if status else [])
        if notify(*fields, environ=self._environ) and self.interval is not None:
            self._last_ping = self._clock()

    def kick(self):
        """Call once per main-loop turn; pings only when half the watchdog period has passed.

        Rate-limited so a loop turning 30 times a second sends about one datagram every
        WatchdogSec/2 instead of 30; returns True when it pinged.
        """
        if self.interval is None:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.interval:
            return False
        self._last_ping = now
        return notify("WATCHDOG=1", environ=self._environ)

    def status(self, text):
        """One line shown by ``systemctl status kiosk`` (never citizen data)."""
        notify(f"STATUS={text}", environ=self._environ)

    def stopping(self):
        """A clean shutdown has begun: systemd will not count the exit as a hang."""
        notify("STOPPING=1", environ=self._environ)
