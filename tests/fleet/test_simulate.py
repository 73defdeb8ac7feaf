"""The simulator against the real broker and a real collector: an office day of 20 kiosks in a
few seconds, every visit stored once, every period count reconciled, health and outages seen."""

import datetime as dt
import json

import pytest

from kiosk.fleet import cli
from kiosk.fleet.collector import Collector
from kiosk.fleet.simulate import DEPARTMENTS, Simulation, sites, visits_expected
from kiosk.period import BANGKOK
from kiosk.visit import OTHER_SERVICE, RETIRED_REASONS
from tests.fixtures.broker import wait_until

KIOSKS = 20
DAY = dt.datetime(2026, 11, 30, 7, 30, tzinfo=BANGKOK)


@pytest.fixture
def simulation(broker):
    accounts = [(f"sim-{n:03d}", None) for n in range(KIOSKS)]
    accounts = [(kiosk_id, broker.add_kiosk(kiosk_id)) for kiosk_id, _ in accounts]
    running = Simulation(accounts, host="127.0.0.1", port=broker.port, start=DAY, hours=10,
                         factor=10 * 3600 / 1.5, seed=7, health_s=600, outage_rate=0.15,
                         outage_s=3600)
    yield running
    running.stop()


def started(broker, where):
    """A collector storing to ``where`` that reconciles often, so the test need not wait."""
    running = Collector(where, "127.0.0.1", broker.port, *broker.collector_credentials,
                        batch_s=0.05, reconcile_every_s=0.1)
    running.start()
    assert running.wait_for_connected(10)
    return running


@pytest.fixture
def sqlite_collector(broker, tmp_path):
    running = started(broker, tmp_path / "fleet.sqlite3")
    yield running
    running.stop()


def test_simulate_sites_spread_over_provinces_and_departments():
    chosen = sites(154)
    assert len({s.point.province for s in chosen}) == 77
    assert {s.department for s in chosen} >= set(DEPARTMENTS)
    assert len({s.point.id for s in chosen}) == 154


def test_simulate_visits_only_in_office_hours():
    rng = __import__("random").Random(3)
    night = dt.datetime(2026, 11, 30, 22, 0, tzinfo=BANGKOK)
    peak = dt.datetime(2026, 11, 30, 10, 0, tzinfo=BANGKOK)
    assert sum(visits_expected(rng, night, 60) for _ in range(1000)) == 0
    assert 150 < sum(visits_expected(rng, peak, 60) for _ in range(1000)) < 250  # mean 200


def test_simulate_office_day_is_stored_once_and_reconciles(simulation, sqlite_collector):
    """On SQLite only: the collector suite runs on both stores, and the PostgreSQL run of
    this one cost 5 s of the suite's budget for nothing more."""
    collector = sqlite_collector
    kiosks = simulation.run()
    assert simulation.settle(10, resend_s=0.3), "messages left unacked"
    totals = simulation.totals()
    assert totals["visits"] > 500 and totals["outages"] >= 1
    assert totals["connects"] == KIOSKS + totals["outages"]

    db = collector.db
    stored = db.FleetVisit.select().count()
    assert stored == totals["visits"]
    assert len({v.event_id for v in db.visits()}) == stored
    by_kiosk = {k.kiosk_id: k.tally.visits for k in kiosks}
    assert {k: len(db.visits(k)) for k in by_kiosk} == by_kiosk

    wait_until(lambda: all(db.period_verdicts(k.kiosk_id) == {"ok": k.tally.periods}
                           for k in kiosks), "every period count reconciled ok", timeout=10)
    assert not [a for a in db.alarms() if a.kind.startswith("period_count")]
    counted = {}
    for row in db.PeriodCount.select():
        counted.setdefault(row.kiosk_id, {})[row.period] = row.visits
    assert counted == {k.kiosk_id: k.tally.counted for k in kiosks if k.tally.counted}

    rows = {row.kiosk_id: row for row in db.kiosks()}
    assert set(rows) == set(by_kiosk)
    assert all(json.loads(row.health)["reader"] == "ready" for row in rows.values())
    dropped = [k for k in kiosks if k.tally.outages]
    assert all(rows[k.kiosk_id].epoch == k.tally.connects for k in dropped)


