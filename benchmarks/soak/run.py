"""The soak: lanes, kiosks, a seeded fault schedule, then the reckoning and the privacy scan.

:func:`soak` is one run; ``python -m benchmarks.soak`` (``./dev soak``) and the short variant in
``tests/soak/test_soak.py`` call it. Faults run on their own threads at their scheduled times, one
at a time per target; every fault ends in its recovery, and the kiosks must reach idle again by
themselves (``kiosk run --keep-going`` fails the run if one does not).
"""

import json
import sqlite3
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.soak import schedule
from benchmarks.soak.kiosk_unit import KioskUnit
from benchmarks.soak.lane import Lane
from benchmarks.soak.reconcile import Committed, Reckoning, reckon
from kiosk.rigs.privacy_scan import MqttCapture, Needles, scan_bytes, scan_paths
from kiosk.store import DB_NAME

#: Card faults are held long enough for the kiosk to try at least one card under them.
CARD_HOLD_S = 10.0
#: The seed of every soak kiosk's repeat keys (``kiosk run --repeat-key-seed``), so the privacy
#: scan can look for the keys and every emulated card's hash under them.
REPEAT_KEY_SEED = "soak"
CLOCK_STEP_S = 3 * 3600


@dataclass
class Result:
    seed: int
    kiosks: int
    lanes: dict
    faults: Counter = field(default_factory=Counter)
    fault_errors: list = field(default_factory=list)
    unexpected_exits: int = 0
    recovered: int = 0
    redeliveries: int = 0  # visits a collector received again and stored once (by design)
    reckoning: Reckoning | None = None
    privacy_hits: list = field(default_factory=list)
    core_dumps: int = 0
    notes: list = field(default_factory=list)  # why kiosk processes ended by themselves
    drain_s: float | None = None
    wall_s: float = 0.0

    @property
    def clean(self):
        return (self.reckoning is not None and self.reckoning.clean and not self.privacy_hits
                and not self.fault_errors and self.drain_s is not None
                and not self.unexpected_exits and not self.core_dumps)

    def table(self):
        r = self.reckoning
        rows = [("visits thanked (citizens saw the thank-you)", r.thanked),
                ("visits committed by the kiosks", r.committed),
                ("visits stored by the collectors", r.collected),
                *((f"faults: {kind}", self.faults[kind]) for kind in schedule.KINDS),
                ("faults injected in all", sum(self.faults.values())),
                ("repetitions recovered after a fault", self.recovered),
                ("kiosk processes that ended by themselves early", self.unexpected_exits),
                ("deliveries a collector had already stored (absorbed)", self.redeliveries),
                ("lost", r.lost), ("duplicated", r.duplicated), ("uncommitted", r.uncommitted),
                ("period counts that disagree", r.count_gaps),
                ("privacy hits", len(self.privacy_hits)),
                ("kiosk core dumps (scanned too)", self.core_dumps),
                ("time to drain after the last fault (s)",
                 "not drained" if self.drain_s is None else f"{self.drain_s:.1f}"),
                ("wall time (s)", f"{self.wall_s:.0f}")]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"| {name:<{width}} | {value!s:>12} |" for name, value in rows)

    def as_json(self):
        data = asdict(self)
        data["faults"] = dict(self.faults)
        data["clean"] = self.clean
        return json.dumps(data, indent=2, default=str)


