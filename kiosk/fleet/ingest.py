"""The collector's store process: parse kiosk messages, store them, reconcile, raise alarms.

:class:`kiosk.fleet.collector.Collector` runs :func:`serve` in a child process, so parsing and
storing never share a GIL with paho's network thread (sharing it held the collector to a third
of a bare subscriber's rate). The child opens its own database connection (never inherited).
It reads batches ``(batch_id, [(mid, qos, topic, payload)])`` and answers each with a
:class:`Report`: whether to release the batch at the broker, the event ids to ack by kiosk (only
once committed), counter deltas and its log records. The parent does every MQTT call and
re-emits the records into its own logging. ``None`` asks the child to finish: it answers the
batches before it, then a report with ``finished`` set.

Per batch: each message is parsed apart (a message that fails validation is counted and logged
by topic and reason only, never its contents, which could hold personal data); the batch
commits in one transaction, each non-visit message in its own savepoint and the visits together
(one at a time only if that fails), so a message the database refuses costs only itself. A
failure of the database itself releases nothing and retries the batch until it commits or the
collector stops (the broker then redelivers it). After each batch, and every
``reconcile_every_s`` while idle, the kiosks' period counts are reconciled with the visits
stored (:meth:`FleetDb.reconcile`), then the fleet's alarms raised and cleared
(:meth:`FleetDb.update_alarms`, at most every ``alarms_every_s``).
"""

import dataclasses
import datetime as dt
import logging
import signal
import time
from dataclasses import dataclass, field

from peewee import InterfaceError, OperationalError, ProgrammingError

from kiosk.errors import MessageRejected
from kiosk.fleet.alarms import Thresholds
from kiosk.fleet.db import open_database, utc_now
from kiosk.logsafe import printable, redact_ids
from kiosk.telemetry import topics

# The collector's name: an operator (and a test's caplog) sees one collector, whichever of its
# processes wrote the line.
log = logging.getLogger("kiosk.fleet.collector")

#: Failures of the database itself, not of one message: nothing is acked or released and the
#: batch is retried. Any other exception while storing costs only the message that raised it.
#: A table gone is OperationalError on SQLite, ProgrammingError on PostgreSQL.
DATABASE_FAILURES = (OperationalError, InterfaceError, ProgrammingError, OSError)
#: Longest pause between retries of a batch the database refused.
RETRY_MAX_S = 5.0
#: Distinct reasons counted apart; a kiosk making up new ones cannot grow the counters forever.
MAX_REASONS = 50
#: The topic logged for a message paho could not even decode (never its bytes).
UNDECODABLE_TOPIC = "<undecodable topic>"


@dataclass
class Counters:
    """What the collector has done since start; read them from any thread."""

    received: int = 0
    visits_stored: int = 0
    visits_duplicate: int = 0
    periods: int = 0  # period counts stored
    periods_duplicate: int = 0
    periods_short: int = 0  # counts reconciled short (alarm raised)
    periods_over: int = 0  # counts reconciled over (alarm raised)
    periods_healed: int = 0  # short counts whose late visits arrived
    reconcile_failures: int = 0
    alarm_runs: int = 0  # evaluations of the alarms that committed
    alarms_raised: int = 0
    alarms_cleared: int = 0
    alarm_failures: int = 0
    statuses: int = 0  # applied; stale ones are counted apart
    stale_statuses: int = 0
    service_points: int = 0
    health_reports: int = 0
    rollouts_paused: int = 0  # paused by their rollbacks (alarm raised, commands withdrawn)
    replies: int = 0  # stored; a resent one is counted apart
    replies_duplicate: int = 0
    malformed: int = 0  # refused by the parser; by reason in malformed_by_reason
    #: Certificate requests (the signing service's to answer) and empty payloads (a retained
    #: message deleted): released, neither stored nor malformed.
    ignored: int = 0
    acks_sent: int = 0
    batches: int = 0
    store_failures: int = 0  # one message, or a whole batch the database refused (retried)
    callback_failures: int = 0  # a paho callback raised and was contained
    store_restarts: int = 0  # the store process died and was started again
    last_rejection: str | None = None  # topic and reason, never the payload
    malformed_by_reason: dict = field(default_factory=dict)
    store_failures_by_reason: dict = field(default_factory=dict)

    def count(self, name, reason):
        """Add one to ``name`` and to its ``<name>_by_reason`` tally of ``reason``."""
        setattr(self, name, getattr(self, name) + 1)
        _tally(getattr(self, f"{name}_by_reason"), reason, 1)

    def add(self, delta):
        """Add the counts of ``delta`` (the store process's since its last report)."""
        for f in dataclasses.fields(self):
            value = getattr(delta, f.name)
            if f.name == "last_rejection":
                self.last_rejection = value or self.last_rejection
            elif f.name.endswith("_by_reason"):
                for reason, times in value.items():
                    _tally(getattr(self, f.name), reason, times)
            elif value:
                setattr(self, f.name, getattr(self, f.name) + value)


