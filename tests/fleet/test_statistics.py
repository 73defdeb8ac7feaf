"""The statistics core against hand computation: a known set of visits in the fleet store, a
registry imported from a small CSV, every published figure checked, and the CSV export."""

import datetime as dt
import subprocess
import sys
import types
import uuid
from fractions import Fraction

import pytest

from kiosk import visit as schema
from kiosk.fleet import registry, statistics
from kiosk.fleet.db import open_database
from kiosk.fleet.registry_csv import COLUMNS
from kiosk.fleet.statistics import UNKNOWN, Thresholds
from kiosk.period import BANGKOK, Period
from kiosk.telemetry import topics
from tests.fleet.test_registry import csv_text
from tests.test_layering import ROOT

START = dt.datetime(2026, 12, 1, tzinfo=BANGKOK)
END = dt.datetime(2026, 12, 2, tzinfo=BANGKOK)
IN_RANGE = Period.of(dt.datetime(2026, 12, 1, 10, 0, tzinfo=BANGKOK), 3600)
AFTER = Period.of(dt.datetime(2026, 12, 2, 0, 30, tzinfo=BANGKOK), 3600)
RECEIVED = "2026-12-01T05:00:00.000Z"
INTERIOR, DOPA = "กระทรวงมหาดไทย", "กรมการปกครอง"
TRANSPORT, DLT = "กระทรวงคมนาคม", "กรมการขนส่งทางบก"


def point(point_id, ministry, department, province, service, no_copy, *, pinned=True):
    return dict(zip(COLUMNS, (
        ministry, department, point_id, f"สำนักงาน {point_id}", f"Office {point_id}", province,
        "เมือง", "18.7883" if pinned else "", "98.9853" if pinned else "", service,
        f"บริการ {service}", f"Service {service}", no_copy), strict=True))


REGISTRY_ROWS = [
    point("dopa-10", INTERIOR, DOPA, "กรุงเทพมหานคร", "dopa.id_card", "cancelled"),
    point("dopa-10", INTERIOR, DOPA, "กรุงเทพมหานคร", "dopa.birth", "in_progress"),
    point("dlt-50", TRANSPORT, DLT, "เชียงใหม่", "dlt.licence", "cancelled", pinned=False),
    point("dopa-50", INTERIOR, DOPA, "เชียงใหม่", "dopa.id_card", "not_yet"),
]
#: Kiosk -> the service point its pin names ("ghost-1" is in no registry).
KIOSKS = {"k1": "dopa-10", "k2": "dlt-50", "k3": "ghost-1"}


def visits(kiosk, n, *, period=IN_RANGE, mode="production", **answers):
    fields = dict(outcome="completed", step="thank_you", verified=True, expired=False,
                  copy_answer="none", rating=5, reason=None, language="th", duration_s=40)
    fields.update(answers)
    return [topics.parse_kiosk_message(
        topics.kiosk_topic(kiosk, "visit"),
        schema.payload(event_id=str(uuid.uuid4()), instance=f"inst-{kiosk}", mode=mode,
                       period=period, **fields)) for _ in range(n)]


def pin(kiosk, service_point_id):
    cfg = types.SimpleNamespace(
        kiosk=types.SimpleNamespace(service_point_id=service_point_id, name_th="จุดบริการ",
                                    name_en="Counter", agency="agency", ministry="kiosk's own",
                                    province="kiosk's own", lat=None, lon=None,
                                    mode="production"),
        services=[])
    return topics.parse_kiosk_message(topics.kiosk_topic(kiosk, "pin"),
                                      topics.service_point_payload(cfg))


