"""``kiosk-fleet rollout start|widen|pause|resume|status``: a release to a share of the fleet,
through the retained ``update`` command, and its progress per kiosk.

``start`` records the rollout (:meth:`kiosk.fleet.db.FleetDb.add_rollout`), then publishes
the retained command (QoS 1) to the kiosks :func:`kiosk.fleet.rollout.select` takes among those
the filters select (as ``kiosk-fleet status`` filters: province, ministry, department), as
the ops account (:func:`kiosk.fleet.command.publish`). The collector takes each kiosk's
``health.update`` into the rollout's rows and pauses the rollout by itself past its rollback
threshold (:meth:`kiosk.fleet.db.FleetDb.apply_rollout_progress`). ``pause`` withdraws the
command (an empty retained message) from the kiosks not yet switched, and on a rollout paused
already does that withdrawal again (a collector that died between committing its pause and
publishing, or a broker that refused the first one); ``resume`` sends the command again to
those that had not failed with it (a refusal because it was withdrawn is no failure);
``widen`` raises the percentage, keeping the kiosks already targeted. Each holds the
rollout's lock (:meth:`kiosk.fleet.db.FleetDb.rollout_lock`, which the collector's progress
step takes too) from its check to its messages published. The console's rollouts page calls
the same functions, so the same checks apply: input is refused with
:class:`kiosk.errors.RolloutRefused`, naming the field, before anything is recorded or sent.

Every function here takes ``send``, a callable publishing ``[(topic, payload, retain)]``
(:func:`sender` makes the real one), so the tests can record what would go out.
"""

import datetime as dt
import functools
import re
from dataclasses import dataclass

from kiosk.errors import MessageRejected, RolloutRefused, TelemetryError
from kiosk.fleet import command, rollout, status
from kiosk.fleet.collector import read_password
from kiosk.fleet.db import DEFAULT_DB, open_database, utc_now
from kiosk.telemetry import topics


def sender(host, port, username, password, tls=None):
    """The real ``send``: publish as ``username`` (ops), each message confirmed."""
    return functools.partial(command.publish, host, port, username, password, tls=tls)


def eligible(fleet_db, filters, now=None):
    """The kiosks ``filters`` (a :class:`kiosk.fleet.status.Filters`) select, among every kiosk
    the collector has heard from; places as :func:`kiosk.fleet.status.places` finds them."""
    kiosk_ids = [k.kiosk_id for k in fleet_db.kiosks()]
    if filters == status.NO_FILTERS:
        return kiosk_ids
    places = status.places(fleet_db, now or dt.datetime.now(dt.UTC))
    nowhere = status.Place(None, None, frozenset())
    return [k for k in kiosk_ids if filters.match(places.get(k, nowhere))]


def _payload(wanted):
    """The retained ``update`` command of rollout row ``wanted``, checked by the contract."""
    try:
        return topics.command_payload(
            "update", command.new_correlation_id(), version=wanted.version, url=wanted.url,
            sha256=topics.grouped_sha256(wanted.sha256), rollout=wanted.rollout_id)
    except (MessageRejected, ValueError) as exc:
        raise TelemetryError(f"update: {exc}") from None


def _send_commands(send, wanted, kiosk_ids):
    payload = _payload(wanted)
    send([(topics.cmd_topic(kiosk_id, "update"), payload, True) for kiosk_id in kiosk_ids])


def _withdraw(send, kiosk_ids):
    send([(topics.cmd_topic(kiosk_id, "update"), b"", True) for kiosk_id in kiosk_ids])


def _percent(value, field="percent"):
    what = "the rollback threshold" if field == "threshold" else "the share of kiosks"
    try:
        return rollout.check_percent(value, what)
    except ValueError as exc:
        raise RolloutRefused(field, str(exc)) from None


#: How the contract names a field it refuses (:class:`kiosk.telemetry.topics._Fields`).
_CONTRACT_FIELD = re.compile(r"field '(\w+)' (.*)", re.S)


def _check_release(pending):
    """Refuse a version, URL or SHA-256 the contract would not carry, naming the field."""
    try:
        _payload(pending)
    except TelemetryError as exc:
        named = _CONTRACT_FIELD.search(str(exc))
        if named is None:
            raise
        raise RolloutRefused(named.group(1), named.group(2)) from None


def _get(fleet_db, rollout_id):
    found = fleet_db.rollout(rollout_id)
    if found is None:
        raise TelemetryError(f"no rollout {rollout_id!r}; kiosk-fleet rollout status lists them")
    return found


