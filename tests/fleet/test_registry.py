"""The registry of service points: files in every encoding agencies save, bad rows by line with
nothing kept, history across re-imports, the shipped sample data, and the CLI end to end."""

import csv
import datetime as dt
import io
import re
import subprocess
import sys

import pytest
from peewee import SqliteDatabase

from kiosk.errors import RegistryError
from kiosk.fleet import registry, registry_csv, registry_sample
from kiosk.fleet.registry_csv import COLUMNS, LAT_RANGE, LON_RANGE
from kiosk.period import BANGKOK, Period
from kiosk.telemetry.topics import NO_COPY_STATES
from kiosk.visit import OTHER_SERVICE
from tests.test_layering import ROOT

T1 = dt.datetime(2026, 1, 1, tzinfo=BANGKOK)
T2 = dt.datetime(2026, 6, 1, tzinfo=BANGKOK)
VERSIONED = ("points", "pins", "services", "statuses")


def row(point="dopa-50", service="dopa.id_card", **changes):
    values = {
        "ministry": "กระทรวงมหาดไทย", "department": "กรมการปกครอง", "service_point_id": point,
        "name_th": "สำนักทะเบียนอำเภอเมืองเชียงใหม่",
        "name_en": "Mueang Chiang Mai District Registration Office", "province": "เชียงใหม่",
        "district": "เมืองเชียงใหม่", "lat": "18.7883", "lon": "98.9853", "service_id": service,
        "service_name_th": "ทำบัตรประจำตัวประชาชน", "service_name_en": "Identity card",
        "no_copy": "in_progress"}
    values.update(changes)
    return values


def csv_text(rows, columns=COLUMNS):
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write(path, rows, encoding="utf-8"):
    path.write_bytes(csv_text(rows).encode(encoding))
    return path


def version_counts(reg):
    return {kind: reg.models[kind].select().count() for kind in VERSIONED}


@pytest.fixture
def reg(fleet_url):
    """The registry in a fleet store: SQLite and PostgreSQL, each test once for each."""
    opened = registry.open_registry(fleet_url)
    yield opened
    opened.close()


TWO_POINTS = [
    row(),
    row(service="dopa.birth", service_name_th="แจ้งเกิด", service_name_en="Birth registration",
        no_copy="cancelled"),
    row("dlt-50", "dlt.licence", ministry="กระทรวงคมนาคม", department="กรมการขนส่งทางบก",
        name_th="สำนักงานขนส่งจังหวัดเชียงใหม่", name_en="Chiang Mai Land Transport Office",
        province="Chiang Mai", lat="", lon="", service_name_th="ต่ออายุใบอนุญาตขับรถ",
        service_name_en="Driving licence renewal", no_copy="not_yet"),
]


# --- files and encodings --------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp874"])
def test_registry_imports_each_encoding_agencies_save(reg, tmp_path, encoding):
    path = write(tmp_path / "registry.csv", TWO_POINTS, encoding)
    summary = registry.import_file(reg, path, as_of=T1)
    assert (summary.encoding, summary.rows, summary.points) == (encoding, 3, 2)
    point = reg.service_point("dopa-50", T1)
    assert point.name_th == "สำนักทะเบียนอำเภอเมืองเชียงใหม่"  # Thai decoded, not mojibake
    assert point.ministry == "กระทรวงมหาดไทย" and point.province == "50"
    assert (point.lat, point.lon) == (18.7883, 98.9853)
    assert [(s.id, s.no_copy) for s in point.services] == [("dopa.birth", "cancelled"),
                                                           ("dopa.id_card", "in_progress")]
    unpinned = reg.service_point("dlt-50", T1)
    assert unpinned.province == "50"  # found by its English name
    assert unpinned.pin is None


def test_registry_a_bom_is_not_part_of_the_first_column(tmp_path):
    text, encoding = registry_csv.decode("\ufeff".encode() + csv_text([row()]).encode())
    assert encoding == "utf-8-sig" and text.startswith("ministry,")


