"""``kiosk update``: fetch a signed release, install it into the inactive slot, switch, keep it
if healthy.

Run as root by the updater's own unit (``systemd/kiosk-updater.service``), the only thing that
may write the slots (:mod:`kiosk.update.slots`); each step is printed as ``update: <step>:
<detail>`` so a technician or the unit's journal can follow it, and written to
``<apps>/update-status.json`` (:mod:`kiosk.update.request`) for the kiosk's health report. Exit
status 1 with the reason when the release is refused or the kiosk was rolled back.

``kiosk update --request FILE`` acts on what the kiosk asked for (the ``update`` command): the
file is the kiosk user's, so it is read as untrusted, and a version not newer than the running
one is refused (a technician on site can still run ``kiosk update DIR`` by hand). It first
finishes an update a power cut left unfinished (root's journal), so the unit's run at boot does
that even with no request on file.
"""

import re
import shlex
import subprocess
from pathlib import Path

from kiosk import __version__
from kiosk import config as kiosk_config
from kiosk.errors import ReleaseError
from kiosk.update import download, quiet, request, slots, trial

APPS = "/opt/kiosk"
STATE = "/var/lib/kiosk/state"
DOWNLOADS = "/var/lib/kiosk/downloads"
CONFIG = "/etc/kiosk/kiosk.toml"
#: Where the image keeps the agency's release public key (the read-only root).
PUBLIC_KEY = "/usr/share/citizeninfo-kiosk/release-key.pub"
#: The release server's CA when it is not one of the system's (kiosk firstboot installs it).
UPDATE_CA = "/etc/kiosk/update-ca.crt"
#: The updater's steps (slots.STEPS) that move the reported state on.
_STATES = {"install": "verified", "wait": "waiting", "switch": "switched", "healthy": "healthy"}


def add_arguments(parser):
    parser.add_argument("release", metavar="DIR|URL", nargs="?",
                        help="a release folder, or its https:// URL (then --sha256 is needed)")
    parser.add_argument("--request", metavar="FILE",
                        help="act on the kiosk's update request instead (its https URL, "
                        "manifest SHA-256 and version, checked; a version not newer than the "
                        "running one is refused); first finishes a cut update. No file: "
                        "nothing to do")
    parser.add_argument("--downloads", default=DOWNLOADS,
                        help="where a release from a URL is fetched to (default %(default)s)")
    parser.add_argument("--ca", metavar="FILE",
                        help=f"CA certificate of the release server (default: {UPDATE_CA} when "
                        "there is one, else the system CAs)")
    parser.add_argument("--key", default=PUBLIC_KEY,
                        help="the agency's release public key (default %(default)s)")
    parser.add_argument("--sha256", metavar="HEX", help="the manifest SHA-256 the update named")
    parser.add_argument("--apps", default=APPS,
                        help="the slots' folder: a/, b/, current, the journal, the status "
                        "file, backups/ (default %(default)s)")
    parser.add_argument("--state", default=STATE,
                        help="the kiosk's state folder: its store, the trial files (default "
                        "%(default)s)")
    parser.add_argument("--backups", metavar="DIR",
                        help="where the store's backup goes (default: APPS/backups)")
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


class _Withdrawn(ReleaseError):
    """The kiosk withdrew (or changed) its request while the updater waited to stop it."""


class _Status:
    """Each step printed, and the state it brings written to the status file."""

    def __init__(self, apps, version=None, rollout=None, sha256=None):
        self.apps, self.version, self.rollout, self.sha256 = apps, version, rollout, sha256
        self.rolled_back = False

    def set(self, state, reason=None, *, sha256=True):
        request.write_status(self.apps, state, self.version, reason=reason,
                             rollout=self.rollout, sha256=self.sha256 if sha256 else None)

    def step(self, step, detail):
        if step == "rollback":
            self.rolled_back = True
        elif step in _STATES and not self.rolled_back:
            self.set(_STATES[step])
        print(f"update: {step}: {detail}", flush=True)  # after: the file says it already

    def failed(self, exc):
        """The update ended without a healthy new version: say why in the status."""
        reason = str(exc)
        if isinstance(exc, _Withdrawn):  # not this release's fault: a new request may retry it
            self.set("refused", reason, sha256=False)
        elif self.rolled_back:
            self.set("rolled_back", reason.removeprefix("rolled back: "))
        else:
            self.set("refused", reason)


def main(args):
    apps = Path(args.apps)
    if args.request:
        if args.release or args.sha256:
            raise ReleaseError("--request takes its release from the request: no DIR|URL or "
                               "--sha256 with it")
        return _main_request(args, apps)
    if not args.release:
        raise ReleaseError("name a release (DIR or URL), or the kiosk's request (--request)")
    if args.release.startswith("https://") and not args.sha256:
        raise ReleaseError("a release URL needs --sha256: the manifest hash ops chose")
    status = _Status(apps, sha256=args.sha256)
    _update(args, args.release, status, sha256=args.sha256)
    return 0


