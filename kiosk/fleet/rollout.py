"""A staged rollout's rules, pure: which kiosks a percentage takes, what each kiosk's update
state counts as, and when the rollout must pause itself. Standard library only; the fleet
database (:mod:`kiosk.fleet.db`), the ``kiosk-fleet rollout`` verb (:mod:`kiosk.fleet.rollouts`)
and the console apply them.

The order of a rollout's kiosks is a hash of the rollout id and the kiosk id: stable (the same
rollout always takes the same kiosks first, so widening keeps those already updated), spread
(no province or department is always first, as an order by kiosk id would make it), and
different per rollout (one unlucky kiosk is not the canary of every release).
"""

import hashlib
import math
import secrets
import string
from fractions import Fraction

from kiosk.telemetry.topics import UPDATE_STATES

#: A rollout's own states: sending (``active``), stopped by ops or by its rollbacks
#: (``paused``), every targeted kiosk healthy on the version (``done``; widening reopens it).
ROLLOUT_STATES = ("active", "paused", "done")
#: A targeted kiosk's state: ``sent`` until its first health report about the release, then the
#: updater's own (:data:`kiosk.telemetry.topics.UPDATE_STATES`).
KIOSK_STATES = ("sent", *UPDATE_STATES)
#: Those of a kiosk that has not switched to the release: a pause withdraws their command.
#: A kiosk that rolled back or refused is among them: left retained, its command would be
#: tried again at every reconnect.
NOT_SWITCHED = ("sent", "requested", "downloading", "verified", "waiting", "rolled_back",
                "refused")
#: Those a resume sends the command to again: not yet switched, and not failed with it
#: (and those that refused it because it was withdrawn: :func:`is_withdrawal`).
RESENT = ("sent", "requested", "downloading", "verified", "waiting")
#: How the updater's reason of a ``refused`` begins when the kiosk's request was withdrawn (a
#: pause) before the kiosk was stopped: nothing was changed, the release did not fail, and the
#: updater tries the same request again when it is sent again.
WITHDRAWN_PREFIX = "withdrawn"
#: How it begins when the failure was not the release's (the download failed after its
#: retries, no room, the wait limit): the updater tries the same request again at its next run.
RETRY_PREFIX = "retry later"
#: The states the totals count, in order: a refusal because of a withdrawal apart, as
#: ``withdrawn``, and one the updater will try again, as ``retrying`` (:func:`shown_state`),
#: never among the ``refused`` that failed.
TOTAL_STATES = (*RESENT, "retrying", "withdrawn", "switched", "healthy", "rolled_back",
                "refused")
#: Default share of targeted kiosks that may roll back before the rollout pauses itself.
DEFAULT_THRESHOLD_PERCENT = 20.0


def new_rollout_id():
    """``r-`` and 16 lowercase letters: no digit, so never a run the contract refuses as a
    citizen ID, and an id of the contract's token shape."""
    return "r-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))


def check_percent(percent, what="percent"):
    """``percent`` as a number in (0, 100], else ValueError naming ``what``."""
    try:
        value = float(percent)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number from 0 (excluded) to 100") from None
    if not 0 < value <= 100 or math.isnan(value):
        raise ValueError(f"{what} must be a number from 0 (excluded) to 100")
    return value


def order(rollout_id, kiosk_ids):
    """``kiosk_ids`` in the rollout's stable order (SHA-256 of ``rollout_id/kiosk_id``)."""
    def key(kiosk_id):
        return hashlib.sha256(f"{rollout_id}/{kiosk_id}".encode()).hexdigest(), kiosk_id

    return sorted(set(kiosk_ids), key=key)


def share(percent, eligible):
    """How many of ``eligible`` kiosks ``percent`` takes: rounded up (10 % of 50 is 5, 10 % of
    51 is 6), so any percentage above 0 of a non-empty set takes at least one. Exact: a
    percentage like 33.3 is read as the decimal it was written as, not a float's neighbour."""
    return math.ceil(Fraction(str(check_percent(percent))) * eligible / 100)


def select(rollout_id, eligible, percent, already=()):
    """The kiosks the rollout targets at ``percent`` of ``eligible`` (kiosk ids), in its order:
    those ``already`` targeted first (a widening never drops one), then the next of the order
    until :func:`share` is reached. With the same eligible kiosks, a higher percentage's
    selection starts with a lower one's."""
    kept = order(rollout_id, already)
    wanted = share(percent, len(set(eligible)))
    chosen = set(kept)
    for kiosk_id in order(rollout_id, eligible):
        if len(kept) >= wanted:
            break
        if kiosk_id not in chosen:
            kept.append(kiosk_id)
            chosen.add(kiosk_id)
    return kept


def state_of(rollout_version, report_version, update_state):
    """The targeted kiosk's state from one health report, or None when the report says nothing
    of this rollout: its ``update`` is about another version, or it says ``healthy`` while the
    version running (``report_version``, health's top level) is not the rollout's yet."""
    if update_state.version != rollout_version:
        return None
    if update_state.state == "healthy" and report_version != rollout_version:
        return None
    return update_state.state


def is_withdrawal(state, reason):
    """Whether a kiosk's state and reason say it refused because its command was withdrawn:
    not a final failure (the updater tries the request again when it is sent again)."""
    return state == "refused" and (reason or "").startswith(WITHDRAWN_PREFIX)


def is_retrying(state, reason):
    """Whether a kiosk refused for a reason that was not the release's, and its updater will
    try the same request again: not a final failure either."""
    return state == "refused" and (reason or "").startswith(RETRY_PREFIX)


def is_resent(state, reason):
    """Whether ``resume`` sends the command again to a kiosk in this state: not switched and
    not failed with it (:data:`RESENT`), or refused only because the command was withdrawn
    (whatever step it had reached when the pause took it back) or for now."""
    return state in RESENT or is_withdrawal(state, reason) or is_retrying(state, reason)


def shown_state(state, reason):
    """The state the totals count a kiosk in: ``withdrawn`` for :func:`is_withdrawal`,
    ``retrying`` for :func:`is_retrying`."""
    if is_withdrawal(state, reason):
        return "withdrawn"
    return "retrying" if is_retrying(state, reason) else state


def totals(states):
    """``{state: kiosks}`` for every state of :data:`TOTAL_STATES`, in its order; ``states``
    as :func:`shown_state` gives them."""
    counted = dict.fromkeys(TOTAL_STATES, 0)
    for state in states:
        counted[state] = counted.get(state, 0) + 1
    return counted


def is_past_threshold(states, threshold_percent):
    """Whether more than ``threshold_percent`` of the targeted kiosks (their ``states``) rolled
    back: 2 of 5 is past 20 %, 1 of 5 is not."""
    states = list(states)
    rolled_back = sum(state == "rolled_back" for state in states)
    return bool(states) and rolled_back * 100 > Fraction(str(threshold_percent)) * len(states)


def is_done(states):
    """Every targeted kiosk is healthy on the release (one that refused because its command
    was withdrawn is waiting for a resume, not done)."""
    states = list(states)
    return bool(states) and all(state == "healthy" for state in states)


def pause_reason(states, threshold_percent):
    """Why the rollout paused itself, in words an operator reads (counts, never a kiosk's
    data)."""
    states = list(states)
    rolled_back = sum(state == "rolled_back" for state in states)
    return (f"{rolled_back} of {len(states)} targeted kiosks rolled back, more than the "
            f"threshold of {threshold_percent:g} %")
