"""Staged rollouts (issue 17, "Rollout from the console"): the pure selection and threshold,
the fleet database's progress and self-pause, the verb's actions with a recording sender, and
the acceptance run: 50 simulated kiosks, the real test broker and a real collector."""

import datetime as dt
import itertools
import re
from html import unescape

import pytest

from kiosk.errors import RolloutRefused, TelemetryError
from kiosk.fleet import cli, rollout, rollouts, status
from kiosk.fleet.collector import Collector
from kiosk.fleet.console.app import Broker, Settings, create_app
from kiosk.fleet.db import open_database
from kiosk.fleet.simulate import VERSION, Simulation
from kiosk.period import BANGKOK
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.fixtures.console import Browser
from tests.fleet.test_statistics import DLT
from tests.fleet.test_store_concurrency import Turns

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
URL = "https://releases.example.go.th/kiosk/0.2.0/"
RECEIVED = "2026-12-01T05:00:00.000Z"
STAMP = {"at": "2026-12-01T05:00:00.000Z", "clock_synced": True, "mono_s": 100.0}


class Sent:
    """A recording ``send``: every ``(topic, payload, retain)`` it was given, in order."""

    def __init__(self):
        self.messages = []

    def __call__(self, messages):
        self.messages.extend(messages)

    def kiosks(self, *, empty=False):
        return [topic.split("/")[3] for topic, payload, retain in self.messages
                if retain and topic.endswith("/update") and (payload == b"") == empty]


def health(kiosk_id, state, *, version=VERSION, about="0.2.0", rollout_id, reason=None):
    payload = topics.health_payload(
        mode="production", uptime_s=10, load_1m=0.1, disk_free_mb=9000, mem_free_mb=300,
        outbox_depth=0, outbox_oldest_s=None, dead_letters=0, reader="ready",
        card_reads_ok=None, config_version=1, version=version, stamp=STAMP,
        update=topics.UpdateState(state, about, reason, rollout_id))
    return topics.parse_kiosk_message(topics.kiosk_topic(kiosk_id, "health"), payload)


# --- the pure rules -------------------------------------------------------------------------

def test_rollout_ten_percent_of_fifty_is_five_and_widening_keeps_them():
    fleet = [f"k-{n:02d}" for n in range(50)]
    first = rollout.select("r-abc", fleet, 10)
    assert len(first) == 5 and len(set(first)) == 5
    assert rollout.select("r-abc", list(reversed(fleet)), 10) == first  # stable
    wider = rollout.select("r-abc", fleet, 30, already=first)
    assert len(wider) == 15 and wider[:5] == first
    assert rollout.select("r-abc", fleet, 30)[:5] == first  # the same order from scratch
    assert rollout.select("r-xyz", fleet, 10) != first  # another rollout, other canaries
    assert rollout.share(10, 51) == 6 and rollout.share(0.1, 3) == 1
    assert rollout.share(33.3, 1000) == 333
    with pytest.raises(ValueError, match="percent"):
        rollout.share(0, 10)


def test_rollout_pauses_only_past_its_threshold_and_takes_healthy_only_on_the_version():
    assert not rollout.is_past_threshold(["rolled_back", *["healthy"] * 4], 20)
    assert rollout.is_past_threshold(["rolled_back"] * 2 + ["sent"] * 3, 20)
    assert rollout.is_done(["healthy"] * 3) and not rollout.is_done(["healthy", "switched"])
    said = topics.UpdateState("healthy", "0.2.0", None, "r-a")
    assert rollout.state_of("0.2.0", "0.2.0", said) == "healthy"
    assert rollout.state_of("0.2.0", "0.1.0", said) is None  # not running it yet
    assert rollout.state_of("0.3.0", "0.2.0", said) is None  # about another release
    assert rollout.new_rollout_id().startswith("r-")


def test_rollout_a_refusal_because_the_command_was_withdrawn_is_no_failure():
    withdrawn = "withdrawn: the request was withdrawn before the kiosk was stopped"
    assert rollout.is_resent("refused", withdrawn) and rollout.is_resent("waiting", None)
    assert not rollout.is_resent("refused", "downgrade refused: 0.1.0 is not newer")
    assert not rollout.is_resent("rolled_back", withdrawn)
    assert not rollout.is_resent("switched", None)
    shown = rollout.totals(rollout.shown_state(state, reason) for state, reason in (
        ("refused", withdrawn), ("refused", "bad signature"), ("healthy", None)))
    assert (shown["withdrawn"], shown["refused"], shown["healthy"]) == (1, 1, 1)
    assert not rollout.is_done(["healthy", "refused"])