class Injector:
    """Applies a fault and its recovery; one lock per target keeps a target's faults apart."""

    def __init__(self, kiosks, lanes, result, *, card_hold_s=CARD_HOLD_S):
        self.kiosks, self.lanes, self.result = kiosks, lanes, result
        self.card_hold_s = card_hold_s
        self._locks = {name: threading.Lock() for name in [*kiosks, *lanes]}
        self._count_lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []
        self.last_recovered = None  # monotonic time the last fault ended

    def apply(self, fault):
        with self._locks[fault.target]:
            if self.stopping.is_set():
                return  # the run is being torn down: start nothing on closed parts
            try:
                if fault.kind in schedule.KIOSK_KINDS:
                    self._kiosk(self.kiosks[fault.target], fault)
                else:
                    self._lane(self.lanes[fault.target], fault)
            except Exception as exc:  # noqa: BLE001 - a fault that failed to apply is reported
                with self._count_lock:
                    self.result.fault_errors.append(f"{fault}: {exc!r}")
                return
            with self._count_lock:
                self.result.faults[fault.kind] += 1
                self.last_recovered = time.monotonic()

    def start(self, fault):
        thread = threading.Thread(target=self.apply, args=(fault,), daemon=True,
                                  name=f"fault-{fault.kind}")
        thread.start()
        self.threads.append(thread)

    def join(self):
        """Wait until every fault started has been applied and recovered."""
        for thread in self.threads:
            thread.join()

    def stop(self):
        """Apply no fault still waiting for its target; wait for those under way to recover.
        Called before anything closes, even after Ctrl-C."""
        self.stopping.set()
        self.join()

    def revive_dead(self):
        """Restart a kiosk that ended by itself (never one a fault is working on)."""
        for name, unit in self.kiosks.items():
            if self._locks[name].acquire(blocking=False):
                try:
                    unit.revive()
                finally:
                    self._locks[name].release()

    def _kiosk(self, unit, fault):
        """Each fault's recovery runs even when the fault itself failed half way, so a fault
        error never leaves a kiosk that cannot drain."""
        kind, hold = fault.kind, fault.hold_s
        card = unit.card.emulator
        if kind in ("kiosk_kill", "power_cut"):
            try:
                unit.kill()
                time.sleep(min(hold, 1.0))
                if kind == "power_cut":
                    unit.power_cut()
            finally:
                unit.restart()
            return
        undo = {"pcscd_kill": unit.card.start_pcscd, "card_pulled": card.clear_faults,
                "card_frozen": card.clear_faults, "card_garbage": card.clear_faults,
                "clock_step": lambda: unit.step_clock(0), "disk_full": unit.free_disk}[kind]
        try:
            if kind == "pcscd_kill":
                unit.card.kill_pcscd()
            elif kind == "clock_step":
                unit.step_clock(fault.sign * CLOCK_STEP_S)
            elif kind == "disk_full":
                unit.fill_disk()
            else:
                card.set_fault(**{"card_pulled": {"pull_after": 2},
                                  "card_frozen": {"frozen": True},
                                  "card_garbage": {"garbage": True}}[kind])
                hold = max(hold, self.card_hold_s)
            time.sleep(hold)
        finally:
            undo()

    @staticmethod
    def _lane(lane, fault):
        kind, hold = fault.kind, fault.hold_s
        if kind == "broker_stop":
            lane.stop_broker(hold)
        elif kind in ("broker_kill_kept", "broker_kill_lost"):
            lane.kill_broker(keep_persistence=kind == "broker_kill_kept", down_s=hold)
        elif kind == "collector_kill":
            lane.kill_collector(hold)
        elif kind == "collector_sigstop":
            lane.stop_collector(hold)
        elif kind == "collector_redeploy":
            lane.redeploy_collector(hold)
        else:
            mode = kind.removeprefix("net_")
            lane.network(mode, hold)


def committed_visits(unit):
    """The visits in a stopped kiosk's own database."""
    with sqlite3.connect(f"file:{unit.data / DB_NAME}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT event_id, period, period_s, outcome FROM visit").fetchall()
    return [Committed(*row) for row in rows]


