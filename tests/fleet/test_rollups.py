"""The visit rollups (kiosk/fleet/rollups.py) against a raw recount of the visits stored: a
randomised set over four months, resent in part, with demo and undated visits, read over ranges
of whole months, whole days and parts of days; and the same rollups built by the migration
from the visits of an older fleet file, and rebuilt with the schema-3 counters."""

import dataclasses
import datetime as dt
import random
import uuid

import pytest

from kiosk import visit as schema
from kiosk.fleet import migrations, registry, rollups, statistics
from kiosk.fleet.db import open_database
from kiosk.period import BANGKOK, Period
from kiosk.telemetry import topics
from tests.fleet.test_registry import csv_text
from tests.fleet.test_statistics import REGISTRY_ROWS, pin

FIRST_DAY = dt.datetime(2026, 11, 1, tzinfo=BANGKOK)
DAYS = 120
#: The kiosk's pin; k3 sends no service point (an older kiosk) and is filed under its pin.
POINTS = {"k1": "dopa-10", "k2": "dlt-50", "k3": "dopa-50"}
SERVICES = ("dopa.id_card", "dopa.birth", "dlt.licence", None)
RECEIVED = "2027-01-15T05:00:00.000Z"
RANGES = [
    (FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS)),  # whole months
    (dt.datetime(2026, 11, 17, tzinfo=BANGKOK), dt.datetime(2027, 2, 3, tzinfo=BANGKOK)),
    (dt.datetime(2026, 11, 17, 13, 30, tzinfo=BANGKOK),  # parts of days at both ends
     dt.datetime(2027, 1, 1, 9, 0, 0, 500_000, tzinfo=BANGKOK)),
    (dt.datetime(2026, 12, 5, 8, tzinfo=BANGKOK), dt.datetime(2026, 12, 5, 15, tzinfo=BANGKOK)),
    (dt.datetime(2027, 1, 15, tzinfo=BANGKOK), dt.datetime(2027, 1, 16, tzinfo=BANGKOK)),
]


def random_visits(rng, n):
    visits = []
    for _ in range(n):
        kiosk = rng.choice(sorted(POINTS))
        completed = rng.random() < 0.85
        rating = rng.choice((*schema.RATINGS, None)) if completed else None
        moment = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS), hours=rng.randrange(24))
        answers = dict(
            outcome="completed" if completed else "abandoned",
            step="thank_you" if completed else rng.choice(schema.STEPS),
            verified=rng.random() < 0.7, service_id=rng.choice(SERVICES),
            copy_answer=rng.choice((*schema.COPY_ANSWERS, None)), rating=rating,
            reason=rng.choice((*schema.REASONS, None)) if rating else None, language="th",
            duration_s=30, card_in_at_commit=rng.choice((True, False, None)),
            undone=rng.choice((True, False, None)),
            service_point_id=None if kiosk == "k3" else rng.choice((POINTS[kiosk], "other-1")))
        period = None if rng.random() < 0.05 else Period.of(moment, 3600)
        mode = "demo" if rng.random() < 0.05 else "production"
        visits.append(topics.parse_kiosk_message(
            topics.kiosk_topic(kiosk, "visit"),
            schema.payload(event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                           instance=f"i-{kiosk}", mode=mode, period=period, **answers)))
    return visits


def recount(fleet, start, end):
    """The counters straight from the stored visits, in Python."""
    low, high = rollups.period_text(start), rollups.period_text(end)
    found = {}
    for v in fleet.visits(include_demo=False):
        if low <= v.period < high:
            row = found.setdefault((v.service_point_id, v.service_id), [0] * len(rollups.NAMES))
            for index in rollups.counted(v.__data__):
                row[index] += 1
    return found


@pytest.fixture
def fleet(fleet_url):
    db = open_database(fleet_url)
    with db.database.atomic():
        for kiosk, point in POINTS.items():
            db.apply_service_point(pin(kiosk, point), RECEIVED)
    yield db
    db.close()


def test_rollups_equal_a_raw_recount_of_a_random_visit_set_resent_in_part(fleet):
    rng = random.Random(12)
    batch = random_visits(rng, 500)
    with fleet.database.atomic():
        assert fleet.add_visits(batch[:300], RECEIVED) == 300
    resent = rng.sample(batch[:300], 100) + batch[300:]  # resends count once
    with fleet.database.atomic():
        assert fleet.add_visits(resent + resent[-3:], RECEIVED) == 200  # twice in a batch too
    assert {v.service_point_id for v in fleet.visits() if v.kiosk_id == "k3"} == {"dopa-50"}
    for start, end in RANGES:
        expected = recount(fleet, start, end)
        assert expected, (start, end)
        assert {key: list(row) for key, row in rollups.counts(fleet, start, end).items()
                if any(row)} == expected, (start, end)


