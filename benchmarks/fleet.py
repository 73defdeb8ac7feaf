"""Fleet: the collector's ingest rate against a bare subscriber's, the statistics over a year
of 1,000 kiosks, and the national rate held.

``python -m benchmarks.fleet [ingest] [statistics] [national] [--quick]`` runs any of them.

Ingest: each consumer drains the same kind of backlog: its persistent session is made, simulated
kiosks (:mod:`kiosk.fleet.simulate`, their own accounts) publish ``count`` visits at QoS 1 while
it is away, then it connects and the clock runs until the last visit is received (bare paho
subscriber, acking each as paho does) or committed and acked (collector); the steady rate
leaves out the first tenth of the visits for both (connecting, the store process starting).
Every consumer gets a fresh Mosquitto of the same configuration (so no session leaks from one
to the next) and the same shared subscription as the collector. The ratio is the target: at
least 70 % of the bare rate on SQLite, 50 % on PostgreSQL, within one round (bare, then each
store), judged on the median of three rounds.

The statistics (:func:`statistics_year`) read a year of 1,000 kiosks' visits as their rollups
count them, written straight into each store (a year of visits at the collector's rate would
take hours, and in SQL longer than this benchmark may).

National: 77,963 kiosks' health, visits and period counts for 60 s through the rig broker into
the real collector, with zero loss checked message by message (:func:`national`).
"""

import asyncio
import dataclasses
import datetime as dt
import multiprocessing
import os
import random
import resource
import tempfile
import threading
import time
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from peewee import PostgresqlDatabase

from benchmarks.mqtt_load import Load, publish_parts
from kiosk import visit as schema
from kiosk.fleet import registry, registry_sample, rollups, simulate, statistics
from kiosk.fleet.collector import DEFAULT_GROUP, Collector
from kiosk.fleet.db import open_database, utc_now
from kiosk.fleet.simulate import Simulation
from kiosk.period import BANGKOK, Period, count_event_id
from kiosk.rigs.broker import Broker
from kiosk.rigs.postgres import start_cluster
from kiosk.telemetry import topics

KIOSKS = 10
TARGETS = {"sqlite": 0.70, "postgresql": 0.50}
#: Rounds of the ingest benchmark: each consumer once a round, compared within the round.
INGEST_ROUNDS = 3
DAY = dt.datetime(2026, 11, 30, 10, 0, tzinfo=BANGKOK)
TIMEOUT_S = 600
#: The share of the messages each consumer drains before its steady rate is timed.
WARM_UP = 0.1


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


def _rates(count, started, warm, ended):
    """``(whole, steady)`` messages a second: over the whole drain, from connect; and past the
    warm-up, the first :data:`WARM_UP` of the messages (connecting, and the collector's store
    process starting and opening the database), timed the same way for every consumer."""
    skipped = int(count * WARM_UP)
    return count / (ended - started), (count - skipped) / (ended - warm)


def bare(root, visits):
    """Messages a second (:func:`_rates`) a bare paho subscriber drains from its session's
    backlog."""
    with Broker(root / "broker-bare") as broker:
        received = threading.Semaphore(0)
        client, subscribed = _bare_client(broker, received)
        subscribed.wait(10)
        client.disconnect()
        client.loop_stop()
        _publish(broker, visits)
        started = time.perf_counter()
        client, _ = _bare_client(broker, received)
        for index in range(len(visits)):
            if index == int(len(visits) * WARM_UP):
                warm = time.perf_counter()
            if not received.acquire(timeout=TIMEOUT_S):
                raise RuntimeError("the bare subscriber did not receive every visit")
        ended = time.perf_counter()
        client.disconnect()
        client.loop_stop()
    return _rates(len(visits), started, warm, ended)


def collector(root, visits, db, name):
    """Messages a second (:func:`_rates`) the collector drains into ``db`` from its session's
    backlog, counted once every visit is committed. Its counter of visits stored is polled
    (it counts a batch once committed, before its PUBACKs and acks go out), not the table: a
    count query every 50 ms took CPU from the collector it was timing."""
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
        warm = None
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while (stored := running.counters.visits_stored) < len(visits):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"collector stored {stored} of {len(visits)} visits")
                if warm is None and stored >= int(len(visits) * WARM_UP):
                    warm = time.perf_counter()
                time.sleep(0.005)  # polling interval: a batch of 200 takes 20 ms or more
            ended = time.perf_counter()
        finally:
            running.stop()
    return _rates(len(visits), started, warm or started, ended)


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


