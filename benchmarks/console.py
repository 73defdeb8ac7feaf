"""The console's page times (issue 13: each at most 1 s): the fleet page for 1,000 kiosks and
the national statistics for a year, through Flask's test client on a SQLite store filled with
the sample registry, 1,000 pinned kiosks and a year of visits."""

import datetime as dt
import random
import re
import statistics as stats
import tempfile
import time
import uuid
from pathlib import Path

from argon2 import PasswordHasher

from kiosk.fleet import registry
from kiosk.fleet.console import auth
from kiosk.fleet.console.app import Settings, create_app
from kiosk.fleet.db import open_database
from kiosk.period import BANGKOK
from tests.fleet.test_statistics import pin

KIOSKS = 1_000
TARGET_S = 1.0
FIRST_DAY = dt.date(2025, 12, 1)
RECEIVED = "2026-11-30T00:00:00.000Z"


def fill(root, visits_per_day):
    """The store: registry sample, one pin per kiosk, ``visits_per_day`` per kiosk for 365
    days (one period a day: the statistics read periods, not times)."""
    db = open_database(str(root / "fleet.sqlite3"))
    reg = registry.Registry(db.database)
    (root / "registry.csv").write_text(registry.sample_csv(), encoding="utf-8")
    registry.import_file(reg, root / "registry.csv",
                         as_of=dt.datetime(2025, 11, 1, tzinfo=BANGKOK))
    services = {}
    for row in reg.models["services"].select():
        services.setdefault(row.service_point_id, []).append(row.service_id)
    points = sorted(services)
    rng = random.Random(1)
    with db.database.atomic():
        for i in range(KIOSKS):
            kiosk_id = f"k{i:04d}"
            db.apply_service_point(pin(kiosk_id, points[i % len(points)]), RECEIVED)
            db.KioskRow.update(state=rng.choice(("online", "online", "offline", "lost")),
                               last_seen=RECEIVED).where(
                db.KioskRow.kiosk_id == kiosk_id).execute()
    start = dt.datetime.combine(FIRST_DAY, dt.time(10), BANGKOK).astimezone(dt.UTC)
    for i in range(KIOSKS):
        offered = services[points[i % len(points)]]
        rows = []
        for day in range(365):
            period = (start + dt.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for _ in range(visits_per_day):
                rating = rng.randint(1, 5)
                rows.append(db.visit_row(dict(
                    event_id=str(uuid.uuid4()), kiosk_id=f"k{i:04d}", instance="bench",
                    is_demo=False, period=period, period_s=3600, clock_synced=True, schema=2,
                    outcome="completed", step="thank_you", verified=rng.random() < 0.8,
                    expired=False, service_id=rng.choice(offered),
                    copy_answer=rng.choice(("none", "none", "id_card")), rating=rating,
                    reason="waiting_time" if rating <= 2 else None, language="th",
                    duration_s=40.0)))
        with db.database.atomic():
            db.database.cursor().executemany(db.insert_visit_sql, rows)
    db.close()
    return root / "fleet.sqlite3"


def logged_in(app):
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    client.post("/login", base_url="https://localhost",
                data={"name": "bench", "password": "bench-password", "csrf": token})
    return client


def timed(client, path, repeat, before=lambda: None):
    times = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        response = client.get(path, base_url="https://localhost")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code)
    return stats.median(times)


def run(quick=False):
    per_day = 1 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        root = Path(tmp)
        store = fill(root, per_day)
        light = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        auth.write_users(root / "users.json", {
            "bench": auth.User("bench", "viewer", light.hash("bench-password"))})
        app = create_app(Settings(db=str(store), users=root / "users.json"))
        console = app.extensions["console"]
        clock = [0.0]
        console.clock = lambda: clock[0]
        client = logged_in(app)
        last = FIRST_DAY + dt.timedelta(days=364)
        year = f"/stats?from={FIRST_DAY}&to={last}"

        def cold():  # past the statistics cache: every run reads the year again
            clock[0] += 3600

        results = [
            ("fleet page, 1,000 kiosks", "/fleet", timed(client, "/fleet", 3)),
            ("national statistics, a year (cold)", year, timed(client, year, 1 if quick else 2,
                                                               cold)),
            ("national statistics, a year (cached)", year, timed(client, year, 3)),
        ]
        console.db.close()
    rows = [f"| {name} | `{path}` | {seconds:.2f} | "
            f"{'met' if seconds <= TARGET_S else '**missed**'} |"
            for name, path, seconds in results]
    return "\n".join([
        "## Console: page times",
        "",
        f"{KIOSKS:,} kiosks pinned to the sample registry's points, {per_day * 365 * KIOSKS:,} "
        "visits over a year on SQLite; Flask's test client, median of the runs. The national "
        "page computes three levels (national, ministry below it, service points for the "
        "contradictions); the cache serves a computed level again for 60 s.",
        "",
        "| page | path | s | target ≤ 1 s |",
        "|---|---|---:|---|",
        *rows,
    ])


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv[1:]))
