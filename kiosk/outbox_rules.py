"""The outbox's state machine: its states, which may follow which, what is due, and when a row
is resent. Standard library only; :mod:`kiosk.store` persists these states and
:mod:`kiosk.telemetry.outbox` (the pump) drives them, and neither spells a state itself.

A PUBACK is not delivery: a Mosquitto killed with kill -9 mid-drain lost 975–2,296 of 10,000
events it had already acknowledged. So a row goes ``pending`` → ``published`` (PUBACK) →
``confirmed`` only when the collector's ack names it, and a published row the collector has not
confirmed ``resend_after_s`` after its PUBACK is sent again (the collector dedupes by event id).
A PUBACK that refuses the row parks it as ``dead`` until a replay, once the cause is fixed.
"""

from dataclasses import dataclass
from enum import StrEnum

FIRST_REFUSAL_CODE = 0x80  # MQTT 5: every reason code from 0x80 up is a failure


class State(StrEnum):
    """An outbox row's state, as stored."""

    PENDING = "pending"  # not yet accepted by the broker: due as soon as the window has room
    PUBLISHED = "published"  # PUBACKed; waits for the collector's ack, resent when overdue
    CONFIRMED = "confirmed"  # the collector has it; purged later
    DEAD = "dead"  # the broker refused it; waits for a replay


#: Still on its way to the collector: the outbox's depth.
LIVE = (State.PENDING, State.PUBLISHED)


@dataclass(frozen=True)
class Move:
    """Rows in one of ``sources`` go to ``target`` (None: the state stays); a row in any other
    state is left as it is, so a late or repeated fact changes nothing."""

    sources: tuple
    target: State | None


SEND = Move(LIVE, None)  # handed to the link: one more attempt
ACCEPT = Move(LIVE, State.PUBLISHED)  # the broker's PUBACK
REFUSE = Move(LIVE, State.DEAD)  # a PUBACK with a refusal code
CONFIRM = Move((*LIVE, State.DEAD), State.CONFIRMED)  # the collector's ack
REPLAY = Move((State.DEAD,), State.PENDING)  # cmd/replay, after the ACL or credentials are fixed

#: Sent oldest first as the window has room.
DUE = State.PENDING
#: Sent again when the schedule names them overdue.
RESENDABLE = State.PUBLISHED


def is_refusal(reason_code):
    """True when a PUBACK's reason code refuses the message (e.g. 0x87 not authorized)."""
    return reason_code >= FIRST_REFUSAL_CODE


class ResendSchedule:
    """When each published row is due again: ``resend_after_s`` after its last PUBACK.

    Times are the caller's monotonic clock, never the wall clock (NTP steps a Pi's clock by
    hours after boot), so none survives a restart: the rows published before it are all due at
    once. Kept oldest first, so finding the overdue rows stops at the first that is not.
    """

    def __init__(self, resend_after_s, published_ids):
        self._resend_after_s = resend_after_s
        self._accepted_at = dict.fromkeys(published_ids, float("-inf"))

    def accepted(self, event_ids, now):
        """The broker PUBACKed these at ``now``."""
        for event_id in event_ids:
            self._accepted_at.pop(event_id, None)  # re-inserted last: the order stays by time
            self._accepted_at[event_id] = now

    def settled(self, event_ids):
        """These are no longer published (confirmed, dead, or gone): never due again."""
        for event_id in event_ids:
            self._accepted_at.pop(event_id, None)

    def overdue(self, now, limit, skip=()):
        """Up to ``limit`` event ids, oldest first, not in ``skip`` (in flight), whose PUBACK is
        ``resend_after_s`` old at ``now``."""
        cutoff = now - self._resend_after_s
        overdue = []
        for event_id, accepted_at in self._accepted_at.items():
            if accepted_at >= cutoff or len(overdue) >= limit:
                break
            if event_id not in skip:
                overdue.append(event_id)
        return overdue
