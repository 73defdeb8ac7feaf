"""The session privacy scan itself: it finds a planted citizen ID and fails the run visibly."""

import subprocess
import sys
from pathlib import Path

from kiosk.rigs.card_profiles import ALL_CIDS
from tests.fixtures.privacy import find_leaks

REPO = Path(__file__).resolve().parents[2]


def test_privacy_scan_finds_cids_in_text_and_hex():
    cid = ALL_CIDS[0]
    for text in (
        f"read {cid}",
        cid.encode().hex(),
        cid.encode().hex(" ").upper(),
        str(list(cid.encode())),
    ):
        assert find_leaks([("planted", text)]), text
    assert not find_leaks([("clean", "x-xxxx-xxxxx-xx-1 read in 3.1 ms")])


def _run_pytest_on(tmp_path, body):
    test_file = tmp_path / "test_planted.py"
    test_file.write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.fixtures.privacy",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_privacy_scan_fails_a_session_that_logs_a_cid(tmp_path):
    leaky = (
        "import logging\n"
        "def test_leaks():\n"
        f"    raw = bytes.fromhex('{ALL_CIDS[1].encode().hex()}')\n"
        "    logging.getLogger('somewhere').debug('answer %s', raw)\n"
    )
    result = _run_pytest_on(tmp_path, leaky)
    assert result.returncode == 1, result.stdout
    assert "1 passed" in result.stdout and "PRIVACY" in result.stdout


def test_privacy_scan_passes_a_clean_session(tmp_path):
    clean = (
        "import logging\ndef test_clean():\n    logging.getLogger('x').info('card read in 3 ms')\n"
    )
    result = _run_pytest_on(tmp_path, clean)
    assert result.returncode == 0, result.stdout