def start(fleet_db, send, *, version, url, sha256, percent, filters=status.NO_FILTERS,
          threshold_percent=rollout.DEFAULT_THRESHOLD_PERCENT, rollout_id=None,
          created_by=None, now=None):
    """Start a rollout; returns ``(rollout row, targeted kiosk ids)``. The command is checked
    before anything is recorded (:class:`kiosk.errors.RolloutRefused` naming the field: the
    SHA-256 as plain hex, as ``kiosk-fleet release build`` prints it, or grouped); the rollout
    is recorded before it is sent (a kiosk's report must find its row), and paused, saying
    why, if the broker refuses it."""
    percent = _percent(percent)
    threshold_percent = _percent(threshold_percent, "threshold")
    rollout_id = rollout_id or rollout.new_rollout_id()
    try:
        plain = topics.grouped_sha256(sha256).replace("-", "")
    except ValueError as exc:
        raise RolloutRefused("sha256", str(exc)) from None
    _check_release(_Pending(rollout_id, version, url, plain))
    targets = rollout.select(rollout_id, eligible(fleet_db, filters, now), percent)
    if not targets:
        raise RolloutRefused("filters", "no kiosk matches the province, ministry and "
                                        "department given; kiosk-fleet status shows which do")
    stamp = utc_now()
    fleet_db.add_rollout(rollout_id=rollout_id, version=version, url=url, sha256=plain,
                         percent=percent, filters=filters, threshold_percent=threshold_percent,
                         targets=targets, now=stamp, created_by=created_by)
    with fleet_db.rollout_lock(rollout_id):
        wanted = fleet_db.rollout(rollout_id)
        failed = _send_or_pause(fleet_db, send, wanted, targets)
    if failed:
        raise failed
    return fleet_db.rollout(rollout_id), targets


@dataclass(frozen=True)
class _Pending:
    rollout_id: str
    version: str
    url: str
    sha256: str


def _send_or_pause(fleet_db, send, wanted, kiosk_ids):
    """Send the command to ``kiosk_ids``; if the broker refuses, pause the rollout saying why
    and return the error, for the caller to raise once its transaction has committed."""
    try:
        _send_commands(send, wanted, kiosk_ids)
    except TelemetryError as exc:
        fleet_db.set_rollout_state(wanted.rollout_id, "paused", utc_now(),
                                   reason=f"not sent: {exc}")
        return exc
    return None


def widen(fleet_db, send, rollout_id, percent, now=None):
    """Raise the rollout's percentage: the kiosks targeted stay, the next of its order are
    added and sent the command; returns the added kiosk ids. Refused while paused (its
    rollbacks, or ops, stopped it) and for a percentage not above the current one. Under the
    rollout's lock (:meth:`kiosk.fleet.db.FleetDb.rollout_lock`), from the check to the
    commands sent; and the state goes back to ``active`` only from ``active`` or ``done``,
    so a widening never undoes a pause, the collector's or an operator's."""
    failed = None
    with fleet_db.rollout_lock(rollout_id):
        wanted = _get(fleet_db, rollout_id)
        percent = _percent(percent)
        if wanted.state == "paused":
            raise TelemetryError(f"rollout {rollout_id} is paused ({wanted.paused_reason}); "
                                 "resume it before widening")
        if percent <= wanted.percent:
            raise RolloutRefused("percent", f"rollout {rollout_id} is at {wanted.percent:g} "
                                            "%; widen to more")
        already = [row.kiosk_id for row in fleet_db.rollout_kiosks(rollout_id)]
        filters = status.Filters(wanted.province, wanted.ministry, wanted.department)
        added = rollout.select(rollout_id, eligible(fleet_db, filters, now), percent,
                               already)[len(already):]
        stamp = utc_now()
        fleet_db.add_rollout_targets(rollout_id, added, stamp)
        if not fleet_db.set_rollout_state(rollout_id, "active", stamp, percent=percent,
                                          only_from=("active", "done")):
            now_is = _get(fleet_db, rollout_id)
            raise TelemetryError(
                f"rollout {rollout_id} was {now_is.state} before it could be widened "
                f"({now_is.paused_reason or 'no reason given'}); nothing was added or sent: "
                "resume it before widening")
        if added:
            failed = _send_or_pause(fleet_db, send, wanted, added)
    if failed:
        raise failed
    return added


