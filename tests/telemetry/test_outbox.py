"""The outbox pump against a real SQLite store and an honest fake link.

The fake link hands out mids and records every publish; the test plays the broker and the
collector by putting the facts paho would (PUBACK, ack, connect, disconnect). Delivery through a
real Mosquitto and collector is in test_delivery.py.
"""

import itertools
import json
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

from kiosk.errors import StoreError
from kiosk.period import MAX_JITTER_S, Period, count_event_id
from kiosk.runner import visit_message
from kiosk.store import Store
from kiosk.telemetry import topics
from kiosk.telemetry.delivery import AckReceived, Connected, Disconnected, Published
from kiosk.telemetry.outbox import Outbox
from tests.fixtures.broker import wait_until
from tests.telemetry.kiosk_process import RECORD

KIOSK = "kiosk-a"
VISIT_TOPIC = topics.kiosk_topic(KIOSK, "visit")
NOT_AUTHORIZED = 0x87


class FakeLink:
    """Stands in for MqttLink: ``sent`` is the history of (mid, topic, payload) handed over."""

    kiosk_id = KIOSK

    def __init__(self):
        self.is_connected = True
        self.sent = []
        self._mids = itertools.count(1)

    def publish(self, topic, payload, *, qos=1, retain=False):
        if not self.is_connected:
            return None
        mid = next(self._mids)
        self.sent.append((mid, topic, payload))
        return mid

    def event_ids(self, sent=None):
        return [json.loads(payload)["n"] for _, _, payload in (sent or self.sent)]


class FakeClocks:
    """The wall and monotonic clocks, moved by hand: time passing moves both, an NTP step only
    the wall clock."""

    def __init__(self):
        self.wall_now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self.monotonic_now = 5000.0

    def wall(self):
        return self.wall_now

    def monotonic(self):
        return self.monotonic_now

    def advance(self, seconds):
        self.wall_now += timedelta(seconds=seconds)
        self.monotonic_now += seconds

    def step_wall(self, **delta):
        self.wall_now += timedelta(**delta)


@pytest.fixture
def clocks():
    return FakeClocks()


@pytest.fixture
def store(tmp_path, clocks):
    opened = Store.open(tmp_path / "data", min_free_mb=1, clock=clocks.wall)
    yield opened
    opened.close()


@pytest.fixture
def pump(store, clocks):
    """``start(rows, window=50, **kw) -> (outbox, link, event_ids)`` with rows already queued."""
    started = []

    def start(rows, *, window=50, resend_after_s=60, when_dead=None):
        ids = [store.enqueue(VISIT_TOPIC, {"n": n}) for n in range(rows)]
        link = FakeLink()
        outbox = Outbox(store, window=window, resend_after_s=resend_after_s,
                        when_dead=when_dead, wall=clocks.wall, clock=clocks.monotonic,
                        poll_s=0.02)
        outbox.start(link)
        started.append(outbox)
        return outbox, link, ids

    yield start
    for outbox in started:
        outbox.stop()


def send_order(store):
    """The ``n`` of every queued row in row id order, which is random: the order rows go out."""
    M = store.OutboxMessage
    return [json.loads(payload)["n"] for (payload,) in
            M.select(M.payload).order_by(M.id).tuples()]


def states(store):
    M = store.OutboxMessage
    return {row.event_id: row.state for row in M.select(M.event_id, M.state)}


def ack_all(outbox, link, sent):
    for mid, _, _ in sent:
        outbox.put(Published(mid, 0))


def wait_for_round(outbox):
    """Return once the pump finished a round (sends included) that began after this call."""
    done = threading.Event()
    outbox.replay(lambda count: done.set())  # no dead letters: the replay changes nothing
    assert done.wait(5), "the pump did not finish a round"


def test_outbox_hands_the_link_no_more_than_the_window(pump, store):
    outbox, link, _ = pump(120, window=50)
    wait_until(lambda: len(link.sent) == 50, "the first window")
    ack_all(outbox, link, link.sent[:10])
    wait_until(lambda: len(link.sent) == 60, "ten more after ten PUBACKs")
    outbox.notify()
    outbox.stop()
    assert len(link.sent) == 60
    assert link.event_ids() == send_order(store)[:60]


