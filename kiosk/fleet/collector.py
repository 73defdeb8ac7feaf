"""``kiosk-fleet collect``: receive kiosk messages, store them, and only then acknowledge them.

The collector joins a shared subscription (``$share/<group>/citizeninfo/v1/kiosk/+/#``) so
several collectors can split the fleet, with a persistent MQTT 5 session (clean start off plus a
session expiry) so the broker queues visits while a collector restarts.

Two processes, so parsing and storing never share a GIL with paho (sharing it held the
collector to a third of a bare subscriber's rate). This one, the network process, holds paho:
its network thread only puts each message's ``(mid, qos, topic, payload)`` on a queue; a
forwarding thread sends them in batches (by count or time) to the store process
(:mod:`kiosk.fleet.ingest`, which parses, commits, reconciles and raises alarms), at most
``MAX_IN_FLIGHT`` batches at a time so memory stays bounded while the database is slow (paho's
in-flight window then holds the rest at the broker); a result thread takes each batch's report
and only then releases the broker's copies (manual PUBACK), publishes the acks (of visits and
period counts, all committed), adds the counts to :attr:`Collector.counters` and re-emits the
store's log records here. If the store process dies, it is started again and sent the batches
it had not answered (nothing of them was acked; storing is idempotent by event id). Nothing is
held locked while paho is called: an earlier version took a lock in a paho callback and called
paho under it, which deadlocked.
"""

import dataclasses
import itertools
import logging
import multiprocessing
import queue
import signal
import threading
import time
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk.config import TelemetrySection
from kiosk.errors import TelemetryError
from kiosk.fleet import ingest
from kiosk.fleet.alarms import DEFAULT_THRESHOLDS, Thresholds
from kiosk.fleet.db import DEFAULT_DB, is_url, open_database
from kiosk.fleet.ingest import Counters
from kiosk.logsafe import never_raises, printable
from kiosk.period import MAX_JITTER_S
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

DEFAULT_GROUP = "collectors"
#: How long the broker keeps the session (and queues visits) while no collector is connected.
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
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
#: Batches sent to the store process and not yet answered, at most.
MAX_IN_FLIGHT = 4
#: Seconds between the ``collect`` verb's log lines of its counters.
COUNTERS_EVERY_S = 60.0
#: Longest pause before starting again a store process that keeps dying.
RESTART_MAX_S = 5.0

# A child forked from a process with threads (paho's, a test's) can inherit a lock held
# mid-operation; the fork server is started once, without threads, with the store's modules
# and the main script loaded, so starting a store process costs a fork, not an interpreter.
# As with any forkserver or spawn child, a script that starts a collector must do so under
# ``if __name__ == "__main__":``.
_PROCESSES = multiprocessing.get_context("forkserver")
_PROCESSES.set_forkserver_preload(["__main__", "kiosk.fleet.ingest"])
# What the forwarding thread's queue carries beside messages.
_FINISH, _WAKE, _DONE = "finish", "wake", "done"


def _count_callback_failure(collector, *_):
    collector.counters.callback_failures += 1


#: No exception leaves a paho callback: paho 2 re-raises one, which ends its network thread, and
#: the collector would then never reconnect.
_contained = never_raises(log, counted=_count_callback_failure)


def _wire(message):
    """``(mid, qos, topic, payload)`` of a paho message for the store process; topic None and
    the error's name for payload when paho cannot read it (the store counts it malformed)."""
    try:
        return message.mid, message.qos, message.topic, message.payload
    except Exception as exc:
        return getattr(message, "mid", None), getattr(message, "qos", 0), None, \
            type(exc).__name__


def _send(connection, request):
    """Send to a store process; one that has died is started again by the result thread, which
    has every unanswered batch sent again, so a failed send is not an error here."""
    try:
        connection.send(request)
    except (OSError, ValueError):
        pass


