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
that even with no request on file. While that journal names a trial, the updater of the slot
before it judges the trial: an updater started from the slot on trial hands over to it first
(:func:`_trusted_updater`), so a release never decides whether it is kept.

Outcomes that are the release's verdict (a bad signature or hash, a downgrade, a version other
than the request's, a platform or store it does not fit, a rollback, healthy) are pinned in the
status file to the request's manifest hash and rollout id, and that request is not acted on
again. A failure that is not the release's (:class:`~kiosk.update.release.Transient`: the link,
the server, the disk, the wait limit, a withdrawal) is not pinned: the same request is tried
again at the next run. A request the kiosk replaces while the updater works is taken up in the
same run (systemd folds a path change into a running job), at most
:data:`MAX_REQUESTS_PER_RUN` times.

Nothing it prints holds a long hex string whole (a manifest hash, the download folder's name
could hold a run of 13 digits, a citizen ID's shape): see :func:`_safe`.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from kiosk import __version__, logsafe
from kiosk import config as kiosk_config
from kiosk.errors import ReleaseError
from kiosk.update import download, quiet, release, request, slots, trial

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
#: Requests one run acts on, when the kiosk keeps replacing its request meanwhile; a change
#: after the last is taken up at its next change or the next boot.
MAX_REQUESTS_PER_RUN = 4
#: Set for an updater started by another from the trial's previous slot: it starts no other.
TRUSTED_ENV = "KIOSK_UPDATER_TRUSTED_SLOT"
#: How a transient failure's reason starts in the status file (the request is tried again).
RETRY = "retry later: "
#: The kiosk's service failed: gave up (start limit) or was restarted since the trial began
#: (systemd flushes NRestarts at a start that follows a stop).
FAILED_COMMAND = ("sh -c 'systemctl is-failed --quiet kiosk.service || "
                  "test \"$(systemctl show -P NRestarts kiosk.service)\" -gt 0'")
#: A download folder's name: two groups of 8 hex digits of the manifest's SHA-256, so the name
#: never holds 13 digits in a row (a citizen ID's shape, redacted in every log).
_FOLDER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{8}|[0-9a-f]{16}")
_LONG_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{13,}(?![0-9A-Za-z])")


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
    parser.add_argument("--failed-command", default=FAILED_COMMAND,
                        help="exits 0 once the kiosk's service failed, which ends its trial "
                        "at once (default: %(default)s)")


class _Withdrawn(release.Transient):
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
        _say(f"update: {step}: {detail}")  # after: the file says it already

    def failed(self, exc):
        """The update ended without a healthy new version: say why in the status. Returns
        whether that is final (pinned to the release and rollout, never tried again)."""
        reason = str(exc)
        if isinstance(exc, _Withdrawn):  # not this release's fault: a new request may retry it
            self.set("refused", reason, sha256=False)
            return False
        if self.rolled_back:
            self.set("rolled_back", reason.removeprefix("rolled back: "))
            return True
        if isinstance(exc, release.Transient) or not isinstance(exc, ReleaseError):
            self.set("refused", RETRY + reason, sha256=False)  # the link, the disk: not pinned
            return False
        self.set("refused", reason)
        return True


def _safe(text):
    """``text`` as the updater prints it: each hex run of 13 or more digits (a manifest hash, a
    key id) written in groups of 8 (as ``topics.grouped_sha256`` does), which can never hold a
    citizen ID's shape; any such shape left redacted; control characters escaped."""
    grouped = _LONG_HEX.sub(
        lambda run: "-".join(run[0][i:i + 8] for i in range(0, len(run[0]), 8)), str(text))
    return logsafe.printable(logsafe.redact_ids(grouped), 2000)


def _say(line):
    print(_safe(line), flush=True)


def main(args):
    try:
        return _main(args)
    except ReleaseError as exc:
        exc.args = (_safe(str(exc)),)  # the command line prints it: no whole hash either
        raise


def _main(args):
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
    trusted = _trusted_updater(apps, sys.argv[1:])
    if trusted is not None:
        _say(f"update: trusted: the trial is judged by the updater of slot {trusted[1]}")
        os.execve(trusted[0][0], trusted[0], {**os.environ, TRUSTED_ENV: trusted[1]})
    _resume(args, apps)
    for turn in range(1, MAX_REQUESTS_PER_RUN + 1):
        handled, code, failure = _take_request(args, apps)
        now = _asked(args.request)
        if now is None or now == handled:
            break
        if turn == MAX_REQUESTS_PER_RUN:
            _say("update: request: changed again; left for its next change or the next boot")
            break
        if failure is not None:
            _say(f"update: refused: {failure}")
        _say("update: request: it changed while the updater worked: taking up the new one")
    if failure is not None:
        raise failure
    return code


def _asked(path):
    """What the request on file asks, to compare with what was handled: its content, its
    refusal's reason, or None."""
    try:
        wanted = request.read_request(path)
    except ReleaseError as exc:
        return str(exc)
    return None if wanted is None else request.request_content(wanted)


def _take_request(args, apps):
    """Act once on the request on file: (what it asked as :func:`_asked` says it, the exit
    status, the ReleaseError it ended with or None)."""
    try:
        wanted = request.read_request(args.request)
    except ReleaseError as exc:
        _say(f"update: refused: {exc}")
        _Status(apps).set("refused", str(exc))
        return str(exc), 1, None
    if wanted is None:
        return None, 0, None  # withdrawn, or never asked: the path unit fires on a deletion too
    try:
        return request.request_content(wanted), _act_on(args, apps, wanted), None
    except ReleaseError as exc:
        return request.request_content(wanted), 1, exc


def _act_on(args, apps, wanted):
    running = _running_version(apps)
    if wanted.version == running:
        _say(f"update: healthy: {running} is already running")
        return 0
    done = request.read_status_file(apps / request.STATUS) or {}
    if ((done.get("sha256"), done.get("rollout")) == (wanted.sha256, wanted.rollout)
            and done.get("state") in ("healthy", "refused", "rolled_back")):
        _say(f"update: {done['state']}: this request ({wanted.version}) was handled already; "
             "a new rollout id tries it again")
        return 0
    status = _Status(apps, wanted.version, wanted.rollout, wanted.sha256)
    try:
        if not request.is_newer(wanted.version, running):
            raise ReleaseError(f"downgrade refused: {wanted.version} is not newer than the "
                               f"running {running}; a technician on site can install it by "
                               "hand (kiosk update DIR)")
    except (ReleaseError, ValueError) as exc:
        _say(f"update: refused: {exc}")
        status.set("refused", str(exc))
        return 1
    status.set("requested")
    _say(f"update: request: {wanted.version} from {wanted.url} (rollout {wanted.rollout})")

    def still_wanted():
        if request.read_own_request(args.request) != request.request_content(wanted):
            raise _Withdrawn("withdrawn: the request was withdrawn or changed before the kiosk "
                             "was stopped; nothing was changed")

    # The request's version is only the kiosk's claim: the signed manifest must say the same,
    # and be newer than the running slot, before a wheel is fetched or a slot built.
    _update(args, wanted.url, status, sha256=wanted.sha256, still_wanted=still_wanted,
            version=wanted.version, newer_than=running)
    return 0


def _trusted_updater(apps, argv, *, prefix=sys.prefix, environ=os.environ):
    """([command], slot) to run instead of this updater, or None. While root's journal names a
    trial, the updater to run is the one of the slot before it (the version that proved
    itself): the unit starts ``current/bin/kiosk``, which after a switch is the release on
    trial, and that code must not judge (or fail to judge) itself. Only for ``kiosk update``
    as a program (``argv`` from ``sys.argv``), never twice (:data:`TRUSTED_ENV`), and only
    into a complete slot."""
    previous = (trial.read(apps / slots.JOURNAL) or {}).get("previous")
    if previous not in slots.SLOTS or argv[:1] != ["update"] or TRUSTED_ENV in environ:
        return None
    if Path(prefix).resolve() == (apps / previous).resolve():
        return None  # this is the trusted slot's updater already
    if slots.installed_version(apps, previous) is None:
        _say(f"update: trusted: slot {previous} is not complete; this updater goes on")
        return None
    return [str(apps / previous / "bin" / "kiosk"), *argv], previous


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
    _say(f"update: resume: {journal.get('version')} from {folder}")
    known = request.read_status_file(apps / request.STATUS) or {}
    status = _Status(apps, journal.get("version"), known.get("rollout"), journal.get("sha256"))
    _update(args, folder, status, sha256=journal.get("sha256"))


def _running_version(apps):
    """The version in the slot ``current`` picks (the kiosk runs it); this program's own on a
    kiosk not yet installed by slot."""
    active = slots.active_slot(apps)
    return (slots.installed_version(apps, active) if active else None) or __version__


def _update(args, release_at, status, *, sha256, still_wanted=lambda: None, version=None,
            newer_than=None):
    """Download (a URL), verify, install, switch and keep or roll back, reporting each step;
    ReleaseError after a refusal or a rollback, with the status file saying which. The
    download's folder goes once the update's outcome is final (healthy, rolled back, refused
    for good): the data partition is the citizen-visit store's too."""
    downloaded = _downloaded_at(args, release_at, sha256)
    try:
        try:
            public_pem = Path(args.key).read_bytes()
        except OSError as exc:
            raise release.Transient(f"cannot read the release key {args.key}: "
                                    f"{exc.strerror}") from None
        slot, manifest = _install(args, release_at, public_pem, status, sha256, still_wanted,
                                  version, newer_than)
    except Exception as exc:
        if status.failed(exc):
            _forget(args, downloaded)
        raise
    _say(f"update: done: {manifest.version} in slot {slot}")
    status.version = manifest.version
    status.set("healthy")
    _forget(args, downloaded)


def _download_folder(args, sha256):
    """Where the release of manifest hash ``sha256`` is fetched to (see :data:`_FOLDER`)."""
    plain = re.sub(r"[^0-9a-f]", "", sha256 or "")
    return Path(args.downloads) / f"{plain[:8]}-{plain[8:16]}"


def _downloaded_at(args, release_at, sha256):
    """The download folder this update uses (a URL's, or the one a journal names), or None
    for a release folder of the technician's own."""
    if release_at.startswith("https://"):
        return _download_folder(args, sha256)
    folder = Path(release_at).absolute()
    return folder if folder.parent == Path(args.downloads).absolute() else None


def _forget(args, folder):
    """Delete a finished update's download, never while root's journal still needs it."""
    if folder is not None and not (Path(args.apps) / slots.JOURNAL).exists():
        shutil.rmtree(folder, ignore_errors=True)


def _prune_downloads(args, keep):
    """Earlier downloads left by updates that never finished (a failure that was not final,
    then another release asked for): only the one being fetched stays."""
    downloads = Path(args.downloads)
    named = (trial.read(Path(args.apps) / slots.JOURNAL) or {}).get("release")
    if not downloads.is_dir():
        return
    for old in downloads.iterdir():
        if _FOLDER.fullmatch(old.name) and old != keep and str(old.absolute()) != named:
            shutil.rmtree(old, ignore_errors=True)


def _install(args, folder, public_pem, status, sha256, still_wanted, version, newer_than):
    if folder.startswith("https://"):
        url, folder = folder, _download_folder(args, sha256)
        status.set("downloading")
        _prune_downloads(args, keep=folder)
        cafile = args.ca or (UPDATE_CA if Path(UPDATE_CA).is_file() else None)
        download.fetch(url, folder, public_pem, manifest_sha256=sha256, version=version,
                       newer_than=newer_than, cafile=cafile,
                       on_progress=lambda done, total: _say(
                           f"update: download: {done / 1e6:.1f} of {total / 1e6:.1f} MB"))
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
        version=version, newer_than=newer_than, backups=args.backups, wait_quiet=wait_quiet,
        stop=_command(args.stop_command), start=_command(args.start_command),
        is_failed=lambda: _succeeds(args.failed_command), health_timeout_s=args.health_timeout,
        on_step=status.step)


def _output(line):
    done = subprocess.run(shlex.split(line), capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"{line!r} failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def _command(line):
    return lambda: _output(line)


def _succeeds(line):
    return subprocess.run(shlex.split(line), capture_output=True).returncode == 0