def test_rollout_a_refusal_the_updater_will_try_again_is_no_failure():
    """The root updater's transient refusals ("retry later: the download failed ...") are
    tried again by the kiosk itself, and sent again on a resume."""
    later = "retry later: https://r.example/manifest.json: timed out (5 attempts)"
    assert rollout.is_resent("refused", later)
    shown = rollout.totals(rollout.shown_state(state, reason) for state, reason in (
        ("refused", later), ("refused", "version mismatch: 99.0 is 9.7.0"), ("healthy", None)))
    assert (shown["retrying"], shown["refused"], shown["healthy"]) == (1, 1, 1)


# --- the store and the verb's actions -------------------------------------------------------

def _fleet(db, kiosk_ids):
    with db.database.atomic():
        db.seen(kiosk_ids, RECEIVED)


def test_rollout_progress_pauses_itself_raises_an_alarm_and_names_what_to_withdraw(fleet_url):
    """On SQLite and PostgreSQL: the migration, the progress and the self-pause."""
    db = open_database(fleet_url)
    try:
        _fleet(db, [f"k-{n:02d}" for n in range(20)])
        sent = Sent()
        wanted, targets = rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA,
                                         percent=25, threshold_percent=20, rollout_id="r-t")
        assert len(targets) == 5 and sorted(sent.kiosks()) == sorted(targets)
        payload = topics.parse_command(topics.cmd_topic(targets[0], "update"),
                                       sent.messages[0][1], kiosk_id=targets[0],
                                       max_bytes=1 << 20, applied_version=None)
        assert payload.release == topics.WantedRelease("0.2.0", URL, SHA, "r-t")

        ok, bad1, bad2, slow, other = targets
        with db.database.atomic():
            assert db.apply_rollout_progress([
                health(ok, "healthy", version="0.2.0", rollout_id="r-t"),
                health(bad1, "rolled_back", rollout_id="r-t", reason="not healthy"),
                health(slow, "downloading", rollout_id="r-t"),
                health("k-99", "rolled_back", rollout_id="r-t"),  # not a target: no row
            ], RECEIVED) == []
            [paused] = db.apply_rollout_progress(
                [health(bad2, "rolled_back", rollout_id="r-t", reason="not healthy")],
                RECEIVED)
        assert paused.rollout_id == "r-t" and paused.kiosk_id == bad2
        assert set(paused.withdraw) == {bad1, bad2, slow, other}
        assert db.rollout("r-t").state == "paused"
        assert "2 of 5" in db.rollout("r-t").paused_reason
        [alarm] = db.alarms(bad2)
        assert alarm.kind == "rollout_paused" and "r-t" in alarm.detail
        rows = {r.kiosk_id: r for r in db.rollout_kiosks("r-t")}
        assert (rows[bad1].state, rows[bad1].reason) == ("rolled_back", "not healthy")
        assert rows[ok].state == "healthy" and not rows[ok].is_withdrawn
        assert "k-99" not in rows
    finally:
        db.close()


@pytest.fixture
def sqlite_db(tmp_path):
    db = open_database(tmp_path / "fleet.sqlite3")
    yield db
    db.close()


def test_rollout_verb_actions_pause_resume_and_widen(sqlite_db):
    db = sqlite_db
    _fleet(db, [f"k-{n:02d}" for n in range(10)])
    sent = Sent()
    wanted, targets = rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA,
                                     percent=20, rollout_id="r-v")
    first, second = targets
    with db.database.atomic():
        db.apply_rollout_progress([health(first, "healthy", version="0.2.0",
                                          rollout_id="r-v")], RECEIVED)
    assert rollouts.pause(db, sent, "r-v") == rollouts.Paused([second], is_again=False)
    assert sent.kiosks(empty=True) == [second]
    # Paused already: the withdrawal is done again (idempotent), the reason kept.
    assert rollouts.pause(db, sent, "r-v", reason="x") == rollouts.Paused([second], True)
    assert sent.kiosks(empty=True) == [second, second]
    assert db.rollout("r-v").paused_reason == "paused by ops"
    with pytest.raises(TelemetryError, match="paused"):
        rollouts.widen(db, sent, "r-v", 50)
    assert rollouts.resume(db, sent, "r-v") == [second]
    assert sent.kiosks().count(second) == 2
    added = rollouts.widen(db, sent, "r-v", 50)
    assert len(added) == 3 and not set(added) & set(targets)
    assert [r.kiosk_id for r in db.rollout_kiosks("r-v")][:2] == targets
    with pytest.raises(TelemetryError, match="widen to more"):
        rollouts.widen(db, sent, "r-v", 40)
    lines = rollouts.status_lines(db, "r-v")
    assert "healthy 1/5" in lines[1] and "sent 4/5" in lines[1]


WITHDRAWN = "withdrawn: the request was withdrawn before the kiosk was stopped"


