"""The soak's fault schedule: which fault hits what, and when. Pure: a seed gives one schedule.

Every kind issue 15 names is here. A fault has a target (a kiosk or a lane, the central
stack a group of kiosks reports to) and a time from the start of the faults; faults on one
target never overlap (the runner holds a lock per target), faults on different targets may.
"""

import random
from dataclasses import dataclass

#: Faults on one kiosk (its process, its disk, its card reader, its clock).
KIOSK_KINDS = (
    "kiosk_kill",        # kill -9 of the kiosk process, then a restart
    "power_cut",         # kill -9, the store's disk image as it stood, journal replay, restart
    "pcscd_kill",        # the kiosk's PC/SC daemon killed, then started again
    "card_pulled",       # the next card is pulled after two APDUs
    "card_frozen",       # the next card stops answering
    "card_garbage",      # the next card answers nonsense
    "clock_step",        # the kiosk's wall clock stepped +3 h or -3 h, then back
    "disk_full",         # the kiosk's data partition filled to its floor, then freed
)
#: Faults on one lane (broker, collector, the link between the kiosks and the broker).
LANE_KINDS = (
    "broker_stop",       # a clean stop (persistence written), then a start
    "broker_kill_kept",  # kill -9, restarted with its persistence file
    "broker_kill_lost",  # kill -9, restarted without it
    "collector_kill",    # kill -9, a new collector on the same store
    "collector_sigstop",  # SIGSTOP, held, SIGCONT
    "collector_redeploy",  # SIGTERM, a new collector process
    "net_cut",           # every connection reset, new ones refused
    "net_stall",         # no byte moves
    "net_lossy",         # retransmission delays and the odd reset
    "net_throttle",      # 2,000 bytes/s each way
)
KINDS = KIOSK_KINDS + LANE_KINDS


@dataclass(frozen=True)
class Fault:
    at_s: float      # seconds after the faults begin
    kind: str
    target: str      # a kiosk id or a lane name
    hold_s: float    # how long the fault stays before recovery
    sign: int = 1    # clock_step: +1 or -1


def plan(seed, *, each, duration_s, kiosks, lanes, hold_s=(2.0, 6.0)):
    """``each`` faults of every kind spread at random over ``duration_s``, each on a random
    kiosk or lane; sorted by time."""
    if not kiosks or not lanes:
        raise ValueError("a soak needs at least one kiosk and one lane")
    rng = random.Random(seed)
    faults = []
    for kind in KINDS:
        targets = kiosks if kind in KIOSK_KINDS else lanes
        for _ in range(each):
            faults.append(Fault(
                at_s=round(rng.uniform(0, duration_s), 2), kind=kind,
                target=rng.choice(list(targets)), hold_s=round(rng.uniform(*hold_s), 2),
                sign=rng.choice((1, -1))))
    return sorted(faults, key=lambda fault: (fault.at_s, fault.kind, fault.target))