#: The known visits: 55 count. k1's id-card service is declared cancelled, yet 5 of its 30
#: visits were asked for a copy, 5 not sure (5 of 25 who knew: 20 %): the contradiction.
#: Schema 3's answers: 5 of the birth visits too were not sure about the copy; k3's visits
#: chose the "other service"; the card left in and the changed answer where given (None: a
#: kiosk a release behind).
KNOWN = [
    ("k1", 5, dict(service_id="dopa.id_card", copy_answer="id_card", rating=5,
                   card_in_at_commit=True, undone=False)),
    ("k1", 5, dict(service_id="dopa.id_card", rating=5, card_in_at_commit=False, undone=True)),
    ("k1", 10, dict(service_id="dopa.id_card", rating=4, card_in_at_commit=False,
                    undone=False)),
    ("k1", 5, dict(service_id="dopa.id_card", copy_answer="not_sure", rating=3)),
    ("k1", 5, dict(service_id="dopa.id_card", rating=1, reason="copies_requested",
                   card_in_at_commit=False, undone=False)),
    ("k1", 5, dict(service_id="dopa.birth", copy_answer="not_sure", rating=4,
                   card_in_at_commit=False, undone=True)),
    ("k1", 5, dict(service_id="dopa.birth", rating=4, verified=False, expired=None,
                   undone=False)),
    ("k2", 2, dict(service_id="dlt.licence", copy_answer="both", rating=2,
                   reason="waiting_time", card_in_at_commit=True, undone=False)),
    ("k2", 4, dict(service_id="dlt.licence", rating=2, reason="waiting_time",
                   card_in_at_commit=False, undone=False)),
    ("k2", 1, dict(service_id="dlt.licence", rating=2, card_in_at_commit=True, undone=False)),
    ("k2", 3, dict(service_id="dlt.licence", outcome="abandoned", step="rating", rating=None,
                   card_in_at_commit=True, undone=True)),
    ("k3", 5, dict(service_id=schema.OTHER_SERVICE, copy_answer=None, rating=5, verified=False,
                   expired=None, undone=False)),
]
#: Never counted: a demo visit, and a visit of the day after the range.
EXCLUDED = [("k1", 1, dict(service_id="dopa.id_card", mode="demo")),
            ("k1", 1, dict(service_id="dopa.id_card", period=AFTER))]


@pytest.fixture
def stores(fleet_url, tmp_path):
    """The fleet store with the known visits and pins, and the registry imported from CSV."""
    db = open_database(fleet_url)
    reg = registry.open_registry(fleet_url)
    path = tmp_path / "registry.csv"
    path.write_bytes(csv_text(REGISTRY_ROWS).encode("utf-8-sig"))
    registry.import_file(reg, path, as_of=dt.datetime(2026, 11, 1, tzinfo=BANGKOK))
    with db.database.atomic():
        for kiosk, service_point_id in KIOSKS.items():
            db.apply_service_point(pin(kiosk, service_point_id), RECEIVED)
        batch = [v for kiosk, n, answers in KNOWN + EXCLUDED for v in visits(kiosk, n, **answers)]
        assert db.add_visits(batch, RECEIVED) == 57
    yield db, reg
    reg.close()
    db.close()


H = "<5"  # a hidden count


def steps(count, share):
    """The abandoned table's step figures, every one the same."""
    return {name: value for step in schema.STEPS
            for name, value in ((f"abandoned_{step}", count), (f"abandoned_share_{step}", share))}