def test_rollout_resume_sends_again_to_kiosks_that_refused_because_it_was_withdrawn(sqlite_db):
    """Paused while waiting, the kiosks' updaters refused "withdrawn: ...": resume sends them
    the command again (set back to ``sent``), never to one that failed with it."""
    db = sqlite_db
    _fleet(db, [f"k-{n:02d}" for n in range(4)])
    sent = Sent()
    _, targets = rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA, percent=100,
                                rollout_id="r-w")
    waiting, downgrade, broken, quiet = targets
    with db.database.atomic():
        db.apply_rollout_progress([health(k, "waiting", rollout_id="r-w") for k in targets],
                                  RECEIVED)
    assert rollouts.pause(db, sent, "r-w").kiosk_ids == targets
    with db.database.atomic():  # what the updaters said once their requests were withdrawn
        db.apply_rollout_progress([
            health(waiting, "refused", rollout_id="r-w", reason=WITHDRAWN),
            health(downgrade, "refused", rollout_id="r-w", reason="downgrade refused"),
            health(broken, "rolled_back", rollout_id="r-w", reason="not healthy"),
        ], RECEIVED)
    shown = rollouts.progress(db, "r-w").totals
    assert (shown["withdrawn"], shown["refused"], shown["rolled_back"]) == (1, 1, 1)
    assert rollouts.resume(db, sent, "r-w", threshold_percent=50) == [waiting, quiet]
    assert sent.kiosks()[len(targets):] == [waiting, quiet]
    rows = {r.kiosk_id: r for r in db.rollout_kiosks("r-w")}
    assert (rows[waiting].state, rows[waiting].reason) == ("sent", None)
    assert not rows[waiting].is_withdrawn and rows[downgrade].is_withdrawn
    with db.database.atomic():
        db.apply_rollout_progress([health(k, "healthy", version="0.2.0", rollout_id="r-w")
                                   for k in (waiting, quiet)], RECEIVED)
    assert db.rollout("r-w").state == "active"  # two failed: not done, nor paused at 50 %


@pytest.mark.parametrize("fleet_store", ["postgresql"], indirect=True)
def test_rollout_widen_refuses_when_a_pause_lands_before_its_update(fleet_url, monkeypatch):
    """A pause committed between widen's check and its update, by a writer that does not take
    the rollout's lock (a collector of the previous release, in a share group being upgraded):
    the widening does not take, nothing is added nor sent, the pause stays."""
    db, collector = open_database(fleet_url), open_database(fleet_url)
    try:
        _fleet(db, [f"k-{n:02d}" for n in range(10)])
        sent = Sent()
        _, targets = rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA,
                                    percent=20, rollout_id="r-race")
        choose = rollouts.eligible

        def pausing_meanwhile(*args, **kwargs):
            collector.set_rollout_state("r-race", "paused", RECEIVED,
                                        reason="2 of 2 rolled back", only_from=("active",))
            return choose(*args, **kwargs)

        monkeypatch.setattr(rollouts, "eligible", pausing_meanwhile)
        monkeypatch.setattr(db, "rollout_lock", lambda rollout_id: db.database.atomic())
        with pytest.raises(TelemetryError, match=r"was paused .*2 of 2 rolled back.*nothing "
                                                 "was added or sent"):
            rollouts.widen(db, sent, "r-race", 50)
        assert db.rollout("r-race").state == "paused" and db.rollout("r-race").percent == 20
        assert [r.kiosk_id for r in db.rollout_kiosks("r-race")] == targets
        assert sent.kiosks() == targets
    finally:
        db.close()
        collector.close()


def test_rollout_withdraw_again_is_refused_once_another_operator_resumed(sqlite_db):
    """The console's "Withdraw again" (``only_again``) meant the paused rollout its page
    showed: resumed meanwhile, it takes back nothing."""
    db = sqlite_db
    _fleet(db, ["k-01", "k-02"])
    sent = Sent()
    rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA, percent=100,
                   rollout_id="r-two")
    rollouts.pause(db, sent, "r-two")
    assert rollouts.pause(db, sent, "r-two", only_again=True).is_again
    rollouts.resume(db, sent, "r-two")
    before = list(sent.messages)
    with pytest.raises(TelemetryError, match="active, not paused: nothing withdrawn"):
        rollouts.pause(db, sent, "r-two", only_again=True)
    assert sent.messages == before and db.rollout("r-two").state == "active"


