"""``kiosk update``: fetch a signed release, install it into the inactive slot, switch, keep it
if healthy.

Run as root by the updater's own unit, the only thing that may write the slots
(:mod:`kiosk.update.slots`); each step is printed as ``update: <step>: <detail>`` so a technician
or the unit's journal can follow it. Exit status 1 with the reason when the release is refused
or the kiosk was rolled back.
"""

import re
import shlex
import subprocess
from pathlib import Path

from kiosk import config as kiosk_config
from kiosk.errors import ReleaseError
from kiosk.update import download, quiet, slots

APPS = "/var/lib/kiosk/apps"
STATE = "/var/lib/kiosk/state"
DOWNLOADS = "/var/lib/kiosk/downloads"
CONFIG = "/etc/kiosk/kiosk.toml"
PUBLIC_KEY = "/etc/kiosk/release-key.pub"


def add_arguments(parser):
    parser.add_argument("release", metavar="DIR|URL",
                        help="a release folder, or its https:// URL (then --sha256 is needed)")
    parser.add_argument("--downloads", default=DOWNLOADS,
                        help="where a release from a URL is fetched to (default %(default)s)")
    parser.add_argument("--ca", metavar="FILE",
                        help="CA certificate of the release server (default: the system CAs)")
    parser.add_argument("--key", default=PUBLIC_KEY,
                        help="the agency's release public key (default %(default)s)")
    parser.add_argument("--sha256", metavar="HEX", help="the manifest SHA-256 the update named")
    parser.add_argument("--apps", default=APPS, help="the slots' folder (default %(default)s)")
    parser.add_argument("--state", default=STATE,
                        help="the kiosk's state folder: its store, the trial files (default "
                        "%(default)s)")
    parser.add_argument("--backups", metavar="DIR",
                        help="where the store's backup goes (default: STATE/backups)")
    parser.add_argument("--config", default=CONFIG,
                        help="the kiosk's config, for its office hours (default %(default)s)")
    parser.add_argument("--any-time", action="store_true",
                        help="do not wait for the office to close (a technician on site); "
                        "a visit in progress is still never interrupted")
    parser.add_argument("--status-command", default="systemctl show -P StatusText kiosk.service",
                        help="prints the kiosk's screen (default: %(default)s)")
    parser.add_argument("--wait-limit", type=float, default=86400.0, metavar="S",
                        help="give up after waiting this long for a free kiosk outside office "
                        "hours (default %(default)s)")
    parser.add_argument("--stop-command", default="systemctl stop kiosk.service",
                        help="stops the kiosk (default: %(default)s)")
    parser.add_argument("--start-command", default="systemctl start kiosk.service",
                        help="starts the kiosk (default: %(default)s)")
    parser.add_argument("--health-timeout", type=float, default=120.0, metavar="S",
                        help="seconds the new version has to declare itself healthy before "
                        "the kiosk rolls back (default %(default)s)")


def main(args):
    try:
        public_pem = Path(args.key).read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read the release key {args.key}: {exc.strerror}") from None
    folder = args.release
    if folder.startswith("https://"):
        if not args.sha256:
            raise ReleaseError("a release URL needs --sha256: the manifest hash ops chose")
        folder = Path(args.downloads) / re.sub(r"[^0-9a-f]", "", args.sha256)[:16]
        download.fetch(args.release, folder, public_pem, manifest_sha256=args.sha256,
                       cafile=args.ca, on_progress=lambda done, total: print(
                           f"update: download: {done / 1e6:.1f} of {total / 1e6:.1f} MB",
                           flush=True))
    is_office_hours = (lambda wall: False) if args.any_time else quiet.office_hours(
        kiosk_config.load(args.config))

    def wait_quiet():
        quiet.wait_until_quiet(
            is_office_hours, lambda: _output(args.status_command), limit_s=args.wait_limit,
            on_wait=lambda why: print(f"update: wait: {why}", flush=True))

    slot, manifest = slots.install(
        args.apps, folder, public_pem, state=args.state, manifest_sha256=args.sha256,
        backups=args.backups, wait_quiet=wait_quiet, stop=_command(args.stop_command),
        start=_command(args.start_command), health_timeout_s=args.health_timeout,
        on_step=lambda step, detail: print(f"update: {step}: {detail}", flush=True))
    print(f"update: done: {manifest.version} in slot {slot}", flush=True)
    return 0


def _output(line):
    done = subprocess.run(shlex.split(line), capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"{line!r} failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def _command(line):
    return lambda: _output(line)