# National, by hand. visits: verified 30 + 5 + 10 = 45, unverified 5 + 5 = 10.
# ratings: 1: 5; 2: 7; 3: 5; 4: 10 + 10 = 20; 5: 10 + 5 = 15; 52 rated (3 abandoned unrated);
# mean (5 + 14 + 15 + 80 + 75) / 52 = 189 / 52 = 3.6346; CSAT 35 / 52 = 0.6731.
# copy: asked 5 (id card) + 2 (both) = 7, not asked 20 + 5 + 8 = 33, not sure 5 + 5 = 10: 50
# answered (k3's 5 have no answer). The rate leaves "not sure" out: 7 / 40 = 0.175; not sure
# 10 / 50 = 0.2.
# no_copy, by service and declared status (asked / not asked / not sure): licence (cancelled)
# 2 / 8 / 0; birth (in progress) 0 / 5 / 5; id card (cancelled) 5 / 20 / 5. The licence's 2
# and 0 and the birth's 0 and 0 are under 5: the asked and not-sure columns' four hidden counts
# have two row sums and two column sums that only fix them up to one free value, so the 8 and
# the 5 stay. The id card's row is whole: 5 of the 25 who knew = 0.2, cancelled, 25 >= 20,
# 20 % >= 10 %: a contradiction; not sure 5 / 30 = 0.1667.
# abandoned: completed 52, abandoned at "rating" 3, every other step 0: all hidden, and no share
# is published since the published counts (52) do not add up to the total (55).
# reasons after a rating of 1 or 2: copies_requested 5, waiting_time 6 (one skipped); staff,
# unclear_process and other are 0, hidden; ranked among published counts only.
# card (card_in_at_commit given): left in 5 (id card) + 2 + 1 + 3 (k2) = 11, taken 5 + 10 + 5
# + 5 (k1) + 4 (k2) = 29: 40 card visits, 11 / 40 = 0.275 (the 5 of an older kiosk and the
# visits without a card say nothing).
# undo (completed, undone given): undone 5 + 5 (k1), not 5 + 10 + 5 + 5 (k1) + 2 + 4 + 1 (k2)
# + 5 (k3) = 37: 47, 10 / 47 = 0.2128 (k2's 3 abandoned visits changed an answer: not counted).
# progress: dopa-10 pinned and reporting, dopa-50 pinned and silent, dlt-50 unpinned and
# reporting (ghost-1 is in no registry): every cell 1 or 0, so all hidden.
NATIONAL = {
    "visits": {(): {"visits": 55, "verified": 45, "unverified": 10,
                    "verified_share": 0.8182}},
    "ratings": {(): {"rated": 52, "rating_1": 5, "rating_2": 7, "rating_3": 5, "rating_4": 20,
                     "rating_5": 15, "mean": 3.6346, "csat": 0.6731}},
    "copy": {(): {"answered": 50, "asked": 7, "not_asked": 33, "not_sure": 10,
                  "copy_request_rate": 0.175, "not_sure_share": 0.2}},
    "no_copy": {
        # The flag is published with the row's total: 10 answers are too few for one.
        ("dlt.licence", "cancelled"): {"answered": 10, "asked": H, "not_asked": 8,
                                       "not_sure": H, "observed_rate": None,
                                       "not_sure_share": None, "contradiction": False},
        ("dopa.birth", "in_progress"): {"answered": 10, "asked": H, "not_asked": 5,
                                        "not_sure": H, "observed_rate": None,
                                        "not_sure_share": None, "contradiction": False},
        ("dopa.id_card", "cancelled"): {"answered": 30, "asked": 5, "not_asked": 20,
                                        "not_sure": 5, "observed_rate": 0.2,
                                        "not_sure_share": 0.1667, "contradiction": True},
    },
    "abandoned": {(): {"visits": 55, "completed": 52, **steps(H, None)}},
    "reasons": {(): {"low_rated": 11, "waiting_time": 6, "staff": H, "copies_requested": 5,
                     "unclear_process": H, "other": H,
                     "top_reasons": "waiting_time copies_requested"}},
    "card": {(): {"card_visits": 40, "card_left_in": 11, "card_taken": 29,
                  "card_left_in_share": 0.275}},
    "undo": {(): {"completed": 47, "undone": 10, "not_undone": 37, "undone_share": 0.2128}},
    "progress": {(): {"registered": H, "pinned_reporting": H, "pinned_silent": H,
                      "unpinned_reporting": H, "unpinned_silent": H, "pinned": None,
                      "reporting": None}},
}


def test_statistics_national_figures_match_hand_computation(stores):
    db, reg = stores
    stats = statistics.compute(db, reg, START, END)
    assert {name: table.rows for name, table in stats.tables.items()} == NATIONAL
    assert (stats.start, stats.end) == ("2026-11-30T17:00:00.000Z", "2026-12-01T17:00:00.000Z")