@pytest.mark.parametrize("fleet_store", ["postgresql"], indirect=True)
def test_rollout_two_collectors_each_with_one_rollback_pause_it_once(fleet_url, monkeypatch):
    """PostgreSQL, READ COMMITTED: two collectors' batches each take one rollback of 5 (2 of
    5 is past 20 %). The first is held after counting, before committing; the second must wait
    for the rollout's lock rather than count 1 of 5 too, and then pauses it."""
    first, second = open_database(fleet_url), open_database(fleet_url)
    try:
        _fleet(first, [f"k-{n:02d}" for n in range(5)])
        _, targets = rollouts.start(first, Sent(), version="0.2.0", url=URL, sha256=SHA,
                                    percent=100, threshold_percent=20, rollout_id="r-pg")

        def batch(db, kiosk_id):
            def run():
                with db.database.atomic():
                    return db.apply_rollout_progress(
                        [health(kiosk_id, "rolled_back", rollout_id="r-pg")], RECEIVED)
            return run

        turns = Turns(monkeypatch, rollout, "is_past_threshold", fleet_url)
        results = turns.run(batch(first, targets[0]), batch(second, targets[1]),
                            (first.database, second.database))
        for result in results:
            assert not isinstance(result, Exception), result
        assert [p.kiosk_id for result in results for p in result] == [targets[1]]
        assert first.rollout("r-pg").state == "paused"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(("given", "field", "fix"), [
    ({"sha256": "beef"}, "sha256", "64 hex digits"),
    ({"url": "http://plain/"}, "url", "https://"),
    ({"version": ""}, "version", "a version like 0.2.0"),
    ({"percent": "0"}, "percent", "0 (excluded) to 100"),
    ({"threshold_percent": "lots"}, "threshold", "rollback threshold must be a number"),
    ({"filters": status.Filters(province="Phuket")}, "filters", "kiosk-fleet status"),
])
def test_rollout_start_refuses_bad_input_naming_the_field_and_records_nothing(
        sqlite_db, given, field, fix):
    _fleet(sqlite_db, ["k-01", "k-02"])
    sent = Sent()
    wanted = {"version": "0.3.0", "url": URL, "sha256": SHA, "percent": 10, **given}
    with pytest.raises(RolloutRefused, match=re.escape(fix)) as refused:
        rollouts.start(sqlite_db, sent, **wanted)
    assert refused.value.field == field and str(refused.value).startswith(f"{field}: ")
    assert sqlite_db.rollouts() == [] and sent.messages == []


def test_rollout_the_broker_refusing_the_command_leaves_it_paused_saying_why(sqlite_db):
    _fleet(sqlite_db, ["k-01", "k-02"])

    def refused(messages):
        raise TelemetryError("broker refused ops: Not authorized")

    with pytest.raises(TelemetryError, match="Not authorized"):
        rollouts.start(sqlite_db, refused, version="0.2.0", url=URL, sha256=SHA,
                       percent=100, rollout_id="r-refused")
    kept = sqlite_db.rollout("r-refused")
    assert kept.state == "paused" and "Not authorized" in kept.paused_reason
    with pytest.raises(ValueError, match="threshold"):
        rollouts.start(sqlite_db, Sent(), version="0.2.0", url=URL, sha256=SHA, percent=10,
                       threshold_percent="lots")


def test_rollout_to_a_province_or_a_department_takes_only_its_kiosks(console_store):
    """The console store's registry: k1 at dopa-10 (Bangkok, DOPA), k2 at dlt-50 (Chiang
    Mai, DLT), k3 at a point in no registry."""
    db = open_database(console_store)
    try:
        sent = Sent()
        _, by_department = rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA,
                                          percent=100, filters=status.Filters(department=DLT))
        _, by_province = rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA,
                                        percent=100,
                                        filters=status.Filters(province="Bangkok"))
        assert (by_department, by_province) == (["k2"], ["k1"])
        assert sorted(sent.kiosks()) == ["k1", "k2"]
        with pytest.raises(TelemetryError, match="no kiosk"):
            rollouts.start(db, sent, version="0.2.0", url=URL, sha256=SHA, percent=100,
                           filters=status.Filters(province="Phuket"))
    finally:
        db.close()


# --- the acceptance run ---------------------------------------------------------------------

KIOSKS = 50
DAY = dt.datetime(2026, 11, 30, 18, 0, tzinfo=BANGKOK)


def retained_updates(broker, mqtt_client, sentinel_kiosk):
    """``{kiosk_id: payload}`` of the retained update commands the broker holds now: a new
    subscriber gets them right after its SUBACK, and then, after a second subscription, the
    sentinel kiosk's retained status, so once that is in every retained command is too."""
    name = f"auditor-{next(_observers)}"  # a fresh account: a fresh subscription
    observer = mqtt_client(name, broker.add_observer(name))
    observer.subscribe(f"{topics.ROOT}/cmd/+/update")
    observer.subscribe(topics.kiosk_topic(sentinel_kiosk, "status"))
    observer.wait_for_message(topics.kiosk_topic(sentinel_kiosk, "status"))
    found = {m.topic.split("/")[3]: m.payload
             for m in observer.received(f"{topics.ROOT}/cmd/+/update") if m.retain}
    observer.close()
    return found


