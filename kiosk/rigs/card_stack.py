"""A private PC/SC stack with an emulated card, for tests, benchmarks and the demo.

Never part of a real kiosk. Only pcscd and the card emulator run inside a private network and
mount namespace, so vpcd's TCP port (which listens on every address) is reachable from inside
alone, and a private directory bound over ``/run`` gives pcscd its own ``/run/pcscd`` without
touching the host's. ``/dev/bus/usb`` is hidden too, so a real reader on the machine stays with
the host's pcscd. The kiosk, pytest and the demo stay outside (they still reach a broker) and
talk to this pcscd through ``PCSCLITE_CSOCK_NAME``: use :attr:`CardStack.env`.

libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once, when a process first establishes a context, and
keeps it: set it before the first PC/SC call and keep the socket path fixed for the life of the
process (restart pcscd inside one stack rather than starting another stack).

Teardown is guaranteed: ``setpriv --pdeathsig KILL`` ties the namespace to this process, and
``unshare --kill-child`` and pcscd's own death signal tie everything inside to the namespace.
"""

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kiosk.rigs.card_emulator import ControlClient, Emulator, emulator_handlers, serve_control

log = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DRIVER = "usr/lib/pcsc/drivers/serial/libifdvpcd.so"
_READER_CONF = """\
# Written by kiosk.rigs.card_stack: only this private pcscd loads vpcd.
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      {driver}
CHANNELID    0x8C7B
"""
_INNER_SOCKET = "/run/pcscd/pcscd.comm"


def vpcd_driver(vpcd_dir=None):
    """The privately unpacked vpcd driver: ``KIOSK_VPCD_DIR`` or ``<repo>/.cache/vpcd``."""
    base = Path(vpcd_dir or os.environ.get("KIOSK_VPCD_DIR") or _REPO_ROOT / ".cache" / "vpcd")
    driver = base / _DRIVER
    if not driver.exists():
        raise FileNotFoundError(
            f"vpcd driver not found at {driver}: run ./dev setup "
            "(or set KIOSK_VPCD_DIR to where vsmartcard-vpcd is unpacked)"
        )
    return driver


