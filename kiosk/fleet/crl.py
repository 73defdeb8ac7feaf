"""``kiosk-fleet crl``: the agency CA's certificate revocation list, issued again before it
expires.

Why: the broker's mutual-TLS listener checks every kiosk certificate against the CRL
(``crlfile``, docs/broker.md). A stolen kiosk's serial on it is what refuses its reconnect; and
past the CRL's ``nextUpdate`` OpenSSL refuses every kiosk certificate, revoked or not. So the
list is issued with a validity (``--valid-days``, default :data:`VALID_DAYS`) and issued again
well before it runs out (``--reissue-before-days``): ``kiosk-fleet crl refresh`` runs hourly
from ``kiosk-crl-refresh.timer`` on the CA/broker host and issues only when due, or at once with
``--force`` (``kiosk-fleet revoke`` does the same after marking the certificates).

Each CRL lists every serial in ``kiosk_cert`` whose ``revoked`` is set, numbered one above the
last in ``ca_crl``, and is recorded there (the ``crl_expiring`` alarm reads the newest
``next_update``). The file is replaced atomically (a temporary file renamed over it, mode 0644:
the broker, another user, must read it), then the broker is told to read it again: SIGHUP to the
pid in ``--reload-pid-file``, or ``--reload-command`` (e.g. ``systemctl reload mosquitto``).
"""

import datetime as dt
import os
import shlex
import signal
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kiosk import atomic
from kiosk.errors import ProvisionError
from kiosk.fleet import locks
from kiosk.fleet.ca import load_ca, signature_hash
from kiosk.fleet.db import DEFAULT_DB, open_database, utc_text

#: Days a CRL is valid: long enough that a CA host down for a fortnight does not lock the fleet
#: out, short enough that a CRL copied off the host does not vouch for long.
VALID_DAYS = 30.0
#: Issue again once the newest CRL has less than this left: half its validity, so a refresh
#: that fails for days still has days to be noticed (the ``crl_expiring`` alarm) and fixed.
REISSUE_BEFORE_DAYS = 15.0
DAY_S = 86400.0
#: Two issuers (the timer and a revoke) take turns, so no CRL number is issued twice.
_CRL_LOCK_KEY = 0x63726C


def newest(fleet_db):
    """The newest CRL recorded (a ``CaCrl`` row), None before the first."""
    CaCrl = fleet_db.CaCrl
    return CaCrl.select().order_by(CaCrl.number.desc()).first()


def is_due(latest, now, reissue_before_s):
    """Whether a CRL must be issued at ``now``: none yet, or the newest one's ``nextUpdate``
    is nearer than ``reissue_before_s``."""
    if latest is None:
        return True
    left_s = (dt.datetime.fromisoformat(latest.next_update) - now).total_seconds()
    return left_s < reissue_before_s


def issue(fleet_db, ca_cert, ca_key, crl_file, *, valid_s, now=None):
    """Sign a CRL of every revoked serial, write it over ``crl_file`` and record it; returns
    its ``CaCrl`` row. The row and the file go together: a failed write leaves no row."""
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    if valid_s <= 0:
        raise ProvisionError(f"CRL validity {valid_s} s: must be above 0")
    KioskCert, CaCrl = fleet_db.KioskCert, fleet_db.CaCrl
    with locks.exclusive(fleet_db.database, _CRL_LOCK_KEY):
        latest = newest(fleet_db)
        number = 1 if latest is None else latest.number + 1
        revoked = list(KioskCert.select(KioskCert.serial, KioskCert.revoked)
                       .where(KioskCert.revoked.is_null(False)).order_by(KioskCert.serial)
                       .tuples())
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(ca_cert.subject)
                   .last_update(now)
                   .next_update(now + dt.timedelta(seconds=valid_s))
                   .add_extension(x509.CRLNumber(number), critical=False))
        # One serial may be recorded for two kiosks in a database fed by two CAs' batches;
        # a CRL lists it once.
        for serial, when in dict(revoked).items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                .revocation_date(min(now, dt.datetime.fromisoformat(when))).build())
        crl = builder.sign(ca_key, signature_hash(ca_key))
        row = CaCrl.create(number=number, this_update=utc_text(now),
                           next_update=utc_text(now + dt.timedelta(seconds=valid_s)),
                           revoked_count=len(crl))
        write_atomically(Path(crl_file), crl.public_bytes(serialization.Encoding.PEM))
    return row


def write_atomically(path, data, mode=0o644):
    """Replace ``path`` with ``data``: a reader sees the old file or the new, never half."""
    if not path.parent.is_dir():
        raise ProvisionError(f"--crl-file {path}: its folder {path.parent} does not exist; "
                             "create it or point --crl-file at the broker's crlfile")
    atomic.replace(path, data, mode)