_observers = itertools.count()


def test_rollout_staged_to_ten_percent_of_fifty_then_one_pausing_itself(broker, mqtt_client,
                                                                        tmp_path, capsys):
    """Acceptance: a 10 % rollout updates exactly its 5 kiosks (the other 45 hold no retained
    command) and all 5 report healthy; a second rollout, whose kiosks partly fail, pauses
    itself past its 20 % threshold: alarm raised, commands of the kiosks not switched
    withdrawn at the broker."""
    accounts = [(f"sim-{n:03d}", None) for n in range(KIOSKS)]
    accounts = [(kiosk_id, broker.add_kiosk(kiosk_id)) for kiosk_id, _ in accounts]
    kiosk_ids = [kiosk_id for kiosk_id, _ in accounts]
    where = tmp_path / "fleet.sqlite3"
    collector = Collector(where, "127.0.0.1", broker.port, *broker.collector_credentials,
                          batch_s=0.05, reconcile_every_s=0.5)
    simulation = Simulation(accounts, host="127.0.0.1", port=broker.port, start=DAY, hours=1,
                            factor=1, update_step_s=0.05)
    collector.start()
    try:
        assert collector.wait_for_connected(10)
        simulation.connect()
        db = collector.db
        wait_until(lambda: db.KioskRow.select().count() == KIOSKS, "every kiosk known")
        password = tmp_path / "ops-password"
        password.write_text(broker.ops_credentials[1] + "\n")
        ops = ["--port", str(broker.port), "--password-file", str(password), "--db", str(where)]

        # A 10 % rollout, through the verb as ops types it.
        with pytest.raises(SystemExit) as exited:
            cli.main(["rollout", "start", "0.2.0", URL, SHA, "--percent", "10", *ops])
        assert exited.value.code == 0
        [first] = db.rollouts()
        targets = [r.kiosk_id for r in db.rollout_kiosks(first.rollout_id)]
        assert len(targets) == 5
        wait_until(lambda: db.rollout(first.rollout_id).state == "done", "5 kiosks healthy",
                   timeout=10)
        assert {k.kiosk_id for k in simulation.kiosks if k.version == "0.2.0"} == set(targets)
        held = retained_updates(broker, mqtt_client, kiosk_ids[0])
        assert set(held) == set(targets)  # the other 45 hold nothing
        capsys.readouterr()
        with pytest.raises(SystemExit):
            cli.main(["rollout", "status", first.rollout_id, "--db", str(where)])
        assert "healthy 5/5" in capsys.readouterr().out
        assert {r.kiosk_id: r.version for r in db.kiosks() if r.version == "0.2.0"} == \
            dict.fromkeys(targets, "0.2.0")

        # A 20 % rollout whose kiosks partly fail: 3 of its 10 roll back, past 20 %.
        second_id = "r-second"
        chosen = rollout.select(second_id, kiosk_ids, 20)
        failing, waiting = chosen[:3], chosen[3:]
        for kiosk in simulation.kiosks:
            kiosk.update_outcome = ("rolled_back" if kiosk.kiosk_id in failing else
                                    "waits" if kiosk.kiosk_id in waiting else "healthy")
        send = rollouts.sender("127.0.0.1", broker.port, *broker.ops_credentials)
        rollouts.start(db, send, version="0.3.0", url=URL.replace("0.2.0", "0.3.0"),
                       sha256=SHA, percent=20, threshold_percent=20, rollout_id=second_id)
        wait_until(lambda: db.rollout(second_id).state == "paused", "the rollout paused",
                   timeout=10)
        assert [a.kind for a in db.alarms() if a.kind == "rollout_paused"] == [
            "rollout_paused"]
        assert "rolled back" in db.rollout(second_id).paused_reason
        unswitched = set(db.unswitched(second_id))
        assert set(waiting) <= unswitched
        wait_until(lambda: set(retained_updates(broker, mqtt_client, kiosk_ids[0]))
                   == set(targets) - unswitched, "the commands withdrawn", timeout=5)
        assert collector.counters.rollouts_paused == 1
        # Withdrawn while waiting: none of them switched to the release.
        assert not [k for k in simulation.kiosks if k.kiosk_id in waiting
                    and k.version == "0.3.0"]
    finally:
        simulation.stop()
        collector.stop()


def test_rollout_collector_may_withdraw_update_commands_and_no_other(broker, mqtt_client):
    collector = mqtt_client(*broker.collector_credentials)
    assert not collector.publish(topics.cmd_topic("k1", "update"), b"", retain=True).is_failure
    for name in ("config", "ping"):
        assert collector.publish(topics.cmd_topic("k1", name), b"{}").value == 0x87