def test_registry_file_neither_utf8_nor_cp874_is_refused_by_byte(tmp_path):
    data = csv_text([row()]).encode("utf-8") + b"\xff\xfe"  # 0xFF is no cp874 character
    with pytest.raises(RegistryError) as caught:
        registry_csv.decode(data, "r.csv")
    assert caught.value.problems == [f"byte {len(data) - 2}: is neither UTF-8 nor cp874 "
                                     "(Thai Windows); save the sheet as CSV UTF-8"]


def test_registry_missing_file_is_a_registry_error(reg, tmp_path):
    with pytest.raises(RegistryError, match="cannot read it"):
        registry.import_file(reg, tmp_path / "absent.csv")


# --- bad rows ---------------------------------------------------------------------------------

def test_registry_bad_rows_are_reported_by_line_column_and_rule_and_nothing_is_kept(reg, tmp_path):
    registry.import_file(reg, write(tmp_path / "good.csv", TWO_POINTS), as_of=T1)
    before = version_counts(reg)
    rows = [
        row(),  # line 2: good
        row("dol-50", "dol.transfer", province="Chiang Mia"),  # line 3
        row("dol-51", "dol.transfer", lat="105.1", lon="18.2"),  # line 4: swapped
        row("dol-52", "dol.transfer", no_copy="maybe", name_en=""),  # line 5: two problems
        row(service="dopa.id_card"),  # line 6: the service again
        row(service="dopa.birth", name_en="Another name"),  # line 7: the point disagrees
        row("bad id", "dol.x", lat="18.5", lon=""),  # line 8
    ]
    path = write(tmp_path / "bad.csv", rows)
    with pytest.raises(RegistryError) as caught:
        registry.import_file(reg, path, as_of=T2)
    assert caught.value.source == str(path)
    assert caught.value.problems == [
        "line 3: province: 'Chiang Mia' is not one of the 77 provinces' Thai or English names "
        "(did you mean Chiang Mai?)",
        "line 4: lat: 105.1 is outside Thailand (5.5 to 20.5); lat and lon swapped?",
        "line 4: lon: 18.2 is outside Thailand (97.3 to 105.7); lat and lon swapped?",
        "line 5: name_en: is empty; every row needs it",
        "line 5: no_copy: 'maybe' must be one of cancelled, in_progress, not_yet",
        "line 6: service_id: dopa.id_card is already on line 2 for service point dopa-50",
        "line 7: name_en: differs from line 2, the first row of service point dopa-50 (a "
        "point's columns repeat unchanged on each of its rows)",
        "line 8: lon: is empty while the other coordinate is given; give both or neither",
        "line 8: service_point_id: 'bad id' must be 1-64 letters, digits or '_.:-', starting "
        "with a letter or digit (kiosks send it as is)",
    ]
    assert version_counts(reg) == before
    assert len(reg.imports()) == 1
    assert reg.declared_status("dopa-50", "dopa.id_card", T2) == "in_progress"


def test_registry_line_numbers_count_physical_lines_and_skip_blank_rows():
    text = csv_text([row(), row("dopa-51", name_th="ชื่อ\nสองบรรทัด"), row("x", lat="nowhere")])
    text = text.replace("\r\n", "\r\n\r\n", 1)  # a blank line after the header
    with pytest.raises(RegistryError) as caught:
        registry_csv.parse(text, registry.provinces())
    assert caught.value.problems == [
        "line 4: name_th: holds a line break or control character",
        "line 6: lat: 'nowhere' is not a number (decimal degrees, e.g. 13.7563)",
    ]


@pytest.mark.parametrize(("header", "problem"), [
    (COLUMNS[:-1], "line 1: missing column(s) no_copy; the header is " + ",".join(COLUMNS)),
    ((*COLUMNS, "provnce"), "line 1: unknown column 'provnce' (did you mean 'province'?)"),
    ((*COLUMNS, "lat"), "line 1: column(s) lat appear more than once"),
])
def test_registry_header_must_name_each_column_once(header, problem):
    with pytest.raises(RegistryError) as caught:
        registry_csv.parse(",".join(header) + "\r\n", registry.provinces())
    assert caught.value.problems == [problem]