def test_simulate_answers_differ_by_department():
    """Copy requests and ratings follow the department's profile (no broker needed: visits are
    held until their period closes)."""
    accounts = [(f"sim-{n:03d}", "unused") for n in range(KIOSKS)]
    simulation = Simulation(accounts, host="127.0.0.1", port=1, start=DAY, hours=10, factor=1)
    asked, ratings = {}, {}
    for kiosk in simulation.kiosks:
        for _ in range(300):
            kiosk.record_visit(DAY)
        for _, _, payload in kiosk.held():
            sent = json.loads(payload)
            department = kiosk.site.department
            asked.setdefault(department, []).append(sent["copy_answer"] != "none")
            if sent["rating"] is not None:
                ratings.setdefault(department, []).append(sent["rating"])
    share = {d: sum(a) / len(a) for d, a in asked.items()}
    mean = {d: sum(r) / len(r) for d, r in ratings.items()}
    assert share["dol"] > 2 * share["dopa"]
    assert mean["rd"] > mean["dol"] + 0.3


def test_simulate_verb_runs_kiosks_from_a_passwords_file(broker, sqlite_collector, tmp_path,
                                                         capsys):
    lines = [f"cli-{n}:{broker.add_kiosk(f'cli-{n}')}" for n in range(3)]
    (tmp_path / "passwords").write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", "--kiosks", "3", "--port", str(broker.port), "--passwords",
                  str(tmp_path / "passwords"), "--day", "2026-11-30", "--hours", "3",
                  "--factor", "10800", "--outage-rate", "0"])
    assert exited.value.code == 0
    totals = dict(item.split("=") for item in capsys.readouterr().out.split())
    assert int(totals["visits"]) > 0 and totals["outages"] == "0"
    wait_until(lambda: sqlite_collector.db.FleetVisit.select().count() == int(totals["visits"]),
               "every visit of the verb's run stored")


def _visits_of_one_kiosk(count):
    """``count`` visits one simulated kiosk made in an office day, as it would send them."""
    simulation = Simulation([("sim-000", "unused")], host="127.0.0.1", port=1, start=DAY,
                            hours=10, factor=1)
    [kiosk] = simulation.kiosks
    for _ in range(count):
        kiosk.record_visit(DAY)
    return [json.loads(payload) for _, _, payload in kiosk.held()]


def test_simulate_kiosks_send_schema_3_answers_at_plausible_rates():
    """Not sure, the other service, the card left in (card visits only) and the changed answer
    all come, each in a few per cent of visits, and no visit gives a retired reason."""
    sent = _visits_of_one_kiosk(2000)
    assert {v["schema"] for v in sent} == {3}

    def share(test, among=sent):
        return sum(map(test, among)) / len(among)

    carded = [v for v in sent if v["verified"]]
    assert all("card_in_at_commit" not in v for v in sent if not v["verified"])
    assert 0.02 < share(lambda v: v["copy_answer"] == "not_sure") < 0.12
    assert 0.01 < share(lambda v: v["service_id"] == OTHER_SERVICE) < 0.08
    assert 0.03 < share(lambda v: v["card_in_at_commit"], carded) < 0.12
    assert 0.02 < share(lambda v: v["undone"]) < 0.09
    assert not any(v["reason"] in RETIRED_REASONS for v in sent)


def test_simulate_visits_end_where_the_kiosk_ends_them():
    """Completed visits end on the confirm screen; an abandoned one holds only the answers
    given before the question it was left on."""
    sent = _visits_of_one_kiosk(600)
    assert {v["step"] for v in sent if v["outcome"] == "completed"} == {"confirm"}
    order = ("choose_service", "copy_check", "rating", "reason")
    answers = ("service_id", "copy_answer", "rating", "reason")
    abandoned = [v for v in sent if v["outcome"] == "abandoned"]
    assert {v["step"] for v in abandoned} == set(order)
    for v in abandoned:
        at = order.index(v["step"])
        assert all(v.get(name) is None for name in answers[at:]), v
        assert all(v.get(name) is not None for name in answers[:min(at, 3)]), v
        assert v["step"] != "reason" or v["rating"] <= 2
