"""``kiosk update``: install a signed release into the inactive slot and switch to it.

Run as root by the updater's own unit, the only thing that may write the slots
(:mod:`kiosk.update.slots`); each step is printed as ``update: <step>: <detail>`` so a technician
or the unit's journal can follow it.
"""

import subprocess
from pathlib import Path

from kiosk.errors import ReleaseError
from kiosk.update import slots

APPS = "/var/lib/kiosk/apps"
PUBLIC_KEY = "/etc/kiosk/release-key.pub"


def add_arguments(parser):
    parser.add_argument("release", metavar="DIR", help="the downloaded release folder")
    parser.add_argument("--key", default=PUBLIC_KEY,
                        help="the agency's release public key (default %(default)s)")
    parser.add_argument("--sha256", metavar="HEX", help="the manifest SHA-256 the update named")
    parser.add_argument("--apps", default=APPS, help="the slots' folder (default %(default)s)")
    parser.add_argument("--store", metavar="FILE", help="the kiosk's SQLite store to back up")
    parser.add_argument("--backups", metavar="DIR", help="where the store's backup goes")
    parser.add_argument("--restart", metavar="UNIT",
                        help="systemd unit to restart on the new slot (none when omitted)")


def main(args):
    if bool(args.store) != bool(args.backups):
        raise ReleaseError("--store and --backups go together")
    try:
        public_pem = Path(args.key).read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read the release key {args.key}: {exc.strerror}") from None

    def restart():
        if args.restart:
            subprocess.run(["systemctl", "restart", args.restart], check=True)

    slot, manifest = slots.install(
        args.apps, args.release, public_pem, manifest_sha256=args.sha256, store=args.store,
        backups=args.backups, restart=restart,
        on_step=lambda step, detail: print(f"update: {step}: {detail}", flush=True))
    print(f"update: done: {manifest.version} in slot {slot}", flush=True)
    return 0