def test_registry_row_with_wrong_field_count_is_reported():
    text = csv_text([row()]) + "a,b,c\r\n"
    with pytest.raises(RegistryError) as caught:
        registry_csv.parse(text, registry.provinces())
    assert caught.value.problems == ["line 3: has 3 fields, the header 13; quote a field that "
                                     "holds a comma"]


@pytest.mark.parametrize("huge_at", ["row", "header"])
def test_registry_field_over_the_csv_limit_is_a_registry_error_naming_its_line(huge_at):
    """Found by the provisioning / registry CSV fuzzer: the csv module's own error escaped. An
    unclosed quote makes such a field of the rest of a file, so the problem says to close it."""
    unclosed = '"' + "x" * 140_000
    if huge_at == "row":
        text = csv_text([row(), row("dopa-51")]) + "a," + unclosed
        line = 4
    else:
        text = unclosed + "\r\n" + csv_text([row()])
        line = 1
    with pytest.raises(RegistryError) as caught:
        registry_csv.parse(text, registry.provinces())
    [problem] = caught.value.problems
    assert problem.startswith(f"line {line}: a field is longer than 131,072 characters")
    assert "quote" in problem


@pytest.mark.parametrize("text", ["", ",".join(COLUMNS) + "\r\n\r\n"])
def test_registry_empty_file_is_refused_since_it_would_close_every_point(text):
    with pytest.raises(RegistryError):
        registry_csv.parse(text, registry.provinces())


def test_registry_text_longer_than_the_wire_allows_is_refused():
    with pytest.raises(RegistryError, match="line 2: name_en: is 201 characters, at most 200"):
        registry_csv.parse(csv_text([row(name_en="x" * 201)]), registry.provinces())


def test_registry_refuses_the_other_service_id_by_line():
    """The kiosk's "other service" choice has that id: a registered service under it would be
    counted as "other" by every kiosk."""
    rows = [row(), row(service=OTHER_SERVICE)]
    with pytest.raises(RegistryError, match="line 3: service_id: 'other' is reserved"):
        registry_csv.parse(csv_text(rows), registry.provinces())


# --- history ----------------------------------------------------------------------------------

def test_registry_reimport_keeps_history(reg, tmp_path):
    """The acceptance point: a status change, a moved pin and a removed point are new versions,
    and a visit is judged by what was declared in its period."""
    registry.import_file(reg, write(tmp_path / "jan.csv", TWO_POINTS), as_of=T1)
    moved = {"lat": "18.8000", "lon": "98.9900"}
    june = [row(no_copy="cancelled", **moved), {**TWO_POINTS[1], **moved}]  # dlt-50 left out
    summary = registry.import_file(reg, write(tmp_path / "jun.csv", june), as_of=T2)
    assert {kind: str(change) for kind, change in summary.changes.items()} == {
        "points": "+0 ~0 -1", "pins": "+0 ~1 -0", "services": "+0 ~0 -1",
        "statuses": "+0 ~1 -1"}

    old_visit = Period.of(dt.datetime(2026, 3, 10, 10, 30, tzinfo=BANGKOK), 3600).text
    new_visit = Period.of(dt.datetime(2026, 7, 10, 10, 30, tzinfo=BANGKOK), 3600).text
    assert reg.declared_status("dopa-50", "dopa.id_card", old_visit) == "in_progress"
    assert reg.declared_status("dopa-50", "dopa.id_card", new_visit) == "cancelled"
    assert reg.declared_status("dopa-50", "dopa.id_card", T2) == "cancelled"  # valid from T2
    assert reg.declared_status("dopa-50", "dopa.id_card", T1 - dt.timedelta(seconds=1)) is None
    assert reg.declared_status("dopa-50", "dopa.birth", new_visit) == "cancelled"  # unchanged
    assert reg.history("statuses", "dopa-50", "dopa.id_card") == [
        (("in_progress",), "2025-12-31T17:00:00.000Z", "2026-05-31T17:00:00.000Z"),
        (("cancelled",), "2026-05-31T17:00:00.000Z", None)]

    assert reg.service_point("dopa-50", old_visit).pin == (18.7883, 98.9853)
    assert reg.service_point("dopa-50", new_visit).pin == (18.8, 98.99)
    assert reg.history("pins", "dopa-50") == [
        ((18.7883, 98.9853), "2025-12-31T17:00:00.000Z", "2026-05-31T17:00:00.000Z"),
        ((18.8, 98.99), "2026-05-31T17:00:00.000Z", None)]

    # Closed, not deleted: the point is still there for a visit of its time.
    assert reg.service_point("dlt-50", old_visit).name_en == "Chiang Mai Land Transport Office"
    assert reg.service_point("dlt-50", new_visit) is None
    assert reg.declared_status("dlt-50", "dlt.licence", old_visit) == "not_yet"
    assert reg.declared_status("dlt-50", "dlt.licence", new_visit) is None
    assert reg.history("points", "dlt-50")[0][1:] == ("2025-12-31T17:00:00.000Z",
                                                      "2026-05-31T17:00:00.000Z")