@dataclass(frozen=True)
class Paused:
    """What :func:`pause` did."""

    kiosk_ids: list  # those whose retained command it withdrew, in the rollout's order
    is_again: bool  # the rollout was paused already: the withdrawal was done again


def pause(fleet_db, send, rollout_id, reason="paused by ops", *, only_again=False):
    """Pause an active rollout: withdraw the retained command from the kiosks not yet switched
    (:data:`kiosk.fleet.rollout.NOT_SWITCHED`). On a rollout paused already, withdraw again
    (its reason kept): the empty retained messages are idempotent, and a withdrawal cut short
    (the collector died between committing its pause and publishing, or the broker refused)
    left the commands retained, which a kiosk that reconnects would run. A ``done`` rollout
    is refused, and so, with ``only_again`` (the console's "withdraw again", meant for a
    paused rollout), is one resumed meanwhile. Returns :class:`Paused`.

    Under the rollout's lock from the check to the empty messages published, so a resume by
    another operator comes wholly before or after it, never with its commands taken back by
    a withdrawal that read the state before. The rows are marked withdrawn before the
    publishing (what is meant): a broker refusing leaves the rollout paused, and the error is
    raised once that is committed."""
    failed = None
    with fleet_db.rollout_lock(rollout_id):
        state = _get(fleet_db, rollout_id).state
        if state == "done" or (only_again and state != "paused"):
            raise TelemetryError(f"rollout {rollout_id} is {state}, not "
                                 + ("paused: nothing withdrawn" if only_again else "active"))
        is_again = state == "paused"
        if not is_again:
            fleet_db.set_rollout_state(rollout_id, "paused", utc_now(), reason=reason,
                                       only_from=("active",))
        withdraw = fleet_db.unswitched(rollout_id)
        fleet_db.set_withdrawn(rollout_id, withdraw, True)
        try:
            _withdraw(send, withdraw)
        except TelemetryError as exc:
            failed = exc
    if failed:
        raise failed
    return Paused(withdraw, is_again)


def resume(fleet_db, send, rollout_id, threshold_percent=None):
    """Make a paused rollout active again and send the command again to its kiosks that had
    not switched nor failed with it (:func:`kiosk.fleet.rollout.is_resent`), among them those
    that refused it only because it was withdrawn (the updater's ``refused`` "withdrawn: …",
    set back to ``sent``); returns them. Under the rollout's lock, from the check to the
    commands published; if the broker refuses, nothing changes (still paused). Past its
    threshold it pauses again at the next report: raise ``threshold_percent`` then."""
    if threshold_percent is not None:
        threshold_percent = _percent(threshold_percent, "threshold")
    with fleet_db.rollout_lock(rollout_id):
        wanted = _get(fleet_db, rollout_id)
        if wanted.state != "paused":
            raise TelemetryError(f"rollout {rollout_id} is {wanted.state}, not paused")
        if threshold_percent is not None:
            (fleet_db.Rollout.update(threshold_percent=threshold_percent)
             .where(fleet_db.Rollout.rollout_id == rollout_id).execute())
        again = fleet_db.to_resend(rollout_id)
        _send_commands(send, wanted, again)
        stamp = utc_now()
        fleet_db.sent_again(rollout_id, again, stamp)
        fleet_db.set_rollout_state(rollout_id, "active", stamp, only_from=("paused",))
    return again


@dataclass(frozen=True)
class Progress:
    """One rollout as the status verb and the console show it."""

    rollout: object  # the Rollout row
    kiosks: list  # its RolloutKiosk rows, in its order
    totals: dict  # state -> kiosks (kiosk.fleet.rollout.totals; withdrawn ones apart)

    @property
    def targeted(self):
        return len(self.kiosks)

    @property
    def scope(self):
        """Which kiosks it may take, in words: its percentage and filters."""
        r = self.rollout
        chosen = [f"{name} {value}" for name, value in (
            ("province", r.province), ("ministry", r.ministry), ("department", r.department))
            if value]
        return f"{r.percent:g} % of " + (", ".join(chosen) if chosen else "the fleet")


def progress(fleet_db, rollout_id):
    rows = fleet_db.rollout_kiosks(rollout_id)
    return Progress(_get(fleet_db, rollout_id), rows,
                    rollout.totals(rollout.shown_state(r.state, r.reason) for r in rows))


