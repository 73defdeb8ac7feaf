"""A store for the map's browser test and screenshots: the shipped sample registry (some 470
service points over the 77 provinces, most of them pinned), kiosks at every ``every``-th point
in each state, and, when asked, visits that differ from point to point so the map's colours
differ too."""

import datetime as dt
from pathlib import Path

from kiosk.fleet import registry
from kiosk.fleet.db import open_database
from kiosk.fleet.demo_console import SAMPLE
from kiosk.period import BANGKOK
from tests.fleet.test_statistics import RECEIVED, pin, visits

STATES = ("online", "online", "online", "offline", "lost")
AS_OF = dt.datetime(2026, 11, 1, tzinfo=BANGKOK)


def fill_map_store(fleet_url, *, every=3, with_visits=True):
    """Fill the store; returns the ids of the pinned service points."""
    db = open_database(fleet_url)
    try:
        reg = registry.Registry(db.database)
        registry.import_file(reg, Path(SAMPLE), as_of=AS_OF)
        points = sorted(row.service_point_id for row in reg.models["points"].select())
        pinned = {row.service_point_id for row in reg.models["pins"].select()}
        with db.database.atomic():
            for n, spid in enumerate(points[::every]):
                kiosk = f"m{n:04d}"
                db.apply_service_point(pin(kiosk, spid), RECEIVED)
                if with_visits:
                    asked = "id_card" if n % 4 == 0 else "none"
                    db.add_visits(visits(kiosk, 6 + n % 9, rating=1 + n % 5,
                                         copy_answer=asked) +
                                  visits(kiosk, 4, rating=5, copy_answer="none"), RECEIVED)
            for n, _spid in enumerate(points[::every]):
                db.KioskRow.update(state=STATES[n % len(STATES)], last_seen=RECEIVED,
                                   version="1.0").where(
                    db.KioskRow.kiosk_id == f"m{n:04d}").execute()
        return pinned
    finally:
        db.close()