def statistics_run(quick=False):
    """The statistics section of docs/benchmarks.md, on a store of each kind of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-statistics-") as tmp:
        cluster = start_cluster()
        try:
            return statistics_section(Path(tmp), cluster, quick)
        finally:
            cluster.stop()


# --- the national rate ----------------------------------------------------------------------
# 77,963 kiosks for 60 s at the national rate: as many as the machine holds on their own
# connections and accounts, the rest multiplexed (see national()).

NATIONAL_KIOSKS = 77_963
HEALTH_S = 60
#: Multiplexer connections that carry the kiosks past the real connections.
MULTIPLEXERS = 8
#: File descriptors kept free of kiosk connections, for the broker's and our own other files.
FD_MARGIN = 500
#: The window starts as the busiest hour (10:00-11:00 Bangkok, HOURLY_SHAPE) closes.
NATIONAL_START = dt.datetime(2026, 11, 30, 11, 0, tzinfo=BANGKOK)
#: Seconds after the window the collector has to store and ack the last message.
DRAIN_S = 60


def _national_schedule(kiosk_ids, real, multiplexers, seconds, release_s, seed):
    """``(schedule, health offsets, visit ids, period kiosk ids)`` for the generator.

    Health: every kiosk once a minute at its own phase (QoS 0). Visits: a kiosk holds an hour's
    visits until the hour ends, then releases each with its own delay of up to ``release_s``
    (600: the kiosk's jitter, the true peak; 3600: the busiest hour's visits averaged over the
    hour), so ``seconds / release_s`` of the fleet releases in the window: each releasing kiosk
    its whole 10:00 period (Poisson, mean 12) and its count, each at a uniform time.
    """
    rng = random.Random(seed)
    sites = simulate.sites(len(kiosk_ids))
    # A multiplexer carries every len(multiplexers)-th kiosk past the real ones.
    route = [kiosk_id if index < real else multiplexers[(index - real) % len(multiplexers)]
             for index, kiosk_id in enumerate(kiosk_ids)]
    schedule, health_offsets = [], []
    for index, kiosk_id in enumerate(kiosk_ids):
        offset = rng.uniform(0, HEALTH_S)
        while offset < seconds:
            moment = NATIONAL_START + dt.timedelta(seconds=offset)
            payload = topics.health_payload(
                mode=simulate.MODE, uptime_s=3600 * 3.5 + offset, load_1m=rng.uniform(0.05, 0.6),
                disk_free_mb=rng.uniform(9000, 12000), mem_free_mb=rng.uniform(300, 600),
                outbox_depth=0, outbox_oldest_s=None, dead_letters=0, reader="ready",
                card_reads_ok=None, config_version=1, version=simulate.VERSION,
                stamp=simulate.stamp(moment, 3600 * 3.5 + offset),
                cpu_temp_c=round(rng.uniform(45, 60), 1), screen="on")
            schedule.append((offset, route[index],
                             *publish_parts(topics.kiosk_topic(kiosk_id, "health"), payload, 0),
                             None))
            health_offsets.append(offset)
            offset += HEALTH_S
    hour = NATIONAL_START - dt.timedelta(hours=1)
    period = Period.of(hour, 3600)
    releasing = rng.sample(range(len(kiosk_ids)), round(len(kiosk_ids) * seconds / release_s))
    visit_ids, period_kiosks = [], []
    for index in releasing:
        kiosk = simulate.SimKiosk(kiosk_ids[index], None, sites[index], host="127.0.0.1",
                                  port=0, period_s=3600, rng=random.Random(rng.random()),
                                  health_s=HEALTH_S)
        for _ in range(simulate.visits_expected(kiosk.rng, hour, 3600)):
            kiosk.record_visit(hour + dt.timedelta(seconds=kiosk.rng.uniform(0, 3600)))
        messages = kiosk.held()
        count_id = count_event_id(kiosk.instance, period)
        messages.append((count_id, "period", topics.period_payload(
            event_id=count_id, instance=kiosk.instance, mode=simulate.MODE, period=period,
            visits=len(messages))))
        for event_id, kind, payload in messages:
            schedule.append((rng.uniform(0, seconds), route[index],
                             *publish_parts(topics.kiosk_topic(kiosk.kiosk_id, kind), payload, 1),
                             event_id))
            if kind == "visit":
                visit_ids.append(event_id)
        period_kiosks.append(kiosk.kiosk_id)
    schedule.sort(key=lambda item: item[0])
    return schedule, sorted(health_offsets), visit_ids, period_kiosks


def _generator(pipe, plan):
    """The generator process: prepare, connect (reporting each step), run at the parent's go,
    then report what was published, PUBACKed and acked."""
    started = time.monotonic()
    schedule, health_offsets, visit_ids, period_kiosks = _national_schedule(
        plan["kiosk_ids"], len(plan["real"]), [name for name, _ in plan["multiplexers"]],
        plan["seconds"], plan["release_s"], plan["seed"])
    pipe.send({"prepared_s": time.monotonic() - started, "messages": len(schedule)})
    asyncio.run(_generate(pipe, plan, schedule))
    pipe.send({"health_offsets": health_offsets, "visit_ids": visit_ids,
               "period_kiosks": period_kiosks})


async def _generate(pipe, plan, schedule):
    load = Load()
    real = plan["real"]
    before = _rss(os.getpid())
    started = time.monotonic()
    await load.open(plan["port"], [(kiosk_id, password, [topics.ack_topic(kiosk_id)])
                                   for kiosk_id, password in real])
    pipe.send({"connected_s": time.monotonic() - started,
               "generator_rss_per_real": (_rss(os.getpid()) - before) / max(1, len(real))})
    names = [name for name, _ in plan["multiplexers"]]
    modelled = plan["kiosk_ids"][len(real):]
    started = time.monotonic()
    await load.open(plan["port"], [
        (name, password, [topics.ack_topic(k) for k in modelled[index::len(names)]])
        for index, (name, password) in enumerate(plan["multiplexers"])])
    pipe.send({"multiplexed_s": time.monotonic() - started})
    go = pipe.recv()
    late = await load.run(schedule, go)
    await load.flush()
    flushed = time.monotonic()
    expected = {item[4] for item in schedule if item[4] is not None}
    deadline = flushed + DRAIN_S
    while expected - load.acked.keys() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # acks arrive on the reader tasks
    lags = sorted(load.acked[e] - load.pubacked[e] for e in expected
                  if e in load.acked and e in load.pubacked)
    pipe.send({"late_s": late, "held_back": load.held_back, "flushed": flushed,
               "last_ack": max((load.acked[e] for e in expected if e in load.acked), default=0),
               "published_qos1": len(expected), "pubacked": len(expected & load.pubacked.keys()),
               "acked": len(expected & load.acked.keys()), "refused": load.refused,
               "lost": load.lost[:5], "lost_count": len(load.lost), "ack_lags": lags,
               "rss": _rss(os.getpid())})
    await load.close()


def _proc_stat(pid):
    """``(ppid, CPU seconds)`` of a process from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid):
    """Resident memory of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _tree(root, leave_out=()):
    """``root`` and its descendants, without the subtrees of ``leave_out``."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(_proc_stat(entry.name)[0], []).append(int(entry.name))
            except (OSError, IndexError):
                continue  # gone meanwhile
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in leave_out:
            continue
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _usage(trees):
    """``{name: (CPU seconds, RSS bytes)}`` summed over each name's processes."""
    usage = {}
    for name, pids in trees.items():
        cpu = rss = 0
        for pid in pids:
            try:
                cpu += _proc_stat(pid)[1]
                rss += _rss(pid)
            except OSError:
                continue  # a process that ended (its CPU time goes with it)
        usage[name] = (cpu, rss)
    return usage