# By ministry, by hand. Rows: (unknown) (k3, whose point is in no registry), Transport (k2),
# Interior (k1); Thai keys sort after "(".
# visits: unknown 0 / 5, transport 10 / 0, interior 35 / 5. The two zeros are hidden; unknown's
# 0 is then alone in its row, so its 5 is hidden; its column (verified, total 45) then fixes it,
# so transport's 10 (smaller than 35) is hidden: the four cells now form a cycle of sums.
# ratings: unknown {5: 5}, transport {2: 7}, interior {1: 5, 3: 5, 4: 20, 5: 10}. Zeros hidden;
# transport's 0 under 5 is alone in column 5 (15 = 5 + 0 + 10), so unknown's 5 (smaller) goes;
# interior's 0 under 2 is alone in its row, so its smallest count (the 5 under 1) goes. Every
# hidden cell then lies on a cycle. Transport's hidden counts are all 0 (published 7 = rated
# 7): its mean 2.0 and CSAT 0.0 are published; interior's are not (35 of 40 shown).
# copy: unknown has no answer (no row); transport 2 / 8 / 0, interior 5 / 25 / 10: each
# ministry has one no_copy row with hidden counts, not all 0, which its copy row less the other
# rows would give back, so both rows' splits are hidden (_hide_linked).
# no_copy: the rows of the national table, each under its ministry: the same suppression.
# abandoned: unknown completed 5, transport 7 and 3 at "rating", interior 40; every step cell
# hidden. Unknown's and interior's hidden counts are all 0 (published = total): shares of 0.0.
# reasons: transport waiting_time 6, interior copies_requested 5 (unknown none: no row). Each is
# alone in its column once the zeros are hidden, so the other row's count goes too: all hidden.
# card: transport left in 2 + 1 + 3 = 6, taken 4; interior left in 5, taken 25 (unknown: no
# card answer). Transport's 4 is hidden, then its 6 (alone in its row), then interior's 5 (alone
# in its column), then its 25: interior's total 30 stays. Transport's visits row hides its
# verified count, which its card total could equal: its card row is hidden whole.
# undo: unknown 0 / 5, transport 0 / 7, interior 10 / 25. The zeros are hidden, each alone in
# its row, so the 5 and the 7 go too: a cycle. Interior: 10 / 35 = 0.2857.
# progress: transport has dlt-50 (unpinned, reporting); interior dopa-10 (pinned, reporting) and
# dopa-50 (pinned, silent): all under 5.
M, T, U = (INTERIOR,), (TRANSPORT,), (UNKNOWN,)
BY_MINISTRY = {
    "visits": {U: {"visits": 5, "verified": H, "unverified": H, "verified_share": None},
               T: {"visits": 10, "verified": H, "unverified": H, "verified_share": None},
               M: {"visits": 40, "verified": 35, "unverified": 5, "verified_share": 0.875}},
    "ratings": {
        U: {"rated": 5, "rating_1": H, "rating_2": H, "rating_3": H, "rating_4": H,
            "rating_5": H, "mean": None, "csat": None},
        T: {"rated": 7, "rating_1": H, "rating_2": 7, "rating_3": H, "rating_4": H,
            "rating_5": H, "mean": 2.0, "csat": 0.0},
        M: {"rated": 40, "rating_1": H, "rating_2": H, "rating_3": 5, "rating_4": 20,
            "rating_5": 10, "mean": None, "csat": None}},
    "copy": {key: {"answered": total, "asked": H, "not_asked": H, "not_sure": H,
                   "copy_request_rate": None, "not_sure_share": None}
             for key, total in ((T, 10), (M, 40))},
    "no_copy": {M + key if key[0].startswith("dopa") else T + key: row
                for key, row in NATIONAL["no_copy"].items()},
    "abandoned": {U: {"visits": 5, "completed": 5, **steps(H, 0.0)},
                  T: {"visits": 10, "completed": 7, **steps(H, None)},
                  M: {"visits": 40, "completed": 40, **steps(H, 0.0)}},
    "reasons": {key: {"low_rated": total, "waiting_time": H, "staff": H, "copies_requested": H,
                      "unclear_process": H, "other": H, "top_reasons": ""}
                for key, total in ((T, 6), (M, 5))},
    "card": {T: {"card_visits": H, "card_left_in": H, "card_taken": H,
                 "card_left_in_share": None},
             M: {"card_visits": 30, "card_left_in": H, "card_taken": H,
                 "card_left_in_share": None}},
    "undo": {U: {"completed": 5, "undone": H, "not_undone": H, "undone_share": None},
             T: {"completed": 7, "undone": H, "not_undone": H, "undone_share": None},
             M: {"completed": 35, "undone": 10, "not_undone": 25, "undone_share": 0.2857}},
    "progress": {key: {"registered": H, "pinned_reporting": H, "pinned_silent": H,
                       "unpinned_reporting": H, "unpinned_silent": H, "pinned": None,
                       "reporting": None} for key in (T, M)},
}