def test_outbox_puback_publishes_and_collector_ack_confirms(pump, store):
    outbox, link, ids = pump(3)
    wait_until(lambda: len(link.sent) == 3, "three publishes")
    ack_all(outbox, link, link.sent)
    wait_until(lambda: set(states(store).values()) == {"published"}, "rows published")
    outbox.put(AckReceived(tuple(ids[:2])))
    wait_until(lambda: states(store)[ids[1]] == "confirmed", "acked rows confirmed")
    assert states(store) == {ids[0]: "confirmed", ids[1]: "confirmed", ids[2]: "published"}


def test_outbox_resends_unconfirmed_rows_after_the_timeout(pump, store, clocks):
    outbox, link, ids = pump(2, resend_after_s=60)
    wait_until(lambda: len(link.sent) == 2, "first sends")
    ack_all(outbox, link, link.sent)
    outbox.put(AckReceived((ids[0],)))
    wait_until(lambda: states(store)[ids[0]] == "confirmed", "first row confirmed")
    clocks.advance(30)
    outbox.notify()
    wait_until(lambda: states(store)[ids[1]] == "published", "second row published")
    assert len(link.sent) == 2, "resent before resend_after_s"
    clocks.advance(31)
    wait_until(lambda: len(link.sent) == 3, "the unconfirmed row sent again")
    assert link.event_ids(link.sent[2:]) == [1]


def test_outbox_refused_puback_parks_a_dead_letter_until_replay(pump, store):
    refused = []
    outbox, link, ids = pump(2, when_dead=lambda event_id, code: refused.append((event_id, code)))
    wait_until(lambda: len(link.sent) == 2, "first sends")
    refused_n, _ = link.event_ids()
    outbox.put(Published(link.sent[0][0], NOT_AUTHORIZED))
    outbox.put(Published(link.sent[1][0], 0))
    wait_until(lambda: states(store)[ids[refused_n]] == "dead", "the refused row dead")
    assert refused == [(ids[refused_n], NOT_AUTHORIZED)]
    assert store.outbox_stats().dead == 1
    replayed = []
    outbox.replay(replayed.append)
    wait_until(lambda: replayed, "the replay")
    assert replayed == [1]
    wait_until(lambda: len(link.sent) == 3, "the dead letter sent again")
    assert link.event_ids(link.sent[2:]) == [refused_n]


def test_outbox_reconnect_treats_unpubacked_rows_as_unsent(pump, store):
    outbox, link, ids = pump(4, window=50)
    wait_until(lambda: len(link.sent) == 4, "first sends")
    first, *unacked = link.event_ids()
    ack_all(outbox, link, link.sent[:1])
    wait_until(lambda: states(store)[ids[first]] == "published", "first row published")
    old_mids = [mid for mid, _, _ in link.sent[1:]]
    outbox.put(Disconnected("keepalive timeout"))
    outbox.put(Connected(epoch=2, session_present=True))
    wait_until(lambda: len(link.sent) == 7, "the three un-PUBACKed rows sent again")
    assert link.event_ids(link.sent[4:]) == unacked
    # A late PUBACK from the old connection names a mid this connection never used.
    outbox.put(Published(old_mids[0], 0))
    ack_all(outbox, link, link.sent[4:])
    wait_until(lambda: list(states(store).values()).count("published") == 4, "all published")


def test_outbox_keeps_rows_pending_while_the_link_is_down(pump, store):
    outbox, link, ids = pump(0)
    link.is_connected = False
    outbox.put(Disconnected("connect failed"))
    new_id = store.enqueue(VISIT_TOPIC, {"n": 0})
    outbox.notify()
    outbox.stop()
    assert link.sent == []
    assert states(store) == {new_id: "pending"}


def test_outbox_resends_on_time_when_ntp_steps_the_wall_clock(pump, store, clocks):
    """Resend timing is monotonic: a wall-clock step of +3 h resends nothing early, and one of
    -3 h (from the start) delays nothing."""
    outbox, link, ids = pump(1, resend_after_s=60)
    wait_until(lambda: len(link.sent) == 1, "the first send")
    ack_all(outbox, link, link.sent)
    wait_until(lambda: states(store)[ids[0]] == "published", "the row published")
    clocks.step_wall(hours=3)
    wait_for_round(outbox)
    assert len(link.sent) == 1, "resent early: the wall clock stepped forward"
    clocks.advance(61)
    wait_until(lambda: len(link.sent) == 2, "the resend 61 s later")
    ack_all(outbox, link, link.sent[1:])
    wait_for_round(outbox)  # the PUBACK's time is taken before the clocks move
    clocks.step_wall(hours=-6)
    clocks.advance(30)
    wait_for_round(outbox)
    assert len(link.sent) == 2, "resent early: the wall clock stepped back"
    clocks.advance(31)
    wait_until(lambda: len(link.sent) == 3, "the resend on time after the step back")
    assert link.event_ids() == [0, 0, 0]