def national(root, db, *, real=None, kiosks=NATIONAL_KIOSKS, seconds=60, release_s=600,
             postmaster=None, seed=7):
    """Hold the national rate for ``seconds`` through the rig broker into the real collector
    on ``db``; returns the measured figures (a dict). ``real`` kiosks (default: as many as the
    file descriptor limit leaves room for) connect with their own accounts, the rest go over
    :data:`MULTIPLEXERS` connections of multiplexer accounts. ``postmaster``: PostgreSQL's
    pid, to count its CPU and memory."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    real = min(kiosks, soft - FD_MARGIN if real is None else real)
    kiosk_ids = [f"k{n:05d}" for n in range(kiosks)]
    figures = {"kiosks": kiosks, "real": real, "seconds": seconds, "release_s": release_s,
               "fd_limit": soft}
    context = multiprocessing.get_context("spawn")
    with Broker(root / f"broker-national-{release_s}") as broker:
        started = time.monotonic()
        passwords = broker.add_kiosks(kiosk_ids[:real])
        multiplexers = [(name, broker.add_multiplexer(name))
                        for name in (f"bench-mux-{n}" for n in range(MULTIPLEXERS))]
        figures["accounts_s"] = time.monotonic() - started
        _known_kiosks(db, kiosk_ids)
        collector = Collector(db, "127.0.0.1", broker.port, *broker.collector_credentials)
        collector.start()
        ours, theirs = multiprocessing.Pipe()
        generator = context.Process(target=_generator, args=(theirs, {
            "port": broker.port, "kiosk_ids": kiosk_ids, "real": list(passwords.items()),
            "multiplexers": multiplexers, "seconds": seconds, "release_s": release_s,
            "seed": seed}))
        try:
            if not collector.wait_for_connected(10):
                raise RuntimeError("collector did not connect")
            broker_idle = _rss(broker.pid)
            generator.start()
            figures.update(_receive(ours, generator))  # prepared
            figures.update(_receive(ours, generator))  # connected
            figures["broker_rss_idle"], figures["broker_rss_real"] = broker_idle, _rss(broker.pid)
            figures.update(_receive(ours, generator))  # multiplexers subscribed
            trees = {"broker": [broker.pid], "generator": [generator.pid],
                     "collector": _tree(os.getpid(), {broker.pid, generator.pid}),
                     "postgresql": _tree(postmaster) if postmaster else []}
            before = _usage(trees)
            go = time.monotonic() + 0.5
            ours.send(go)
            figures.update(_watch(collector, trees, before, go, seconds))
            figures.update(_receive(ours, generator, DRAIN_S + seconds + 60))  # generator's end
            figures.update(_receive(ours, generator))  # what was sent
            figures.update(_verify(collector, figures, go))
        finally:
            if generator.pid is not None:
                generator.join(30)
                if generator.is_alive():
                    generator.kill()
            collector.stop()
    return figures


def _known_kiosks(db, kiosk_ids):
    """Give the store a row for every kiosk, as a national store has after its first day: the
    window then measures the steady state (a health report updates its kiosk's row), not the
    first connection of 77,963 kiosks at once."""
    store = open_database(db)
    try:
        with store.database.atomic():
            for start in range(0, len(kiosk_ids), 1000):
                store.KioskRow.insert_many(
                    [{"kiosk_id": kiosk_id, "last_seen": utc_now()}
                     for kiosk_id in kiosk_ids[start:start + 1000]]).execute()
    finally:
        store.close()


def _receive(pipe, process, timeout=600):
    if not pipe.poll(timeout):
        raise RuntimeError(f"the generator did not report in {timeout} s "
                           f"(exit code {process.exitcode})")
    return pipe.recv()


def _watch(collector, trees, before, go, seconds):
    """Sample the collector's health count and everyone's memory each second of the window;
    returns CPU shares over the window, peak memory and the health count by time."""
    progress, peaks = [], dict.fromkeys(trees, 0)
    while (now := time.monotonic()) < go + seconds:
        time.sleep(min(1.0, go + seconds - now))  # the sampling interval
        progress.append((time.monotonic() - go, collector.counters.health_reports))
        for name, (_, rss) in _usage(trees).items():
            peaks[name] = max(peaks[name], rss)
    after = _usage(trees)
    elapsed = time.monotonic() - go
    return {"progress": progress, "peak_rss": peaks, "load_1m": os.getloadavg()[0],
            "cpu": {name: (after[name][0] - before[name][0]) / elapsed for name in trees}}


def _verify(collector, figures, go):
    """Zero loss: every visit stored by event id, every period count and health report stored,
    every kiosk's health on its row; and how far behind the collector ran."""
    health_sent = len(figures["health_offsets"])
    deadline = time.monotonic() + DRAIN_S
    while collector.counters.health_reports < health_sent and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the collector's counter
    end = go + figures["seconds"]
    health_drained = time.monotonic() - end
    db = collector.db
    stored = {row.event_id for row in db.FleetVisit.select(db.FleetVisit.event_id)}
    counted = {row.kiosk_id for row in db.PeriodCount.select(db.PeriodCount.kiosk_id)}
    with_health = db.KioskRow.select().where(db.KioskRow.health.is_null(False)).count()
    offsets = figures.pop("health_offsets")
    lag = 0.0
    for at, done in figures.pop("progress"):
        if 0 < done < len(offsets):  # the time the done-th report was sent, against now
            lag = max(lag, at - offsets[done - 1])
    visit_ids, period_kiosks = figures.pop("visit_ids"), figures.pop("period_kiosks")
    lags = figures.pop("ack_lags")
    return {
        "health_sent": health_sent, "health_stored": collector.counters.health_reports,
        "kiosks_with_health": with_health,
        "visits_sent": len(visit_ids), "visits_missing": len(set(visit_ids) - stored),
        "periods_sent": len(period_kiosks), "periods_missing": len(set(period_kiosks) - counted),
        "health_lag_s": lag, "health_drained_s": health_drained,
        "acks_drained_s": figures.pop("last_ack") - end,
        "ack_lag_p50": lags[len(lags) // 2] if lags else None,
        "ack_lag_p99": lags[int(len(lags) * 0.99)] if lags else None,
        "ack_lag_max": lags[-1] if lags else None,
        "malformed": collector.counters.malformed,
        "store_failures": collector.counters.store_failures,
    }


#: Longest the collector may run behind (health stored, visits acked) for the rate to count as
#: held: a few of its 0.2 s batches, far inside a kiosk's resend timer.
HELD_LAG_S = 5.0
#: The national runs: (store, release spread in seconds); see _national_schedule.
NATIONAL_RUNS = (("postgresql", 3600), ("postgresql", 600), ("sqlite", 3600))


def _national_held(f):
    lost = (f["health_sent"] - f["health_stored"] + f["visits_missing"] + f["periods_missing"]
            + f["published_qos1"] - f["acked"])
    lag = max(f["health_lag_s"], f["ack_lag_max"] or 0.0)
    return lost, lag, not lost and lag <= HELD_LAG_S and not f["lost_count"]


def national_section(quick=False):
    """The national-rate section of docs/benchmarks.md: every run of :data:`NATIONAL_RUNS`
    (quick: 5,000 kiosks, 1,000 connected, 10 s, PostgreSQL only)."""
    size = {"kiosks": 5_000, "real": 1_000, "seconds": 10} if quick else {}
    runs = NATIONAL_RUNS[:2] if quick else NATIONAL_RUNS
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-national-") as tmp:
        root = Path(tmp)
        cluster = start_cluster()
        try:
            postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
            for store, release_s in runs:
                db = (cluster.url(cluster.create_database()) if store == "postgresql"
                      else root / f"national-{release_s}.sqlite3")
                results.append((store, _apart(root, db, release_s=release_s,
                                              postmaster=postmaster, **size)))
        finally:
            cluster.stop()
    return _national_markdown(results)


def _apart(root, db, **options):
    """:func:`national` in a process of its own: a collector that fell behind is still
    draining its backlog when stopped, and must not run on into the next measurement."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_national_child, args=(theirs, root, db), kwargs=options)
    process.start()
    try:
        return _receive(ours, process, timeout=1800)
    finally:
        process.join(60)
        if process.is_alive():
            process.kill()


def _national_child(pipe, root, db, **options):
    pipe.send(national(root, db, **options))
    os._exit(0)  # the collector's worker may still be draining a backlog: end it with us


def _national_markdown(results):
    first = results[0][1]
    per_connection = ((first["broker_rss_real"] - first["broker_rss_idle"]) / first["real"])
    generator_per = first["generator_rss_per_real"]
    held_back_by = ("the file descriptor limit, "
                    f"{first['fd_limit']:,} a process, less {FD_MARGIN} for other files, is what "
                    "holds them back: Mosquitto needs one a connection"
                    if first["real"] == first["fd_limit"] - FD_MARGIN else "a quick run")
    rows, usage = [], []
    for store, f in results:
        lost, lag, held = _national_held(f)
        rate = (f["health_sent"] + f["published_qos1"]) / f["seconds"]
        rows.append(
            f"| {store} | {f['release_s']} s | {rate:,.0f} ({f['health_sent'] / f['seconds']:,.0f}"
            f" + {f['visits_sent'] / f['seconds']:,.0f} + {f['periods_sent'] / f['seconds']:,.0f})"
            f" | {lost:,} | {f['health_lag_s']:.1f} s | {f['ack_lag_p50']:.2f} / "
            f"{f['ack_lag_p99']:.2f} s | {max(f['health_drained_s'], f['acks_drained_s']):.1f} s"
            f" | {f['late_s']:.2f} s | {'**held**' if held else '**not held**'} |")
        cpu, peak = f["cpu"], f["peak_rss"]
        usage.append(f"| {store}, {f['release_s']} s | " + " | ".join(
            f"{cpu[name]:.0%} / {peak[name] / 2**20:,.0f} MiB"
            if name != "postgresql" or store == "postgresql" else "–"
            for name in ("broker", "collector", "generator", "postgresql"))
            + f" | {f['load_1m']:.1f} |")
    return "\n".join([
        "## Fleet: the national rate",
        "",
        f"{first['kiosks']:,} kiosks for {first['seconds']} s through the rig's Mosquitto "
        "(auth plugin, ACL) into the real `Collector` (default batches), all on this machine. "
        f"{first['real']:,} kiosks connect with their own accounts ({held_back_by}); the other "
        f"{first['kiosks'] - first['real']:,} "
        f"are multiplexed over {MULTIPLEXERS} connections of bench accounts that may publish for "
        "any kiosk id, each subscribed to its kiosks' own ack topics. The generator is one "
        "process, `benchmarks/mqtt_load.py` (a minimal MQTT 5 publisher on asyncio: one thread "
        "for all its connections). Messages are the contract's: health every minute per kiosk at "
        "its own phase (QoS 0); visits and period counts (QoS 1) as kiosks release them, each "
        "after its period with a random delay, so `release` s spreads a period: 600 s is the "
        "kiosks' jitter after the busiest hour (10:00–11:00, 12 visits a kiosk), the true peak; "
        "3,600 s the same hour's visits averaged over an hour. The store knows every kiosk "
        "beforehand. Missing: health reports not stored (counter and kiosk rows), visits by event "
        "id, period counts by kiosk, and QoS 1 messages whose ack did not come back to the "
        f"generator, {DRAIN_S}–{2 * DRAIN_S} s after the window (a collector behind leaves them "
        "queued in its session at the broker). Held: none missing and the collector never more "
        f"than {HELD_LAG_S:.0f} s behind.",
        "",
        "| store | release | msg/s (health + visits + counts) | missing at the end | health lag | "
        "ack lag p50 / p99 | drained after | generator late | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        "CPU (share of one core over the window) and peak memory; the machine's load average "
        "(1 min) at the window's end counts every job on its 2 cores, other sessions' included:",
        "",
        "| run | broker | collector | generator | PostgreSQL | load |",
        "|---|---:|---:|---:|---:|---:|",
        *usage,
        "",
        f"Mosquitto's memory: {first['broker_rss_idle'] / 2**20:.1f} MiB with the collector "
        f"only, {first['broker_rss_real'] / 2**20:.1f} MiB with {first['real']:,} kiosks "
        f"connected and subscribed: {per_connection / 1024:.1f} KiB a connection, "
        f"{per_connection * NATIONAL_KIOSKS / 2**20:,.0f} MiB for {NATIONAL_KIOSKS:,}. The "
        f"generator holds {generator_per / 1024:.1f} KiB a connection. Accounts for the real "
        f"connections took {first['accounts_s']:.1f} s (one reload), preparing the messages "
        f"{first['prepared_s']:.1f} s, connecting {first['connected_s']:.1f} s.",
    ])


def ingest_section(quick=False):
    """The ingest section of docs/benchmarks.md: collector against a bare subscriber, in
    :data:`INGEST_ROUNDS` rounds (one when ``quick``), the target judged on the median round."""
    count, rounds = (5_000, 1) if quick else (30_000, INGEST_ROUNDS)
    visits = _visits(count)
    results = []  # per round: {consumer: (whole, steady)}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        cluster = start_cluster()
        try:
            for round_ in range(rounds):
                results.append({
                    "bare": bare(root / str(round_), visits),
                    "sqlite": collector(root / str(round_), visits,
                                        root / f"fleet-{round_}.sqlite3", "sqlite"),
                    "postgresql": collector(root / str(round_), visits, cluster.url(
                        cluster.create_database()), "postgresql")})
        finally:
            cluster.stop()
    rows = []
    for consumer in ("bare", *TARGETS):
        steady = [result[consumer][1] / result["bare"][1] for result in results]
        whole = [result[consumer][0] / result["bare"][0] for result in results]
        median = sorted(steady)[len(steady) // 2]
        rate = (sorted(result["bare"][1] for result in results)[len(results) // 2]
                if consumer == "bare" else results[steady.index(median)][consumer][1])
        target = ""
        if consumer in TARGETS:
            verdict = "met" if median >= TARGETS[consumer] else "**missed**"
            target = f"≥ {TARGETS[consumer]:.0%}: {verdict}"
        rows.append(
            f"| {'bare paho subscriber' if consumer == 'bare' else f'collector on {consumer}'} "
            f"| {rate:,.0f} | {median:.0%} | "
            f"{' / '.join(f'{ratio:.0%}' for ratio in steady)} | "
            f"{' / '.join(f'{ratio:.0%}' for ratio in whole)} | {target} |")
    return "\n".join([
        "## Fleet: collector ingest against a bare subscriber",
        "",
        f"{count:,} visits from {KIOSKS} simulated kiosks (`kiosk.fleet.simulate`, each its own "
        "account) queued at QoS 1 in the consumer's persistent session on a local Mosquitto, "
        "then drained: the clock runs from connect until the last visit is received (bare paho "
        "subscriber, same shared subscription and account kind) or committed and acked "
        "(collector, default batches; its counter of visits stored is polled, not the table). "
        "The steady rate, which the target is checked on, leaves out the first "
        f"{WARM_UP:.0%} of the visits for every consumer (connecting; the collector's store "
        "process starting and opening the database); the whole drain's ratio is shown beside "
        f"it. {len(results)} round(s), each the bare subscriber, then the collector on each "
        "store, compared within the round (the shared machine's load moves single rates by a "
        "third); the median round is judged, the msg/s is its (the bare subscriber's: the "
        "median of its rounds). Each consumer has a fresh broker "
        "of the same configuration; PostgreSQL is a private cluster on a Unix socket with fsync "
        "off (`kiosk.rigs.postgres`), SQLite is WAL with `synchronous=full`.",
        "",
        f"| consumer ({count:,} visits) | steady msg/s | vs. bare, median | each round, steady "
        "| each round, whole drain | target |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
    ])


def run(quick=False):
    """The fleet sections of docs/benchmarks.md."""
    return "\n\n".join([ingest_section(quick), statistics_run(quick), national_section(quick)])


if __name__ == "__main__":
    import sys

    sections = {"ingest": ingest_section, "statistics": statistics_run,
                "national": national_section}
    chosen = [name for name in sys.argv[1:] if not name.startswith("--")] or list(sections)
    print("\n\n".join(sections[name](quick="--quick" in sys.argv[1:]) for name in chosen))