def test_statistics_by_ministry_match_hand_computation_with_unregistered_visits(stores):
    db, reg = stores
    stats = statistics.compute(db, reg, START, END, "ministry")
    assert {name: table.rows for name, table in stats.tables.items()} == BY_MINISTRY
    assert stats.tables["no_copy"].keys == ("ministry", "service_id", "declared")


def test_statistics_csv_has_a_bom_and_round_trips_every_figure(stores):
    db, reg = stores
    stats = statistics.compute(db, reg, START, END, "ministry")
    data = statistics.to_csv(stats)
    assert data.startswith(b"\xef\xbb\xbf")
    figures = statistics.read_csv(data)
    assert figures == statistics.csv_text_of(stats.figures())
    assert len(figures) == sum(len(row) for table in BY_MINISTRY.values()
                               for row in table.values())
    contradiction = (("declared", "cancelled"), ("ministry", INTERIOR),
                     ("service_id", "dopa.id_card"))
    assert figures["no_copy", contradiction, "contradiction"] == "yes"
    assert figures["no_copy", contradiction, "observed_rate"] == "0.2"
    assert figures["no_copy", contradiction, "not_sure"] == "5"
    assert figures["card", (("ministry", TRANSPORT),), "card_visits"] == "<5"
    assert figures["undo", (("ministry", INTERIOR),), "undone_share"] == "0.2857"
    assert figures["visits", (("ministry", UNKNOWN),), "verified"] == "<5"
    assert figures["visits", (("ministry", UNKNOWN),), "verified_share"] == ""
    assert figures["ratings", (("ministry", TRANSPORT),), "mean"] == "2.0"


def test_statistics_judge_a_visit_by_what_was_declared_in_its_period(stores, tmp_path):
    db, reg = stores
    # The agency re-declares the id card "in progress" on the evening after the visits.
    changed = [dict(row, no_copy="in_progress") if row["service_id"] == "dopa.id_card" else row
               for row in REGISTRY_ROWS]
    path = tmp_path / "evening.csv"
    path.write_bytes(csv_text(changed).encode("utf-8"))
    registry.import_file(reg, path, as_of=dt.datetime(2026, 12, 1, 18, tzinfo=BANGKOK))
    stats = statistics.compute(db, reg, START, END)
    assert stats.tables["no_copy"].rows == NATIONAL["no_copy"]


def test_statistics_contradiction_thresholds_come_from_the_config(stores):
    db, reg = stores
    row = ("dopa.id_card", "cancelled")
    # 5 asked of the 25 who knew (the 5 not sure count for neither).
    for thresholds, expected in ((Thresholds(contradiction_answers=25), True),
                                 (Thresholds(contradiction_answers=26), False),
                                 (Thresholds(contradiction_rate=Fraction(1, 5)), True),
                                 (Thresholds(contradiction_rate=Fraction(1, 4)), False)):
        stats = statistics.compute(db, reg, START, END, thresholds=thresholds)
        assert stats.tables["no_copy"].rows[row]["contradiction"] is expected, thresholds


def test_statistics_refuse_an_unknown_level(stores):
    db, reg = stores
    with pytest.raises(ValueError, match="level must be one of national, ministry"):
        statistics.compute(db, reg, START, END, "district")