def test_registry_reimport_with_nothing_changed_adds_no_versions(reg, tmp_path):
    path = write(tmp_path / "r.csv", TWO_POINTS)
    registry.import_file(reg, path, as_of=T1)
    before = version_counts(reg)
    # The same declarations in another encoding, order and spelling of the province.
    again = [TWO_POINTS[2], TWO_POINTS[1], row(province="Chiang Mai", lat="18.788300")]
    summary = registry.import_file(reg, write(tmp_path / "again.csv", again, "cp874"), as_of=T2)
    assert summary.is_unchanged
    assert version_counts(reg) == before
    assert [i.as_of for i in reg.imports()] == ["2025-12-31T17:00:00.000Z",
                                                "2026-05-31T17:00:00.000Z"]


def test_registry_point_back_after_a_gap_opens_a_new_version(reg, tmp_path):
    registry.import_file(reg, write(tmp_path / "a.csv", TWO_POINTS), as_of=T1)
    registry.import_file(reg, write(tmp_path / "b.csv", TWO_POINTS[:2]), as_of=T2)
    later = T2 + dt.timedelta(days=30)
    summary = registry.import_file(reg, write(tmp_path / "c.csv", TWO_POINTS), as_of=later)
    assert str(summary.changes["points"]) == "+1 ~0 -0"
    assert [v[1:] for v in reg.history("points", "dlt-50")] == [
        ("2025-12-31T17:00:00.000Z", "2026-05-31T17:00:00.000Z"),
        ("2026-06-30T17:00:00.000Z", None)]
    assert reg.service_point("dlt-50", T2 + dt.timedelta(days=1)) is None


def test_registry_history_only_grows_forward(reg, tmp_path):
    path = write(tmp_path / "r.csv", TWO_POINTS)
    registry.import_file(reg, path, as_of=T2)
    with pytest.raises(RegistryError, match="before the latest import's"):
        registry.import_file(reg, path, as_of=T1)
    changed = write(tmp_path / "c.csv", [row(no_copy="cancelled")])
    with pytest.raises(RegistryError, match="give a later --as-of"):
        registry.import_file(reg, changed, as_of=T2)
    assert reg.declared_status("dopa-50", "dopa.id_card", T2) == "in_progress"  # rolled back
    assert registry.import_file(reg, path, as_of=T2).is_unchanged  # same time, no change: fine


def test_registry_query_times_need_a_zone(reg):
    with pytest.raises(ValueError, match="no time zone"):
        reg.declared_status("dopa-50", "dopa.id_card", dt.datetime(2026, 1, 1))


def test_registry_models_bind_per_database_and_create_their_tables():
    """Two databases in one process keep their own registry (how kiosk.sqlite binds)."""
    first, second = SqliteDatabase(":memory:"), SqliteDatabase(":memory:")
    for database in (first, second):
        registry.create_tables(database)
    one, two = registry.Registry(first), registry.Registry(second)
    points = registry_csv.parse(csv_text(TWO_POINTS), registry.provinces())[0]
    one.import_points(points, as_of=T1, source="test")
    assert one.service_point("dopa-50", T1) is not None
    assert two.service_point("dopa-50", T1) is None
    assert set(first.get_tables()) == {model._meta.table_name for model in registry.MODELS}


