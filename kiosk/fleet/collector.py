"""``kiosk-fleet collect``: receive kiosk messages, store them, and only then acknowledge them.

The collector joins a shared subscription (``$share/<group>/citizeninfo/v1/kiosk/+/#``) so
several collectors can split the fleet, with a persistent MQTT 5 session (clean start off plus a
session expiry) so the broker queues visits while a collector restarts.

Threads: paho's network thread only puts messages on a queue; one worker thread validates them,
commits a batch (by count or time) in one transaction, then publishes the acks (of visits and
period counts) and releases the broker's copy (manual PUBACK). The same worker reconciles the
kiosks' period counts with the visits stored (:meth:`FleetDb.reconcile`), then raises and
clears the fleet's alarms (:meth:`FleetDb.update_alarms`, at most every ``alarms_every_s``),
after each batch and every ``reconcile_every_s`` while idle, never on paho's thread. Nothing
is held locked while paho is called: an earlier version took a lock in a paho callback and
called paho under it, which deadlocked. A message that fails validation is counted and logged by
topic and reason only (never its contents, which could hold personal data), and the collector
carries on.
"""

import dataclasses
import datetime as dt
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from peewee import InterfaceError, OperationalError, ProgrammingError

from kiosk.config import TelemetrySection
from kiosk.errors import MessageRejected, TelemetryError
from kiosk.fleet.alarms import DEFAULT_THRESHOLDS, Thresholds
from kiosk.fleet.db import DEFAULT_DB, is_url, open_database, utc_now
from kiosk.logsafe import never_raises, printable
from kiosk.period import MAX_JITTER_S
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

DEFAULT_GROUP = "collectors"
#: How long the broker keeps the session (and queues visits) while no collector is connected.
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
#: Failures of the database itself, not of one message: nothing is acked or released and the
#: batch is retried. Any other exception while storing costs only the message that raised it.
#: A table gone is OperationalError on SQLite, ProgrammingError on PostgreSQL.
DATABASE_FAILURES = (OperationalError, InterfaceError, ProgrammingError, OSError)
#: Longest pause between retries of a batch the database refused.
RETRY_MAX_S = 5.0
#: Distinct reasons counted apart; a kiosk making up new ones cannot grow the counters forever.
MAX_REASONS = 50
_RESEND_AFTER_S = next(f.metadata["default"] for f in dataclasses.fields(TelemetrySection)
                       if f.name == "resend_after_s")
#: How long after a period count arrived its missing visits are lost rather than late: a
#: visit is released up to MAX_JITTER_S after its period ends, and a kiosk with the default
#: settings resends an unacknowledged one after resend_after_s; twice allows one lost ack.
DEFAULT_RECONCILE_GRACE_S = 2 * _RESEND_AFTER_S + MAX_JITTER_S
#: Longest time between reconciliations while no message comes.
RECONCILE_EVERY_S = 2.0
#: Time between evaluations of the alarms: each reads every kiosk, so not after every batch
#: (the shortest threshold, silent, is minutes).
ALARMS_EVERY_S = 10.0


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
    replies: int = 0  # stored; a resent one is counted apart
    replies_duplicate: int = 0
    malformed: int = 0  # refused by the parser; by reason in malformed_by_reason
    acks_sent: int = 0
    batches: int = 0
    store_failures: int = 0  # one message, or a whole batch the database refused (retried)
    callback_failures: int = 0  # a paho callback raised and was contained
    last_rejection: str | None = None  # topic and reason, never the payload
    malformed_by_reason: dict = field(default_factory=dict)
    store_failures_by_reason: dict = field(default_factory=dict)

    def count(self, name, reason):
        """Add one to ``name`` and to its ``<name>_by_reason`` tally of ``reason``."""
        setattr(self, name, getattr(self, name) + 1)
        tally = getattr(self, f"{name}_by_reason")
        if reason not in tally and len(tally) >= MAX_REASONS:
            reason = "other"
        tally[reason] = tally.get(reason, 0) + 1


def _count_callback_failure(collector, *_):
    collector.counters.callback_failures += 1


#: No exception leaves a paho callback: paho 2 re-raises one, which ends its network thread, and
#: the collector would then never reconnect.
_contained = never_raises(log, counted=_count_callback_failure)