def reload_broker(pid_file=None, command=None):
    """Make the broker read its files again: SIGHUP to the pid in ``pid_file``, or run
    ``command``; a description of what was done, or None when neither is given."""
    if pid_file is not None:
        try:
            pid = int(Path(pid_file).read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"--reload-pid-file {pid_file}: cannot signal the broker "
                                 f"({exc}); give Mosquitto's pid_file, or --reload-command"
                                 ) from None
        return f"sent SIGHUP to the broker (pid {pid})"
    if command is not None:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True)
        if done.returncode != 0:
            raise ProvisionError(f"--reload-command {command!r} exited {done.returncode}: "
                                 f"{done.stderr.strip()[-300:]}; fix it, then run it by hand")
        return f"ran {command!r}"
    return None


def refresh(fleet_db, ca_cert, ca_key, crl_file, *, valid_s, reissue_before_s, force=False,
            now=None):
    """Issue a CRL when one is due (:func:`is_due`) or ``force``; the new row, or None."""
    now = now or dt.datetime.now(dt.UTC)
    if not force and not is_due(newest(fleet_db), now, reissue_before_s):
        return None
    return issue(fleet_db, ca_cert, ca_key, crl_file, valid_s=valid_s, now=now)


def describe(row, now):
    left_s = (dt.datetime.fromisoformat(row.next_update) - now).total_seconds()
    left = f"in {left_s / DAY_S:.1f} d" if left_s > 0 else "EXPIRED"
    return (f"CRL {row.number}: {row.revoked_count} revoked, issued {row.this_update}, "
            f"next update {row.next_update} ({left})")


def add_ca_arguments(parser, *, required):
    parser.add_argument("--ca", required=required, metavar="FILE",
                        help="the agency CA's certificate (the one that signs kiosk certs)")
    parser.add_argument("--ca-key", required=required, metavar="FILE", help="its private key")
    parser.add_argument("--crl-file", required=required, metavar="PATH",
                        help="the broker's crlfile, replaced atomically")
    reload = parser.add_mutually_exclusive_group()
    reload.add_argument("--reload-pid-file", metavar="FILE",
                        help="send SIGHUP to the pid in this file (Mosquitto's pid_file)")
    reload.add_argument("--reload-command", metavar="CMD",
                        help="run CMD to reload the broker, e.g. 'systemctl reload mosquitto'")


def _days_or_seconds(parser, flag, days_default, help_text):
    group = parser.add_mutually_exclusive_group()
    name = flag.replace("-", "_")
    group.add_argument(f"--{flag}-days", type=float, dest=f"{name}_days", metavar="DAYS",
                       help=f"{help_text} (default {days_default:g})")
    group.add_argument(f"--{flag}-s", type=float, dest=f"{name}_s", metavar="SECONDS",
                       help="the same in seconds, for tests")


def _seconds(args, flag, days_default, *, minimum=0.0):
    """The option's value in seconds; a ProvisionError unless it is above ``minimum``."""
    name = flag.replace("-", "_")
    seconds, days = getattr(args, f"{name}_s"), getattr(args, f"{name}_days")
    value = seconds if seconds is not None else DAY_S * (days_default if days is None else days)
    if not value > minimum:
        raise ProvisionError(f"--{flag}-days/--{flag}-s: {value:g} s must be above "
                             f"{minimum:g}")
    return value


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    refreshed = actions.add_parser("refresh", help="issue the CRL when due, reload the broker")
    add_ca_arguments(refreshed, required=True)
    _days_or_seconds(refreshed, "valid", VALID_DAYS, "how long the CRL is valid")
    _days_or_seconds(refreshed, "reissue-before", REISSUE_BEFORE_DAYS,
                     "issue again once the newest CRL has less than this left")
    refreshed.add_argument("--force", action="store_true", help="issue now, due or not")
    shown = actions.add_parser("show", help="the CRLs issued, newest first")
    for sub in (refreshed, shown):
        sub.add_argument("--db", default=DEFAULT_DB,
                         help="the collector's database (default %(default)s)")


def main(args):
    now = dt.datetime.now(dt.UTC)
    if args.action == "show":
        fleet_db = open_database(args.db, read_only=True)
        try:
            CaCrl = fleet_db.CaCrl
            rows = list(CaCrl.select().order_by(CaCrl.number.desc()).limit(10))
        finally:
            fleet_db.close()
        print("\n".join(describe(row, now) for row in rows) if rows else
              "no CRL issued yet; run kiosk-fleet crl refresh")
        return 0
    valid_s = _seconds(args, "valid", VALID_DAYS)
    margin_s = _seconds(args, "reissue-before", REISSUE_BEFORE_DAYS, minimum=-1.0)
    ca_cert, ca_key = load_ca(args.ca, args.ca_key)
    fleet_db = open_database(args.db)
    try:
        row = refresh(fleet_db, ca_cert, ca_key, args.crl_file, valid_s=valid_s,
                      reissue_before_s=margin_s, force=args.force, now=now)
        if row is None:
            print(f"not due: {describe(newest(fleet_db), now)}")
            return 0
    finally:
        fleet_db.close()
    print(f"issued {describe(row, now)} into {args.crl_file}")
    done = reload_broker(args.reload_pid_file, args.reload_command)
    print(done or "broker not reloaded (no --reload-pid-file or --reload-command): it reads "
                  "the new CRL at its next reload")
    return 0
