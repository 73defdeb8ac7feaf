"""Which alarms a kiosk's state calls for now: the thresholds and the conditions, pure.

The collector evaluates these on its worker thread (:meth:`kiosk.fleet.db.FleetDb.update_alarms`)
and keeps a raised / cleared history: an alarm is raised once when its condition starts and
cleared when it ends. Thresholds are in seconds, megabytes or counts, so tests use short ones.

One alarm is about the fleet, not a kiosk: ``crl_expiring`` (:func:`fleet_conditions`), the
agency CA's revocation list nearing its ``nextUpdate``, past which the broker refuses every
kiosk certificate. It is stored like the others, under :data:`FLEET_SUBJECT` in place of a
kiosk id: ``ca``, the signing service's account name, which no kiosk may have. A retired kiosk
(``kiosk-fleet revoke``) raises no alarm; its open ones are cleared.
"""

import datetime as dt
from dataclasses import dataclass, fields

from kiosk.accounts import CA

#: Every kind, in the order ``kiosk-fleet status`` shows them.
KINDS = ("silent", "reader_missing", "disk_low", "outbox_growing", "dead_letters",
         "clock_unsynced", "instance_changed", "period_count_mismatch", "cert_expiring",
         "crl_expiring")
#: The kinds about the fleet, not one kiosk (stored under :data:`FLEET_SUBJECT`).
FLEET_KINDS = ("crl_expiring",)
#: What the fleet's own alarms are stored under in place of a kiosk id (a reserved account
#: name, so never a kiosk's).
FLEET_SUBJECT = CA
#: Reader states that mean no card can be read.
READER_MISSING = ("no_reader", "error")


@dataclass(frozen=True)
class Thresholds:
    """When each alarm starts; ``kiosk-fleet collect --alarm-<name>`` sets one."""

    silent_s: float = 600.0  # no message from the kiosk for this long
    disk_low_mb: float = 500.0  # free disk below this
    outbox_depth: int = 500  # visits and counts released but not acknowledged, above this
    outbox_oldest_s: float = 3600.0  # or the oldest of them waiting longer than this
    dead_letters: int = 0  # dead letters above this
    instance_changed_s: float = 86400.0  # how long an instance change stays raised
    # The kiosk's client certificate expires in less than this (30 days: time to provision
    # and send a new one before the kiosk can no longer connect).
    cert_expiring_s: float = 30 * 86400.0
    # The newest CRL's nextUpdate is less than this away (7 days: the hourly refresh re-issues
    # 15 days ahead, so this means it has failed for a week).
    crl_expiring_s: float = 7 * 86400.0

    def __post_init__(self):
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"alarm threshold {f.name} must be >= 0")


DEFAULT_THRESHOLDS = Thresholds()


def _age_s(text, now):
    return (now - dt.datetime.fromisoformat(text)).total_seconds()


def conditions(kiosk, verdicts, instance_changed_at, now, thresholds, *, cert_not_after=None,
               cert_reported=None):
    """``{kind: detail}`` of the alarms ``kiosk`` (a KioskRow) calls for at ``now`` (aware).

    ``verdicts`` is its ``{verdict: periods}``; ``instance_changed_at`` the collector clock of
    its latest instance change (None if never); ``cert_not_after`` the expiry (RFC 3339 UTC
    text) of its newest client certificate recorded, None for a kiosk with none (a password
    account); ``cert_reported`` the expiry of the certificate the kiosk says it connects with
    (its latest health's ``cert_expires``), None from kiosks that do not say. The kiosk's word
    wins: a renewal is recorded when it is signed, and may never be installed. The health
    conditions wait for a first health report (``kiosk.reader`` None before); clock_synced is
    also taken from status messages.
    """
    t = thresholds
    found = {}
    if kiosk.last_seen and _age_s(kiosk.last_seen, now) > t.silent_s:
        found["silent"] = (f"no message for {_age_s(kiosk.last_seen, now):.0f} s "
                           f"(state {kiosk.state or 'unknown'})")
    if kiosk.reader is not None:
        if kiosk.reader in READER_MISSING:
            found["reader_missing"] = f"reader {kiosk.reader}"
        if kiosk.disk_free_mb < t.disk_low_mb:
            found["disk_low"] = f"{kiosk.disk_free_mb:g} MB free"
        oldest = kiosk.outbox_oldest_s
        if kiosk.outbox_depth > t.outbox_depth or (oldest or 0) > t.outbox_oldest_s:
            found["outbox_growing"] = (f"{kiosk.outbox_depth} waiting, oldest "
                                       f"{'-' if oldest is None else f'{oldest:g} s'}")
        if kiosk.dead_letters > t.dead_letters:
            found["dead_letters"] = f"{kiosk.dead_letters} dead letters"
    if kiosk.clock_synced is False:
        found["clock_unsynced"] = "the kiosk's clock is not synced"
    if instance_changed_at and _age_s(instance_changed_at, now) <= t.instance_changed_s:
        found["instance_changed"] = f"instance changed at {instance_changed_at}"
    mismatched = {v: verdicts[v] for v in ("short", "over") if verdicts.get(v)}
    if mismatched:
        found["period_count_mismatch"] = ", ".join(f"{n} periods {v}"
                                                   for v, n in mismatched.items())
    expiry = cert_reported or cert_not_after
    if expiry is not None:
        left_s = -_age_s(expiry, now)
        if left_s < t.cert_expiring_s:
            found["cert_expiring"] = (f"expires {_day(expiry)} (in {int(left_s // 86400)} d)"
                                      if left_s > 0 else f"expired {_day(expiry)}")
            if cert_reported and cert_not_after and _later(cert_not_after, cert_reported):
                found["cert_expiring"] += (f"; the one expiring {_day(cert_not_after)} is "
                                           "signed but not installed")
    return found


def _day(text):
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC).date()


def _later(text, than):
    return dt.datetime.fromisoformat(text) > dt.datetime.fromisoformat(than)


def fleet_conditions(crl_next_update, now, thresholds):
    """``{kind: detail}`` of the fleet's own alarms at ``now``: ``crl_expiring`` when the newest
    CRL's ``nextUpdate`` (RFC 3339 UTC text; None when no CRL was ever issued, a fleet without
    client certificates) is less than ``crl_expiring_s`` away or past."""
    if crl_next_update is None:
        return {}
    left_s = -_age_s(crl_next_update, now)
    if left_s >= thresholds.crl_expiring_s:
        return {}
    return {"crl_expiring": (f"the CRL's next update is {crl_next_update} (in "
                             f"{left_s / 86400:.1f} d): run kiosk-fleet crl refresh"
                             if left_s > 0 else
                             f"the CRL expired at {crl_next_update}: the broker refuses every "
                             "kiosk certificate; run kiosk-fleet crl refresh")}
