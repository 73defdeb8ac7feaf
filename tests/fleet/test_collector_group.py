"""Several collectors, each with its own account, in one share group writing to one PostgreSQL
database: each event stored once, nothing lost while one is frozen (SIGSTOP), and a collector
restarted gets what its session queued meanwhile. The frozen and restarted ones are real
``kiosk-fleet collect`` processes."""

import json
import os
import signal
import subprocess
import sys

import pytest

from kiosk.fleet.collector import Collector
from kiosk.fleet.db import open_database
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fleet.test_collector import KIOSK, acked_ids, period_count, visit
from tests.test_layering import ROOT

GROUP = ("collector-a", "collector-b")


@pytest.fixture
def group_url(fleet_databases):
    """A PostgreSQL database of the current schema holding nothing, for the group."""
    name = fleet_databases.take()
    yield fleet_databases.cluster.url(name)
    fleet_databases.give_back(name)


@pytest.fixture
def accounts(broker):
    """``{name: password}`` of two more collector accounts, in the share group."""
    return {name: broker.add_collector(name) for name in GROUP}


@pytest.fixture
def kiosk(broker, accounts, mqtt_client):
    """A kiosk connection subscribed to its acks (made after the broker restart that
    :meth:`Broker.add_collector` needs)."""
    client = mqtt_client(KIOSK, broker.add_kiosk(KIOSK))
    client.subscribe(topics.ack_topic(KIOSK))
    return client


@pytest.fixture
def spawn(broker, accounts, group_url, tmp_path):
    """``spawn(name) -> Popen``: ``kiosk-fleet collect`` as account ``name``, returned once
    subscribed; every one still running is ended after the test."""
    processes = []

    def start(name):
        secret = tmp_path / f"{name}.password"
        secret.write_text(accounts[name] + "\n")
        log = tmp_path / f"{name}-{len(processes)}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", "from kiosk.fleet.cli import main; main()", "collect",
                 "--db", group_url, "--port", str(broker.port), "--username", name,
                 "--password-file", str(secret), "--batch-ms", "50"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        processes.append(process)
        wait_until(lambda: process.poll() is not None or "collector subscribed" in log.read_text(),
                   f"{name} subscribed", timeout=20)
        assert process.poll() is None, log.read_text()
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            process.wait(10)


def publish_visits(kiosk, event_ids):
    for event_id in event_ids:
        kiosk.client.publish(topics.kiosk_topic(KIOSK, "visit"), visit(event_id), qos=1)


def stored_ids(url):
    db = open_database(url)
    try:
        return [v.event_id for v in db.visits()]
    finally:
        db.close()


def test_collector_group_stores_each_event_once(broker, accounts, kiosk, group_url):
    collectors = [Collector(group_url, "127.0.0.1", broker.port, name, password, batch_s=0.05)
                  for name, password in accounts.items()]
    for collector in collectors:
        collector.start()
    try:
        assert all(collector.wait_for_connected(10) for collector in collectors)
        event_ids = [f"group-{n}" for n in range(200)]
        publish_visits(kiosk, event_ids)
        publish_visits(kiosk, event_ids[::4])  # resent: each may reach the other collector
        for _ in range(2):
            kiosk.publish(topics.kiosk_topic(KIOSK, "period"), period_count(200))
        count_id = json.loads(period_count(200))["event_id"]
        wait_until(lambda: len(acked_ids(kiosk)) == 250 + 2, "every delivery acked")

        assert sorted(stored_ids(group_url)) == sorted(event_ids)
        assert set(acked_ids(kiosk)) == {*event_ids, count_id}
        assert sum(c.counters.visits_stored for c in collectors) == 200
        assert sum(c.counters.visits_duplicate for c in collectors) == 50
        assert sum(c.counters.periods for c in collectors) == 1
        assert all(c.counters.received > 0 for c in collectors), "the group split nothing"
        [count] = collectors[0].db.PeriodCount.select()
        assert count.visits == 200
    finally:
        for collector in collectors:
            collector.stop()


def test_collector_group_member_frozen_loses_nothing(spawn, kiosk, group_url):
    frozen, _ = spawn("collector-a"), spawn("collector-b")
    frozen.send_signal(signal.SIGSTOP)
    event_ids = [f"frozen-{n}" for n in range(100)]
    publish_visits(kiosk, event_ids)
    # The running one stores its share; the broker holds the frozen one's, unacked.
    wait_until(lambda: len(acked_ids(kiosk)) >= 30, "the running collector's acks")
    assert len(set(acked_ids(kiosk))) < 100

    frozen.send_signal(signal.SIGCONT)
    wait_until(lambda: set(acked_ids(kiosk)) == set(event_ids), "every ack after SIGCONT")
    assert sorted(stored_ids(group_url)) == sorted(event_ids)


def test_collector_restarted_receives_what_its_session_queued(spawn, kiosk, group_url):
    first = spawn("collector-a")
    publish_visits(kiosk, ["before-kill"])
    wait_until(lambda: "before-kill" in acked_ids(kiosk), "the first ack")
    first.kill()  # no clean disconnect: the broker keeps the session and queues for it
    first.wait(10)
    queued = [f"queued-{n}" for n in range(20)]
    publish_visits(kiosk, queued)
    kiosk.publish(topics.kiosk_topic(KIOSK, "visit"), visit("last-queued"))

    spawn("collector-a")
    wait_until(lambda: {*queued, "last-queued"} <= set(acked_ids(kiosk)), "the queued acks")
    assert sorted(stored_ids(group_url)) == sorted(["before-kill", *queued, "last-queued"])


def test_collector_keeps_storing_after_the_postgresql_server_restarts(
        broker, postgres, group_url, kiosk):
    """The server restarts under a running collector, cutting its connection: the next batch
    is retried on a new connection, and nothing is lost or acked before it is stored."""
    user, password = broker.collector_credentials
    with Collector(group_url, "127.0.0.1", broker.port, user, password,
                   batch_s=0.05, reconcile_every_s=0.05) as collector:
        assert collector.wait_for_connected()
        publish_visits(kiosk, ["before"])
        wait_until(lambda: "before" in acked_ids(kiosk), "the first ack")
        postgres.restart()
        publish_visits(kiosk, ["after-1", "after-2"])
        wait_until(lambda: {"after-1", "after-2"} <= set(acked_ids(kiosk)),
                   "acks after the restart", timeout=20)
        failures = collector.counters.store_failures + collector.counters.reconcile_failures
        assert failures >= 1  # the cut connection was noticed, by a batch or a reconcile
    reader = open_database(group_url)
    try:
        assert {v.event_id for v in reader.visits()} == {"before", "after-1", "after-2"}
    finally:
        reader.close()
