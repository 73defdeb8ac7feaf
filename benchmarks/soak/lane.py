"""The soak's centre: one broker, a fault proxy in front of it and a collector process, with the
faults the soak injects there and their recovery.

Kiosks connect to :attr:`Lane.kiosk_endpoint` (the :class:`~kiosk.rigs.proxy.FaultProxy`, seeded
so the same seed and traffic make the same link faults); the collector connects to the broker
directly. The collector is ``kiosk-fleet collect`` in its own process group, so it can be
killed, frozen and redeployed as a service would be; its output goes to ``collector-N.log`` in
the work directory, one file per process. The broker keeps persistence on and always comes back
on the same port. Each fault method returns once the fault is over and the lane is whole again
(a new collector subscribed, or the collector subscribed to the restarted broker); the faults
applied are kept in :attr:`Lane.faults`.

Reading back: :meth:`Lane.visits` and :meth:`Lane.counts` are what the store holds, for the
driver to reconcile with what the kiosks sent; :meth:`Lane.log_paths` every file the lane wrote,
for the privacy scan (call it before :meth:`Lane.close`: the PostgreSQL cluster goes with it).
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

from kiosk import visit as schema
from kiosk.fleet.db import open_database
from kiosk.rigs.broker import Broker
from kiosk.rigs.postgres import start_cluster
from kiosk.rigs.proxy import FaultProxy

STORES = ("sqlite", "postgres")
#: How long a collector may take to subscribe: after a broker outage paho's reconnect delay has
#: doubled up to its 30 s ceiling.
SUBSCRIBE_S = 60.0
#: How long a redeployed collector may take to finish its batches and exit.
EXIT_S = 30.0
#: The collector logs its counters this often, so one killed loses at most a second of them.
COUNTERS_EVERY_S = 1.0
_ROOT = Path(__file__).resolve().parents[2]
_SUBSCRIBED = "collector subscribed"
_DUPLICATES = re.compile(r"visits stored \d+ \(duplicates (\d+)\)")

#: A visit as the collector stored it: ``answers`` maps every field the collector keeps
#: (:data:`kiosk.visit.KEPT`: service_id, copy_answer, rating ...) to its value.
StoredVisit = namedtuple("StoredVisit", "kiosk_id event_id instance period period_s answers")
#: A kiosk instance's count of its visits in one closed period, and the collector's verdict.
StoredCount = namedtuple("StoredCount", "kiosk_id instance period period_s visits reconciled")


class Lane:
    """One central stack; a context manager. ``store`` is ``"sqlite"`` (a file in ``workdir``)
    or ``"postgres"`` (a private cluster of its own); ``seed`` seeds the fault proxy."""

    def __init__(self, workdir, *, store="sqlite", seed):
        if store not in STORES:
            raise ValueError(f"unknown store {store!r}; stores: {', '.join(STORES)}")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store, self.seed = store, seed
        self.broker = Broker(self.workdir / "broker", persistence=True)
        self.proxy = None
        self.cluster = None
        self.db_where = None  # the SQLite path or PostgreSQL URL the collector writes
        self.faults = []  # (name, params), in the order applied
        self._collector = None  # the running collector's Popen
        self._groups = []  # process group of every collector started
        self.collector_logs = []  # one per collector process, in start order

    # --- lifecycle --------------------------------------------------------------------------

    def start(self):
        """Start store, broker, proxy and collector; returns once the collector subscribed.
        On failure everything started is stopped again."""
        try:
            if self.store == "postgres":
                self.cluster = start_cluster()
                self.db_where = self.cluster.url(self.cluster.create_database())
            else:
                self.db_where = str(self.workdir / "fleet.sqlite3")
            self.broker.start()
            self.proxy = FaultProxy(self.broker.port, seed=self.seed).start()
            password_file = self.workdir / "collector.password"
            password_file.write_text(self.broker.collector_credentials[1] + "\n")
            password_file.chmod(0o600)
            self._start_collector()
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Stop everything, whatever state a fault left it in (a frozen collector included);
        the first error is raised once every part was stopped."""
        errors = []
        for step in (self._end_collectors, self._close_proxy, self.broker.stop,
                     self._stop_cluster):
            try:
                step()
            except Exception as exc:  # stop the rest first, then report it
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def kiosk_endpoint(self):
        """``(host, port)`` kiosks connect to: the proxy's, which stays the same for the run."""
        return self.proxy.host, self.proxy.port

    @property
    def collector_pid(self):
        """The running collector's process id (None between a fault and its recovery)."""
        return self._collector.pid if self._collector else None

    def add_kiosk(self, kiosk_id):
        """A broker account for ``kiosk_id``; its password."""
        return self.broker.add_kiosk(kiosk_id)

    # --- faults -----------------------------------------------------------------------------

    def kill_collector(self, down_s=0.0):
        """SIGKILL to the collector's process group (its store process and fork server too, as
        systemd ends a crashed service's cgroup), then a new collector on the same store."""
        self._signal_collector(signal.SIGKILL)
        self._collector.wait()
        self._collector = None
        self._applied("kill_collector", down_s=down_s)
        _hold(down_s)
        self._start_collector()

    def stop_collector(self, seconds):
        """Freeze the collector's process group (SIGSTOP) for ``seconds``, then SIGCONT: the
        broker holds its messages meanwhile, and the same process goes on."""
        self._signal_collector(signal.SIGSTOP)
        try:
            self._applied("stop_collector", seconds=seconds)
            _hold(seconds)
        finally:
            self._signal_collector(signal.SIGCONT)

    def redeploy_collector(self, down_s=0.0):
        """SIGTERM, as a deploy stops the service: the collector finishes its batches and
        exits; then a new one. RuntimeError if it does not exit within EXIT_S."""
        self._collector.terminate()
        try:
            self._collector.wait(EXIT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the collector did not exit within {EXIT_S} s of SIGTERM; see "
                               f"{self.collector_logs[-1]}") from None
        self._collector = None
        self._applied("redeploy_collector", down_s=down_s)
        _hold(down_s)
        self._start_collector()

    def stop_broker(self, down_s=0.0):
        """A clean stop (SIGTERM: persistence written), then the broker again on its port."""
        subscribed = self._subscriptions()
        self.broker.stop()
        self._applied("stop_broker", down_s=down_s)
        _hold(down_s)
        self._restart_broker(subscribed)

    def kill_broker(self, *, keep_persistence, down_s=0.0):
        """SIGKILL the broker, as a power cut: it comes back with its last autosave, or, without
        ``keep_persistence``, with no ``mosquitto.db`` at all (every session and queued message
        gone); then the broker again on its port."""
        subscribed = self._subscriptions()
        self.broker.kill()
        if not keep_persistence:
            (self.broker.workdir / "mosquitto.db").unlink(missing_ok=True)
        self._applied("kill_broker", keep_persistence=keep_persistence, down_s=down_s)
        _hold(down_s)
        self._restart_broker(subscribed)

    def network(self, mode, seconds, **params):
        """The kiosks' link in ``mode`` (:data:`kiosk.rigs.proxy.MODES`: cut, stall, lossy,
        throttle, with their parameters) for ``seconds``, then ``pass`` again."""
        self.proxy.set_mode(mode, **params)
        try:
            self._applied("network", mode=mode, seconds=seconds, **params)
            _hold(seconds)
        finally:
            self.proxy.set_mode("pass")

    # --- reading back -----------------------------------------------------------------------

    def visits(self):
        """Every visit the store holds, as :class:`StoredVisit`. The event id is the visit
        table's primary key: a visit stored twice cannot exist, so :meth:`duplicates` counts
        deliveries instead."""
        with _reading(self.db_where) as db:
            return [StoredVisit(v.kiosk_id, v.event_id, v.instance, v.period, v.period_s,
                                {f.name: getattr(v, f.name) for f in schema.KEPT})
                    for v in db.visits()]

    def counts(self):
        """Every period count the store holds (one per kiosk instance and period), as
        :class:`StoredCount`."""
        with _reading(self.db_where) as db:
            query = db.PeriodCount.select().order_by(db.PeriodCount.kiosk_id,
                                                     db.PeriodCount.period)
            return [StoredCount(c.kiosk_id, c.instance, c.period, c.period_s, c.visits,
                                c.reconciled) for c in query]

    def duplicates(self):
        """Visits the collectors received again after storing them (a kiosk resending one whose
        ack was lost, or the broker redelivering), summed from each collector's last counter
        line: a lower bound, as a killed one loses up to COUNTERS_EVERY_S of them."""
        total = 0
        for path in self.collector_logs:
            found = _DUPLICATES.findall(path.read_text(errors="replace"))
            total += int(found[-1]) if found else 0
        return total

    def log_paths(self):
        """Every file the lane wrote: broker config, log and persistence, collector logs, the
        SQLite file with its -wal and -shm, or the PostgreSQL cluster (server log, data
        directory, after a checkpoint so the rows are on disk)."""
        roots = [self.workdir]
        if self.cluster is not None:
            self.cluster.execute("CHECKPOINT")
            roots.append(self.cluster.root)
        return sorted(path for root in roots for path in root.rglob("*") if path.is_file())

    # --- the parts ------------------------------------------------------------------------

    def _applied(self, name, **params):
        self.faults.append((name, params))

    def _start_collector(self):
        log_path = self.workdir / f"collector-{len(self.collector_logs) + 1}.log"
        self.collector_logs.append(log_path)
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        with log_path.open("w") as out:
            self._collector = subprocess.Popen(
                [sys.executable, "-c", "from kiosk.fleet.cli import main; main()", "collect",
                 "--db", self.db_where, "--port", str(self.broker.port),
                 "--password-file", str(self.workdir / "collector.password"),
                 "--counters-every-s", str(COUNTERS_EVERY_S)],
                cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        self._groups.append(self._collector.pid)
        self._wait_for_subscribed(1)

    def _subscriptions(self):
        """How often the running collector has subscribed (once per connect)."""
        return self.collector_logs[-1].read_text(errors="replace").count(_SUBSCRIBED)

    def _wait_for_subscribed(self, times):
        deadline = time.monotonic() + SUBSCRIBE_S
        while self._subscriptions() < times:
            if self._collector.poll() is not None:
                raise RuntimeError(f"the collector exited with {self._collector.returncode}; "
                                   f"see {self.collector_logs[-1]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not subscribe within {SUBSCRIBE_S} s; "
                                   f"see {self.collector_logs[-1]}")
            time.sleep(0.05)  # poll interval while the collector connects

    def _restart_broker(self, subscribed):
        self.broker.start()  # on its port of before, which the proxy and kiosks target
        self._wait_for_subscribed(subscribed + 1)

    def _signal_collector(self, sig):
        os.killpg(self._collector.pid, sig)

    def _end_collectors(self):
        """SIGTERM the running collector (after SIGCONT, in case it is frozen); then SIGKILL
        whatever is left of every collector's process group."""
        if self._collector is not None and self._collector.poll() is None:
            self._signal_collector(signal.SIGCONT)
            self._collector.terminate()
            try:
                self._collector.wait(EXIT_S)
            except subprocess.TimeoutExpired:
                pass  # killed with its group below
        for group in self._groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the whole group has exited
        if self._collector is not None:
            self._collector.wait()
            self._collector = None

    def _close_proxy(self):
        if self.proxy is not None:
            self.proxy.close()

    def _stop_cluster(self):
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


@contextmanager
def _reading(where):
    """The store opened read-only for one query, closed after."""
    db = open_database(where, read_only=True)
    try:
        yield db
    finally:
        db.close()


def _hold(seconds):
    """Keep a fault in place: its length is the point, not a wait for something."""
    if seconds > 0:
        time.sleep(seconds)
