"""``kiosk-fleet revoke KIOSK``: cut a stolen or retired kiosk off the broker for good, in one
command.

What it does, in this order, each step safe to repeat (revoking twice is fine):

1. the fleet database: every certificate of the kiosk marked revoked, the kiosk retired (the
   console and ``kiosk-fleet status`` say so; it raises no alarm again), its open alarms
   cleared, a ``revoked`` event with ``--reason`` recorded (:meth:`FleetDb.retire`);
2. with ``--ca/--ca-key/--crl-file``: a CRL listing its serials (:mod:`kiosk.fleet.crl`), which
   refuses the certificate's next TLS handshake;
3. with ``--passwd``: its line removed from Mosquitto's password file (rewritten atomically,
   keeping its mode and owner);
4. its name appended to the broker plugin's revoked file (``--revoked-file``), so the plugin
   refuses its logins and every ACL check, kicks its connection and deletes its retained
   messages (docs/broker.md);
5. one broker reload (``--reload-pid-file`` or ``--reload-command``) for all of the above.

``--revoked-file`` is required: the CRL and the password file are checked at connect only, so
only the plugin closes the connection the kiosk holds. Without a reload option the records are
changed but nothing takes effect: the command says so and exits 1. A kiosk with certificates
recorded needs the CRL options (its certificate would still pass the TLS handshake otherwise);
the reserved fleet accounts (ops, ca, collector*) are refused.
"""

import datetime as dt
import os
import sys
from pathlib import Path

from kiosk.accounts import is_reserved
from kiosk.errors import ProvisionError
from kiosk.fleet import crl
from kiosk.fleet.ca import load_ca
from kiosk.fleet.db import DEFAULT_DB, open_database
from kiosk.telemetry import topics

#: Longest ``--reason`` kept: a note for ops, not a document.
MAX_REASON_CHARS = 200


def check_kiosk_id(kiosk_id):
    """A ProvisionError naming the value and the fix unless ``kiosk_id`` names a kiosk."""
    if is_reserved(kiosk_id):
        raise ProvisionError(f"{kiosk_id!r} is a fleet account (ops, ca, collector*), not a "
                             "kiosk; revoke refuses it: change that account's password instead")
    try:
        topics.check_kiosk_id(kiosk_id)
    except ValueError as exc:
        raise ProvisionError(f"{kiosk_id!r}: {exc}; give the kiosk's id as kiosk-fleet status "
                             "lists it") from None


def _account_lines(passwd):
    return passwd.read_text().splitlines(keepends=True) if passwd else []


def without_account(passwd, kiosk_id):
    """Rewrite the password file without ``kiosk_id``'s line; whether it had one."""
    lines = _account_lines(passwd)
    kept = [line for line in lines if line.split(":", 1)[0] != kiosk_id]
    if len(kept) == len(lines):
        return False
    _replace_keeping_owner(passwd, "".join(kept))
    return True


def with_revoked(revoked_file, kiosk_id):
    """Append ``kiosk_id`` to the revoked file (made 0644 if absent); whether it was new."""
    names = revoked_file.read_text().splitlines() if revoked_file.exists() else []
    if kiosk_id in (name.strip() for name in names):
        return False
    text = "".join(f"{name}\n" for name in names) + f"{kiosk_id}\n"
    if revoked_file.exists():
        _replace_keeping_owner(revoked_file, text)
    else:
        crl.write_atomically(revoked_file, text.encode())
    return True


def _replace_keeping_owner(path, text):
    info = path.stat()
    crl.write_atomically(path, text.encode(), mode=info.st_mode & 0o7777)
    if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        os.chown(path, info.st_uid, info.st_gid)