class Collector:
    """One collector: ``start()``, ``stop()``, ``counters``, ``db`` (a :class:`FleetDb`).

    ``tls`` is a dict for ``paho.Client.tls_set`` (``ca_certs``, ``certfile``, ``keyfile``).
    Acks go out after the batch holding the visits or period counts has committed; one seen
    before is acked again (the kiosk resends when an ack is lost) but stored once. A period
    count short of visits raises its alarm ``reconcile_grace_s`` after it arrived. ``counters``
    (read them from any thread) lag the database by at most one batch's report; ``db`` is this
    process's own connection, for reading.
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
        self.counters = Counters()
        self.db = None
        self._inbox = queue.Queue()  # paho's messages (and _FINISH, _WAKE, _DONE)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._threads = []
        # The store process and its pipes; swapped by the result thread when it restarts one.
        self._lock = threading.Lock()  # guards the four below
        self._store = self._to_store = self._from_store = None
        self._generation = 0  # store processes started so far
        self._in_flight = {}  # batch id -> [items, generation it was last sent to]
        self._retired = []  # pipes to dead store processes, closed by the forwarding thread
        self._finish_sent = None  # the generation asked to finish (stop() began)
        self._window = threading.Semaphore(MAX_IN_FLIGHT)
        self._batch_ids = itertools.count()
        self._store_stopping = None  # a multiprocessing Event: abandon a failing batch
        self._client = service_client(username, password, tls, manual_ack=True)
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
        """Open the database (migrating it here, before the store process opens its own), start
        the store process and the threads, and connect (paho retries while the broker is away,
        so a collector started before its broker still comes up)."""
        self.db = open_database(self.db_where)
        self._stopping.clear()
        self._store_stopping = _PROCESSES.Event()
        self._finish_sent = None
        with self._lock:
            self._launch()
        self._threads = [threading.Thread(target=self._forward, name="collector-forward",
                                          daemon=True),
                         threading.Thread(target=self._take_reports, name="collector-results",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        connect_keeping_session(self._client, self.host, self.port, self.session_expiry_s)

    def stop(self, timeout=10.0):
        """Finish the queued batches while still connected (so their acks go out), then
        disconnect; the broker keeps the session and redelivers what came in meanwhile (and a
        batch the database is refusing, which is abandoned at once)."""
        self._stopping.set()
        if self._threads:
            self._store_stopping.set()
            self._inbox.put(_FINISH)
            deadline = time.monotonic() + timeout
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                store, self._store = self._store, None  # no restart from here on
            store.join(max(0.0, deadline - time.monotonic()))
            if store.is_alive():
                log.error("the collector's store process did not finish in %.0f s; ending it",
                          timeout)
                store.kill()
                store.join()
            self._threads = []
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
        self._inbox.put(_wire(message))

    # --- the store process ------------------------------------------------------------------

    def _launch(self):
        """Start a store process (holding ``_lock``); its pipe ends are its own alone, so its
        death reads as the end of ``_from_store``. If it cannot start, everything stays as it
        was and the error is raised."""
        batches, to_store = _PROCESSES.Pipe(duplex=False)
        from_store, reports = _PROCESSES.Pipe(duplex=False)
        options = ingest.Options(str(self.db_where), self.reconcile_grace_s,
                                 self.reconcile_every_s, self.thresholds, self.alarms_every_s)
        store = _PROCESSES.Process(
            target=ingest.serve, args=(batches, reports, options, self._store_stopping),
            name="collector-store", daemon=True)
        try:
            store.start()
        except BaseException:
            to_store.close()
            from_store.close()
            raise
        finally:
            batches.close()
            reports.close()
        self._store, self._to_store, self._from_store = store, to_store, from_store
        self._generation += 1

    def _forward(self):
        """The forwarding thread: batch the queued messages and send them; send again what a
        dead store process left unanswered; after _FINISH, ask the store to finish."""
        finishing = False
        while True:
            self._resend()
            try:
                first = self._inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if first == _DONE:
                with self._lock:
                    for connection in (*self._retired, self._to_store):
                        connection.close()
                    self._retired = []
                return
            if first == _FINISH:
                finishing = True
                self._send_finish()
            if not isinstance(first, tuple) or finishing:
                continue  # _WAKE; or a message that came as stop() began: not released
            batch = [first]
            deadline = time.monotonic() + self.batch_s
            while len(batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._inbox.get(timeout=remaining)
                except queue.Empty:
                    break
                if not isinstance(item, tuple):
                    self._inbox.put(item)  # after this batch
                    break
                batch.append(item)
            while not self._window.acquire(timeout=0.1):
                self._resend()
            with self._lock:
                batch_id = next(self._batch_ids)
                self._in_flight[batch_id] = [batch, self._generation]
                connection = self._to_store
            _send(connection, (batch_id, batch))

    def _send_finish(self):
        with self._lock:
            self._finish_sent = self._generation
            connection = self._to_store
        _send(connection, None)

    def _resend(self):
        """Send the unanswered batches again to a store process started since they were sent
        (and the request to finish, if it was made)."""
        with self._lock:
            stale = [(batch_id, sent) for batch_id, sent in sorted(self._in_flight.items())
                     if sent[1] != self._generation]
            for _, sent in stale:
                sent[1] = self._generation
            finish = self._finish_sent not in (None, self._generation)
            connection, retired, self._retired = self._to_store, self._retired, []
        for old in retired:
            old.close()
        for batch_id, (batch, _) in stale:
            _send(connection, (batch_id, batch))
        if finish:
            self._send_finish()

    def _take_reports(self):
        """The result thread: apply each report of the store process; start another when it
        dies, or sends what cannot be read (unless stop() ended it), until it has finished."""
        delay = 0.1
        while True:
            try:
                report = self._from_store.recv()
            except Exception as exc:  # its end (EOFError, OSError), or a broken report
                if not isinstance(exc, (EOFError, OSError)):
                    log.error("could not read a report of the collector's store process "
                              "(%s); ending it", type(exc).__name__)
                    with self._lock:
                        if self._store is not None:
                            self._store.kill()
                if not self._restart(delay):
                    break
                delay = min(delay * 2, RESTART_MAX_S)  # one that keeps dying waits longer
                continue
            delay = 0.1
            try:
                self._apply(report)
            except Exception:  # this thread must outlive its own bugs, or acks would stop
                log.exception("collector could not apply a report of its store process; the "
                              "kiosks resend what was not acked")
            if report.finished:
                break
        self._from_store.close()
        self._inbox.put(_DONE)

    def _restart(self, delay):
        """Start another store process after ``delay``, and again (waiting longer each time)
        while one cannot be started; False if stop() ended it."""
        with self._lock:
            store = self._store
        if store is None:
            return False
        store.join()
        while True:
            time.sleep(delay)
            with self._lock:
                if self._store is None:
                    return False
                unanswered = len(self._in_flight)
                old_reports, old_batches = self._from_store, self._to_store
                try:
                    self._launch()
                except Exception as exc:  # out of memory or processes: try again later
                    delay = min(delay * 2, RESTART_MAX_S)
                    log.error("could not start another store process for the collector (%s); "
                              "retrying in %.1f s", exc, delay)
                    continue
                old_reports.close()
                self._retired.append(old_batches)  # the forwarding thread closes it
            break
        self.counters.store_restarts += 1
        log.error("the collector's store process ended (exit code %s); started another and "
                  "sending it the %d batches not answered", store.exitcode, unanswered)
        self._inbox.put(_WAKE)
        return True

    def _apply(self, report):
        """Re-emit the store's log records, add its counts, then release the batch and
        publish its acks (so a kiosk that sees its ack also sees the counts and the lines)."""
        for record in report.records:
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        self.counters.add(report.counters)
        for topic in report.withdrawals:
            # An empty retained message deletes the retained update command at the broker; a
            # kiosk that has it already drops the request (docs/telemetry.md).
            self._client.publish(topic, b"", qos=topics.QOS["update"], retain=True)
        if report.batch is None:
            return
        with self._lock:
            batch, _ = self._in_flight.pop(report.batch)
        self._window.release()
        if report.released:
            for mid, qos, topic, _ in batch:
                self._release(mid, qos, topic)
        for kiosk_id, event_ids in report.acks.items():
            for start in range(0, len(event_ids), topics.MAX_ACK_IDS):
                chunk = event_ids[start:start + topics.MAX_ACK_IDS]
                self._client.publish(topics.ack_topic(kiosk_id), topics.ack_payload(chunk),
                                     qos=topics.QOS["ack"])
                self.counters.acks_sent += 1

    def _release(self, mid, qos, topic):
        """PUBACK to the broker so it never redelivers this message (stored or refused)."""
        try:
            if qos > 0:
                self._client.ack(mid, qos)
        except Exception as exc:
            log.error("could not release a message on %s (%s)",
                      ingest.UNDECODABLE_TOPIC if topic is None else printable(topic),
                      type(exc).__name__)


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
    parser.add_argument("--counters-every-s", type=float, default=COUNTERS_EVERY_S,
                        help="seconds between the log lines of the collector's counters; one "
                             "more is logged on exit (default %(default)s)")
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


def service_client(username, password, tls, *, manual_ack=False):
    """A paho MQTT 5 client for one of the centre's accounts: the user name is the client id
    (docs/broker.md), so each account holds one session; ``tls`` is ``tls_set``'s keywords."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    client.username_pw_set(username, password)
    if tls:
        client.tls_set(**tls)
    return client


def connect_keeping_session(client, host, port, session_expiry_s):
    """Connect (and reconnect) ``client`` in the background with clean start off and the
    session kept ``session_expiry_s`` after a drop: what was queued for the account while it
    was away waits at the broker (paho's default, clean start on the first connect, would wipe
    it)."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    client.reconnect_delay_set(0.5, 30)
    client.connect_async(host, port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()


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
    if not args.counters_every_s > 0:
        raise TelemetryError("--counters-every-s must be > 0")
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
        while not done.wait(args.counters_every_s):
            log_counters(collector.counters)
    finally:
        collector.stop()
        log_counters(collector.counters)  # what a redeploy's last run did, to the end
    return 0


def log_counters(c):
    """One line of the counters since start; the soak lane reads the duplicates from it."""
    log.info("received %d, visits stored %d (duplicates %d), period counts %d "
             "(short %d, over %d, healed %d), malformed %d %s, ignored %d, store failures "
             "%d %s, acks %d", c.received, c.visits_stored, c.visits_duplicate, c.periods,
             c.periods_short, c.periods_over, c.periods_healed, c.malformed,
             c.malformed_by_reason, c.ignored, c.store_failures, c.store_failures_by_reason,
             c.acks_sent)