# --- the console ----------------------------------------------------------------------------

def _rollout_in(store, rollout_id="r-console"):
    """A rollout to the console store's three kiosks: k1 rolled back, k2 and k3 sent."""
    db = open_database(store)
    try:
        rollouts.start(db, Sent(), version="0.2.0", url=URL, sha256=SHA, percent=100,
                       threshold_percent=90, rollout_id=rollout_id)
        with db.database.atomic():
            db.apply_rollout_progress([health("k1", "rolled_back", rollout_id=rollout_id,
                                              reason="not healthy within 120 s")], RECEIVED)
    finally:
        db.close()


def test_rollout_console_lists_rollouts_and_each_kiosks_step_with_its_reason(browser,
                                                                          console_store):
    _rollout_in(console_store)
    viewer = browser("vera")
    assert 'href="/rollouts"' in viewer.get("/fleet").text
    listed = viewer.get("/rollouts")
    row = re.search(r'<tr data-rollout="r-console">.*?</tr>', listed.text, re.S).group(0)
    assert 'data-state="rolled_back">rolled_back 1<' in row and 'data-state="sent">sent 2<' in row
    assert 'data-state="healthy"' not in row  # no kiosk there yet: not shown
    page = viewer.get("/rollouts/r-console")
    assert "rolled_back 1/3" in page.text and "not healthy within 120 s" in page.text
    assert 'id="pause"' not in page.text and 'id="viewer-notice"' in page.text
    assert 'id="widen-form"' not in page.text and 'id="start-form"' not in listed.text
    for action in ("pause", "widen"):
        assert viewer.post(f"/rollouts/r-console/{action}", {"percent": "50"}).status_code == 403
    assert viewer.post("/rollouts", {"version": "0.3.0", "url": URL, "sha256": SHA,
                                     "percent": "10"}).status_code == 403
    assert viewer.get("/rollouts/r-none").status_code == 404
    operator = browser("otto")
    page = operator.get("/rollouts/r-console").text
    assert 'id="pause"' in page and 'id="widen-form"' in page
    refused = operator.post("/rollouts/r-console/pause")
    assert refused.status_code == 400 and "--broker-host" in refused.text
    assert 'id="start-form"' in operator.get("/rollouts").text
    refused = operator.post("/rollouts", {"version": "0.3.0", "url": URL, "sha256": SHA,
                                          "percent": "10"})
    assert refused.status_code == 400 and "--broker-host" in refused.text
    db = open_database(console_store)
    try:
        assert [r.rollout_id for r in db.rollouts()] == ["r-console"]
    finally:
        db.close()


def test_rollout_console_operator_pauses_and_resumes_through_the_broker(broker, mqtt_client,
                                                                      console_store,
                                                                      users_file):
    _rollout_in(console_store)
    watcher = mqtt_client("auditor", broker.add_observer("auditor"))
    watcher.subscribe(f"{topics.ROOT}/cmd/+/update")
    app = create_app(Settings(db=console_store, users=users_file,
                              broker=Broker("127.0.0.1", broker.port,
                                            *broker.ops_credentials)))
    try:
        operator = Browser(app)
        operator.login("otto")
        operator.get("/rollouts/r-console")
        assert operator.post("/rollouts/r-console/pause").status_code == 303
        withdrawn = watcher.wait_for_message(topics.cmd_topic("k1", "update"),
                                             lambda m: m.payload == b"")
        assert withdrawn.payload == b""
        page = operator.get("/rollouts/r-console")
        assert 'id="rollout-state">paused<' in page.text and "paused by otto" in page.text
        assert operator.post("/rollouts/r-console/resume").status_code == 303
        again = watcher.wait_for_message(topics.cmd_topic("k2", "update"),
                                         lambda m: m.payload != b"" and not m.retain)
        assert b"r-console" in again.payload
        assert 'id="rollout-state">active<' in operator.get("/rollouts/r-console").text
    finally:
        app.extensions["console"].db.close()


def _sentinel(broker, mqtt_client, kiosk_id="k-sentinel"):
    """A kiosk account holding a retained status, for :func:`retained_updates` to wait on."""
    kiosk = mqtt_client(kiosk_id, broker.add_kiosk(kiosk_id))
    assert not kiosk.publish(topics.kiosk_topic(kiosk_id, "status"), b"{}",
                             retain=True).is_failure
    return kiosk_id