# --- sample data ------------------------------------------------------------------------------

# Rough boxes of the DOPA regions (the code's first digit): a swapped or mistyped coordinate
# lands outside its province's region.
REGIONS = {"1": ((13.4, 15.3), (99.9, 101.0)), "2": ((12.0, 14.4), (100.8, 102.7)),
           "3": ((14.5, 18.5), (101.6, 105.0)), "4": ((14.5, 18.5), (101.6, 105.0)),
           "5": ((17.5, 20.1), (97.8, 100.9)), "6": ((15.2, 17.2), (99.0, 101.3)),
           "7": ((11.6, 14.6), (99.4, 100.4)), "8": ((7.7, 10.6), (98.2, 100.1)),
           "9": ((6.3, 7.7), (99.5, 102.0))}


def test_registry_sample_has_the_77_provinces_with_real_names_and_coordinates():
    provinces = registry.provinces()
    assert len(provinces) == 77
    for attribute in ("code", "name_th", "name_en", "capital_district_th"):
        assert len({getattr(p, attribute) for p in provinces}) == 77, attribute
    assert len({(p.lat, p.lon) for p in provinces}) == 77
    names = {p.name_en: p.name_th for p in provinces}
    assert names["Bangkok"] == "กรุงเทพมหานคร" and names["Bueng Kan"] == "บึงกาฬ"
    assert names["Chiang Mai"] == "เชียงใหม่" and names["Narathiwat"] == "นราธิวาส"
    assert registry.province("10").name_en == "Bangkok" and registry.province("99") is None
    for p in provinces:
        assert all("\u0e00" <= ch <= "\u0e7f" for ch in p.name_th), p
        assert p.name_en.isascii() and p.name_en[0].isupper(), p
        assert LAT_RANGE[0] <= p.lat <= LAT_RANGE[1] and LON_RANGE[0] <= p.lon <= LON_RANGE[1]
        (south, north), (west, east) = REGIONS[p.code[0]]
        assert south <= p.lat <= north and west <= p.lon <= east, p


def test_registry_sample_ministries_and_departments():
    offices = registry.offices()
    assert len({o.ministry_th for o in offices}) >= 3
    assert len({o.department_th for o in offices}) == len(offices) >= 5
    services = [s for o in offices for s in o.services]
    assert len({s.id for s in services}) == len(services)
    assert {s.no_copy for s in services} == set(NO_COPY_STATES)


def test_registry_sample_csv_shipped_is_the_generated_one_and_imports(reg, tmp_path):
    shipped = ROOT / "kiosk" / "fleet" / "data" / "registry-sample.csv"
    assert shipped.read_bytes().decode("utf-8") == registry.sample_csv()
    summary = registry.import_file(reg, shipped, as_of=T1)
    points = registry_csv.read(shipped.read_bytes(), registry.provinces()).points
    assert 300 <= summary.points == len(points) <= 1000
    assert {p.province for p in points} == {p.code for p in registry.provinces()}
    assert 0 < sum(p.pin is None for p in points) < len(points) // 4
    assert {s.no_copy for p in points for s in p.services} == set(NO_COPY_STATES)
    assert reg.service_point("dopa-10", T1).name_th == "สำนักทะเบียนเขตพระนคร"
    assert reg.service_point("dol-50", T1).name_th == "สำนักงานที่ดินจังหวัดเชียงใหม่"


def test_registry_csv_write_then_parse_round_trips():
    provinces = registry.provinces()
    points = registry_sample.generate(provinces, registry.offices(), seed=3)
    parsed, rows = registry_csv.parse(registry_csv.write(points, provinces), provinces)
    assert rows == sum(len(p.services) for p in points)
    assert [(p.id, p.attributes, p.pin, p.services) for p in parsed] == [
        (p.id, p.attributes, p.pin, p.services) for p in points]


# --- the CLI ------------------------------------------------------------------------------------