# The same three groups of visits (unknown 0 / 5, k2's 10 / 0, k1's 35 / 5) under each level's
# keys: the visits table of BY_MINISTRY, keyed so. Progress: the level's registered points.
THREE_GROUPS = {
    "department": ((UNKNOWN, UNKNOWN), (TRANSPORT, DLT), (INTERIOR, DOPA)),
    "service_point": ((UNKNOWN,), ("dlt-50",), ("dopa-10",)),
    "province": ((UNKNOWN,), ("50",), ("10",)),
}


@pytest.mark.parametrize("level", THREE_GROUPS)
def test_statistics_each_registry_level_groups_by_the_registry(stores, level):
    db, reg = stores
    stats = statistics.compute(db, reg, START, END, level)
    assert stats.tables["visits"].keys == statistics.LEVELS[level]
    assert stats.tables["visits"].rows == dict(zip(
        THREE_GROUPS[level], BY_MINISTRY["visits"].values(), strict=True))
    registered = {"department": {(TRANSPORT, DLT), (INTERIOR, DOPA)},
                  "service_point": {("dlt-50",), ("dopa-10",), ("dopa-50",)},
                  "province": {("50",), ("10",)}}[level]
    assert set(stats.tables["progress"].rows) == registered


# By service, by hand: licence 10 / 0, birth 5 / 5, id card 30 / 0, "other service" 0 / 5 (a
# row of its own). The three zeros are hidden; each is alone in its row, so the licence's 10
# goes (smallest of column verified's line through it), then the id card's 30 (alone in its
# row), then other's 5: rows licence, id card and other with both columns form cycles; birth's
# row stays whole. The other service's visits have no copy answer: no no_copy row.
# card: licence 6 / 4, birth 0 / 5, id card 5 / 20: licence's and id card's visits rows hide
# their verified counts, so their card rows are hidden whole; birth's 0 and so its 5 hidden.
# undo: licence 0 / 7, birth 5 / 5, id card 5 / 20, other 0 / 5: the zeros and then the 7 and
# the other's 5 hidden (a cycle); birth 0.5, id card 0.2.
# Progress counts point-and-service pairs: licence {dlt-50}, birth {dopa-10}, id card {dopa-10,
# dopa-50}, all under 5.
def test_statistics_by_service_match_hand_computation(stores):
    db, reg = stores
    stats = statistics.compute(db, reg, START, END, "service")
    hidden = {"verified": H, "unverified": H, "verified_share": None}
    assert stats.tables["visits"].rows == {
        ("dlt.licence",): {"visits": 10, **hidden},
        ("dopa.birth",): {"visits": 10, "verified": 5, "unverified": 5, "verified_share": 0.5},
        ("dopa.id_card",): {"visits": 30, **hidden},
        (schema.OTHER_SERVICE,): {"visits": 5, **hidden}}
    assert stats.tables["no_copy"].keys == ("service_id", "declared")
    assert stats.tables["no_copy"].rows == NATIONAL["no_copy"]
    shut = {"card_left_in": H, "card_taken": H, "card_left_in_share": None}
    assert stats.tables["card"].rows == {("dlt.licence",): {"card_visits": H, **shut},
                                         ("dopa.birth",): {"card_visits": 5, **shut},
                                         ("dopa.id_card",): {"card_visits": H, **shut}}
    shut = {"undone": H, "not_undone": H, "undone_share": None}
    assert stats.tables["undo"].rows == {
        ("dlt.licence",): {"completed": 7, **shut},
        ("dopa.birth",): {"completed": 10, "undone": 5, "not_undone": 5, "undone_share": 0.5},
        ("dopa.id_card",): {"completed": 25, "undone": 5, "not_undone": 20,
                            "undone_share": 0.2},
        (schema.OTHER_SERVICE,): {"completed": 5, **shut}}
    assert {key: row["registered"] for key, row in stats.tables["progress"].rows.items()} == {
        ("dlt.licence",): H, ("dopa.birth",): H, ("dopa.id_card",): H}