def _check_files(args):
    ca_options = (args.ca, args.ca_key, args.crl_file)
    if any(ca_options) and not all(ca_options):
        raise ProvisionError("--ca, --ca-key and --crl-file go together: give all three to "
                             "issue the CRL, or none for a password kiosk")
    if args.passwd is not None and not Path(args.passwd).is_file():
        raise ProvisionError(f"--passwd {args.passwd}: no such file; give the broker's "
                             "password_file")
    if args.revoked_file is None:
        raise ProvisionError("--revoked-file is required: the CRL and the password file are "
                             "checked at connect only, so only the broker plugin's revoked list "
                             "closes the connection the kiosk holds; give the broker's "
                             "plugin_opt_revoked_file")
    if not Path(args.revoked_file).parent.is_dir():
        raise ProvisionError(f"--revoked-file {args.revoked_file}: its folder does not exist; "
                             "give the broker's plugin_opt_revoked_file")
    return load_ca(args.ca, args.ca_key) if args.ca else None


def revoke(fleet_db, args, ca, now):
    """Steps 1-4 of the module docstring; the lines to print."""
    kiosk_id = args.kiosk_id
    passwd = Path(args.passwd) if args.passwd else None
    has_account = any(line.split(":", 1)[0] == kiosk_id for line in _account_lines(passwd))
    known = (fleet_db.KioskRow.get_or_none(fleet_db.KioskRow.kiosk_id == kiosk_id) is not None
             or fleet_db.certificates(kiosk_id) or has_account)
    if not known:
        raise ProvisionError(f"kiosk {kiosk_id!r} is neither in the fleet database {args.db} "
                             "nor in --passwd; check the id (kiosk-fleet status lists them)")
    certificates = fleet_db.certificates(kiosk_id)
    if certificates and ca is None:
        raise ProvisionError(f"kiosk {kiosk_id!r} has {len(certificates)} client "
                             "certificate(s): give --ca, --ca-key and --crl-file, so the CRL "
                             "refuses them")
    reason = (args.reason or "no reason given")[:MAX_REASON_CHARS]
    serials, retired = fleet_db.retire(kiosk_id, now, f"revoked: {reason}")
    done = [f"{kiosk_id}: retired {retired}; "
            + (f"certificates revoked: {', '.join(serials)}" if serials else
               f"no certificate newly revoked ({len(certificates)} recorded)")]
    if ca is not None:
        row = crl.issue(fleet_db, *ca, args.crl_file, valid_s=args.valid_days * crl.DAY_S,
                        now=now)
        done.append(f"issued {crl.describe(row, now)} into {args.crl_file}")
    if passwd is not None:
        done.append(f"removed its line from {passwd}" if without_account(passwd, kiosk_id)
                    else f"no line for it in {passwd} (removed before)")
    revoked_file = Path(args.revoked_file)
    done.append(f"listed it in {revoked_file}" if with_revoked(revoked_file, kiosk_id)
                else f"already listed in {revoked_file}")
    return done


def add_arguments(parser):
    parser.add_argument("kiosk_id", metavar="KIOSK", help="the kiosk id (its broker account)")
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the collector's database (default %(default)s)")
    crl.add_ca_arguments(parser, required=False)
    parser.add_argument("--valid-days", type=float, default=crl.VALID_DAYS,
                        help="validity of the CRL issued (default %(default)s)")
    parser.add_argument("--passwd", metavar="FILE", help="the broker's password_file")
    parser.add_argument("--revoked-file", metavar="FILE",
                        help="the broker plugin's plugin_opt_revoked_file")
    parser.add_argument("--reason", help=f"why, kept with the kiosk's events (up to "
                                         f"{MAX_REASON_CHARS} characters)")


def main(args):
    check_kiosk_id(args.kiosk_id)
    if not args.valid_days > 0:
        raise ProvisionError(f"--valid-days {args.valid_days}: must be above 0")
    ca = _check_files(args)
    now = dt.datetime.now(dt.UTC)
    fleet_db = open_database(args.db)
    try:
        done = revoke(fleet_db, args, ca, now)
    finally:
        fleet_db.close()
    reloaded = crl.reload_broker(args.reload_pid_file, args.reload_command)
    print("\n".join(done + ([reloaded] if reloaded else [])))
    if reloaded is None:
        print(f"{args.kiosk_id}: revoked in the records, but the broker was not reloaded (no "
              "--reload-pid-file or --reload-command): reload it now (systemctl reload "
              "mosquitto), or the kiosk stays connected", file=sys.stderr)
        return 1
    return 0