def _tally(tally, reason, times):
    if reason not in tally and len(tally) >= MAX_REASONS:
        reason = "other"
    tally[reason] = tally.get(reason, 0) + times


@dataclass(frozen=True)
class Options:
    """What the store process needs of the collector's options (picklable)."""

    db_where: str
    reconcile_grace_s: float
    reconcile_every_s: float
    thresholds: Thresholds
    alarms_every_s: float


@dataclass
class Report:
    """The store process's answer to a batch (``batch`` None: news while idle or retrying)."""

    batch: int | None
    released: bool = False  # PUBACK every message of the batch (stored or refused)
    acks: dict = field(default_factory=dict)  # kiosk id -> event ids, all committed
    #: Topics of retained update commands to delete (empty retained message): rollouts the
    #: batch paused, committed (:meth:`kiosk.fleet.db.FleetDb.apply_rollout_progress`).
    withdrawals: list = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    records: list = field(default_factory=list)  # logging.LogRecords, ready to pickle
    finished: bool = False


class _Forward(logging.Handler):
    """Keeps the records for the next report, formatted so they pickle (as QueueHandler)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def serve(batches, reports, options, stopping):
    """The store process: answer ``batches`` on ``reports`` until asked to finish (or the
    collector is gone). ``stopping`` (an Event) abandons a batch the database refuses."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it finishes us
    forward = _Forward()
    logging.getLogger().handlers[:] = [forward]
    logging.getLogger("kiosk").setLevel(logging.DEBUG)  # the parent filters by its own levels
    store = Store(options, stopping, forward.records,
                  send_news=lambda: reports.send(store.report(None)))
    try:
        next_reconcile = time.monotonic()
        while True:
            if batches.poll(max(0.0, next_reconcile - time.monotonic())):
                try:
                    request = batches.recv()
                except EOFError:
                    return  # the collector is gone; nothing more can be acked
                if request is None:
                    break
                batch_id, items = request
                released, acks = store.handle(items)
                reports.send(store.report(batch_id, released, acks))
            store.tidy()
            next_reconcile = time.monotonic() + options.reconcile_every_s
        report = store.report(None)
        report.finished = True
        reports.send(report)
    finally:
        store.db.close()


def _is_ignored(topic, payload):
    """Whether a message on a kiosk topic is none of the collector's business: a certificate
    request (``kiosk-fleet ca`` answers it; its own subscription gets it too), or an empty
    payload, which is how a retained message is deleted (``kiosk-fleet revoke`` deletes a
    kiosk's). Raises MessageRejected for a topic that is no kiosk's."""
    _, kind = topics.split_kiosk_topic(topic)
    return kind == "csr" or not payload