def test_statistics_cli_writes_the_csv_of_a_day_range(stores, fleet_url, tmp_path):
    db, reg = stores
    out = tmp_path / "stats.csv"
    done = subprocess.run(
        [sys.executable, "-c", "from kiosk.fleet.cli import main; main()", "stats", "--db",
         fleet_url, "--from", "2026-12-01", "--to", "2026-12-01", "--level", "ministry",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = statistics.compute(db, reg, START, END, "ministry")
    assert statistics.read_csv(out.read_bytes()) == statistics.csv_text_of(expected.figures())


def test_statistics_cli_takes_the_contradiction_thresholds(stores, fleet_url, tmp_path):
    db, reg = stores
    out = tmp_path / "stats.csv"
    done = subprocess.run(
        [sys.executable, "-c", "from kiosk.fleet.cli import main; main()", "stats", "--db",
         fleet_url, "--from", "2026-12-01", "--to", "2026-12-01", "--contradiction-rate",
         "1/5", "--contradiction-answers", "30", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stricter = statistics.Thresholds(contradiction_answers=30, contradiction_rate=Fraction(1, 5))
    expected = statistics.compute(db, reg, START, END, thresholds=stricter)
    assert statistics.read_csv(out.read_bytes()) == statistics.csv_text_of(expected.figures())
    row = ("dopa.id_card", "cancelled")
    assert expected.tables["no_copy"].rows[row]["contradiction"] is False  # 25 knew < 30
    assert NATIONAL["no_copy"][row]["contradiction"] is True  # by the default 10 %


def test_statistics_count_an_undated_visit_in_the_day_it_arrived(stores):
    db, reg = stores
    # Period None: recorded before the clock synced; the store files it under its arrival day.
    with db.database.atomic():
        assert db.add_visits(visits("k1", 1, period=None, service_id="dopa.id_card"),
                             RECEIVED) == 1
    stats = statistics.compute(db, reg, START, END)
    assert stats.tables["visits"].rows == {(): {"visits": 56, "verified": 46, "unverified": 10,
                                                "verified_share": round(46 / 56, 4)}}
    assert stats.tables["no_copy"].rows[("dopa.id_card", "cancelled")]["answered"] == 31


@pytest.fixture
def fresh(fleet_url, tmp_path):
    """``compute(batch, level)``: the statistics of just ``batch``, with the registry of the
    known set and every kiosk pinned as it is there."""
    db = open_database(fleet_url)
    reg = registry.open_registry(fleet_url)
    path = tmp_path / "registry.csv"
    path.write_bytes(csv_text(REGISTRY_ROWS).encode("utf-8-sig"))
    registry.import_file(reg, path, as_of=dt.datetime(2026, 11, 1, tzinfo=BANGKOK))

    def compute(batch, level="national"):
        with db.database.atomic():
            for kiosk, service_point_id in KIOSKS.items():
                db.apply_service_point(pin(kiosk, service_point_id), RECEIVED)
            db.add_visits(batch, RECEIVED)
        return statistics.compute(db, reg, START, END, level=level).tables

    yield compute
    reg.close()
    db.close()


def test_statistics_copy_row_gives_no_hidden_no_copy_count_away(fresh):
    """A ministry's copy row is the sum of its no_copy rows. Here the no_copy table hides the
    id card's 3 asked of 30, and the licence's row as its complement; published as they are,
    the Interior's 53 asked less the birth's visible 50 would give the 3 back, and Transport's
    copy row would repeat the licence's hidden one. (The birth's 5 not sure keep its row
    whole; the others' none are hidden with their 3 and 10.)"""
    tables = fresh([*visits("k1", 3, service_id="dopa.id_card", copy_answer="id_card"),
                    *visits("k1", 27, service_id="dopa.id_card"),
                    *visits("k1", 50, service_id="dopa.birth", copy_answer="both"),
                    *visits("k1", 50, service_id="dopa.birth"),
                    *visits("k1", 5, service_id="dopa.birth", copy_answer="not_sure"),
                    *visits("k2", 10, service_id="dlt.licence", copy_answer="both"),
                    *visits("k2", 20, service_id="dlt.licence")], level="ministry")
    no_copy = tables["no_copy"].rows
    assert no_copy[(INTERIOR, "dopa.id_card", "cancelled")]["asked"] == H
    assert no_copy[(INTERIOR, "dopa.birth", "in_progress")]["asked"] == 50
    assert no_copy[(TRANSPORT, "dlt.licence", "cancelled")]["asked"] == H
    hidden = {"asked": H, "not_asked": H, "not_sure": H, "copy_request_rate": None,
              "not_sure_share": None}
    assert tables["copy"].rows == {(TRANSPORT,): {"answered": 30, **hidden},
                                   (INTERIOR,): {"answered": 135, **hidden}}


def test_statistics_contradiction_is_published_when_its_counts_are_hidden(fresh):
    """30 answers, 3 asked (10 %), cancelled: a contradiction. The 3 is hidden, and its row's
    0 not sure with it; the flag still shows, with the row's published total."""
    tables = fresh([*visits("k1", 3, service_id="dopa.id_card", copy_answer="id_card"),
                    *visits("k1", 27, service_id="dopa.id_card")])
    assert tables["no_copy"].rows[("dopa.id_card", "cancelled")] == {
        "answered": 30, "asked": H, "not_asked": 27, "not_sure": H, "observed_rate": None,
        "not_sure_share": None, "contradiction": True}


def test_statistics_a_ministry_less_its_shown_departments_gives_no_hidden_count_away(
        fleet_url, tmp_path):
    """The console shows a ministry's row beside its departments' (and a department's beside
    its service points'): with the Interior's 32 visits shown and its departments at 30 and a
    hidden 2, the 2 was one subtraction away. Every level's table now holds against the sums
    the level above shows."""
    rows = [*REGISTRY_ROWS, point("bora-1", INTERIOR, "BORA", "เชียงใหม่", "bora.x", "not_yet")]
    db, reg = open_database(fleet_url), registry.open_registry(fleet_url)
    try:
        path = tmp_path / "registry.csv"
        path.write_bytes(csv_text(rows).encode("utf-8-sig"))
        registry.import_file(reg, path, as_of=dt.datetime(2026, 11, 1, tzinfo=BANGKOK))
        with db.database.atomic():
            for kiosk, service_point_id in {**KIOSKS, "k4": "bora-1"}.items():
                db.apply_service_point(pin(kiosk, service_point_id), RECEIVED)
            told = dict(card_in_at_commit=False, undone=False)
            db.add_visits([*visits("k1", 30, **told), *visits("k2", 30, **told),
                           *visits("k4", 2, **told)], RECEIVED)
        above = statistics.compute(db, reg, START, END, "ministry").tables
        below = statistics.compute(db, reg, START, END, "department").tables
    finally:
        reg.close()
        db.close()
    assert above["card"].rows and above["undo"].rows
    for name in ("visits", "ratings", "copy", "abandoned", "reasons", "card", "undo"):
        for (ministry,), row in above[name].rows.items():
            children = [r for key, r in below[name].rows.items() if key[0] == ministry]
            for column, value in row.items():
                if not isinstance(value, int) or isinstance(value, bool):
                    continue
                hidden = [r[column] for r in children if r.get(column) == H]
                assert len(hidden) != 1, (name, ministry, column, value, children)


@pytest.mark.parametrize("level", ["national", "service_point"])
def test_statistics_some_tables_alone_are_what_the_whole_publication_holds(stores, level):
    """A page listing contradictions computes the no_copy table alone (the service-point
    level's other tables were most of a year's page time): it must be the same table, and
    the copy table it is linked to as well."""
    db, reg = stores
    whole = statistics.compute(db, reg, START, END, level).tables
    part = statistics.compute(db, reg, START, END, level, tables=("no_copy", "copy")).tables
    assert list(part) == ["copy", "no_copy"]
    assert part["no_copy"].rows == whole["no_copy"].rows
    assert part["copy"].rows == whole["copy"].rows
    with pytest.raises(ValueError, match="no such table: nope"):
        statistics.compute(db, reg, START, END, level, tables=("nope",))
