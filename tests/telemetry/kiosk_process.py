"""The kiosk's telemetry side alone: store, outbox pump, MQTT link, health and commands.

Tests import :class:`KioskSide` to run it in-process, or start this file as a process
(``python -m tests.telemetry.kiosk_process CONFIG``) when they need to kill it with SIGKILL and
start it again on the same data dir. As a process it drains the outbox and carries out commands
until SIGTERM; it prints ``ready`` once the link is up. It uses the runner's own wiring
(:class:`kiosk.assemble.Telemetry`), without the screen and the card.
"""

import queue
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta

from kiosk import config
from kiosk.assemble import Telemetry
from kiosk.card.repeat import RepeatKeys
from kiosk.flow import VisitRecord
from kiosk.period import Period
from kiosk.runner import Runner, visit_message
from kiosk.store import Store
from kiosk.telemetry import topics

RECORD = VisitRecord(outcome="completed", step="thank_you", verified=True, expired=False,
                     service_id="id-card", copy_answer="none", rating=5, reason=None,
                     language="th", duration_s=42.5)


def telemetry_config(make_config, broker, root, kiosk_id="kiosk-a", *, username=None,
                     mqtt=None, telemetry=None, **sections):
    """A kiosk config pointed at ``broker`` with a fresh account, data under ``root/kiosk_id``.

    ``username`` connects with another kiosk's account (the ACL test); short will delay and
    reconnect delays keep tests quick.
    """
    account = username or kiosk_id
    password_file = root / f"{account}.password"
    password_file.write_text(broker.add_kiosk(account))
    return make_config(
        root / kiosk_id,
        kiosk={"id": kiosk_id},
        mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False,
              "password_file": str(password_file), "username": username or "",
              "keepalive_s": 5, "will_delay_s": 1, "reconnect_min_s": 0.1,
              "reconnect_max_s": 1, **(mqtt or {})},
        telemetry={"resend_after_s": 5, **(telemetry or {})},
        **sections,
    )


def record_visits(store, kiosk_id, count):
    """Commit ``count`` visits and close their period, in one transaction (one fsync); returns
    their event ids.

    Each is sent as the runner sends it (``visit_message``), in a period that ended long
    enough ago that its release delays are over too: the visits and the period's count are due
    at once, as they are on a kiosk once the period has closed.
    """
    now = datetime.now(UTC)
    past = Period.of(now - timedelta(seconds=2 * store.period_s), store.period_s)
    with store.atomic():
        event_ids = [store.record_visit(RECORD, **visit_message(kiosk_id, "production"),
                                        period=past).event_id for _ in range(count)]
        store.close_periods(Period.of(now, store.period_s).start,
                            topic=topics.kiosk_topic(kiosk_id, "period"), mode="production")
    return event_ids


class KioskSide:
    """The runner's telemetry (:class:`kiosk.assemble.Telemetry`) with a store, and no screen or
    card.

    ``events`` is a real :class:`~kiosk.runner.Runner`'s queue; ``start(serve=True)`` runs a
    thread that hands each fact to that runner and polls the renewal's relay, as its main loop
    would, so commands are judged and configs put in force (``in_force``) by the runner's own
    code. ``start(loop=True)`` runs the runner's own main loop instead, which may end by itself
    (:meth:`wait_for_exit`). ``telemetry`` holds keywords for :class:`~kiosk.assemble.Telemetry`
    (the renewal's folder and the relay's timing); ``client_cert`` goes to the runner.
    """

    def __init__(self, cfg, *, poll_s=0.2, client_cert=None, **telemetry):
        self.config = cfg
        self.store = Store.open(cfg.storage.data_dir, min_free_mb=10,
                                period_s=cfg.telemetry.period_s)
        self.events = queue.Queue()
        self.telemetry = Telemetry(cfg, self.store, self.events.put,
                                   remote_path=config.remote_layer_path(cfg),
                                   outbox_poll_s=poll_s, **telemetry)
        self.runner = Runner(cfg, self.store, keys=RepeatKeys(1800), events=self.events,
                             telemetry=self.telemetry, client_cert=client_cert)
        self.outbox, self.link = self.telemetry.outbox, self.telemetry.link
        self.commands, self.health = self.telemetry.commands, self.telemetry.health
        self._until = threading.Event()
        self._serving = None

    @property
    def in_force(self):
        return self.runner.cfg

    def start(self, *, serve=False, loop=False):
        self.telemetry.start()
        if serve or loop:
            target = self.runner.run if loop else self.serve_commands
            self._serving = threading.Thread(target=target, args=(self._until,),
                                             name="main-loop", daemon=True)
            self._serving.start()
        return self

    def wait_for_exit(self, timeout):
        """Block until the main loop ended by itself (``start(loop=True)``); True if it did."""
        self._serving.join(timeout)
        return not self._serving.is_alive()

    def record_visits(self, count):
        ids = record_visits(self.store, self.config.kiosk.id, count)
        self.outbox.notify()
        return ids

    def serve_commands(self, until, timeout=0.1):
        """Hand what arrives on ``events`` to the runner until ``until`` is set."""
        while not until.is_set():
            try:
                fact = self.events.get(timeout=timeout)
            except queue.Empty:
                fact = None
            if fact is not None:
                self.runner.handle(fact)
            self.telemetry.relay.poll()

    def stop(self):
        self._until.set()
        if self._serving is not None:
            self._serving.join(5)
        self.telemetry.stop()
        self.store.close()


def main(argv):
    cfg = config.load(argv[0])
    side = KioskSide(cfg).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    if side.link.wait_for_connected(30):
        print("ready", flush=True)
    side.serve_commands(stopping)
    side.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
