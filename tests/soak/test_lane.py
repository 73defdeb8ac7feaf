"""The soak's centre lane with real processes: Mosquitto, the fault proxy and ``kiosk-fleet
collect``, on SQLite and on PostgreSQL. One lane per store serves the module's tests in turn;
each test leaves it whole. PostgreSQL is never skipped: a lane that cannot start its cluster
fails with the reason, as the other PostgreSQL tests do."""

import threading
from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTErrorCode

from benchmarks.soak.lane import Lane
from kiosk.telemetry import topics
from tests.fixtures.broker import RecordingClient, wait_until
from tests.fleet.test_collector import KIOSK, PERIOD, acked_ids, period_count, visit, wait_for_ack

#: Long enough for a collector's reconnect (paho waits 0.5 s, then 1 s ...) after a restart.
ACK_S = 20.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def lane(request, tmp_path_factory):
    with Lane(tmp_path_factory.mktemp(f"lane-{request.param}"), store=request.param,
              seed=15) as running:
        running.password = running.add_kiosk(KIOSK)
        yield running


@pytest.fixture
def connect(lane):
    """``connect() -> RecordingClient``: the kiosk, through the proxy, subscribed to its acks
    in a session that outlives a cut link; every one closed after the test."""
    clients = []

    def start():
        client = RecordingClient(*lane.kiosk_endpoint, KIOSK, lane.password, clean_start=False,
                                 session_expiry_s=300)
        clients.append(client)
        client.client.reconnect_delay_set(0.1, 0.2)  # not paho's 1, 2, 4 s: the lane is tested
        assert not client.wait_for_connack().is_failure
        client.subscribe(topics.ack_topic(KIOSK))
        return client

    yield start
    for client in clients:
        client.close()


class Background:
    """A call running on its own thread (a fault that holds while the test looks on)."""

    def __init__(self, fn, *args):
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn, *args):
        try:
            fn(*args)
        except BaseException as exc:  # re-raised on the test's thread by join()
            self.error = exc

    def join(self, timeout=30.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the fault did not end"
        if self.error:
            raise self.error


@pytest.fixture
def run_in_thread():
    """``run(fn, *args) -> Background``; every one is joined after the test."""
    started = []

    def run(fn, *args):
        started.append(Background(fn, *args))
        return started[-1]

    yield run
    for background in started:
        background.join()


def publish(client, event_id, **answers):
    return client.publish(topics.kiosk_topic(KIOSK, "visit"), visit(event_id, **answers))


def process_state(pid):
    """The one-letter state in /proc (``T``: stopped by a signal)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_lane_stores_and_acks_a_visit_sent_through_the_proxy(lane, connect):
    kiosk = connect()
    publish(kiosk, "lane-visit", service_id="passport", copy_answer="both", rating=2)
    wait_for_ack(kiosk, "lane-visit")

    [stored] = [v for v in lane.visits() if v.event_id == "lane-visit"]
    assert (stored.kiosk_id, stored.period, stored.period_s) == (KIOSK, PERIOD.text, 3600)
    assert {k: stored.answers[k] for k in ("service_id", "copy_answer", "rating")} == {
        "service_id": "passport", "copy_answer": "both", "rating": 2}
    assert lane.proxy.stats["connections"] >= 1  # it came through the proxy


def test_lane_counts_period_counts_and_deliveries_of_a_stored_visit(lane, connect):
    kiosk = connect()
    for _ in range(2):  # the first ack was "lost": the kiosk resends
        publish(kiosk, "lane-resent")
    kiosk.publish(topics.kiosk_topic(KIOSK, "period"), period_count(3))
    wait_until(lambda: acked_ids(kiosk).count("lane-resent") == 2, "both acks", ACK_S)

    assert [v.event_id for v in lane.visits()].count("lane-resent") == 1
    wait_until(lambda: lane.duplicates() == 1, "the collector's count of the resend", ACK_S)
    wait_until(lane.counts, "the period count")
    [count] = lane.counts()
    assert (count.kiosk_id, count.period, count.period_s, count.visits) == (
        KIOSK, PERIOD.text, 3600, 3)


def test_lane_works_on_the_same_port_after_collector_and_broker_are_killed(lane, connect):
    endpoint, broker_port, first = lane.kiosk_endpoint, lane.broker.port, lane.collector_pid
    lane.kill_collector()
    lane.kill_broker(keep_persistence=False)

    assert (lane.kiosk_endpoint, lane.broker.port) == (endpoint, broker_port)
    assert lane.collector_pid != first
    assert not (lane.broker.workdir / "mosquitto.db").exists()  # nothing saved since the kill
    kiosk = connect()
    publish(kiosk, "lane-after-kills")
    wait_for_ack(kiosk, "lane-after-kills", ACK_S)
    assert "lane-after-kills" in {v.event_id for v in lane.visits()}
    assert [name for name, _ in lane.faults[-2:]] == ["kill_collector", "kill_broker"]


def test_lane_redeployed_collector_and_stopped_broker_come_back(lane, connect):
    lane.redeploy_collector()
    redeployed = lane.collector_logs[-2]
    assert "visits stored" in redeployed.read_text().splitlines()[-1]  # counted to its end
    lane.stop_broker()
    kiosk = connect()
    publish(kiosk, "lane-after-redeploy")
    wait_for_ack(kiosk, "lane-after-redeploy", ACK_S)


def test_lane_stopped_collector_holds_visits_then_resumes(lane, connect, run_in_thread):
    kiosk = connect()
    pid = lane.collector_pid
    frozen = run_in_thread(lane.stop_collector, 1.0)
    wait_until(lambda: process_state(pid) == "T", "the collector frozen")
    assert not publish(kiosk, "lane-while-frozen").is_failure  # the broker took it
    assert "lane-while-frozen" not in acked_ids(kiosk)
    assert process_state(pid) == "T"  # ... and no ack came while the collector was frozen

    frozen.join()
    wait_for_ack(kiosk, "lane-while-frozen", ACK_S)
    assert lane.collector_pid == pid  # the same process went on


def test_lane_cut_link_holds_a_publish_until_pass(lane, connect, run_in_thread):
    kiosk = connect()
    cut = run_in_thread(lane.network, "cut", 1.0)
    wait_until(lambda: kiosk.is_disconnected, "the cut reaching the kiosk")
    pending = kiosk.client.publish(topics.kiosk_topic(KIOSK, "visit"), visit("lane-cut"), qos=1)
    assert pending.rc == MQTTErrorCode.MQTT_ERR_NO_CONN  # paho queues it for the reconnect
    assert lane.proxy.mode == "cut"  # ... checked while the link was still cut

    cut.join()
    assert lane.proxy.mode == "pass"
    wait_for_ack(kiosk, "lane-cut", ACK_S)
    assert lane.faults[-1] == ("network", {"mode": "cut", "seconds": 1.0})


def test_lane_log_paths_name_every_file_it_wrote(lane):
    paths = lane.log_paths()
    names = {path.name for path in paths}
    assert {"mosquitto.log", "collector-1.log", "collector.password"} <= names
    if lane.store == "sqlite":
        assert {"fleet.sqlite3", "fleet.sqlite3-wal"} <= names
    else:
        assert "server.log" in names
        assert any(path.is_relative_to(lane.cluster.data / "base") for path in paths)
