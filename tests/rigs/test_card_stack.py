"""The private card stack: isolated from the host and the network, gone when its owner dies."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.rigs.card_stack import CardStack

REPO = Path(__file__).resolve().parents[2]


def test_stack_vpcd_port_is_not_reachable_outside_the_namespace(card_stack):
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 35963), timeout=1).close()


def test_stack_pcscd_socket_is_the_one_the_process_uses(card_stack):
    assert os.environ["PCSCLITE_CSOCK_NAME"] == card_stack.csock_name
    assert Path(card_stack.csock_name).is_socket()


def test_stack_wait_for_card_follows_insert_and_remove(card_stack):
    card_stack.emulator.insert("default")
    assert card_stack.wait_for_card(present=True, timeout=10)
    card_stack.emulator.remove()
    assert card_stack.wait_for_card(present=False, timeout=10)


def _processes_mentioning(text):
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return found


def test_stack_dies_with_its_owner_even_on_sigkill(tmp_path):
    workdir = tmp_path / "owned"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading; from kiosk.rigs.card_stack import CardStack\n"
            f"CardStack({str(workdir)!r}).start()\n"
            "print('up', flush=True); threading.Event().wait()",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout.readline().strip() == "up"
    assert _processes_mentioning(str(workdir)), "the stack should be running"
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    owner.stdout.close()
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(workdir)):
        assert time.monotonic() < deadline, "stack processes outlived their owner"
        time.sleep(0.05)


def test_stack_starts_in_a_folder_holding_an_old_control_socket(tmp_path):
    # Left by a stack that was killed: start() once took it for the new emulator's and failed
    # with "Connection refused" before the new one was listening.
    workdir = tmp_path / "reused"
    workdir.mkdir()
    # The emulator binds a temporary name first; one left there by a kill would fail bind().
    for name in ("control.sock", "control.sock.new"):
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(workdir / name))
        stale.close()
    with CardStack(workdir) as stack:
        assert stack.emulator.status()["inserted"] is False