class CardStack:
    """pcscd + vpcd + the emulator in a namespace; a context manager.

    ``CardStack(workdir)`` writes its sockets, config and logs under ``workdir``:
    ``pcscd.log`` and ``emulator.log`` (:attr:`log_files`). :attr:`emulator` is a
    :class:`~kiosk.rigs.card_emulator.ControlClient` (``insert(profile)``, ``remove()``,
    ``set_fault(...)``); :meth:`kill_pcscd`, :meth:`start_pcscd` and :meth:`restart_pcscd` act
    on the daemon; :meth:`wait_for_card` waits until pcscd itself sees the card come or go.
    """

    def __init__(self, workdir, *, vpcd_dir=None, start_timeout=20.0):
        self.workdir = Path(workdir)
        self.driver = vpcd_driver(vpcd_dir)
        self.start_timeout = start_timeout
        self.csock_name = str(self.workdir / "run" / "pcscd" / "pcscd.comm")
        self.env = {"PCSCLITE_CSOCK_NAME": self.csock_name}
        self.control_path = str(self.workdir / "control.sock")
        self.emulator = ControlClient(self.control_path)
        self.log_files = (self.workdir / "pcscd.log", self.workdir / "emulator.log")
        self._process = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        # A socket left by an earlier stack in this folder would pass for the new one's.
        Path(self.control_path).unlink(missing_ok=True)
        conf_dir = self.workdir / "reader.conf.d"
        conf_dir.mkdir(exist_ok=True)
        (conf_dir / "vpcd").write_text(_READER_CONF.format(driver=self.driver))
        unshare = ["unshare", "--net", "--mount", "--fork", "--kill-child"]
        if os.geteuid() != 0:
            unshare.append("--map-root-user")
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        )
        env.pop("PCSCLITE_CSOCK_NAME", None)
        with open(self.workdir / "stack.err", "ab") as err:
            self._process = subprocess.Popen(
                [
                    "setpriv",
                    "--pdeathsig",
                    "KILL",
                    *unshare,
                    sys.executable,
                    "-m",
                    "kiosk.rigs.card_stack",
                    "--inner",
                    str(self.workdir),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + self.start_timeout
        while not os.path.exists(self.control_path):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"card stack did not start; see {self.workdir / 'stack.err'}")
            time.sleep(0.02)
        try:
            self._control("wait_for_reader", timeout=self.start_timeout)
        except BaseException:
            self.close()  # __exit__ never runs when __enter__ fails: end the namespace here
            raise

    def close(self):
        if self._process is None:
            return
        if self._process.poll() is None:
            try:
                ControlClient(self.control_path, timeout=5).call("shutdown")
            except (OSError, RuntimeError):
                pass
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill_pcscd(self):
        """SIGKILL pcscd, as a crash would: clients see "Service not available"."""
        self._control("pcscd_kill")

    def start_pcscd(self):
        """Start pcscd and wait until it lists the virtual reader."""
        self._control("pcscd_start")
        self._control("wait_for_reader", timeout=self.start_timeout)

    def restart_pcscd(self):
        """Stop pcscd cleanly (SIGTERM) and start it again."""
        self._control("pcscd_stop")
        self.start_pcscd()

    def wait_for_card(self, present=True, timeout=10.0):
        """Block until pcscd reports the card present (or absent); False on timeout."""
        return self._control("wait_for_card", present=present, timeout=timeout)

    def _control(self, cmd, **kwargs):
        return ControlClient(self.control_path, timeout=kwargs.get("timeout", 10) + 10).call(
            cmd, **kwargs
        )


# --- inside the namespace --------------------------------------------------------------------


class _Pcscd:
    """The private pcscd; started from the control loop's (long-lived) thread, so its death
    signal fires only when the whole inner process goes."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.process = None

    def start(self):
        if self.process is not None and self.process.poll() is None:
            return
        for stale in ("pcscd.comm", "pcscd.pid"):
            Path("/run/pcscd", stale).unlink(missing_ok=True)
        with open(self.workdir / "pcscd.log", "ab") as out:
            self.process = subprocess.Popen(
                [
                    "setpriv",
                    "--pdeathsig",
                    "KILL",
                    "pcscd",
                    "--foreground",
                    "-c",
                    str(self.workdir / "reader.conf.d"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        log.info("pcscd started (pid %d)", self.process.pid)

    def stop(self, sig=signal.SIGTERM):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log.info("pcscd stopped (%s)", signal.Signals(sig).name)
        self.process = None


def _reader_states():
    """``{reader: card_present}`` as pcscd sees it; empty when pcscd is not answering."""
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return {}
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        if hresult != scard.SCARD_S_SUCCESS or not readers:
            return {}
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(reader, scard.SCARD_STATE_UNAWARE) for reader in readers]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            return {}
        return {reader: bool(state & scard.SCARD_STATE_PRESENT) for reader, state, _atr in states}
    finally:
        scard.SCardReleaseContext(context)


def _wait(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _inner(workdir):
    workdir = Path(workdir)
    logging.basicConfig(
        filename=workdir / "emulator.log",
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
    )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--bind", str(workdir / "run"), "/run"], check=True)
    if os.path.isdir("/dev/bus/usb"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/dev/bus/usb"], check=True)
    os.environ["PCSCLITE_CSOCK_NAME"] = _INNER_SOCKET
    emulator = Emulator().start()
    pcscd = _Pcscd(workdir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def first_reader():
        states = _reader_states()
        return next(iter(sorted(states.items())), None)

    def wait_for_card(present=True, timeout=10.0):
        return _wait(lambda: (first_reader() or (None, False))[1] == present, timeout)

    handlers = dict(
        emulator_handlers(emulator),
        pcscd_start=pcscd.start,
        pcscd_stop=pcscd.stop,
        pcscd_kill=lambda: pcscd.stop(signal.SIGKILL),
        wait_for_reader=lambda timeout=10.0: (
            _wait(lambda: first_reader() is not None, timeout)
            or _raise(f"pcscd lists no reader after {timeout} s; see {workdir / 'pcscd.log'}")
        ),
        wait_for_card=wait_for_card,
        shutdown=stop.set,
    )
    pcscd.start()
    try:
        serve_control(str(workdir / "control.sock"), handlers, stop)
    finally:
        emulator.stop()
        pcscd.stop()
        shutil.rmtree(workdir / "run" / "pcscd", ignore_errors=True)


def _raise(message):
    raise RuntimeError(message)


def main(argv=None):
    """``python -m kiosk.rigs.card_stack DIR``: run a stack until Ctrl-C.

    ``--inner`` is internal: the namespaced half that runs pcscd and the emulator.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("workdir")
    args = parser.parse_args(argv)
    if args.inner:
        _inner(args.workdir)
        return
    with CardStack(args.workdir) as stack:
        stack.emulator.insert()
        print(f"export PCSCLITE_CSOCK_NAME={stack.csock_name}")
        print(f"control socket: {stack.control_path} (kiosk.rigs.card_emulator.ControlClient)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