def _paused_by_a_cut_collector(db, broker, mqtt_client):
    """A 50 % rollout of ten kiosks whose collector committed its pause (one healthy, two
    rolled back) and died before publishing the withdrawal: (sentinel, targets, paused)."""
    _fleet(db, [f"k-{n:02d}" for n in range(10)])
    sentinel = _sentinel(broker, mqtt_client)
    send = rollouts.sender("127.0.0.1", broker.port, *broker.ops_credentials)
    _, targets = rollouts.start(db, send, version="0.2.0", url=URL, sha256=SHA,
                                percent=50, threshold_percent=20, rollout_id="r-cut")
    healthy, *rest = targets
    with db.database.atomic():  # the collector's batch
        [paused] = db.apply_rollout_progress(
            [health(healthy, "healthy", version="0.2.0", rollout_id="r-cut")]
            + [health(k, "rolled_back", rollout_id="r-cut") for k in rest[:2]], RECEIVED)
    return sentinel, targets, paused


def test_rollout_pause_of_a_paused_rollout_withdraws_again_what_a_cut_collector_left(
        broker, mqtt_client, tmp_path, capsys):
    """The collector committed its pause, then died before publishing the empty retained
    messages: the commands stay retained. ``rollout pause`` again withdraws them and says so."""
    where = tmp_path / "fleet.sqlite3"
    db = open_database(where)
    try:
        sentinel, targets, paused = _paused_by_a_cut_collector(db, broker, mqtt_client)
        healthy, *rest = targets
        assert set(paused.withdraw) == set(rest)
        assert set(retained_updates(broker, mqtt_client, sentinel)) == set(targets)

        password = tmp_path / "ops-password"
        password.write_text(broker.ops_credentials[1] + "\n")
        with pytest.raises(SystemExit) as exited:
            cli.main(["rollout", "pause", "r-cut", "--port", str(broker.port),
                      "--password-file", str(password), "--db", str(where)])
        assert exited.value.code == 0
        assert "already paused; command withdrawn again from 4 kiosks not switched" in \
            capsys.readouterr().out
        assert set(retained_updates(broker, mqtt_client, sentinel)) == {healthy}
        assert "rolled back" in db.rollout("r-cut").paused_reason  # the collector's reason
    finally:
        db.close()


def _console_with_broker(store, users_file, broker):
    return create_app(Settings(db=store, users=users_file,
                               broker=Broker("127.0.0.1", broker.port, *broker.ops_credentials)))


def _location_rollout(response):
    return re.fullmatch(r"/rollouts/(r-[a-z]+)\?done=\w+&n=\d+",
                        response.headers["Location"]).group(1)


def test_rollout_console_operator_starts_widens_and_withdraws_again_through_the_broker(
        broker, mqtt_client, console_store, users_file):
    """An operator starts a 10 % rollout of the store's 23 kiosks from the page (3 of them), a
    bad SHA-256 and a plain http:// URL refused before, naming the field, nothing recorded
    or sent; widens it to 30 % (7); and, once paused by a collector that died before
    withdrawing, withdraws again from the page."""
    db = open_database(console_store)
    try:
        _fleet(db, [f"k-{n:02d}" for n in range(20)])
        every = [k.kiosk_id for k in db.kiosks()]
    finally:
        db.close()
    assert len(every) == 23
    sentinel = _sentinel(broker, mqtt_client)
    watcher = mqtt_client("auditor", broker.add_observer("auditor"))
    watcher.subscribe(f"{topics.ROOT}/cmd/+/update")
    app = _console_with_broker(console_store, users_file, broker)
    try:
        operator = Browser(app)
        operator.login("otto")
        assert 'id="start-form"' in operator.get("/rollouts").text
        form = {"version": "0.2.0", "url": URL, "sha256": SHA, "percent": "10",
                "threshold": "20", "province": "", "ministry": "", "department": ""}
        for bad, field, fix in (({"sha256": SHA[:-1]}, "sha256", "64 hex digits"),
                                ({"url": URL.replace("https", "http")}, "url", "https://")):
            refused = operator.post("/rollouts", {**form, **bad})
            assert refused.status_code == 400
            assert f'data-field="{field}"' in refused.text and fix in unescape(refused.text)
            assert re.search(rf'name="{field}" value="[^"]*" aria-invalid="true"', refused.text)
        assert app.extensions["console"].db.rollouts() == []

        grouped = topics.grouped_sha256(SHA)  # as the wire carries it: taken too
        started = operator.post("/rollouts", {**form, "sha256": grouped})
        assert started.status_code == 303
        rollout_id = _location_rollout(started)
        shown = operator.get(started.headers["Location"])
        assert 'data-done="started"' in shown.text and 'id="widen-form"' in shown.text
        targets = [r.kiosk_id for r in app.extensions["console"].db.rollout_kiosks(rollout_id)]
        assert targets == rollout.select(rollout_id, every, 10) and len(targets) == 3
        assert set(retained_updates(broker, mqtt_client, sentinel)) == set(targets)
        watcher.wait_for_message(topics.cmd_topic(targets[0], "update"))
        assert all(rollout_id.encode() in m.payload  # none of the refused ones went out
                   for m in watcher.received(f"{topics.ROOT}/cmd/+/update"))

        assert operator.post(f"/rollouts/{rollout_id}/widen",
                             {"percent": "30"}).status_code == 303
        wider = [r.kiosk_id for r in app.extensions["console"].db.rollout_kiosks(rollout_id)]
        assert len(wider) == 7 and wider[:3] == targets
        assert set(retained_updates(broker, mqtt_client, sentinel)) == set(wider)

        # A collector paused it (committed) and died before withdrawing.
        writer = open_database(console_store)
        try:
            writer.set_rollout_state(rollout_id, "paused", RECEIVED, reason="3 of 7 rolled back")
        finally:
            writer.close()
        page = operator.get(f"/rollouts/{rollout_id}")
        assert 'id="withdraw-again"' in page.text and 'id="widen-form"' not in page.text
        assert 'name="again" value="1"' in page.text  # refused if resumed meanwhile
        again = operator.post(f"/rollouts/{rollout_id}/pause", {"again": "1"})
        assert again.status_code == 303 and "done=withdrawn_again&n=7" in again.headers["Location"]
        assert retained_updates(broker, mqtt_client, sentinel) == {}
        refused = operator.post(f"/rollouts/{rollout_id}/widen", {"percent": "50"})
        assert refused.status_code == 400 and "resume it before widening" in refused.text
        assert len(app.extensions["console"].db.rollout_kiosks(rollout_id)) == 7
    finally:
        app.extensions["console"].db.close()


