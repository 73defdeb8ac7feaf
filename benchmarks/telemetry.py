"""Telemetry drain: queued visits published, stored by the collector and confirmed at the kiosk.

The clock runs from starting the outbox pump until the kiosk's store holds no unconfirmed row,
so a visit counts only once the collector has committed it and its ack came back: the rate a
kiosk can catch up after a long outage. Real Mosquitto, real collector, real SQLite files, all
on this machine (the broker and collector share its cores with the kiosk side).
"""

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import tomli_w
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk import __version__, config
from kiosk.fleet.broker import Broker
from kiosk.fleet.collector import Collector
from kiosk.flow import VisitRecord
from kiosk.store import Store
from kiosk.telemetry import topics
from kiosk.telemetry.mqtt import MqttLink
from kiosk.telemetry.outbox import Outbox

KIOSK = "bench-01"
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "kiosk.example.toml"
RECORD = VisitRecord(outcome="completed", step="thank_you", verified=True, expired=False,
                     service_id="id-card", copy_answer="none", rating=4, reason=None,
                     language="th", duration_s=37.0)
TARGET_PER_S = 2000


def _config(root, broker, window):
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    password_file = root / "password"
    password_file.write_text(broker.add_kiosk(KIOSK))
    raw["kiosk"]["id"] = KIOSK
    raw["storage"]["data_dir"] = str(root / "data")
    raw["mqtt"].update(host="127.0.0.1", port=broker.port, tls=False,
                       password_file=str(password_file))
    raw["telemetry"]["inflight_window"] = window
    return config.parse(tomli_w.dumps(raw), source="benchmark")


def _fill(store, count):
    def build(row):
        payload = topics.visit_payload(
            event_id=row.event_id, seq=row.seq, epoch=row.epoch, mode=row.mode,
            outcome=row.outcome, step=row.step, verified=row.verified, expired=row.expired,
            service_id=row.service_id, copy_answer=row.copy_answer, rating=row.rating,
            reason=row.reason, language=row.language, duration_s=row.duration_s,
            stamp=topics.stamp(datetime.now(UTC), False, 1.0))
        return topics.kiosk_topic(KIOSK, "visit"), json.loads(payload)

    with store.atomic():
        for _ in range(count):
            store.record_visit(RECORD, build_payload=build)


class InstantAcker:
    """Diagnosis only, never a substitute for the collector: acks each visit at once without
    storing it, so the kiosk side's own ceiling shows apart from the collector's."""

    def __init__(self, broker):
        self._broker = broker
        self._visits = queue.Queue()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="collector",
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(*broker.collector_credentials)
        self._client.on_connect = lambda c, *_: c.subscribe(topics.KIOSK_SUBSCRIPTION, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda c, u, message: self._visits.put(message)
        self.stored = 0

    def __enter__(self):
        self._client.connect("127.0.0.1", self._broker.port)
        self._client.loop_start()
        threading.Thread(target=self._ack, daemon=True).start()
        return self

    def wait_for_connected(self, timeout):
        return self._subscribed.wait(timeout)

    def _ack(self):
        while True:
            batch = [self._visits.get()]
            while len(batch) < topics.MAX_ACK_IDS and not self._visits.empty():
                batch.append(self._visits.get())
            ids = [json.loads(m.payload)["event_id"] for m in batch if m.topic.endswith("/visit")]
            if ids:
                self.stored += len(ids)
                self._client.publish(topics.ack_topic(KIOSK), topics.ack_payload(ids), qos=1)

    def __exit__(self, *exc):
        self._client.disconnect()
        self._client.loop_stop()


def drain(count, *, window=64, is_collector_real=True, timeout_s=600):
    """Seconds to drain and confirm ``count`` queued visits; checks every one was acked.

    The kiosk side runs in its own process, as on a real kiosk: sharing one interpreter (and
    its GIL) with the collector would measure the two fighting over it.
    """
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        root = Path(tmp)
        with Broker(root / "broker") as broker:
            cfg = _config(root, broker, window)
            store = Store.open(cfg.storage.data_dir, min_free_mb=1)
            _fill(store, count)
            store.close()
            config_file = root / "kiosk.toml"
            config_file.write_text(config.dumps(cfg, mask_secrets=False))
            acker = (Collector(root / "fleet.db", "127.0.0.1", broker.port,
                               *broker.collector_credentials)
                     if is_collector_real else InstantAcker(broker))
            with acker:
                if not acker.wait_for_connected(10):
                    raise RuntimeError("collector did not connect")
                kiosk = subprocess.run(
                    [sys.executable, "-m", "benchmarks.telemetry", "--kiosk-side",
                     str(config_file), str(timeout_s)],
                    capture_output=True, text=True, timeout=timeout_s + 30,
                    cwd=Path(__file__).resolve().parents[1])
                if kiosk.returncode != 0:
                    raise RuntimeError(f"kiosk side failed: {kiosk.stderr.strip()[-2000:]}")
                stored = (acker.db.Visit.select().count() if is_collector_real
                          else acker.stored)
    if stored < count:
        raise RuntimeError(f"collector stored {stored} of {count} visits")
    return float(kiosk.stdout.split()[-1])


def kiosk_side(config_file, timeout_s):
    """Drain the outbox under ``config_file``'s data dir; returns seconds until all confirmed."""
    cfg = config.load(config_file)
    store = Store.open(cfg.storage.data_dir, min_free_mb=1)
    window = cfg.telemetry.inflight_window
    outbox = Outbox(store, window=window, resend_after_s=cfg.telemetry.resend_after_s)
    link = MqttLink(cfg.mqtt, cfg.kiosk.id, next_epoch=store.next_epoch, version=__version__,
                    facts=outbox.put, put=lambda event: None, pin=topics.pin_payload(cfg),
                    inflight_window=window)
    started = time.perf_counter()
    outbox.start(link)
    link.start()
    deadline = time.monotonic() + timeout_s
    while store.outbox_stats().depth:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not drained in {timeout_s} s")
        time.sleep(0.05)  # polling interval of the measurement loop (a count query)
    elapsed = time.perf_counter() - started
    outbox.stop()
    link.stop()
    store.close()
    return elapsed


def run(quick=False):
    """The markdown section for docs/benchmarks.md."""
    count = 2_000 if quick else 10_000
    rows = []
    for window in (64,) if quick else (50, 64, 100):
        elapsed = drain(count, window=window)
        rows.append(f"| real collector | {window} | {count:,} | {elapsed:.2f} | "
                    f"{count / elapsed:,.0f} |")
    elapsed = drain(count, is_collector_real=False)
    rows.append(f"| acks at once, nothing stored (diagnosis) | 64 | {count:,} | {elapsed:.2f} | "
                f"{count / elapsed:,.0f} |")
    return "\n".join([
        "## Telemetry: outbox drain, confirmed by the collector",
        "",
        f"{count:,} visits queued in the kiosk's SQLite outbox, published over MQTT 5 QoS 1 to a "
        "local Mosquitto, committed by the collector and confirmed at the kiosk by the "
        f"collector's ack. Target: at least {TARGET_PER_S:,} msg/s. The kiosk side runs in its "
        "own process; the last row replaces the collector by a stand-in that acks without "
        "storing, to show the kiosk side's own ceiling.",
        "",
        "| acknowledged by | in-flight window | visits | seconds | confirmed msg/s |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--kiosk-side"]:
        print(f"{kiosk_side(sys.argv[2], float(sys.argv[3])):.4f}")
    else:
        print(run(quick="--quick" in sys.argv[1:]))
