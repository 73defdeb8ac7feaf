"""A realistic sample registry: every department's office in every province, made the same way
each time from the province table and the departments' offices (``kiosk/fleet/data``).

Standard library only (pure core). The demo, the simulator and the tests need service points
across the whole country without the programme's real list; a seeded generator keeps the shipped
``registry-sample.csv`` reproducible, and a test holds the two equal.
"""

import csv
import io
import random
from dataclasses import dataclass

from kiosk.fleet.registry_csv import LAT_RANGE, LON_RANGE, Service, ServicePoint
from kiosk.telemetry.topics import NO_COPY_STATES

SEED = 12
BANGKOK_CODE = "10"
#: Share of points not pinned yet: the programme counts registered and pinned apart.
UNPINNED = 0.1
#: Share of a point's services whose office declared otherwise than its department's default.
VARIED = 0.15
#: Most a pin strays from its province's capital, in degrees (about 2 km).
SPREAD = 0.02
#: Decimal places of a sample pin (about 10 m), as a phone's map gives them.
SAMPLE_DECIMALS = 4


@dataclass(frozen=True)
class Office:
    """The kind of office a department runs in each province, and the services it offers.
    ``office_th``/``office_en`` are templates over ``{province}`` (``จังหวัดเชียงใหม่``, or
    ``กรุงเทพมหานคร``), ``{province_name}``, ``{province_en}``, ``{district}`` (``อำเภอเมือง…``
    or ``เขต…``) and ``{district_en}``."""

    ministry_th: str
    ministry_en: str
    department_th: str
    department_en: str
    code: str
    office_th: str
    office_en: str
    services: tuple[Service, ...]


def parse_offices(text):
    """The offices table (a row per department and service), grouped by department code."""
    offices = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        service = Service(row["service_id"], row["service_name_th"], row["service_name_en"],
                          row["no_copy"])
        office = offices.get(row["code"])
        services = (*office.services, service) if office else (service,)
        offices[row["code"]] = Office(row["ministry_th"], row["ministry_en"],
                                      row["department_th"], row["department_en"], row["code"],
                                      row["office_th"], row["office_en"], services)
    return tuple(offices.values())


def generate(provinces, offices, *, seed=SEED):
    """One point per office and province, pinned near the capital (or not yet pinned), its
    services declared as the department's default or, now and then, otherwise."""
    rng = random.Random(seed)
    points = []
    for province in provinces:
        names = _place_names(province)
        for office in offices:
            if rng.random() < UNPINNED:
                lat = lon = None
            else:
                lat = _clamp(province.lat + rng.uniform(-SPREAD, SPREAD), LAT_RANGE)
                lon = _clamp(province.lon + rng.uniform(-SPREAD, SPREAD), LON_RANGE)
            services = tuple(
                Service(s.id, s.name_th, s.name_en,
                        rng.choice([state for state in NO_COPY_STATES if state != s.no_copy])
                        if rng.random() < VARIED else s.no_copy)
                for s in office.services)
            points.append(ServicePoint(
                id=f"{office.code}-{province.code}", ministry=office.ministry_th,
                department=office.department_th, name_th=office.office_th.format(**names),
                name_en=office.office_en.format(**names), province=province.code,
                district=province.capital_district_th, lat=lat, lon=lon, services=services))
    return tuple(points)


def _place_names(province):
    is_bangkok = province.code == BANGKOK_CODE
    district = province.capital_district_th
    return {
        "province": province.name_th if is_bangkok else f"จังหวัด{province.name_th}",
        "province_name": province.name_th,
        "province_en": province.name_en,
        # Bangkok's districts are เขต, named so already; elsewhere an อำเภอ.
        "district": district if district.startswith("เขต") else f"อำเภอ{district}",
        "district_en": province.capital_district_en,
    }


def _clamp(value, bounds):
    return round(min(max(value, bounds[0]), bounds[1]), SAMPLE_DECIMALS)
