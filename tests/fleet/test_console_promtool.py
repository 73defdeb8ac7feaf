"""The console's /metrics checked by Prometheus's own ``promtool check metrics`` (Debian's
package, unpacked privately by ./dev: installing it would start a server). A missing promtool
fails the test loudly: a skipped check would pass unseen."""

import subprocess
from pathlib import Path

import pytest

PROMTOOL = Path(__file__).resolve().parents[2] / ".cache" / "prometheus" / "usr" / "bin" / \
    "promtool"


def check_metrics(text):
    if not PROMTOOL.is_file():
        pytest.fail(f"{PROMTOOL} is missing: ./dev setup unpacks Debian's prometheus there")
    return subprocess.run([str(PROMTOOL), "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=60, check=False)


def test_promtool_accepts_the_consoles_metrics(browser):
    text = browser().get("/metrics").text  # a scraper has no login
    assert "kiosk_fleet_visits_total" in text
    result = check_metrics(text)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_promtool_refuses_a_counter_without_total():
    result = check_metrics("# HELP kiosk_fleet_messages Messages.\n"
                           "# TYPE kiosk_fleet_messages counter\nkiosk_fleet_messages 3\n")
    assert result.returncode != 0
    assert b'should have "_total" suffix' in result.stdout + result.stderr