def test_rollups_file_a_visit_without_a_service_point_under_its_kiosks_pin_on_arrival(fleet):
    """A kiosk moved later does not move the visits it made before."""
    rng = random.Random(3)
    before = [v for v in random_visits(rng, 40) if v.kiosk_id == "k3" and v.mode != "demo"]
    with fleet.database.atomic():
        fleet.add_visits(before, RECEIVED)
        fleet.apply_service_point(pin("k3", "dlt-50"), RECEIVED)
        fleet.add_visits(after := [v for v in random_visits(rng, 40) if v.kiosk_id == "k3"],
                         RECEIVED)
    points = {v.event_id: v.service_point_id for v in fleet.visits("k3")}
    assert {points[v.event_id] for v in before} == {"dopa-50"}
    assert {points[v.event_id] for v in after} == {"dlt-50"}
    start, end = RANGES[0]
    assert {point for point, _ in rollups.counts(fleet, start, end)} == {"dopa-50", "dlt-50"}


def test_rollups_are_built_by_the_migration_from_an_older_fleet_file(fleet, fleet_url, tmp_path):
    """A file at version 4 (visits without a service point, no rollups) gets both when opened:
    the visits their kiosk's pin, and the statistics the figures of the visits."""
    with fleet.database.atomic():
        fleet.add_visits(random_visits(random.Random(5), 200), RECEIVED)
    reg = registry.open_registry(fleet_url)
    path = tmp_path / "registry.csv"
    path.write_bytes(csv_text(REGISTRY_ROWS).encode("utf-8"))
    registry.import_file(reg, path, as_of=dt.datetime(2026, 10, 1, tzinfo=BANGKOK))
    start, end = RANGES[1]
    now = statistics.compute(fleet, reg, start, end, "department").figures()
    # Back to version 4: what the collectors before this one wrote.
    pinned = {v.event_id: v.service_point_id for v in fleet.visits()
              if v.service_point_id == POINTS[v.kiosk_id]}
    database = fleet.database
    database.drop_tables(list(fleet.rollup_models))
    fleet.FleetVisit.update(service_point_id=None).where(
        fleet.FleetVisit.event_id.in_(list(pinned))).execute()
    database.execute_sql('DELETE FROM "schema_version" WHERE "version" > 4')
    fleet.close()
    reopened = open_database(fleet_url)
    try:
        assert migrations.version(reopened) == migrations.LATEST
        assert {v.event_id: v.service_point_id for v in reopened.visits()
                if v.event_id in pinned} == pinned
        assert statistics.compute(reopened, reg, start, end, "department").figures() == now
        for start, end in RANGES:
            assert {key: list(row) for key, row in rollups.counts(reopened, start, end).items()
                    if any(row)} == recount(reopened, start, end)
    finally:
        reopened.close()
        reg.close()


#: The counters visit schema 3 added: a version-7 file's rollups lack their columns.
SCHEMA3_COUNTERS = ("copy_not_sure", "ended_return_card", "ended_confirm", "card_left_in",
                    "card_taken", "completed_undone", "completed_kept")


def test_rollups_of_a_version_7_file_are_rebuilt_with_the_schema_3_counters(fleet, fleet_url):
    """A file of the collectors before schema 3: rollups without the new counters, visits
    without card_in_at_commit and undone. Opened, it gets them, and its counts are the
    visits'; schema-3 visits stored after count in the new columns."""
    old, new = random_visits(random.Random(7), 120), random_visits(random.Random(8), 120)
    old = [dataclasses.replace(  # what a schema-2 kiosk sent
        visit, card_in_at_commit=None, undone=None,
        copy_answer=None if visit.copy_answer == "not_sure" else visit.copy_answer,
        step="rating" if visit.step in ("return_card", "confirm") else visit.step)
        for visit in old]
    with fleet.database.atomic():
        fleet.add_visits(old, RECEIVED)
    database = fleet.database
    for model in fleet.rollup_models:
        for column in SCHEMA3_COUNTERS:
            database.execute_sql(f'ALTER TABLE "{model._meta.table_name}" DROP COLUMN "{column}"')
    for column in ("card_in_at_commit", "undone"):
        database.execute_sql(f'ALTER TABLE "visit" DROP COLUMN "{column}"')
    database.execute_sql('DELETE FROM "schema_version" WHERE "version" > 7')
    fleet.close()
    reopened = open_database(fleet_url)
    try:
        assert migrations.version(reopened) == migrations.LATEST
        for model in reopened.rollup_models:
            columns = {c.name for c in reopened.database.get_columns(model._meta.table_name)}
            assert set(SCHEMA3_COUNTERS) <= columns
        with reopened.database.atomic():
            reopened.add_visits(new, RECEIVED)
        for start, end in RANGES[:2]:
            counted = {key: list(row) for key, row in
                       rollups.counts(reopened, start, end).items() if any(row)}
            assert counted == recount(reopened, start, end)
            assert all(sum(row[rollups.NAMES.index(c)] for row in counted.values())
                       for c in ("card_left_in", "completed_undone", "copy_not_sure"))
    finally:
        reopened.close()
