"""The kiosk's telemetry side alone: store, outbox pump, MQTT link, health and commands.

Tests import :class:`KioskSide` to run it in-process, or start this file as a process
(``python -m tests.telemetry.kiosk_process CONFIG``) when they need to kill it with SIGKILL and
start it again on the same data dir. As a process it drains the outbox and carries out commands
until SIGTERM; it prints ``ready`` once the link is up. The runner (kiosk.app) wires the same
parts in the same way; this stands in for it so telemetry can be tested on its own.
"""

import json
import queue
import signal
import sys
import threading
from datetime import UTC, datetime

from kiosk import __version__, config
from kiosk.flow import VisitRecord
from kiosk.store import Store
from kiosk.telemetry import topics
from kiosk.telemetry.commands import Commands
from kiosk.telemetry.health import Health
from kiosk.telemetry.mqtt import CommandReceived, MqttLink
from kiosk.telemetry.outbox import Outbox

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


def visit_builder(kiosk_id):
    """A ``build_payload`` for ``Store.record_visit``: explicit fields only, as the runner's."""

    def build(row):
        payload = topics.visit_payload(
            event_id=row.event_id, seq=row.seq, epoch=row.epoch, mode=row.mode,
            outcome=row.outcome, step=row.step, verified=row.verified, expired=row.expired,
            service_id=row.service_id, copy_answer=row.copy_answer, rating=row.rating,
            reason=row.reason, language=row.language, duration_s=row.duration_s,
            age_band=row.age_band, gender=row.gender,
            stamp=topics.stamp(datetime.now(UTC), False, 1.0))
        return topics.kiosk_topic(kiosk_id, "visit"), json.loads(payload)

    return build


def record_visits(store, kiosk_id, count):
    """Commit ``count`` visits in one transaction (one fsync); returns their event ids."""
    build = visit_builder(kiosk_id)
    with store.atomic():
        return [store.record_visit(RECORD, build_payload=build).event_id for _ in range(count)]


class KioskSide:
    """The telemetry parts of one kiosk, wired as the runner wires them.

    ``events`` stands in for the runner's main-thread queue; ``start(serve=True)`` runs a thread
    standing in for the runner's main loop, handing each command to :class:`Commands`.
    """

    def __init__(self, cfg, *, poll_s=0.2):
        self.config = cfg
        self.store = Store.open(cfg.storage.data_dir, min_free_mb=1)
        self.events = queue.Queue()
        self.outbox = Outbox(self.store, window=cfg.telemetry.inflight_window,
                             resend_after_s=cfg.telemetry.resend_after_s,
                             when_dead=self._note_dead, poll_s=poll_s)
        self.link = MqttLink(cfg.mqtt, cfg.kiosk.id, next_epoch=self.store.next_epoch,
                             version=__version__, facts=self.outbox.put, put=self.events.put,
                             pin=topics.pin_payload(cfg),
                             inflight_window=cfg.telemetry.inflight_window)
        self.commands = Commands(self.link, self.outbox, config=cfg,
                                 remote_path=config.remote_layer_path(cfg))
        self.health = Health(self.store, self.link, interval_s=cfg.telemetry.health_interval_s,
                             version=__version__, mode=cfg.kiosk.mode,
                             data_dir=cfg.storage.data_dir,
                             applied_version=lambda: self.commands.config.remote_version)

        self._until = threading.Event()
        self._serving = None

    def _note_dead(self, event_id, reason_code):
        self.health.note_dead_letter(event_id, reason_code)

    def start(self, *, serve=False):
        self.outbox.start(self.link)
        self.link.start()
        self.health.start()
        if serve:
            self._serving = threading.Thread(target=self.serve_commands, args=(self._until,),
                                             name="main-loop", daemon=True)
            self._serving.start()
        return self

    def record_visits(self, count):
        ids = record_visits(self.store, self.config.kiosk.id, count)
        self.outbox.notify()
        return ids

    def serve_commands(self, until, timeout=0.1):
        """Handle commands from ``events`` (the runner's part) until ``until`` is set."""
        while not until.is_set():
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                continue
            if isinstance(event, CommandReceived):
                self.commands.handle(event)

    def stop(self):
        self._until.set()
        if self._serving is not None:
            self._serving.join(5)
        self.health.stop()
        self.outbox.stop()
        self.link.stop()
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