def _main_request(args, apps):
    _resume(args, apps)
    try:
        wanted = request.read_request(args.request)
    except ReleaseError as exc:
        print(f"update: refused: {exc}", flush=True)
        _Status(apps).set("refused", str(exc))
        return 1
    if wanted is None:
        return 0  # withdrawn, or never asked: the path unit fires on a deletion too
    running = _running_version(apps)
    if wanted.version == running:
        print(f"update: healthy: {running} is already running", flush=True)
        return 0
    done = request.read_status_file(apps / request.STATUS) or {}
    if ((done.get("sha256"), done.get("rollout")) == (wanted.sha256, wanted.rollout)
            and done.get("state") in ("healthy", "refused", "rolled_back")):
        print(f"update: {done['state']}: this request ({wanted.version}) was handled already; "
              "a new rollout id tries it again", flush=True)
        return 0
    status = _Status(apps, wanted.version, wanted.rollout, wanted.sha256)
    try:
        if not request.is_newer(wanted.version, running):
            raise ReleaseError(f"downgrade refused: {wanted.version} is not newer than the "
                               f"running {running}; a technician on site can install it by "
                               "hand (kiosk update DIR)")
    except (ReleaseError, ValueError) as exc:
        print(f"update: refused: {exc}", flush=True)
        status.set("refused", str(exc))
        return 1
    status.set("requested")
    print(f"update: request: {wanted.version} from {wanted.url} (rollout {wanted.rollout})",
          flush=True)

    def still_wanted():
        if request.read_own_request(args.request) != request.request_content(wanted):
            raise _Withdrawn("the request was withdrawn or changed before the kiosk was "
                             "stopped; nothing was changed")

    _update(args, wanted.url, status, sha256=wanted.sha256, still_wanted=still_wanted)
    return 0


def _resume(args, apps):
    """Finish the update root's journal says was cut (at boot, after a power cut): its release
    is still where the journal says, verified again before anything of it runs."""
    journal = trial.read(apps / slots.JOURNAL)
    if journal is None:
        return
    folder = journal.get("release")
    if not isinstance(folder, str):
        raise ReleaseError(f"{apps / slots.JOURNAL} names no release folder: finish the update "
                           "by hand (kiosk update DIR)")
    print(f"update: resume: {journal.get('version')} from {folder}", flush=True)
    known = request.read_status_file(apps / request.STATUS) or {}
    status = _Status(apps, journal.get("version"), known.get("rollout"), journal.get("sha256"))
    _update(args, folder, status, sha256=journal.get("sha256"))


def _running_version(apps):
    """The version in the slot ``current`` picks (the kiosk runs it); this program's own on a
    kiosk not yet installed by slot."""
    active = slots.active_slot(apps)
    return (slots.installed_version(apps, active) if active else None) or __version__


def _update(args, release_at, status, *, sha256, still_wanted=lambda: None):
    """Download (a URL), verify, install, switch and keep or roll back, reporting each step;
    ReleaseError after a refusal or a rollback, with the status file saying which."""
    try:
        public_pem = Path(args.key).read_bytes()
    except OSError as exc:
        status.set("refused", f"cannot read the release key {args.key}: {exc.strerror}")
        raise ReleaseError(f"cannot read the release key {args.key}: {exc.strerror}") from None
    try:
        slot, manifest = _install(args, release_at, public_pem, status, sha256, still_wanted)
    except Exception as exc:
        status.failed(exc)
        raise
    print(f"update: done: {manifest.version} in slot {slot}", flush=True)
    status.version = manifest.version
    status.set("healthy")


def _install(args, folder, public_pem, status, sha256, still_wanted):
    if folder.startswith("https://"):
        url, folder = folder, Path(args.downloads) / re.sub(r"[^0-9a-f]", "", sha256)[:16]
        status.set("downloading")
        cafile = args.ca or (UPDATE_CA if Path(UPDATE_CA).is_file() else None)
        download.fetch(url, folder, public_pem, manifest_sha256=sha256, cafile=cafile,
                       on_progress=lambda done, total: print(
                           f"update: download: {done / 1e6:.1f} of {total / 1e6:.1f} MB",
                           flush=True))
        status.set("verified")
    office = (lambda wall: False) if args.any_time else quiet.office_hours(
        kiosk_config.load(args.config))

    def is_office_hours(wall):
        still_wanted()  # checked at each look, so a paused rollout stops a waiting kiosk
        return office(wall)

    def wait_quiet():
        quiet.wait_until_quiet(
            is_office_hours, lambda: _output(args.status_command), limit_s=args.wait_limit,
            on_wait=lambda why: print(f"update: wait: {why}", flush=True))

    return slots.install(
        Path(args.apps), folder, public_pem, state=args.state, manifest_sha256=sha256,
        backups=args.backups, wait_quiet=wait_quiet, stop=_command(args.stop_command),
        start=_command(args.start_command), health_timeout_s=args.health_timeout,
        on_step=status.step)


def _output(line):
    done = subprocess.run(shlex.split(line), capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"{line!r} failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def _command(line):
    return lambda: _output(line)