class Store:
    """The store process's state: its database, counter deltas and log records."""

    def __init__(self, options, stopping, records, send_news):
        self.options = options
        self.stopping = stopping
        self.records = records  # the log records made since the last report
        self.send_news = send_news  # sends a report of the counts and records at once
        self.db = open_database(options.db_where)
        self.counters = Counters()
        self.rejected = {}  # the batch's malformed messages by reason, stored with it
        self.withdrawals = []  # of rollouts paused by committed batches, for the next report
        self._next_alarms = 0.0  # time.monotonic() of the next evaluation
        self._reconcile_failing = self._alarms_failing = False
        self._withdrawals_due = True  # paused rollouts' withdrawals, published again at start

    def has_news(self):
        return bool(self.records) or bool(self.withdrawals) or self.counters != Counters()

    def report(self, batch, released=False, acks=None):
        """A report carrying the counts and records since the last one."""
        report = Report(batch, released, acks or {}, list(self.withdrawals), self.counters,
                        list(self.records))
        self.counters = Counters()
        self.records.clear()
        self.withdrawals.clear()
        return report

    def tidy(self):
        """Withdraw again what paused rollouts withdrew (once, at start), reconcile, then raise
        and clear alarms; each step's counts and log lines are sent the moment it has
        committed, so a reader who sees its rows soon sees its counts."""
        for step in (self.withdraw_again, self.reconcile, self.update_alarms):
            step()
            if self.has_news():
                self.send_news()

    def withdraw_again(self):
        """Once per store process, at its start: the topics of every paused rollout's commands
        marked withdrawn go in the next report, for the network process to publish the empty
        retained messages again. A collector that died between committing a pause and
        publishing left those commands retained (a kiosk reconnecting would run them);
        deleting a retained message twice is harmless. A failure to read is logged and tried
        again at the next run."""
        if not self._withdrawals_due:
            return
        try:
            withdrawn = self.db.withdrawn_of_paused()
        except Exception as exc:  # the store must outlive the database and our own bugs
            if isinstance(exc, DATABASE_FAILURES):
                self.drop_connection()
            log.error("could not read the paused rollouts' withdrawals (%s); retrying",
                      type(exc).__name__)
            return
        self._withdrawals_due = False
        if withdrawn:
            log.info("withdrawing again the update command of %d kiosks of %d paused "
                     "rollouts", len(withdrawn), len({r for r, _ in withdrawn}))
            self.withdrawals += [topics.cmd_topic(kiosk_id, "update")
                                 for _, kiosk_id in withdrawn]

    def handle(self, items):
        """Parse and store one batch: ``(released, acks)``. A message that cannot be parsed
        or stored is counted and released but not acked; a database failure retries the whole
        batch, releasing nothing, until it commits or the collector stops."""
        self.counters.received += len(items)
        self.rejected = {}
        parsed = [item for item in map(self.parse, items) if item is not None]
        delay = 0.1
        while True:
            received = utc_now()
            try:
                tallies, acks, failures, paused = self.commit(parsed, received)
                break
            except DATABASE_FAILURES as exc:
                self.counters.count("store_failures", f"database: {type(exc).__name__}")
                log.error("collector could not commit %d messages (%s); nothing acked, "
                          "retrying in %.1f s", len(parsed), exc, delay)
                self.drop_connection()
                self.send_news()
                if self.stopping.wait(delay):
                    return False, {}
                delay = min(delay * 2, RETRY_MAX_S)
            except Exception as exc:
                # A bug of ours, not the database: release the batch anyway, or it would fill
                # the in-flight window; nothing was acked, so the kiosks resend it.
                self.counters.count("store_failures", f"batch: {type(exc).__name__}")
                log.exception("collector batch of %d failed; the kiosks will resend",
                              len(items))
                return True, {}
        self.counters.batches += 1
        for done in paused:
            log.warning("rollout %s of version %s paused itself: %s (alarm on %s); withdrawing "
                        "the update command of %d kiosks", done.rollout_id, done.version,
                        done.reason, done.kiosk_id, len(done.withdraw))
            self.withdrawals += [topics.cmd_topic(kiosk_id, "update")
                                 for kiosk_id in done.withdraw]
        for topic, exc in failures:
            self.store_failed(topic, exc)
        for name in tallies:
            setattr(self.counters, name, getattr(self.counters, name) + 1)
        return True, acks

    def parse(self, item):
        """``(topic, validated message)``, or None once the rejection is counted and logged.
        Any exception counts as malformed: a parser bug must cost one message, not the batch.
        A topic of None means paho could not read the message (``payload`` names the error)."""
        _, _, topic, payload = item
        if topic is None:
            logged, reason = UNDECODABLE_TOPIC, f"unparseable ({payload})"
        else:
            # A topic is chosen by whoever publishes: its kiosk id may be a citizen ID.
            logged = printable(redact_ids(topic))
            try:
                if _is_ignored(topic, payload):
                    self.counters.ignored += 1
                    return None
                return logged, topics.parse_kiosk_message(topic, payload)
            except MessageRejected as exc:
                reason = printable(str(exc).removeprefix(f"{topic}: "))
            except Exception as exc:
                reason = f"unparseable ({type(exc).__name__})"
        self.counters.count("malformed", reason)
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.counters.last_rejection = f"{logged}: {reason}"
        log.warning("rejected message on %s: %s", logged, reason)
        return None

    def drop_connection(self):
        """Forget the connection after a database failure: peewee would go on using one a
        restarted PostgreSQL server has closed, failing every retry. The next statement
        connects afresh (a locked SQLite file loses nothing by it)."""
        try:
            self.db.database.close()
        except Exception as exc:  # a broken connection may not even close cleanly
            log.debug("closing the failed database connection: %s", type(exc).__name__)

    def reconcile(self):
        """Reconcile the period counts due a look, count and log the verdicts that changed. A
        failure is counted and logged (once until a run succeeds again) and retried at the
        next run: the counts stay due."""
        try:
            with self.db.database.atomic():
                changed = self.db.reconcile(dt.datetime.now(dt.UTC),
                                            self.options.reconcile_grace_s)
        except Exception as exc:  # the store must outlive the database and our own bugs
            if isinstance(exc, DATABASE_FAILURES):
                self.drop_connection()
            self.counters.reconcile_failures += 1
            if not self._reconcile_failing:
                log.exception("could not reconcile the period counts (%s); retrying",
                              type(exc).__name__)
            self._reconcile_failing = True
            return
        self._reconcile_failing = False
        for verdict in changed:
            if verdict.after in ("short", "over"):
                setattr(self.counters, f"periods_{verdict.after}",
                        getattr(self.counters, f"periods_{verdict.after}") + 1)
                log.warning("%s period %s (%d s) of instance %s is %s: counted %d, stored %d",
                            verdict.kiosk_id, verdict.period, verdict.period_s,
                            verdict.instance, verdict.after, verdict.expected, verdict.stored)
            elif verdict.before == "short" and verdict.after == "ok":
                self.counters.periods_healed += 1
                log.info("%s period %s (%d s) of instance %s: its late visits arrived",
                         verdict.kiosk_id, verdict.period, verdict.period_s, verdict.instance)

    def update_alarms(self):
        """Raise and clear the fleet's alarms (:meth:`FleetDb.update_alarms`), after the
        period counts are reconciled, at most every ``alarms_every_s``; a failure is logged
        once and retried at the next run."""
        if time.monotonic() < self._next_alarms:
            return
        self._next_alarms = time.monotonic() + self.options.alarms_every_s
        try:  # in its own transaction, under the lock collectors take turns under
            raised, cleared = self.db.update_alarms(dt.datetime.now(dt.UTC),
                                                    self.options.thresholds)
        except Exception as exc:  # the store must outlive the database and our own bugs
            self.counters.alarm_failures += 1
            if not self._alarms_failing:
                log.exception("could not evaluate the alarms (%s); retrying",
                              type(exc).__name__)
            self._alarms_failing = True
            return
        self._alarms_failing = False
        self.counters.alarm_runs += 1
        self.counters.alarms_raised += len(raised)
        self.counters.alarms_cleared += len(cleared)
        for event in raised:
            log.warning("alarm %s raised on %s: %s", event.kind, event.kiosk_id,
                        printable(event.detail))
        for event in cleared:
            log.info("alarm %s cleared on %s", event.kind, event.kiosk_id)

    def commit(self, parsed, received):
        """Store ``parsed`` in one transaction, each message in its own savepoint (visits and
        health reports together, :meth:`store_together`). Returns the counters to bump and the
        event ids to ack (visits and period counts) by kiosk (both for what was committed) and
        the ``(topic, exception)`` of each message the database refused; all are applied only
        once committed, so a retried batch counts nothing twice. Raises a DATABASE_FAILURES
        exception, with nothing committed, when the database itself fails.

        The batch's kiosk rows are taken first, in id order (:meth:`FleetDb.batch`): taken as
        each message came, two collectors' batches deadlocked on PostgreSQL. Health reports
        wait to be written together, but never past a later message of the same kiosk: a
        status sets the kiosk's version and clock too, and the later one must win."""
        tallies, visits, healths, counts, failures = [], [], [], [], []
        reported = []

        def write_healths():
            reported.extend(self.store_together(
                healths, lambda items: self.db.apply_health(items, received), failures)[1])
            healths.clear()

        with self.db.database.atomic(), \
                self.db.batch([item.kiosk_id for _, item in parsed], received):
            for topic, item in parsed:
                if isinstance(item, topics.VisitMessage):
                    visits.append((topic, item))
                    continue
                if isinstance(item, topics.HealthMessage):
                    healths.append((topic, item))
                    continue
                if any(health.kiosk_id == item.kiosk_id for _, health in healths):
                    write_healths()
                try:
                    with self.db.database.atomic():
                        tallies.append(self.store(item, received))
                except DATABASE_FAILURES:
                    raise
                except Exception as exc:
                    failures.append((topic, exc))
                    continue
                if isinstance(item, topics.PeriodMessage):
                    counts.append(item)
            write_healths()
            paused = self.rollout_progress(reported, received, failures)
            stored, kept = self.store_together(
                visits, lambda items: self.db.add_visits(items, received), failures)
            self.db.add_malformed(self.rejected)
        acks = {}
        for message in (*kept, *counts):
            acks.setdefault(message.kiosk_id, []).append(message.event_id)
        tallies += ["visits_stored"] * stored + ["visits_duplicate"] * (len(kept) - stored)
        tallies += ["health_reports"] * len(reported)
        tallies += ["rollouts_paused"] * len(paused)
        return tallies, acks, failures, paused

    def rollout_progress(self, reports, received, failures):
        """The rollouts' progress from the batch's stored health reports, in a savepoint of
        the batch (:meth:`FleetDb.apply_rollout_progress`): the rollouts it paused. A failure
        other than the database's costs only the progress, never the reports."""
        try:
            with self.db.database.atomic():
                return self.db.apply_rollout_progress(reports, received)
        except DATABASE_FAILURES:
            raise
        except Exception as exc:
            failures.append((f"{topics.ROOT}/kiosk/+/health", exc))
            return []

    def store_together(self, messages, write, failures):
        """``(sum of what write returned, messages written)``: ``write`` takes a list of
        messages of one kind. All go in one savepoint (at catch-up rates one statement per
        visit, and at the national rate one per health report, was the collector's ceiling);
        only if that fails does each get its own, so a message the database refuses costs only
        itself (added to ``failures``)."""
        if not messages:
            return 0, []
        everything = [item for _, item in messages]
        try:
            with self.db.database.atomic():
                return write(everything), everything
        except DATABASE_FAILURES:
            raise
        except Exception:
            pass  # find the one at fault below
        total, kept = 0, []
        for topic, item in messages:
            try:
                with self.db.database.atomic():
                    total += write([item])
                kept.append(item)
            except DATABASE_FAILURES:
                raise
            except Exception as exc:
                failures.append((topic, exc))
        return total, kept

    def store_failed(self, topic, exc):
        """One message the database refused: counted and logged by topic and error type only
        (a driver message can quote a value); it is released but not acked."""
        reason = f"{topic.rsplit('/', 1)[-1]}: {type(exc).__name__}"
        self.counters.count("store_failures", reason)
        log.error("could not store the message on %s (%s); not acked", topic,
                  type(exc).__name__)

    def store(self, item, received):
        """Apply one validated message (neither a visit nor a health report: those are stored
        together, :meth:`store_together`) inside the batch transaction; return the counter to
        bump once the batch has committed (so a reader never sees a count before its row). A
        period count is acked by :meth:`commit` once stored."""
        if isinstance(item, topics.Status):
            if self.db.apply_status(item, received):
                return "statuses"
            log.info("ignored stale %s status of %s (instance %s, epoch %d: an earlier "
                     "connection's)", item.state, item.kiosk_id, item.instance, item.epoch)
            return "stale_statuses"
        if isinstance(item, topics.ServicePoint):
            self.db.apply_service_point(item, received)
            return "service_points"
        if isinstance(item, topics.PeriodMessage):
            return "periods" if self.db.add_period(item, received) else "periods_duplicate"
        if item.correlation_id is None:
            # The answer to a command sent without an id (by hand; kiosk-fleet command and the
            # console always give one): nothing to store it under, so the log is where it is.
            log.info("reply from %s to a command without a correlation id: %s", item.kiosk_id,
                     "ok" if item.ok else printable(item.error))
            return "replies"
        if not self.db.add_reply(item, received):
            return "replies_duplicate"
        log.info("reply from %s to %s: %s", item.kiosk_id, item.correlation_id,
                 "ok" if item.ok else printable(item.error))
        return "replies"