def _topic_of(message):
    """The message's topic fit for a log line (a kiosk chose it), or a placeholder when paho
    cannot decode it (never the bytes)."""
    try:
        return printable(message.topic)
    except Exception:
        return "<undecodable topic>"


class Collector:
    """One collector: ``start()``, ``stop()``, ``counters``, ``db`` (a :class:`FleetDb`).

    ``tls`` is a dict for ``paho.Client.tls_set`` (``ca_certs``, ``certfile``, ``keyfile``).
    Acks go out after the batch holding the visits or period counts has committed; one seen
    before is acked again (the kiosk resends when an ack is lost) but stored once. A period
    count short of visits raises its alarm ``reconcile_grace_s`` after it arrived.
    """

    def __init__(self, db, host, port, username, password=None, *, group=DEFAULT_GROUP,
                 tls=None, batch_size=200, batch_s=0.2,
                 session_expiry_s=DEFAULT_SESSION_EXPIRY_S,
                 reconcile_grace_s=DEFAULT_RECONCILE_GRACE_S,
                 reconcile_every_s=RECONCILE_EVERY_S, thresholds=DEFAULT_THRESHOLDS,
                 alarms_every_s=ALARMS_EVERY_S):
        if batch_size < 1 or batch_s <= 0:
            raise ValueError("batch_size must be >= 1 and batch_s > 0")
        if reconcile_grace_s < 0 or reconcile_every_s <= 0 or alarms_every_s <= 0:
            raise ValueError("reconcile_grace_s must be >= 0, reconcile_every_s and "
                             "alarms_every_s > 0")
        self.db_where = db  # a SQLite path or a PostgreSQL URL (kiosk.fleet.db.open_database)
        self.host, self.port = host, port
        self.group = group
        self.batch_size, self.batch_s = batch_size, batch_s
        self.session_expiry_s = session_expiry_s
        self.reconcile_grace_s, self.reconcile_every_s = reconcile_grace_s, reconcile_every_s
        self.thresholds, self.alarms_every_s = thresholds, alarms_every_s
        self._next_alarms = 0.0  # time.monotonic() of the next evaluation
        self._reconcile_failing = self._alarms_failing = False
        self.counters = Counters()
        self.db = None
        self._queue = queue.Queue()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._worker = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username,
                                   protocol=mqtt.MQTTv5, manual_ack=True)
        self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(**tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    @property
    def db_path(self):
        """The SQLite file the collector writes (None when it writes to PostgreSQL)."""
        return None if is_url(self.db_where) else Path(str(self.db_where).removeprefix(
            "sqlite:///"))

    @property
    def subscription(self):
        return f"$share/{self.group}/{topics.KIOSK_SUBSCRIPTION}"

    @property
    def is_connected(self):
        return self._connected.is_set()

    def wait_for_connected(self, timeout=10.0):
        """True once subscribed to the kiosk topics (on the latest connect)."""
        return self._connected.wait(timeout)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self):
        """Open the database, start the worker and connect (paho retries while the broker is
        away, so a collector started before its broker still comes up)."""
        self.db = open_database(self.db_where)
        self._stopping.clear()
        self._worker = threading.Thread(target=self._work, name="collector-worker", daemon=True)
        self._worker.start()
        props = Properties(PacketTypes.CONNECT)
        # paho's default (clean start on the first connect) would wipe the queued session.
        props.SessionExpiryInterval = self.session_expiry_s
        self._client.reconnect_delay_set(0.5, 30)
        self._client.connect_async(self.host, self.port, keepalive=30, clean_start=False,
                                   properties=props)
        self._client.loop_start()

    def stop(self, timeout=10.0):
        """Finish the queued batches while still connected (so their acks go out), then
        disconnect; the broker keeps the session and redelivers what came in meanwhile."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None
        self._client.disconnect()
        self._client.loop_stop()
        if self.db is not None:
            self.db.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- paho callbacks: only enqueue -------------------------------------------------------

    @_contained
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the collector at %s:%s: %s", self.host, self.port,
                      reason_code)
            return
        client.subscribe(self.subscription, qos=1)
        log.info("collector connected (session present: %s), subscribing to %s",
                 flags.session_present, self.subscription)

    @_contained
    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            log.error("broker refused the subscription %s: %s", self.subscription, reason_codes)
            return
        log.info("collector subscribed to %s", self.subscription)
        self._connected.set()

    @_contained
    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        if reason_code.is_failure:  # a clean disconnect is our own stop()
            log.warning("collector disconnected (%s); paho reconnects", reason_code)

    @_contained
    def _on_message(self, client, userdata, message):
        if self._stopping.is_set():
            return  # not acknowledged: the broker redelivers it to the next collector session
        self._queue.put(message)

    # --- the worker -------------------------------------------------------------------------

    def _work(self):
        try:
            self._drain()
        finally:
            self.db.database.close()  # this thread's own connection

    def _drain(self):
        next_reconcile = time.monotonic()
        while not (self._stopping.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=min(0.1, self.reconcile_every_s))
            except queue.Empty:
                if time.monotonic() >= next_reconcile:
                    self._reconcile()
                    self._update_alarms()
                    next_reconcile = time.monotonic() + self.reconcile_every_s
                continue
            batch = [first]
            deadline = time.monotonic() + self.batch_s
            while len(batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except Exception as exc:  # the worker must outlive any bug in its own code
                self.counters.count("store_failures", f"batch: {type(exc).__name__}")
                log.exception("collector batch of %d failed; the kiosks will resend", len(batch))
            self._reconcile()
            self._update_alarms()
            next_reconcile = time.monotonic() + self.reconcile_every_s

    def _drop_connection(self):
        """Forget this thread's connection after a database failure: peewee would go on using
        one a restarted PostgreSQL server has closed, failing every retry. The next statement
        connects afresh (a locked SQLite file loses nothing by it)."""
        try:
            self.db.database.close()
        except Exception as exc:  # a broken connection may not even close cleanly
            log.debug("closing the failed database connection: %s", type(exc).__name__)

    def _reconcile(self):
        """Reconcile the period counts due a look, count and log the verdicts that changed. A
        failure is counted and logged (once until a run succeeds again) and retried at the
        next run: the counts stay due."""
        try:
            with self.db.database.atomic():
                changed = self.db.reconcile(dt.datetime.now(dt.UTC), self.reconcile_grace_s)
        except Exception as exc:  # the worker must outlive the database and our own bugs
            if isinstance(exc, DATABASE_FAILURES):
                self._drop_connection()
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

    def _update_alarms(self):
        """Raise and clear the fleet's alarms (:meth:`FleetDb.update_alarms`), after the
        period counts are reconciled, at most every ``alarms_every_s``; a failure is logged
        once and retried at the next run."""
        if time.monotonic() < self._next_alarms:
            return
        self._next_alarms = time.monotonic() + self.alarms_every_s
        try:  # in its own transaction, under the lock collectors take turns under
            raised, cleared = self.db.update_alarms(dt.datetime.now(dt.UTC), self.thresholds)
        except Exception as exc:  # the worker must outlive the database and our own bugs
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

    def _handle(self, batch):
        """Parse, store and ack one batch. A message that cannot be parsed or stored is
        counted, released and not acked; a database failure retries the whole batch, releasing
        nothing, until it commits or the collector stops (the session then redelivers it)."""
        self.counters.received += len(batch)
        parsed = [item for item in map(self._parse, batch) if item is not None]
        delay = 0.1
        while True:
            received = utc_now()
            try:
                tallies, acks, failures = self._commit(parsed, received)
                break
            except DATABASE_FAILURES as exc:
                self.counters.count("store_failures", f"database: {type(exc).__name__}")
                log.error("collector could not commit %d messages (%s); nothing acked, "
                          "retrying in %.1f s", len(parsed), exc, delay)
                self._drop_connection()
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, RETRY_MAX_S)
            except Exception:
                # A bug of ours, not the database: release the batch anyway, or it would fill
                # the in-flight window; nothing was acked, so the kiosks resend it.
                for message in batch:
                    self._release(message)
                raise
        for message in batch:
            self._release(message)
        self.counters.batches += 1
        for topic, exc in failures:
            self._store_failed(topic, exc)
        for name in tallies:
            setattr(self.counters, name, getattr(self.counters, name) + 1)
        for kiosk_id, event_ids in acks.items():
            for start in range(0, len(event_ids), topics.MAX_ACK_IDS):
                chunk = event_ids[start:start + topics.MAX_ACK_IDS]
                self._client.publish(topics.ack_topic(kiosk_id), topics.ack_payload(chunk),
                                     qos=topics.QOS["ack"])
                self.counters.acks_sent += 1

    def _parse(self, message):
        """``(topic, validated message)``, or None once the rejection is counted and logged.
        Any exception counts as malformed: a parser bug must cost one message, not the batch."""
        topic = _topic_of(message)
        try:
            return topic, topics.parse_kiosk_message(message.topic, message.payload)
        except MessageRejected as exc:
            reason = printable(str(exc).removeprefix(f"{message.topic}: "))
        except Exception as exc:
            reason = f"unparseable ({type(exc).__name__})"
        self.counters.count("malformed", reason)
        self.counters.last_rejection = f"{topic}: {reason}"
        log.warning("rejected message on %s: %s", topic, reason)
        return None

    def _commit(self, parsed, received):
        """Store ``parsed`` in one transaction, each message in its own savepoint. Returns the
        counters to bump and the event ids to ack (visits and period counts) by kiosk (both for
        what was committed) and the ``(topic, exception)`` of each message the database
        refused; all are applied only once committed, so a retried batch counts nothing twice.
        Raises a DATABASE_FAILURES exception, with nothing committed, when the database itself
        fails."""
        tallies, visits, counts, failures = [], [], [], []
        with self.db.database.atomic():
            for topic, item in parsed:
                if isinstance(item, topics.VisitMessage):
                    visits.append((topic, item))
                    continue
                try:
                    with self.db.database.atomic():
                        tallies.append(self._store(item, received))
                except DATABASE_FAILURES:
                    raise
                except Exception as exc:
                    failures.append((topic, exc))
                    continue
                if isinstance(item, topics.PeriodMessage):
                    counts.append(item)
            stored, kept = self._store_visits(visits, received, failures)
        acks = {}
        for message in (*kept, *counts):
            acks.setdefault(message.kiosk_id, []).append(message.event_id)
        tallies += ["visits_stored"] * stored + ["visits_duplicate"] * (len(kept) - stored)
        return tallies, acks, failures

    def _store_visits(self, visits, received, failures):
        """``(new rows, visits stored or already there)``. All visits go in one savepoint (at
        catch-up rates one insert per visit was the collector's ceiling); only if that fails
        does each get its own, so a visit the database refuses costs only itself (added to
        ``failures``)."""
        everything = [item for _, item in visits]
        try:
            with self.db.database.atomic():
                return self.db.add_visits(everything, received), everything
        except DATABASE_FAILURES:
            raise
        except Exception:
            pass  # find the one at fault below
        stored, kept = 0, []
        for topic, item in visits:
            try:
                with self.db.database.atomic():
                    stored += self.db.add_visits([item], received)
                kept.append(item)
            except DATABASE_FAILURES:
                raise
            except Exception as exc:
                failures.append((topic, exc))
        return stored, kept

    def _store_failed(self, topic, exc):
        """One message the database refused: counted and logged by topic and error type only
        (a driver message can quote a value); it is released but not acked."""
        reason = f"{topic.rsplit('/', 1)[-1]}: {type(exc).__name__}"
        self.counters.count("store_failures", reason)
        log.error("could not store the message on %s (%s); not acked", topic,
                  type(exc).__name__)

    def _release(self, message):
        """PUBACK to the broker so it never redelivers this message (stored or refused)."""
        try:
            if message.qos > 0:
                self._client.ack(message.mid, message.qos)
        except Exception as exc:
            log.error("could not release a message on %s (%s)", _topic_of(message),
                      type(exc).__name__)

    def _store(self, item, received):
        """Apply one validated non-visit message inside the batch transaction; return the
        counter to bump once the batch has committed (so a reader never sees a count before its
        row). Visits are stored together by :meth:`FleetDb.add_visits`; a period count is
        acked by :meth:`_commit` once stored."""
        if isinstance(item, topics.Status):
            if self.db.apply_status(item, received):
                return "statuses"
            log.info("ignored stale %s status of %s (instance %s, epoch %d: an earlier "
                     "connection's)", item.state, item.kiosk_id, item.instance, item.epoch)
            return "stale_statuses"
        if isinstance(item, topics.ServicePoint):
            self.db.apply_service_point(item, received)
            return "service_points"
        if isinstance(item, topics.HealthMessage):
            self.db.apply_health([item], received)
            return "health_reports"
        if isinstance(item, topics.PeriodMessage):
            return "periods" if self.db.add_period(item, received) else "periods_duplicate"
        if not self.db.add_reply(item, received):
            return "replies_duplicate"
        log.info("reply from %s to %s: %s", item.kiosk_id, item.correlation_id,
                 "ok" if item.ok else printable(item.error))
        return "replies"


# --- the kiosk-fleet collect verb -----------------------------------------------------------


def add_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default %(default)s)")
    parser.add_argument("--port", type=int, default=1883, help="broker port (default %(default)s)")
    parser.add_argument("--username", default="collector", help="broker account")
    parser.add_argument("--password-file", type=Path,
                        help="file holding the account's password (first line)")
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="fleet database: a SQLite file, or postgresql://USER@HOST/DB "
                             "(a Unix socket: postgresql:///DB?host=/socket/dir) "
                             "(default %(default)s)")
    parser.add_argument("--group", default=DEFAULT_GROUP,
                        help="shared-subscription group; collectors in one group split the load")
    parser.add_argument("--ca-file", type=Path, help="CA certificate: connect with TLS")
    parser.add_argument("--cert-file", type=Path, help="client certificate for mutual TLS")
    parser.add_argument("--key-file", type=Path, help="client key for mutual TLS")
    parser.add_argument("--batch-size", type=int, default=200, help="messages per transaction")
    parser.add_argument("--batch-ms", type=int, default=200,
                        help="longest wait to fill a batch, in milliseconds")
    parser.add_argument("--alarms-every-s", type=float, default=ALARMS_EVERY_S,
                        help="seconds between evaluations of the alarms (default %(default)s)")
    parser.add_argument("--reconcile-grace-s", type=float, default=DEFAULT_RECONCILE_GRACE_S,
                        help="seconds after a kiosk's period count arrives before its missing "
                             "visits raise the period_count_short alarm (default %(default)s: "
                             "twice the kiosks' resend_after_s plus the longest release jitter)")
    for f in dataclasses.fields(Thresholds):
        parser.add_argument(f"--alarm-{f.name.replace('_', '-')}", dest=f"alarm_{f.name}",
                            type=type(f.default), default=f.default, metavar=f.name.upper(),
                            help=f"alarm threshold {f.name} (default %(default)s)")


def read_password(path):
    """The first line of ``--password-file`` (None without one), or TelemetryError saying
    what to fix; the fleet verbs that connect to the broker share it."""
    if not path:
        return None
    try:
        return path.read_text().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise TelemetryError(
            f"--password-file {path}: cannot read a password ({exc}); put the account's "
            "password on the first line") from None


def main(args):
    password = read_password(args.password_file)
    tls = None
    if args.ca_file:
        tls = {"ca_certs": str(args.ca_file)}
        if args.cert_file:
            tls.update(certfile=str(args.cert_file), keyfile=str(args.key_file or args.cert_file))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    collector = Collector(args.db, args.host, args.port, args.username, password,
                          group=args.group, tls=tls, batch_size=args.batch_size,
                          batch_s=args.batch_ms / 1000,
                          reconcile_grace_s=args.reconcile_grace_s,
                          alarms_every_s=args.alarms_every_s,
                          thresholds=Thresholds(**{f.name: getattr(args, f"alarm_{f.name}")
                                                   for f in dataclasses.fields(Thresholds)}))
    collector.start()
    log.info("collecting from %s:%s into %s", args.host, args.port, collector.db.location)
    try:
        while not done.wait(60):
            c = collector.counters
            log.info("received %d, visits stored %d (duplicates %d), period counts %d "
                     "(short %d, over %d, healed %d), malformed %d %s, store failures %d %s, "
                     "acks %d", c.received, c.visits_stored, c.visits_duplicate, c.periods,
                     c.periods_short, c.periods_over, c.periods_healed, c.malformed,
                     c.malformed_by_reason, c.store_failures, c.store_failures_by_reason,
                     c.acks_sent)
    finally:
        collector.stop()
    return 0
