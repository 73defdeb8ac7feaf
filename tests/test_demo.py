"""Issue 5: ``kiosk demo --headless --visits 2`` runs as a user would run it, in the test suite;
issue 13: beside it a small simulated fleet and the console, whose pages it saves.

The demo starts its own card stack, broker and collector, so it runs as a separate process
without the session's ``PCSCLITE_CSOCK_NAME`` (libpcsclite would otherwise keep talking to the
session's pcscd instead of the demo's).
"""

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.period import is_period_start
from tests.fixtures.privacy import record_text, watch_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHOT = re.compile(r"\d{3}-(?P<screen>[a-z_]+)-(?P<language>th|en)\.png")


def png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One ``kiosk demo --headless --visits 2 --fleet 4`` run: (completed process, screenshot
    folder). The fleet is small here: the demo's few hundred kiosks take a minute."""
    root = tmp_path_factory.mktemp("demo")
    out, workdir = root / "out", root / "work"
    env = {key: value for key, value in os.environ.items() if key != "PCSCLITE_CSOCK_NAME"}
    env["SDL_AUDIODRIVER"] = "dummy"
    done = subprocess.run(
        [sys.executable, "-m", "kiosk", "demo", "--headless", "--visits", "2", "--fleet", "4",
         "--out", str(out), "--workdir", str(workdir)],
        env=env, capture_output=True, text=True, timeout=240)
    record_text("kiosk demo stdout", done.stdout)
    record_text("kiosk demo stderr", done.stderr)
    for log in workdir.rglob("*.log"):
        watch_file(log)
    return done, out


def shots_by_screen(out):
    """``{screen: {languages}}`` of the demo's screenshots; each must be an 800x480 PNG."""
    shots = {}
    for path in sorted(out.iterdir()):
        if path.name == "console" and path.is_dir():
            continue  # the console's pages (test_demo_headless_serves_the_console_...)
        match = SHOT.fullmatch(path.name)
        assert match, f"unexpected file {path.name} in the demo's output"
        assert png_size(path) == (800, 480)
        shots.setdefault(match["screen"], set()).add(match["language"])
    return shots


@pytest.mark.slow
def test_demo_headless_two_visits_reach_the_collector(demo_run):
    done, _ = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 visit(s) done" in done.stdout
    # the visits and their counts
    assert "0 message(s) not yet confirmed" in done.stdout, done.stdout[-1500:]
    assert "the collector recorded 2 visit(s)" in done.stdout
    visits = re.findall(r"^  period (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ): .*, completed, verified$",
                        done.stdout, re.M)
    assert len(visits) == 2
    assert all(is_period_start(start, 5) for start in visits)  # the demo's 5-second periods


@pytest.mark.slow
def test_demo_headless_screenshots_every_screen_of_a_visit_in_both_languages(demo_run):
    done, out = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    shots = shots_by_screen(out)
    for screen in ("idle", "reading", "return_card", "choose_service", "copy_check", "rating",
                   "reason", "confirm", "thank_you"):
        assert "th" in shots.get(screen, ()), f"no Thai screenshot of {screen}"
    # The second citizen reads English from the first question on.
    for screen in ("copy_check", "rating", "thank_you"):
        assert "en" in shots[screen], f"no English screenshot of {screen}"


@pytest.mark.slow
def test_demo_headless_serves_the_console_for_its_fleet_and_saves_its_pages(demo_run):
    done, out = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulating an office day of 4 kiosk(s)" in done.stdout
    assert re.search(r"^demo: \d+ simulated visits stored$", done.stdout, re.M)
    url = re.search(r"^demo: the console is at (http://127\.0\.0\.1:\d+)/ \(viewer: (\S+), "
                    r"operator: (\S+)\)$", done.stdout, re.M)
    assert url, done.stdout[-2000:]
    pages = {path.name for path in (out / "console").iterdir()}
    assert pages == {f"{name}-{lang}.png" for name in ("fleet", "map", "statistics", "commands")
                     for lang in ("th", "en")}
    assert all(png_size(out / "console" / name)[0] == 1366 for name in pages)  # a laptop's


@pytest.mark.slow
def test_demo_headless_english_citizen_sees_choose_service_in_english(demo_run):
    _, out = demo_run
    assert "en" in shots_by_screen(out).get("choose_service", ())


@pytest.mark.slow
def test_demo_with_a_config_naming_a_broker_reports_there_marked_demo(
        make_config, broker, mqtt_client, tmp_path):
    from kiosk import config
    from kiosk.fleet.collector import Collector
    from kiosk.telemetry import topics

    password_file = tmp_path / "mqtt-password"
    password_file.write_text(broker.add_kiosk("agency-kiosk-01"))
    cfg = make_config(tmp_path / "unused", kiosk={"id": "agency-kiosk-01", "mode": "production"},
                      mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False,
                            "password_file": str(password_file)})
    cfg_path = tmp_path / "kiosk.toml"
    cfg_path.write_text(config.dumps(cfg, mask_secrets=False))
    watcher = mqtt_client("watcher", broker.add_observer("watcher"))
    watcher.subscribe(topics.kiosk_topic("agency-kiosk-01", "visit"))
    env = {key: value for key, value in os.environ.items() if key != "PCSCLITE_CSOCK_NAME"}
    env["SDL_AUDIODRIVER"] = "dummy"
    with Collector(tmp_path / "fleet.db", "127.0.0.1", broker.port,
                   *broker.collector_credentials) as collector:
        assert collector.wait_for_connected(10)
        done = subprocess.run(
            [sys.executable, "-m", "kiosk", "demo", "--headless", "--visits", "1",
             "--config", str(cfg_path), "--out", str(tmp_path / "out")],
            env=env, capture_output=True, text=True, timeout=240)
        record_text("kiosk demo --config stdout", done.stdout)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "reporting to the broker in" in done.stdout
        assert [v.is_demo for v in collector.db.visits()] == [True]
    visit = watcher.wait_for_message(topics.kiosk_topic("agency-kiosk-01", "visit"))
    assert json.loads(visit.payload)["mode"] == "demo"


def test_demo_config_resends_as_often_as_its_periods_end_unless_the_file_says_otherwise(tmp_path):
    """A production minute between resends would outlast the demo's wait for confirmation."""
    from kiosk.demo import DEMO_CONFIG, demo_config

    packaged = demo_config(DEMO_CONFIG, tmp_path)
    assert packaged.telemetry.period_s == 5
    assert packaged.telemetry.resend_after_s == 5
    own = tmp_path / "own.toml"
    own.write_text(DEMO_CONFIG.read_text(encoding="utf-8") + "\n[telemetry]\nresend_after_s = 30\n",
                   encoding="utf-8")
    assert demo_config(own, tmp_path).telemetry.resend_after_s == 30
