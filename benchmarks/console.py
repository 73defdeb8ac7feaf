"""Console page times: the fleet page for 1,000 kiosks, the national statistics page for a year
(its contradictions included), the map's points and the page's charts (images of their own)
for that year, each through the Flask app (the test client: no network, no browser) on
SQLite.

The store: the sample registry (about 470 service points), 1,000 kiosks pinned round-robin
over them with states and some open alarms, and visits written straight into the store (the
collector's prepared insert), a few per kiosk and day with answers that vary by kiosk. A
statistics page is timed cold (a new app, so the console's 60 s cache is empty), the fleet
page warm (it has no cache); the target is 1 s each.
"""

import datetime as dt
import random
import statistics as stats
import tempfile
import time
import uuid
from pathlib import Path

from kiosk.fleet import registry, rollups
from kiosk.fleet.console import auth, charts
from kiosk.fleet.console.app import Settings, create_app
from kiosk.fleet.db import open_database
from kiosk.fleet.demo_console import SAMPLE
from kiosk.period import BANGKOK

KIOSKS = 1000
TARGET_S = 1.0
LAST_DAY = dt.date(2026, 11, 30)
STATES = ("online",) * 8 + ("offline", "lost")
BASE = "https://localhost"
PASSWORD = "bench-pass-1"


def fill(path, days, per_day):
    """The store at ``path``; returns the number of visits written."""
    db = open_database(str(path))
    reg = registry.Registry(db.database)
    registry.import_file(reg, Path(SAMPLE), as_of=dt.datetime(2024, 1, 1, tzinfo=BANGKOK))
    points = sorted(row.service_point_id for row in reg.models["points"].select())
    services = {}
    for row in reg.models["services"].select():
        services.setdefault(row.service_point_id, []).append(row.service_id)
    rng = random.Random(5)
    now = "2026-11-30T09:00:00.000Z"
    with db.database.atomic():
        for n in range(KIOSKS):
            kiosk_id = f"bench-{n:04d}"
            spid = points[n % len(points)]
            db.ServicePointRow.create(
                kiosk_id=kiosk_id, service_point_id=spid, name_th="จุด", name_en="Point",
                agency="agency", ministry="ministry", province="10", lat=None, lon=None,
                mode="production", services="[]", received=now)
            db.KioskRow.create(kiosk_id=kiosk_id, state=STATES[n % len(STATES)], last_seen=now,
                               version="1.0", outbox_depth=0, dead_letters=0)
            if n % 25 == 0:
                db.AlarmEvent.create(kiosk_id=kiosk_id, kind="silent", detail="no message",
                                     raised=now)
    written = 0
    cursor = db.database.cursor()
    for day in range(days):
        date = LAST_DAY - dt.timedelta(days=day)
        period = dt.datetime.combine(date, dt.time(10), BANGKOK).astimezone(dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        rows = []
        for n in range(KIOSKS):
            spid = points[n % len(points)]
            for _ in range(per_day):
                rows.append(db.visit_row({
                    "kiosk_id": f"bench-{n:04d}", "service_point_id": spid,
                    "event_id": str(uuid.UUID(
                        int=rng.getrandbits(128), version=4)),
                    "instance": f"inst-{n}", "is_demo": False, "outcome": "completed",
                    "step": "thank_you", "verified": rng.random() < 0.8, "expired": False,
                    "service_id": rng.choice(services[spid]),
                    "copy_answer": "id_card" if rng.random() < 0.1 + (n % 5) / 20 else "none",
                    "rating": rng.choices((1, 2, 3, 4, 5), (3, 5, 15, 40, 37))[0],
                    "reason": None, "language": "th", "duration_s": 40, "period": period,
                    "period_s": 3600, "clock_synced": True, "schema": 2}))
        with db.database.atomic():
            cursor.executemany(db.insert_visit_sql, rows)
        written += len(rows)
    with db.database.atomic():  # written past add_visits, so counted as the migration does
        rollups.create_and_rebuild(db)
    db.close()
    return written


def timed(path, users, url, *, cold):
    """Seconds of one GET of ``url``, or of each of several in turn (a new app first when
    ``cold``)."""
    app = create_app(Settings(db=str(path), users=users))
    try:
        client = app.test_client()
        page = client.get("/login", base_url=BASE)
        token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        client.post("/login", base_url=BASE, data={"name": "bench", "password": PASSWORD,
                                                   "csrf": token})
        urls = url if isinstance(url, tuple) else (url,)
        if not cold:
            for each in urls:
                client.get(each, base_url=BASE)
        started = time.perf_counter()
        for each in urls:
            response = client.get(each, base_url=BASE)
            assert response.status_code == 200, (each, response.status_code)
        return time.perf_counter() - started
    finally:
        app.extensions["console"].db.close()


def run(quick=False):
    """The markdown section for docs/benchmarks.md."""
    days, per_day, runs = (30, 2, 1) if quick else (365, 3, 3)
    first = LAST_DAY - dt.timedelta(days=days - 1)
    year = f"from={first}&to={LAST_DAY}"
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        path, users = Path(tmp) / "fleet.sqlite3", Path(tmp) / "users.json"
        auth.write_users(users, {"bench": auth.User("bench", "viewer",
                                                    auth.hash_password(PASSWORD))})
        started = time.perf_counter()
        visits = fill(path, days, per_day)
        filled = time.perf_counter() - started
        pages = (("fleet page, 1,000 kiosks", "/fleet", False),
                 (f"national statistics, {days} days", f"/stats?{year}", True),
                 (f"map points, {days} days", f"/map/points.json?{year}", True),
                 (f"the statistics page's 4 charts, {days} days",
                  tuple(f"/stats/chart/{name}.svg?{year}" for name in charts.CHARTS), True))
        rows = []
        for name, url, cold in pages:
            times = [timed(path, users, url, cold=cold) for _ in range(runs)]
            took = stats.median(times)
            verdict = "met" if took <= TARGET_S else "**missed**"
            path_text = "/stats/chart/*.svg" if isinstance(url, tuple) else url.split("?")[0]
            rows.append(f"| {name} | `{path_text}` | {'cold' if cold else 'warm'} | "
                        f"{took:.2f} s | ≤ {TARGET_S:.0f} s: {verdict} |")
    return "\n".join([
        "## Console: page times",
        "",
        f"{KIOSKS:,} kiosks pinned over the sample registry's service points, {visits:,} "
        f"visits ({per_day} a kiosk and day over {days} days, written in {filled:.0f} s), "
        "SQLite, through the Flask app without network or browser; the median of "
        f"{runs} run(s). Cold: a new app, so the console's statistics cache is empty "
        "(`benchmarks/console.py`).",
        "",
        "| page | path | cache | time | target |",
        "|---|---|---|---:|---|",
        *rows,
    ])


if __name__ == "__main__":
    print(run(quick=True))
