"""Store-and-forward of outbox rows: from the SQLite outbox to the collector and back.

The pump drives the state machine of :mod:`kiosk.outbox_rules` (which state follows which, what
is due, when a published row is resent) over the rows :mod:`kiosk.store` persists: a PUBACK
publishes a row, the collector's ``ack/{kiosk_id}`` confirms it, a refusing PUBACK parks it as
dead until ``replay``. Resend times are ``time.monotonic()`` in the pump's memory
(``telemetry.resend_after_s`` after the PUBACK); after a restart every published row is due.

The pump is one thread with its own SQLite connection (peewee gives each thread one), the only
writer of delivery state. Everything reaches it through :meth:`Outbox.put`: the link's facts
(connected, disconnected, PUBACK with mid and reason code, collector acks), new rows
(:meth:`notify`), replays and stop. Nothing else takes a lock, so a paho callback can never
wait on us. The window (``telemetry.inflight_window``) lives here, not in paho: paho re-sends
its whole queue after a reconnect, so it is only ever handed what fits, and after a reconnect
every un-PUBACKed row counts as unsent.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from kiosk.outbox_rules import ResendSchedule, is_refusal
from kiosk.telemetry.delivery import AckReceived, Connected, Disconnected, Published

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowsAdded:
    """New rows are due in the outbox (the runner closed a period, or queued a reply)."""


@dataclass(frozen=True)
class ReplayRequested:
    """Move dead letters back to pending; ``done(count)`` is called on the pump thread."""

    done: object = None


@dataclass(frozen=True)
class _Stop:
    pass


def _utc_now():
    return datetime.now(UTC)


class Outbox:
    """The outbox pump. Create it, give ``outbox.put`` to the link as ``facts``, then ``start``.

    ``when_dead(event_id, reason_code)`` is called on the pump thread when the broker refuses
    a row (health raises its alarm from it). ``poll_s`` bounds how late a resend, or a row whose
    ``not_before`` has come, may start.
    ``clock`` (monotonic) times resends; ``wall`` (aware UTC) only stamps ``sent_at`` for people
    reading the store.
    """

    def __init__(self, store, *, window, resend_after_s, when_dead=None, wall=_utc_now,
                 clock=time.monotonic, poll_s=1.0):
        self._store = store
        self._window = window
        self._resend_after_s = resend_after_s
        self._when_dead = when_dead
        self._wall = wall
        self._clock = clock
        self._poll_s = poll_s
        self._queue = queue.SimpleQueue()
        self._link = None
        self._thread = None
        self._is_connected = False
        self._inflight = {}  # mid -> (event_id, sent_at), only for the current connection
        self._inflight_ids = set()
        self._resends = None  # a ResendSchedule; None until read from the store

    def put(self, fact):
        """Hand a fact to the pump; safe from any thread, never blocks."""
        self._queue.put(fact)

    def notify(self):
        """Tell the pump rows were committed or released, so they go now rather than at the next
        poll. A row released for later (its period's jitter) goes at the first poll after its
        ``not_before``: every poll refills the window."""
        self._queue.put(RowsAdded())

    def replay(self, done=None):
        """Retry every dead letter (cmd/replay); ``done(count)`` runs on the pump thread."""
        self._queue.put(ReplayRequested(done))

    def start(self, link):
        """Start pumping through ``link`` (an :class:`~kiosk.telemetry.mqtt.MqttLink`)."""
        self._link = link
        self._is_connected = link.is_connected
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """Finish the facts already queued, then end the thread; rows not yet sent stay pending."""
        if self._thread is None:
            return
        self._queue.put(_Stop())
        self._thread.join(timeout)
        self._thread = None

    def _run(self):
        try:
            self._pump()
        finally:
            self._store.close()  # this thread's own SQLite connection

    def _pump(self):
        while True:
            facts = self._next_facts()
            is_stopping = any(isinstance(f, _Stop) for f in facts)
            try:
                # One transaction per round (a commit is an fsync): the round's PUBACKs, acks
                # and the sends that refill the window are committed together.
                with self._store.atomic():
                    if self._resends is None:
                        self._resends = ResendSchedule(self._resend_after_s,
                                                       self._store.published_ids())
                    dead, replays = self._apply(facts)
                    if self._is_connected and not is_stopping:
                        self._fill()
                self._after_commit(dead, replays)
            except Exception:
                # A failed batch (disk error, locked database) must not end delivery for good:
                # the rows are still in the store and the next round tries again. The send
                # times changed with the rolled-back round are forgotten with it: reloaded from
                # the store, every published row is due at once rather than never.
                self._resends = None
                log.exception("outbox round failed; retrying on the next fact or poll")
            if is_stopping:
                return

    def _next_facts(self):
        try:
            facts = [self._queue.get(timeout=self._poll_s)]
        except queue.Empty:
            return []
        # Take everything already waiting, so one round commits one batch.
        while True:
            try:
                facts.append(self._queue.get_nowait())
            except queue.Empty:
                return facts

    def _apply(self, facts):
        published, dead, acked, replays = [], [], [], []
        for fact in facts:
            if isinstance(fact, Published):
                sent = self._inflight.pop(fact.mid, None)
                if sent is None:
                    continue  # a PUBACK for a publish from before the last reconnect
                self._inflight_ids.discard(sent[0])
                if is_refusal(fact.reason_code):
                    dead.append((sent[0], fact.reason_code))
                else:
                    published.append(sent)
            elif isinstance(fact, AckReceived):
                acked.extend(fact.event_ids)
            elif isinstance(fact, Connected):
                self._is_connected = True
                self._forget_inflight()
            elif isinstance(fact, Disconnected):
                self._is_connected = False
                self._forget_inflight()
            elif isinstance(fact, ReplayRequested):
                replays.append(fact)
        by_time = {}
        for event_id, sent_at in published:
            by_time.setdefault(sent_at, []).append(event_id)
        for sent_at, event_ids in by_time.items():  # one fill round shares one sent_at
            self._store.mark_published(event_ids, sent_at)
        self._resends.accepted([event_id for event_id, _ in published], self._clock())
        for event_id, code in dead:
            self._store.mark_dead(event_id, code)
        self._resends.settled(event_id for event_id, _ in dead)
        if acked:
            self._store.confirm(acked)
            self._resends.settled(acked)
        return dead, replays

    def _after_commit(self, dead, replays):
        for event_id, code in dead:
            log.error("broker refused event %s with reason code 0x%02x; parked as dead letter "
                      "(fix the kiosk's ACL or credentials, then send cmd/replay)", event_id, code)
            if self._when_dead is not None:
                self._when_dead(event_id, code)
        for request in replays:
            count = self._store.replay_dead()
            if request.done is not None:
                request.done(count)

    def _forget_inflight(self):
        # Whatever was handed to paho on the old connection is in doubt: unsent until a PUBACK
        # on this connection says otherwise (duplicates are the collector's to drop).
        self._inflight.clear()
        self._inflight_ids.clear()

    def _fill(self):
        free = self._window - len(self._inflight)
        if free <= 0:
            return
        overdue = self._resends.overdue(self._clock(), free, skip=self._inflight_ids)
        rows = self._store.due_messages(free + len(self._inflight_ids), overdue)
        # What the store did not return is no longer published (the collector confirmed it
        # before a late PUBACK, say): forget it, or it would stay overdue for good.
        self._resends.settled(set(overdue).difference(row.event_id for row in rows))
        now = self._wall()
        sent = []
        for row in rows:
            if row.event_id in self._inflight_ids:
                continue
            mid = self._link.publish(row.topic, row.payload, qos=row.qos)
            if mid is None:
                break  # the link just went down; its Disconnected fact is on the way
            self._inflight[mid] = (row.event_id, now)
            self._inflight_ids.add(row.event_id)
            sent.append(row.event_id)
            if len(self._inflight) >= self._window:
                break
        if sent:
            self._store.mark_sent(sent, now)