def status_lines(fleet_db, rollout_id=None):
    """Each rollout (or one) with its totals; one rollout's kiosks too, with their reasons."""
    chosen = [_get(fleet_db, rollout_id)] if rollout_id else fleet_db.rollouts()
    lines = []
    for row in chosen:
        shown = progress(fleet_db, row.rollout_id)
        r = shown.rollout
        lines.append(f"{r.rollout_id}  version {r.version}  {r.state}  {shown.scope}  "
                     f"threshold {r.threshold_percent:g} %  created {r.created}"
                     + (f"  paused: {r.paused_reason}" if r.paused_reason else ""))
        lines.append("  " + "  ".join(f"{state} {n}/{shown.targeted}"
                                      for state, n in shown.totals.items() if n))
        if rollout_id:
            for k in shown.kiosks:
                lines.append(f"  {k.kiosk_id:<24} {k.state:<12} {k.updated}"
                             + ("  withdrawn" if k.is_withdrawn else "")
                             + (f"  {k.reason}" if k.reason else ""))
    return lines


# --- the verb -------------------------------------------------------------------------------

def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    started = actions.add_parser("start", help="send a release to a share of the fleet")
    started.add_argument("version", help="the release's version, as its manifest says")
    started.add_argument("url", help="the signed release's https:// folder")
    started.add_argument("sha256", help="its manifest's SHA-256 (kiosk-fleet release build "
                                        "prints it)")
    started.add_argument("--percent", type=float, required=True,
                         help="share of the selected kiosks, rounded up (10 of 50 is 5)")
    started.add_argument("--province", help="only kiosks in this province")
    started.add_argument("--ministry", help="only kiosks of this ministry")
    started.add_argument("--department", help="only kiosks of this department")
    started.add_argument("--threshold", type=float, default=rollout.DEFAULT_THRESHOLD_PERCENT,
                         help="pause by itself when more than this percentage of the targeted "
                              "kiosks roll back (default %(default)s)")
    widened = actions.add_parser("widen", help="raise a rollout's percentage")
    widened.add_argument("rollout_id")
    widened.add_argument("--percent", type=float, required=True)
    paused = actions.add_parser("pause", help="withdraw the command from kiosks not switched "
                                              "(again, if the rollout is paused already)")
    paused.add_argument("rollout_id")
    resumed = actions.add_parser("resume", help="send a paused rollout's command again")
    resumed.add_argument("rollout_id")
    resumed.add_argument("--threshold", type=float,
                         help="a new rollback threshold (percentage)")
    shown = actions.add_parser("status", help="rollouts and their totals; one with its kiosks")
    shown.add_argument("rollout_id", nargs="?")
    for sub in (started, widened, paused, resumed, shown):
        sub.add_argument("--db", default=DEFAULT_DB,
                         help="the collector's database (default %(default)s)")
    for sub in (started, widened, paused, resumed):
        command.add_broker_arguments(sub)


def main(args):
    if args.action == "status":
        fleet_db = open_database(args.db, read_only=True)
        try:
            lines = status_lines(fleet_db, args.rollout_id)
        finally:
            fleet_db.close()
        print("\n".join(lines) if lines else "no rollout yet")
        return 0
    send = sender(args.host, args.port, args.username, read_password(args.password_file),
                  tls={"ca_certs": str(args.ca_file)} if args.ca_file else None)
    fleet_db = open_database(args.db)
    try:
        return _act(fleet_db, send, args)
    finally:
        fleet_db.close()


def _act(fleet_db, send, args):
    if args.action == "start":
        wanted, targets = start(
            fleet_db, send, version=args.version, url=args.url, sha256=args.sha256,
            percent=args.percent,
            filters=status.Filters(args.province, args.ministry, args.department),
            threshold_percent=args.threshold, created_by=args.username)
        print(f"{wanted.rollout_id}: version {wanted.version} sent to {len(targets)} "
              "kiosks")
    elif args.action == "widen":
        added = widen(fleet_db, send, args.rollout_id, args.percent)
        print(f"{args.rollout_id}: sent to {len(added)} more kiosks")
    elif args.action == "pause":
        done = pause(fleet_db, send, args.rollout_id)
        print(f"{args.rollout_id}: " + ("already paused; command withdrawn again" if
                                        done.is_again else "paused, command withdrawn")
              + f" from {len(done.kiosk_ids)} kiosks not switched")
    else:
        again = resume(fleet_db, send, args.rollout_id, args.threshold)
        print(f"{args.rollout_id}: resumed, command sent again to {len(again)} kiosks")
    return 0
