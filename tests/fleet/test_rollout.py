"""Staged rollouts (issue 17, "Rollout from the console"): the pure selection and threshold,
the fleet database's progress and self-pause, the verb's actions with a recording sender, and
the acceptance run: 50 simulated kiosks, the real test broker and a real collector."""

import datetime as dt
import itertools
import re

import pytest

from kiosk.errors import TelemetryError
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
    assert rollouts.pause(db, sent, "r-v") == [second]
    assert sent.kiosks(empty=True) == [second]
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
    with pytest.raises(TelemetryError, match="sha256"):
        rollouts.start(db, sent, version="0.3.0", url=URL, sha256="beef", percent=10)
    with pytest.raises(TelemetryError, match="url"):
        rollouts.start(db, sent, version="0.3.0", url="http://plain/", sha256=SHA, percent=10)
    assert [r.rollout_id for r in db.rollouts()] == ["r-v"]


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
    assert 'data-state="rolled_back">1<' in row and 'data-state="sent">2<' in row
    page = viewer.get("/rollouts/r-console")
    assert "rolled_back 1/3" in page.text and "not healthy within 120 s" in page.text
    assert 'id="pause"' not in page.text and 'id="viewer-notice"' in page.text
    assert viewer.post("/rollouts/r-console/pause").status_code == 403
    assert viewer.get("/rollouts/r-none").status_code == 404
    operator = browser("otto")
    assert 'id="pause"' in operator.get("/rollouts/r-console").text
    refused = operator.post("/rollouts/r-console/pause")
    assert refused.status_code == 400 and "--broker-host" in refused.text


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
