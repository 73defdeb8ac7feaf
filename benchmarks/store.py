"""Store housekeeping: what compaction, purge and the TRUNCATE checkpoint cost with 100,000
visits.

They used to run on the main loop, which must draw a frame every 1/30 s. Real SQLite files in
a temporary directory on this machine's disk; ``synchronous=FULL`` and ``secure_delete`` as the
kiosk runs them.
"""

import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kiosk.errors import StoreError
from kiosk.flow import VisitRecord
from kiosk.period import Period
from kiosk.store import Store

FRAME_MS = 1000 / 30
RECORD = VisitRecord(outcome="completed", step="thank_you", verified=True, expired=False,
                     service_id="id-card", copy_answer="none", rating=4, reason=None,
                     language="th", duration_s=37.0)


class _Clock:
    def __init__(self):
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


def record(store, clock):
    return store.record_visit(RECORD, topic="citizeninfo/v1/kiosk/bench/visit",
                              period=Period.of(clock(), store.period_s), mode="production")


def _writes_during(store, clock):
    """Milliseconds of each visit recorded here while another thread purges."""
    done = threading.Event()

    def purge():
        try:
            store.purge()
        finally:
            store.close()  # that thread's own connection
            done.set()

    waits = []
    purging = threading.Thread(target=purge)
    purging.start()
    while not done.is_set():
        waits.append(_ms(lambda: record(store, clock))[0])
    purging.join()
    return waits


def _ms(action):
    started = time.perf_counter()
    result = action()
    return (time.perf_counter() - started) * 1000, result


def measure(count):
    """Milliseconds of each housekeeping step on a store holding ``count`` visits."""
    clock = _Clock()
    timings = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = Store.open(Path(tmp), min_free_mb=1, clock=clock)
        with store.atomic():
            ids = [record(store, clock).event_id for _ in range(count)]
        store.checkpoint()
        # After a period closes the housekeeper rewrites the file in key order (issue 11).
        timings[f"compact (VACUUM, then TRUNCATE checkpoint), {count:,} visits"], _ = _ms(
            store.compact)
        timings["purge, nothing to delete (all unconfirmed)"], _ = _ms(store.purge)
        timings["checkpoint, WAL already empty"], _ = _ms(store.checkpoint)
        store.confirm(ids)
        clock.now += timedelta(days=store.retention_days, seconds=1)
        timings[f"purge, {count:,} visits and messages due"], purged = _ms(store.purge)
        assert (purged.visits, purged.messages) == (count, count), purged
        wal_mb = Path(f"{store.path}-wal").stat().st_size / 2**20
        timings[f"checkpoint after that purge ({wal_mb:.0f} MB WAL)"], _ = _ms(store.checkpoint)
        # What a citizen would feel: visits recorded on the main loop while the housekeeping
        # thread purges as many rows again (in chunks, each a short hold of the write lock).
        with store.atomic():
            ids = [record(store, clock).event_id for _ in range(count)]
        store.confirm(ids)
        clock.now += timedelta(days=store.retention_days, seconds=1)
        waits = _writes_during(store, clock)
        timings[f"longest visit write during that purge ({len(waits)} writes)"] = max(waits)
        timings["median visit write during that purge"] = sorted(waits)[len(waits) // 2]
        # Another connection holding the write lock: purge waits for SQLite's busy timeout.
        blocker = sqlite3.connect(store.path)
        blocker.execute("BEGIN IMMEDIATE")
        store.close()
        store._db.timeout = 1  # reconnects with a shorter wait than the kiosk's 10 s
        started = time.perf_counter()
        try:
            store.purge()
        except StoreError:  # "database is locked": the wait is what is measured
            pass
        timings["purge while another connection writes (busy timeout set to 1 s)"] = (
            time.perf_counter() - started) * 1000
        blocker.rollback()
        blocker.close()
        store.close()
    return timings


def run(quick=False):
    """The markdown section for docs/benchmarks.md."""
    count = 20_000 if quick else 100_000
    rows = [f"| {step} | {ms:,.1f} | {ms / FRAME_MS:,.1f} |"
            for step, ms in measure(count).items()]
    return "\n".join([
        "## Store housekeeping (compact, purge, TRUNCATE checkpoint)",
        "",
        f"One store with {count:,} visits and their outbox messages, as a kiosk holds after a "
        "long collector outage; each step once, on this machine's disk. A frame at 30 fps is "
        f"{FRAME_MS:.1f} ms.",
        "",
        "| step | ms | frames |",
        "|---|---:|---:|",
        *rows,
    ])


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
