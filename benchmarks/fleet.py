"""Fleet ingest: the collector's rate on SQLite and on PostgreSQL against a bare subscriber's.

Each consumer drains the same kind of backlog: its persistent session is made, simulated kiosks
(:mod:`kiosk.fleet.simulate`, their own accounts) publish ``count`` visits at QoS 1 while it is
away, then it connects and the clock runs until the last visit is received (bare paho
subscriber, acking each as paho does) or committed and acked (collector). Every consumer gets
a fresh Mosquitto of the same configuration (so no session leaks from one to the next) and the
same shared subscription as the collector. The ratio is the target: at least 70 % of the bare
rate on SQLite, 50 % on PostgreSQL, in the same run.
"""

import datetime as dt
import tempfile
import threading
import time
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.fleet.collector import DEFAULT_GROUP, Collector
from kiosk.fleet.simulate import Simulation
from kiosk.period import BANGKOK
from kiosk.rigs.broker import Broker
from kiosk.rigs.postgres import start_cluster
from kiosk.telemetry import topics

KIOSKS = 10
TARGETS = {"sqlite": 0.70, "postgresql": 0.50}
DAY = dt.datetime(2026, 11, 30, 10, 0, tzinfo=BANGKOK)
TIMEOUT_S = 600


def _visits(count):
    """``[(kiosk_id, payload)]``: ``count`` visits of :data:`KIOSKS` simulated kiosks."""
    accounts = [(f"bench-{n:02d}", "unused") for n in range(KIOSKS)]
    simulation = Simulation(accounts, host="127.0.0.1", port=1, start=DAY, hours=1, factor=1)
    for index in range(count):
        simulation.kiosks[index % KIOSKS].record_visit(DAY)
    return [(kiosk.kiosk_id, payload) for kiosk in simulation.kiosks
            for _, _, payload in kiosk.held()]


def _publish(broker, visits):
    """Publish ``visits`` from each kiosk's own account; returns once every PUBACK is in."""
    by_kiosk = {}
    for kiosk_id, payload in visits:
        by_kiosk.setdefault(kiosk_id, []).append(payload)
    # Accounts first, one by one: each rewrites the broker's files and reloads it.
    threads = [threading.Thread(target=_publish_one,
                                args=(broker, kiosk_id, broker.add_kiosk(kiosk_id), payloads))
               for kiosk_id, payloads in by_kiosk.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _publish_one(broker, kiosk_id, password, payloads):
    acked = threading.Semaphore(0)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=kiosk_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(kiosk_id, password)
    client.max_inflight_messages_set(100)
    client.on_publish = lambda *a: acked.release()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    topic = topics.kiosk_topic(kiosk_id, "visit")
    for payload in payloads:
        client.publish(topic, payload, qos=1)
    for _ in payloads:
        if not acked.acquire(timeout=TIMEOUT_S):
            raise RuntimeError(f"{kiosk_id}: the broker did not acknowledge every publish")
    client.disconnect()
    client.loop_stop()


def _bare_client(broker, received):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="collector",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(*broker.collector_credentials)
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe(
        f"$share/{DEFAULT_GROUP}/{topics.KIOSK_SUBSCRIPTION}", qos=1)
    client.on_message = lambda *a: received.release()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    return client, subscribed


def bare(root, visits):
    """Messages a second a bare paho subscriber drains from its session's backlog."""
    with Broker(root / "broker-bare") as broker:
        received = threading.Semaphore(0)
        client, subscribed = _bare_client(broker, received)
        subscribed.wait(10)
        client.disconnect()
        client.loop_stop()
        _publish(broker, visits)
        started = time.perf_counter()
        client, _ = _bare_client(broker, received)
        for _ in visits:
            if not received.acquire(timeout=TIMEOUT_S):
                raise RuntimeError("the bare subscriber did not receive every visit")
        elapsed = time.perf_counter() - started
        client.disconnect()
        client.loop_stop()
    return len(visits) / elapsed


def collector(root, visits, db, name):
    """Messages a second the collector drains into ``db`` from its session's backlog, counted
    once every visit is committed."""
    with Broker(root / f"broker-{name}") as broker:
        running = Collector(db, "127.0.0.1", broker.port, *broker.collector_credentials)
        running.start()
        if not running.wait_for_connected(10):
            raise RuntimeError("collector did not connect")
        running.stop()
        _publish(broker, visits)
        running = Collector(db, "127.0.0.1", broker.port, *broker.collector_credentials)
        started = time.perf_counter()
        running.start()
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while (stored := running.db.FleetVisit.select().count()) < len(visits):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"collector stored {stored} of {len(visits)} visits")
                time.sleep(0.05)  # polling interval of a count query
            elapsed = time.perf_counter() - started
        finally:
            running.stop()
    return len(visits) / elapsed


def run(quick=False):
    """The markdown section for docs/benchmarks.md."""
    count = 5_000 if quick else 30_000
    visits = _visits(count)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        cluster = start_cluster()
        try:
            base = bare(root, visits)
            rates = {"sqlite": collector(root, visits, root / "fleet.sqlite3", "sqlite"),
                     "postgresql": collector(root, visits, cluster.url(
                         cluster.create_database()), "postgresql")}
        finally:
            cluster.stop()
    rows.append(f"| bare paho subscriber | {count:,} | {base:,.0f} | 100% | |")
    for store, rate in rates.items():
        ratio = rate / base
        verdict = "met" if ratio >= TARGETS[store] else "**missed**"
        rows.append(f"| collector on {store} | {count:,} | {rate:,.0f} | {ratio:.0%} | "
                    f"≥ {TARGETS[store]:.0%}: {verdict} |")
    return "\n".join([
        "## Fleet: collector ingest against a bare subscriber",
        "",
        f"{count:,} visits from {KIOSKS} simulated kiosks (`kiosk.fleet.simulate`, each its own "
        "account) queued at QoS 1 in the consumer's persistent session on a local Mosquitto, "
        "then drained: the clock runs from connect until the last visit is received (bare paho "
        "subscriber, same shared subscription and account kind) or committed and acked "
        "(collector, default batches). Each consumer has a fresh broker of the same "
        "configuration; PostgreSQL is a private cluster on a Unix socket with fsync off "
        "(`kiosk.rigs.postgres`), SQLite is WAL with `synchronous=full`.",
        "",
        "| consumer | visits | msg/s | vs. bare | target |",
        "|---|---:|---:|---:|---|",
        *rows,
    ])


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv[1:]))
