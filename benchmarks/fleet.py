"""Fleet ingest: the collector's rate on SQLite and on PostgreSQL against a bare subscriber's;
and the statistics over a year of 1,000 kiosks.

Each consumer drains the same kind of backlog: its persistent session is made, simulated kiosks
(:mod:`kiosk.fleet.simulate`, their own accounts) publish ``count`` visits at QoS 1 while it is
away, then it connects and the clock runs until the last visit is received (bare paho
subscriber, acking each as paho does) or committed and acked (collector). Every consumer gets
a fresh Mosquitto of the same configuration (so no session leaks from one to the next) and the
same shared subscription as the collector. The ratio is the target: at least 70 % of the bare
rate on SQLite, 50 % on PostgreSQL, in the same run.

The statistics (:func:`statistics_year`) read a year of 1,000 kiosks' visits as their rollups
count them, written straight into each store (a year of visits at the collector's rate would
take hours, and in SQL longer than this benchmark may).
"""

import dataclasses
import datetime as dt
import random
import tempfile
import threading
import time
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from peewee import PostgresqlDatabase

from kiosk import visit as schema
from kiosk.fleet import registry, registry_sample, rollups, statistics
from kiosk.fleet.collector import DEFAULT_GROUP, Collector
from kiosk.fleet.db import open_database
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


STATISTICS_KIOSKS = 1_000
YEAR = dt.datetime(2025, 1, 1, tzinfo=BANGKOK)
#: Visits of one service in one kiosk's day (up to three services: about 28 a day).
VISITS_A_SERVICE = range(6, 19)
STATISTICS_TARGET_S = 1.0


def _day_tallies(rng, count):
    """``count`` days of one service at one kiosk as rollup counters: visits answered as the
    simulator's citizens answer (:mod:`kiosk.fleet.simulate`), counted by the rollups' own
    rule (:func:`kiosk.fleet.rollups.counted`)."""
    tallies = []
    for _ in range(count):
        row = [0] * len(rollups.NAMES)
        for _ in range(rng.choice(VISITS_A_SERVICE)):
            completed = rng.random() < 0.92
            rating = rng.choices(schema.RATINGS, (4, 6, 15, 35, 40))[0] if completed else None
            visit = {"verified": rng.random() < 0.8, "rating": rating,
                     "copy_answer": rng.choice(("id_card", "both")) if rng.random() < 0.1
                     else "none",
                     "outcome": "completed" if completed else "abandoned",
                     "step": "thank_you" if completed else "rating",
                     "reason": rng.choice(schema.REASONS) if rating and rating <= 2 else None}
            for index in rollups.counted(visit):
                row[index] += 1
        tallies.append(row)
    return tallies


def _year_of_rollups(fleet, points, days):
    """Write the day rollups of ``days`` days of one kiosk at each of ``points`` (three of
    its services each), then their months as the migration makes them; returns the visits
    they count."""
    rng = random.Random(13)
    tallies = _day_tallies(rng, 2_000)
    (day_model, _), database = fleet.rollup_models, fleet.database
    columns = len(rollups.KEY) + len(rollups.NAMES)
    per_statement = 32_766 // columns  # within SQLite's variables, and PostgreSQL's
    row_marks = "(" + ", ".join([database.param] * columns) + ")"
    visits, rows = 0, []
    for day in range(days):
        bucket = (YEAR + dt.timedelta(days=day)).strftime("%Y-%m-%d")
        for point in points:
            for service in point.services[:3]:
                tally = rng.choice(tallies)
                visits += tally[0] + tally[1]  # verified or not: every visit
                rows.append((bucket, point.id, service.id, *tally))
    cursor = database.cursor()
    if isinstance(database, PostgresqlDatabase):  # COPY: binding 30,000 values took seconds
        with cursor.copy(f'COPY "{day_model._meta.table_name}" FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        rows = []
    for first in range(0, len(rows), per_statement):
        chunk = rows[first:first + per_statement]
        cursor.execute(f'INSERT INTO "{day_model._meta.table_name}" VALUES '
                       + ", ".join([row_marks] * len(chunk)),
                       [value for row in chunk for value in row])
    rollups.rebuild_months(fleet)
    return visits


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def statistics_year(url, points, days):
    """``(visits, seconds to write their rollups, {level: seconds of compute()})`` for a
    year of visits at ``points`` in the store ``url``."""
    fleet = open_database(url)
    try:
        reg = registry.Registry(fleet.database)
        reg.import_points(points, as_of=YEAR - dt.timedelta(days=30), source="benchmark")
        with fleet.database.atomic():
            visits, written_s = _timed(_year_of_rollups, fleet, points, days)
        end = YEAR + dt.timedelta(days=days)
        timings = {}
        for level in ("national", "department"):
            statistics.compute(fleet, reg, YEAR, end, level)  # caches warm, as in service
            # The median of three: the machine is shared, and one run can wait on others.
            timings[level] = sorted(_timed(statistics.compute, fleet, reg, YEAR, end, level)[1]
                                    for _ in range(3))[1]
    finally:
        fleet.close()
    return visits, written_s, timings


def _points(count):
    """``count`` service points: the sample registry's, then copies of them under new ids."""
    sample = registry_sample.generate(registry.provinces(), registry.offices())
    return [dataclasses.replace(sample[n % len(sample)],
                                id=f"{sample[n % len(sample)].id}-{n // len(sample)}")
            for n in range(count)]


def statistics_section(root, cluster, quick):
    """The markdown of the statistics over a year (a month when ``quick``) of 1,000 kiosks."""
    days = 31 if quick else 365
    points = _points(STATISTICS_KIOSKS)
    services = sum(len(point.services[:3]) for point in points)
    rows = []
    for store, url in (("sqlite", root / "statistics.sqlite3"),
                       ("postgresql", cluster.url(cluster.create_database()))):
        visits, written_s, timings = statistics_year(url, points, days)
        for level, seconds in timings.items():
            verdict = "met" if seconds <= STATISTICS_TARGET_S else "**missed**"
            rows.append(f"| {store} | {level} | {visits:,} | {written_s:.0f} s | "
                        f"{seconds:.2f} s | ≤ {STATISTICS_TARGET_S:g} s: {verdict} |")
    return "\n".join([
        "## Fleet: statistics over a year of 1,000 kiosks",
        "",
        f"{len(points):,} service points (the sample registry's, then copies under new ids), "
        f"one kiosk each, {days} days from {YEAR:%Y-%m-%d}, up to three services a kiosk "
        f"({services:,} in all), {VISITS_A_SERVICE.start}-{VISITS_A_SERVICE.stop - 1} visits "
        f"a service and day (about {visits / len(points) / days:.0f} a kiosk and day), "
        "answered as the simulator's citizens answer. What "
        "`compute()` reads for whole days are the rollups, so those are written straight into "
        "the store (one row per day, point and service, then the months from the days, as the "
        "migration makes them); the visit rows themselves are not, since writing them took "
        "longer than the whole benchmark may. The time is the median of three "
        "`statistics.compute()` runs of the whole range after one warm-up run: every table, "
        "the registry judged at each visit's time, suppression included.",
        "",
        "| store | level | visits counted | rollups written in | compute() | target |",
        "|---|---|---:|---:|---:|---|",
        *rows,
    ])


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
            statistics_text = statistics_section(root, cluster, quick)
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
        "",
        statistics_text,
    ])


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv[1:]))
