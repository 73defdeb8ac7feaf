"""Telemetry drain: queued visits published, stored by the collector and confirmed at the kiosk.

The clock runs from starting the outbox pump until the kiosk's store holds no unconfirmed row,
so a visit counts only once the collector has committed it and its ack came back: the rate a
kiosk can catch up after a long outage. Real Mosquitto, real collector, real SQLite files, all
on this machine (the broker and collector share its cores with the kiosk side).
"""

import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tomli_w

from kiosk import config
from kiosk.assemble import Telemetry
from kiosk.fleet.collector import Collector
from kiosk.flow import VisitRecord
from kiosk.period import Period
from kiosk.rigs.broker import Broker
from kiosk.runner import visit_message
from kiosk.store import Store
from kiosk.telemetry import topics

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
    """``count`` visits of a period that ended long ago, closed: all due at once, as after a
    long outage."""
    now = datetime.now(UTC)
    past = Period.of(now - timedelta(seconds=2 * store.period_s), store.period_s)
    with store.atomic():
        for _ in range(count):
            store.record_visit(RECORD, **visit_message(KIOSK, "production"), period=past)
        store.close_periods(Period.of(now, store.period_s).start,
                            topic=topics.kiosk_topic(KIOSK, "period"), mode="production")


def drain(count, *, window=64, timeout_s=600):
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
            with Collector(root / "fleet.db", "127.0.0.1", broker.port,
                           *broker.collector_credentials) as collector:
                if not collector.wait_for_connected(10):
                    raise RuntimeError("collector did not connect")
                kiosk = subprocess.run(
                    [sys.executable, "-m", "benchmarks.telemetry", "--kiosk-side",
                     str(config_file), str(timeout_s)],
                    capture_output=True, text=True, timeout=timeout_s + 30,
                    cwd=Path(__file__).resolve().parents[1])
                if kiosk.returncode != 0:
                    raise RuntimeError(f"kiosk side failed: {kiosk.stderr.strip()[-2000:]}")
                stored = collector.db.FleetVisit.select().count()
    if stored < count:
        raise RuntimeError(f"collector stored {stored} of {count} visits")
    return float(kiosk.stdout.split()[-1])


def kiosk_side(config_file, timeout_s):
    """Drain the outbox under ``config_file``'s data dir; returns seconds until all confirmed."""
    cfg = config.load(config_file)
    store = Store.open(cfg.storage.data_dir, min_free_mb=10)
    telemetry = Telemetry(cfg, store, lambda fact: None,
                          remote_path=config.remote_layer_path(cfg))
    started = time.perf_counter()
    telemetry.start()
    deadline = time.monotonic() + timeout_s
    while (stats := store.outbox_stats()).depth or stats.held:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not drained in {timeout_s} s")
        time.sleep(0.05)  # polling interval of the measurement loop (a count query)
    elapsed = time.perf_counter() - started
    telemetry.stop()
    store.close()
    return elapsed


def run(quick=False):
    """The markdown section for docs/benchmarks.md."""
    count = 2_000 if quick else 10_000
    rows = []
    for window in (64,) if quick else (50, 64, 100):
        elapsed = drain(count, window=window)
        rate = count / elapsed
        rows.append(f"| {window} | {count:,} | {elapsed:.2f} | {rate:,.0f} | "
                    f"{rate / TARGET_PER_S:.2f}× |")
    return "\n".join([
        "## Telemetry: outbox drain, confirmed by the collector",
        "",
        f"{count:,} visits queued in the kiosk's SQLite outbox, published over MQTT 5 QoS 1 to a "
        "local Mosquitto, committed by the collector and confirmed at the kiosk by the "
        f"collector's ack. Target: at least {TARGET_PER_S:,} msg/s. The kiosk side runs in its "
        "own process with the runner's own wiring (`kiosk.assemble.Telemetry`); broker, collector "
        "and kiosk share this machine's cores.",
        "",
        "| in-flight window | visits | seconds | confirmed msg/s | vs. target |",
        "|---:|---:|---:|---:|---:|",
        *rows,
    ])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--kiosk-side"]:
        print(f"{kiosk_side(sys.argv[2], float(sys.argv[3])):.4f}")
    else:
        print(run(quick="--quick" in sys.argv[1:]))
