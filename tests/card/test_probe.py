"""``kiosk card probe`` as a technician runs it: a subprocess against the real stack."""

import json
import os
import signal
import subprocess
import sys

import pytest

from kiosk.rigs.card_profiles import ALL_CIDS, PROFILES
from tests.fixtures.privacy import find_leaks, record_text

KEYS = {"reader", "atr", "is_thai_id", "cid_masked", "cid_valid", "expired", "read_ms"}


def probe(*args, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "card", "probe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    record_text("kiosk card probe output", result.stdout + result.stderr)
    return result


def probe_json(*args, env=None):
    result = probe("--json", *args, env=env)
    return result.returncode, json.loads(result.stdout)


def test_probe_thai_id_exits_0_with_the_masked_cid(inserted):
    inserted("default")
    status, report = probe_json()
    assert status == 0
    assert KEYS <= set(report) and "error" not in report
    assert report["is_thai_id"] and report["cid_valid"] and report["expired"] is False
    assert report["cid_masked"] == "x-xxxx-xxxxx-xx-" + PROFILES["default"].cid[-1]
    assert report["atr"] == PROFILES["default"].atr.hex(" ").upper()
    assert report["read_ms"] > 0


def test_probe_human_output_never_shows_the_cid(inserted):
    inserted("lifelong")
    result = probe()
    assert result.returncode == 0
    assert "x-xxxx-xxxxx-xx-" in result.stdout and "expired:   no" in result.stdout
    assert not find_leaks([("probe", result.stdout + result.stderr)])


def test_probe_expired_card_still_exits_0(inserted):
    inserted("expired")
    status, report = probe_json()
    assert (status, report["expired"]) == (0, True)


def test_probe_no_card_exits_2(card_stack):
    status, report = probe_json()
    assert status == 2 and report["error"] == "no card in the reader"


def test_probe_unknown_reader_exits_2(inserted):
    inserted()
    status, report = probe_json("--reader", "Nonexistent")
    assert status == 2 and "Nonexistent" in report["error"]


def test_probe_no_pcsc_service_exits_2(card_stack, tmp_path):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "nothing-here.comm"))
    status, report = probe_json(env=env)
    assert status == 2 and "PC/SC service" in report["error"]


def test_probe_other_card_exits_3(inserted):
    inserted("not_thai")
    status, report = probe_json()
    assert status == 3 and report["is_thai_id"] is False and report["cid_masked"] is None


def test_probe_unreadable_card_exits_3(inserted, card_stack):
    inserted()
    card_stack.emulator.set_fault(garbage=True)
    status, report = probe_json()
    assert status == 3 and report["error"].startswith("could not read the card")


def test_probe_bad_check_digit_exits_4(inserted):
    inserted("bad_check_digit")
    status, report = probe_json()
    assert status == 4 and report["cid_valid"] is False
    assert report["cid_masked"].endswith(PROFILES["bad_check_digit"].cid[-1])


WATCH = [sys.executable, "-m", "kiosk", "card", "probe", "--watch", "--json"]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(WATCH, id="plain"),
        # A shell's background job starts with SIGINT ignored, and Python then installs no
        # Ctrl-C handler of its own: the watcher used to sit on after "Ctrl-C to stop".
        pytest.param(["sh", "-c", 'trap "" INT; exec "$@"', "sh", *WATCH], id="sigint-ignored"),
    ],
)
def test_probe_watch_prints_a_line_per_inserted_card(card_stack, command):
    watcher = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout.readline().startswith("watching")
        card_stack.emulator.insert("nid17")
        first = json.loads(watcher.stdout.readline())
        assert first["is_thai_id"] and first["atr"] == PROFILES["nid17"].atr.hex(" ").upper()
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            out, err = watcher.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()  # a watcher left behind would read the shared reader in later tests
            watcher.communicate()
            raise
        record_text("kiosk card probe --watch output", out + err)
    assert watcher.returncode == 0
    assert not any(cid in out + err for cid in ALL_CIDS)