def fleet_cli(*args):
    return subprocess.run([sys.executable, "-c", "from kiosk.fleet.cli import main; main()",
                           "registry", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_registry_cli_imports_reimports_and_refuses_bad_files(tmp_path):
    db, sample = tmp_path / "fleet.sqlite3", tmp_path / "sample.csv"
    assert fleet_cli("sample", "--out", str(sample)).returncode == 0
    done = fleet_cli("import", str(sample), "--db", str(db), "--as-of", "2026-01-01")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("registry: 462 service point(s) in 1078 row(s) of sample.csv "
                                  "(utf-8), valid from 2025-12-31T17:00:00.000Z: points +462")

    lines = sample.read_bytes().decode("utf-8").splitlines(keepends=True)
    # Every identity card service declared cancelled from June; Narathiwat's land office gone.
    changed = [re.sub(r"(,dopa\.id_card,.*,)\w+\r\n", r"\1cancelled\r\n", line)
               for line in lines if ",dol-96," not in line]
    (tmp_path / "june.csv").write_bytes("".join(changed).encode("cp874"))
    done = fleet_cli("import", str(tmp_path / "june.csv"), "--db", str(db),
                     "--as-of", "2026-06-01T09:00:00+07:00")
    assert done.returncode == 0, done.stderr
    assert "(cp874)" in done.stdout and "points +0 ~0 -1" in done.stdout

    (tmp_path / "bad.csv").write_text("".join([*lines, lines[1].replace("dopa-10", "x y")]),
                                      encoding="utf-8")
    done = fleet_cli("import", str(tmp_path / "bad.csv"), "--db", str(db))
    assert done.returncode == 1
    assert f"bad.csv: line {len(lines) + 1}: service_point_id: 'x y' must be" in done.stderr
    assert "registry: nothing imported (1 problem(s))" in done.stderr

    done = fleet_cli("import", str(sample), "--db", str(db), "--as-of", "next week")
    assert done.returncode == 2 and "give a date (2026-12-01)" in done.stderr

    reg = registry.open_registry(db)
    try:
        assert len(reg.imports()) == 2
        assert reg.service_point("dol-96", "2026-05-31T16:00:00Z") is not None
        assert reg.service_point("dol-96", "2026-06-01T02:00:00Z") is None
        statuses = {reg.declared_status(f"dopa-{p.code}", "dopa.id_card",
                                        "2026-07-01T00:00:00Z") for p in registry.provinces()}
        assert statuses == {"cancelled"}
    finally:
        reg.close()


def test_registry_cli_sample_prints_to_standard_output():
    done = fleet_cli("sample")
    assert done.returncode == 0 and done.stdout.startswith(",".join(COLUMNS))


def test_registry_doc_example_is_a_valid_file():
    doc = (ROOT / "docs" / "registry.md").read_text(encoding="utf-8")
    example = doc.split("```csv\n", 1)[1].split("```", 1)[0]
    points, rows = registry_csv.parse(example, registry.provinces())
    assert rows == 3 and [p.id for p in points] == ["dopa-50", "dlt-50"]
    assert points[1].pin is None


@pytest.mark.parametrize(("written", "code"), [
    ("กรุงเทพมหานคร", "10"), ("กรุงเทพฯ", "10"), ("กทม.", "10"), ("BANGKOK", "10"),
    ("จังหวัดเชียงใหม่", "50"), ("Chiang Mai Province", "50"), ("chiangmai", "50"),
    ("Buriram", "31"), ("Phang Nga", "82"), ("Ayutthaya", "14"), ("Lopburi", "16"),
])
def test_registry_province_is_found_as_agencies_write_it(written, code):
    points, _ = registry_csv.parse(csv_text([row(province=written)]), registry.provinces())
    assert points[0].province == code


@pytest.mark.parametrize("written", ["Chiang", "เชียง", "Province", "จังหวัด", ""])
def test_registry_province_part_of_a_name_is_not_a_province(written):
    with pytest.raises(RegistryError, match="line 2: province: "):
        registry_csv.parse(csv_text([row(province=written)]), registry.provinces())
