"""Fixtures of the telemetry tests: a kiosk's telemetry side on the test's broker, and ops."""

import pytest

from kiosk.fleet.collector import Collector
from kiosk.telemetry import topics
from tests.telemetry.kiosk_process import KioskSide, telemetry_config

KIOSK = "kiosk-a"


@pytest.fixture
def kiosk_config(make_config, broker, tmp_path):
    """``kiosk_config(kiosk_id="kiosk-a", **kw)``: a config with a fresh broker account."""
    return lambda kiosk_id=KIOSK, **kw: telemetry_config(make_config, broker, tmp_path,
                                                         kiosk_id, **kw)


@pytest.fixture
def running():
    """``start(cfg) -> KioskSide`` connected and handling commands; stopped after the test."""
    sides = []

    def start(cfg):
        side = KioskSide(cfg, poll_s=0.05).start(serve=True)
        sides.append(side)
        assert side.link.wait_for_connected(10), "kiosk link did not connect"
        return side

    yield start
    for side in sides:
        side.stop()


@pytest.fixture
def ops(broker, mqtt_client):
    """The ops account, subscribed to every kiosk's status, pin, health and reply."""
    client = mqtt_client(*broker.ops_credentials)
    for kind in ("status", "pin", "health", "reply"):
        client.subscribe(f"{topics.ROOT}/kiosk/+/{kind}")
    return client


@pytest.fixture
def start_collector(broker, tmp_path):
    """``start() -> Collector`` on the test's broker and ``tmp_path/fleet.sqlite3``,
    subscribed; all stopped after the test. Each one joins the same persistent session."""
    started = []

    def start():
        user, password = broker.collector_credentials
        running = Collector(tmp_path / "fleet.sqlite3", "127.0.0.1", broker.port, user,
                            password, batch_s=0.05)
        started.append(running)
        running.start()
        assert running.wait_for_connected(10)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def collector(start_collector):
    """A started collector on ``broker``."""
    return start_collector()