def soak(workdir, *, seed, lanes=("sqlite", "postgres"), kiosks_per_lane=1, visits=10,
         faults_each=1, duration_s=30.0, hold_s=(2.0, 6.0), image_mb=64,
         card_hold_s=CARD_HOLD_S, drain_timeout_s=300.0, progress=print):
    """One soak run in ``workdir``; returns its :class:`Result`."""
    workdir = Path(workdir)
    started = time.monotonic()
    say = progress

    def progress(text):
        say(f"[{time.monotonic() - started:6.1f} s] {text}")

    result = Result(seed=seed, kiosks=len(lanes) * kiosks_per_lane,
                    lanes={f"lane-{i}": store for i, store in enumerate(lanes)})
    with ExitStack() as stack:
        lane_of, captures = {}, []
        for i, store in enumerate(lanes):
            name = f"lane-{i}"
            lane = Lane(workdir / name, store=store, seed=seed + i)
            stack.callback(lane.close)
            lane.start()
            lane_of[name] = lane
            capture = MqttCapture(lane.broker, name=f"privacy-{name}")
            stack.callback(capture.close)
            capture.start()
            if not capture.wait_for_subscribed(30):
                raise RuntimeError(f"the privacy capture on {name} did not subscribe")
            captures.append(capture)
        progress(f"soak: {len(lane_of)} lane(s) up ({', '.join(lanes)})")
        units = {}
        for i in range(len(lanes) * kiosks_per_lane):
            kiosk_id = f"soak-kiosk-{i:02d}"
            unit = KioskUnit(workdir / kiosk_id, kiosk_id, lane_of[f"lane-{i % len(lanes)}"],
                             visits=visits, image_mb=image_mb,
                             repeat_key_seed=REPEAT_KEY_SEED)
            stack.callback(unit.close)
            unit.start_card()
            units[kiosk_id] = unit
        for unit in units.values():
            unit.start()
        progress(f"soak: {len(units)} kiosk(s) playing {visits} visit(s) each")
        faults = schedule.plan(seed, each=faults_each, duration_s=duration_s, kiosks=units,
                               lanes=lane_of, hold_s=hold_s)
        injector = Injector(units, lane_of, result, card_hold_s=card_hold_s)
        stack.callback(injector.stop)  # first on the way out, even after Ctrl-C
        t0 = time.monotonic()
        for fault in faults:
            while time.monotonic() < t0 + fault.at_s:
                injector.revive_dead()
                time.sleep(min(0.5, max(0.0, t0 + fault.at_s - time.monotonic())))
            injector.start(fault)
            if len(injector.threads) % 10 == 0:
                done = sum(1 for t in injector.threads if not t.is_alive())
                progress(f"soak: {len(injector.threads)}/{len(faults)} faults started, {done} "
                         f"over; {sum(u.done for u in units.values())} repetitions played")
        injector.join()
        last_fault = injector.last_recovered or time.monotonic()
        progress(f"soak: all {len(faults)} faults over; waiting for the kiosks to finish "
                 "and drain")
        drained = all(unit.wait_finished(drain_timeout_s) for unit in units.values())
        if drained:
            result.drain_s = time.monotonic() - last_fault
        for unit in units.values():
            unit.stop()
            result.unexpected_exits += unit.unexpected_exits
            result.recovered += unit.recovered
            result.notes += unit.exit_notes
        thanked = {kiosk_id: unit.thanked for kiosk_id, unit in units.items()}
        committed = {kiosk_id: committed_visits(unit) for kiosk_id, unit in units.items()}
        collected, counts = [], {}
        for lane in lane_of.values():
            collected += [(v.kiosk_id, v.event_id, v.instance, v.period) for v in lane.visits()]
            counts.update({(c.kiosk_id, c.instance, c.period): c.visits for c in lane.counts()})
            result.redeliveries += lane.duplicates()
        result.reckoning = reckon(thanked, committed, collected, counts)
        progress("soak: scanning every byte written for the citizens' data ...")
        result.privacy_hits = privacy_scan(units, lane_of.values(), captures, time.monotonic()
                                           - started)
        result.core_dumps = sum(1 for unit in units.values() for _ in unit.workdir.glob("core*"))
        progress(f"soak: scan done, {len(result.privacy_hits)} finding(s); stopping")
    result.wall_s = time.monotonic() - started
    return result


def privacy_scan(units, lanes, captures, elapsed_s):
    """Every finding of any emulated citizen's data: the kiosks' disk images (unmounted, so
    what the disk holds, free blocks included), logs, card stacks and the words of every screen
    they showed (``kiosk run --scene-text``); every file of every
    lane (SQLite with its WAL, PostgreSQL's data directory, broker and collector logs); every
    payload and topic that crossed the brokers."""
    # One key per repeat window (a minute here) since the start, and a margin; a restarted
    # kiosk starts the same sequence again.
    needles = Needles.for_profiles(repeat_key_seed=REPEAT_KEY_SEED,
                                   repeat_keys=int(elapsed_s // 60) + 5)
    for unit in units.values():
        unit.unmount()
    hits = scan_paths(needles, [unit.workdir for unit in units.values()])
    hits += scan_paths(needles, [path for lane in lanes for path in lane.log_paths()])
    for capture in captures:
        for topic, payload in capture.payloads():
            hits += scan_bytes(needles, topic, payload) + scan_bytes(needles, "a topic", topic)
    return [f"{where}: {label}" for where, label in hits]
