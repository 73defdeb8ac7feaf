"""sd_notify against a real datagram socket standing in for systemd's NOTIFY_SOCKET."""

import os
import socket
import threading

from kiosk.watchdog import Watchdog, notify, watchdog_interval
from tests.fixtures.notify import receive


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_watchdog_ready_and_status_reach_the_socket(systemd_socket):
    path, sock = systemd_socket
    watchdog = Watchdog(environ={"NOTIFY_SOCKET": path})
    watchdog.ready("showing idle")
    assert receive(sock, 5) == ["READY=1", "STATUS=showing idle"]
    watchdog.status("out of service: disk full")
    assert receive(sock, 5) == ["STATUS=out of service: disk full"]
    watchdog.stopping()
    assert receive(sock, 5) == ["STOPPING=1"]


def test_watchdog_pings_at_most_every_half_period(systemd_socket):
    path, sock = systemd_socket
    clock = FakeClock()
    watchdog = Watchdog(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"},
                        clock=clock)
    assert watchdog.interval == 5.0
    watchdog.ready()
    assert receive(sock, 5) == ["READY=1"]
    clock.now += 4.9
    assert watchdog.kick() is False
    clock.now += 0.2
    assert watchdog.kick() is True
    assert receive(sock, 5) == ["WATCHDOG=1"]
    assert watchdog.kick() is False


def test_watchdog_pings_stop_when_the_loop_stalls(systemd_socket):
    """A loop thread kicks every turn; while it is stuck, no ping may reach systemd."""
    path, sock = systemd_socket
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}
    watchdog = Watchdog(environ=environ)
    running, stalled, stopped = threading.Event(), threading.Event(), threading.Event()
    unstall = threading.Event()

    def main_loop():
        watchdog.ready()
        while not stopped.is_set():
            if stalled.is_set():
                unstall.wait(30)  # a hung turn: e.g. a draw call that never returns
                stalled.clear()
            watchdog.kick()
            running.set()
            stopped.wait(0.01)  # the loop's own frame pacing

    thread = threading.Thread(target=main_loop, daemon=True)
    thread.start()
    try:
        assert receive(sock, 5) == ["READY=1"]
        assert running.wait(5)
        assert receive(sock, 5) == ["WATCHDOG=1"]
        assert receive(sock, 5) == ["WATCHDOG=1"]

        stalled.set()
        while receive(sock, 0.3) is not None:  # drain pings sent before the stall began
            pass
        assert receive(sock, 1.0) is None, "pinged while the loop was stuck"

        unstall.set()
        assert receive(sock, 5) == ["WATCHDOG=1"]
    finally:
        stopped.set()
        unstall.set()
        thread.join(5)


def test_watchdog_abstract_socket_address():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"kiosk-test-{os.getpid()}"
    sock.bind("\0" + name)
    try:
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert receive(sock, 5) == ["READY=1"]
    finally:
        sock.close()


def test_watchdog_without_systemd_is_a_no_op():
    watchdog = Watchdog(environ={})
    assert not watchdog.is_enabled
    assert watchdog.kick() is False
    assert notify("READY=1", environ={}) is False


def test_watchdog_belonging_to_another_pid_is_ignored():
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "4242"}, pid=4242) == 0.5


def test_watchdog_gone_socket_is_logged_not_raised(tmp_path, caplog):
    assert notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert "sd_notify" in caplog.text