def test_outbox_rows_published_before_a_restart_are_due_at_once(pump, store, clocks):
    """Send times live in the pump's memory: after a restart it knows none, so it resends every
    published row at once instead of trusting a wall-clock stamp from before the restart."""
    before = [store.enqueue(VISIT_TOPIC, {"n": n}) for n in (100, 101)]
    store.mark_sent(before, clocks.wall())
    store.mark_published(before, clocks.wall())
    clocks.step_wall(hours=-3)  # the new boot's clock is behind the old stamps
    outbox, link, ids = pump(1, resend_after_s=60)
    wait_until(lambda: len(link.sent) == 3, "the published rows and the pending one")
    assert sorted(link.event_ids()) == [0, 100, 101]
    assert link.event_ids() == send_order(store)  # one round: by row id, published or not
    ack_all(outbox, link, link.sent)
    wait_for_round(outbox)
    clocks.advance(59)
    wait_for_round(outbox)
    assert len(link.sent) == 3, "resent before resend_after_s"
    clocks.advance(2)
    wait_until(lambda: len(link.sent) == 6, "all three resent after resend_after_s")


def test_outbox_round_that_fails_to_commit_strands_no_row(pump, store, clocks, monkeypatch):
    """The store rolls a failed round back; the pump's send times must roll back too, or a row
    whose ack was in that round stays published in the store and is never resent."""
    outbox, link, ids = pump(1, resend_after_s=60)
    wait_until(lambda: len(link.sent) == 1, "the first send")
    ack_all(outbox, link, link.sent)
    wait_until(lambda: states(store)[ids[0]] == "published", "the row published")
    confirmed, failures = [], []

    def confirm_noting(event_ids, _real=store.confirm):
        confirmed.append(event_ids)
        return _real(event_ids)

    def due_messages_failing_once(*args, _real=store.due_messages, **kwargs):
        if confirmed and not failures:  # the round that confirmed the row: its commit fails
            failures.append("disk I/O error")
            raise StoreError("kiosk.db: disk I/O error")
        return _real(*args, **kwargs)

    monkeypatch.setattr(store, "confirm", confirm_noting)
    monkeypatch.setattr(store, "due_messages", due_messages_failing_once)
    outbox.put(AckReceived((ids[0],)))  # confirmed in the round that then fails to commit
    wait_until(lambda: failures, "the failing round")
    wait_for_round(outbox)
    assert states(store)[ids[0]] == "published"
    clocks.advance(61)
    wait_until(lambda: len(link.sent) == 2, "the resend of the row the failed round rolled back")


def test_outbox_sends_rows_released_for_later_once_their_time_has_come(tmp_path, clocks):
    """A closed hour's rows may go from its end plus a random delay: a poll round refills the
    window when that time comes, with no new fact to wake the pump."""
    # Seeded: the visit's delay is 458 s, never the 0 s a random draw could be.
    store = Store.open(tmp_path / "data", min_free_mb=1, clock=clocks.wall,
                       rng=random.Random(1))
    hour = Period.of(clocks.wall(), 3600)
    visit = store.record_visit(RECORD, **visit_message(KIOSK, "production"), period=hour)
    clocks.wall_now = hour.end  # the runner closes an hour once it has ended
    store.close_periods(hour.end, topic=topics.kiosk_topic(KIOSK, "period"), mode="production")
    link = FakeLink()
    outbox = Outbox(store, window=50, resend_after_s=60, wall=clocks.wall,
                    clock=clocks.monotonic, poll_s=0.02)
    outbox.start(link)
    try:
        wait_for_round(outbox)
        assert link.sent == [], "sent before its release"
        clocks.wall_now = hour.end + timedelta(seconds=MAX_JITTER_S)
        wait_until(lambda: len(link.sent) == 2, "the visit and its hour's count, by polling")
        assert {json.loads(payload)["event_id"] for _, _, payload in link.sent} == {
            visit.event_id, count_event_id(store.instance, hour)}
    finally:
        outbox.stop()
        store.close()