def test_rollout_paused_while_kiosks_wait_then_resumed_reaches_done(broker, mqtt_client,
                                                                     tmp_path):
    """Simulated kiosks waiting (an office that does not close) when ops pause: their updaters
    report ``refused`` "withdrawn: ...", as the real one does; resumed, they get the command
    again, switch, report healthy, and the rollout is done."""
    accounts = [(f"sim-w{n}", broker.add_kiosk(f"sim-w{n}")) for n in range(4)]
    where = tmp_path / "fleet.sqlite3"
    collector = Collector(where, "127.0.0.1", broker.port, *broker.collector_credentials,
                          batch_s=0.05, reconcile_every_s=0.5)
    simulation = Simulation(accounts, host="127.0.0.1", port=broker.port, start=DAY, hours=1,
                            factor=1, update_step_s=0.02,
                            wait_updates=[kiosk_id for kiosk_id, _ in accounts])
    collector.start()
    try:
        assert collector.wait_for_connected(10)
        simulation.connect()
        db = collector.db
        wait_until(lambda: db.KioskRow.select().count() == len(accounts), "every kiosk known")
        send = rollouts.sender("127.0.0.1", broker.port, *broker.ops_credentials)
        _, targets = rollouts.start(db, send, version="0.2.0", url=URL, sha256=SHA,
                                    percent=100, rollout_id="r-waits")
        wait_until(lambda: rollouts.progress(db, "r-waits").totals["waiting"] == 4,
                   "every kiosk waiting", timeout=5)
        rollouts.pause(db, send, "r-waits")
        wait_until(lambda: rollouts.progress(db, "r-waits").totals["withdrawn"] == 4,
                   "every updater saying its request was withdrawn", timeout=5)
        assert all(r.reason.startswith("withdrawn") for r in db.rollout_kiosks("r-waits"))
        for kiosk in simulation.kiosks:
            kiosk.update_outcome = "healthy"  # the office closes now
        assert rollouts.resume(db, send, "r-waits") == targets
        wait_until(lambda: db.rollout("r-waits").state == "done", "the rollout done",
                   timeout=5)
        assert {k.version for k in simulation.kiosks} == {"0.2.0"}
    finally:
        simulation.stop()
        collector.stop()


def test_rollout_collector_start_withdraws_again_what_a_paused_rollout_withdrew(
        broker, mqtt_client, tmp_path):
    """A collector died between committing a pause and publishing its withdrawal: the next
    collector to start publishes the empty retained messages again."""
    where = tmp_path / "fleet.sqlite3"
    db = open_database(where)
    try:
        sentinel, targets, _ = _paused_by_a_cut_collector(db, broker, mqtt_client)
        healthy = targets[0]
        assert set(retained_updates(broker, mqtt_client, sentinel)) == set(targets)
    finally:
        db.close()
    collector = Collector(where, "127.0.0.1", broker.port, *broker.collector_credentials,
                          batch_s=0.05, reconcile_every_s=0.5)
    collector.start()
    try:
        wait_until(lambda: set(retained_updates(broker, mqtt_client, sentinel)) == {healthy},
                   "the withdrawal published again", timeout=5)
    finally:
        collector.stop()
