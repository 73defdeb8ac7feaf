"""Two application slots and the link that picks one: installs that a power cut cannot break.

Under ``apps`` (``/opt/kiosk``: root-owned, its own partition, since the data partition is
mounted noexec; the units start ``apps/current/bin/kiosk``)::

    a/, b/      one virtual environment per slot, built in place (a venv's scripts name its
                path, so it cannot be renamed once built)
    a/COMPLETE  written last, once the slot is installed, checked and on disk
    current     a symlink to the slot in use, only ever replaced by a rename, never edited
    journal.json          root's record of an update under way, until its trial ends
    backups/              the store as it was before each version (kiosk-before-<version>/)
    update-status.json    where the latest update stands (kiosk.update.request), for health

A kill at any instant leaves ``current`` on a complete slot: the old one until the link's rename,
the new one after it. A slot without its mark is rebuilt from scratch; ``current`` never points
at one. Running the install again redoes the unfinished part. Steps are announced
through ``on_step`` (the updater's log and progress); nothing of a release runs before
:func:`kiosk.update.release.verify` has passed.

The kiosk is stopped for the store's backup (so no visit comes after it), the trial file is
written before the switch (so a new version started by anyone starts on trial), and the new
version is kept only once it declares itself healthy (:mod:`kiosk.update.trial`). Otherwise
the old slot comes back, and the saved store too if the release's schema is newer.
"""

import contextlib
import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path, PurePosixPath

from kiosk import atomic
from kiosk.errors import ReleaseError
from kiosk.store import DB_NAME
from kiosk.update import release, request, store_files, trial

SLOTS = ("a", "b")
CURRENT = "current"
COMPLETE = "COMPLETE"
#: Root's record of an update under way (version, slot, previous), until its trial ends.
JOURNAL = "journal.json"
#: Room a slot takes beyond its wheels: the venv itself with pip (22 MB measured on Python 3.11).
VENV_BYTES = 32 * 1000 * 1000
#: The wheels unpacked take about twice their size; with the wheels' own size, three times.
SLOT_FACTOR = 3
#: How often the trial asks whether the kiosk's service failed (a command each time).
FAILED_EVERY_S = 2.0
STEPS = ("verify", "install", "check", "wait", "stop", "backup", "switch", "start", "healthy")
#: Run by a new slot's Python: the project's requirements (core and the kiosk extra) that no
#: installed distribution meets. pip's own ``check`` would judge every system package too.
_UNMET = """import importlib.metadata as md, sys
from pip._vendor.packaging.requirements import Requirement
unmet = []
for line in md.requires(sys.argv[1]) or []:
    need = Requirement(line)
    if need.marker and not need.marker.evaluate({"extra": "kiosk"}):
        continue
    try:
        found = md.version(need.name)
    except md.PackageNotFoundError:
        unmet.append(str(need))
        continue
    if not need.specifier.contains(found, prereleases=True):
        unmet.append(f"{need} (found {found})")
sys.exit("; ".join(unmet) or None)
"""


def active_slot(apps):
    """The slot ``current`` points at, or None on a kiosk never installed by slot. Refuses a
    ``current`` that is anything else: the slot it would rebuild might be the running one."""
    link = Path(apps) / CURRENT
    if not link.is_symlink():
        if link.exists():
            raise ReleaseError(f"{link} is not a link to a slot; fix it by hand")
        return None
    target = os.readlink(link)
    if target not in SLOTS:
        raise ReleaseError(f"{link} points at {target!r}, not at slot a or b; fix it by hand")
    return target


def inactive_slot(apps):
    return "b" if active_slot(apps) == "a" else "a"


def install(apps, release_dir, public_pem, *, state, manifest_sha256=None, version=None,
            newer_than=None, backups=None, wait_quiet=lambda: None, stop=lambda: None,
            start=lambda: None, is_failed=lambda: False, health_timeout_s=120.0,
            on_step=lambda step, detail: None, sleep=time.sleep, clock=time.monotonic,
            free_bytes=lambda path: shutil.disk_usage(path).free):
    """Install the release in ``release_dir`` into the inactive slot, switch to it, and keep it
    only if the kiosk declares it healthy within ``health_timeout_s`` (:mod:`~kiosk.update.trial`).

    ``state`` is the kiosk's state folder (its store and the trial files). The store is copied
    into ``backups`` (root's; default: ``apps/backups``) while the kiosk is stopped, so a
    rollback can put back a store the new version migrated. ``wait_quiet`` returns once the
    kiosk may be stopped (:mod:`~kiosk.update.quiet`); ``stop`` and ``start`` stop and start
    the kiosk; ``is_failed`` says whether the kiosk's service failed (the trial then ends
    early, without waiting out ``health_timeout_s``). ``version`` and ``newer_than`` (from the
    kiosk's request) are checked on the verified manifest before anything is built
    (:func:`kiosk.update.request.check_release`). Only the latest store backup is kept, and
    the slot is built only when ``apps`` has room for it. Returns (slot, Manifest) once
    healthy. Raises ReleaseError when the release is refused or does not install (``current``
    untouched), or after rolling back (the reason in the message). One update at a time (a
    lock on ``apps``).
    """
    apps, state = Path(apps), Path(state)
    backups = Path(backups) if backups else apps / "backups"
    apps.mkdir(parents=True, exist_ok=True)
    with _locked(apps):
        on_step("verify", str(release_dir))
        manifest = release.verify(release_dir, public_pem, manifest_sha256=manifest_sha256)
        request.check_release(manifest, version, newer_than)
        version = manifest.version
        active, journal = active_slot(apps), trial.read(apps / JOURNAL)
        saved = backups / f"kiosk-before-{version}"
        if journal and journal.get("version") != version:
            # Its trial was cut: the slot not in use may be the last good one, never rebuild it.
            raise ReleaseError(f"the update to {journal.get('version')} was cut before its "
                               "trial ended; run that update again first")
        if journal and journal.get("slot") == active:
            previous = journal.get("previous")  # cut after its switch: finish its trial
        elif active is not None and installed_version(apps, active) == version:
            on_step("healthy", f"{version} is already in use (slot {active})")
            return active, manifest
        else:
            # Early, before a build: the authoritative check follows the backup.
            release.check_fits(manifest, store_files.header_schema(state))
            previous, active = active, inactive_slot(apps)
            # A backup matters only during its version's trial, and no other trial is open.
            _prune_backups(backups, keep=saved)
            if installed_version(apps, active) == version:
                on_step("install", f"{version} is already complete in slot {active}")
            else:
                shutil.rmtree(apps / active, ignore_errors=True)  # the slot not in use
                _check_room(apps, active, manifest, state, free_bytes)
                _build(apps / active, release_dir, manifest, on_step)
            on_step("wait", "for the kiosk to be free, outside office hours")
            wait_quiet()
            on_step("stop", "the kiosk, to back up its store")
            stop()
            on_step("backup", f"{state / DB_NAME} before {version}")
            store_files.save(state, saved)
            try:
                release.check_fits(manifest, store_files.schema(saved))
            except ReleaseError:
                start()  # the kiosk as it was
                raise
            # Root's own record of the attempt, then the trial file, both before the switch:
            # a version started by anyone after it starts on trial, and a rerun finishes it.
            # The release folder and its hash let the updater's run at boot finish a cut update.
            trial.write(apps / JOURNAL, {"version": version, "slot": active, "previous": previous,
                                         "release": str(Path(release_dir).absolute()),
                                         "sha256": manifest_sha256})
            trial.write(state / trial.TRIAL, {"version": version})
            (state / trial.HEALTHY).unlink(missing_ok=True)
            on_step("switch", f"{CURRENT} -> {active}")
            switch(apps, active)
        on_step("start", f"{version} on trial: no visits until it is healthy")
        failure = _trial(state, version, stop, start, health_timeout_s, sleep, clock,
                         is_failed=is_failed)
        if failure is None:
            (state / trial.TRIAL).unlink(missing_ok=True)
            (apps / JOURNAL).unlink(missing_ok=True)
            on_step("healthy", f"{version} in slot {active}")
            return active, manifest
        _roll_back(apps, state, saved, manifest, previous, stop, start, on_step, failure)
        raise ReleaseError(f"rolled back: {failure}")


def _trial(state, version, stop, start, timeout_s, sleep, clock, is_failed=lambda: False):
    """Start the new version and wait for its health; None when healthy, else the reason. The
    kiosk is stopped before the verdict, so a health declared at the last instant still counts
    and no visit is taken by a version about to be rolled back. A kiosk whose service failed
    (``is_failed``, asked every :data:`FAILED_EVERY_S`) ends the wait at once: systemd would
    restart it until its start limit reboots the kiosk, long before the timeout."""
    try:
        start()
        started = clock()
        deadline, failed, next_look = started + timeout_s, False, started
        while not _is_healthy(state, version) and clock() < deadline:
            if clock() >= next_look:
                failed, next_look = is_failed(), clock() + FAILED_EVERY_S
                if failed:
                    break
            sleep(0.5)
        if _is_healthy(state, version):
            return None
        stop()
        if _is_healthy(state, version):
            start()
            return None
        if failed:
            return f"{version} failed on trial after {clock() - started:.0f} s (its service failed)"
        return f"{version} was not healthy within {timeout_s:.0f} s"
    except Exception as exc:  # noqa: BLE001 - a start that fails is a failed trial, not a crash
        return f"{version} did not start: {exc}"


def _roll_back(apps, state, saved, manifest, previous, stop, start, on_step, reason):
    """The old slot back, and the store as it was if the new version's schema is newer. Each
    part is tried on its own, so one failure leaves the kiosk running the old slot anyway."""
    on_step("rollback", reason)
    parts = [("stop", stop)]
    if manifest.schema > store_files.schema(saved):
        on_step("restore", f"{saved}: the store from before {manifest.version}")
        parts.append(("restore", lambda: store_files.restore(saved, state)))
    if previous is not None:
        parts.append(("switch", lambda: switch(apps, previous)))
    parts += [("trial", lambda: (state / trial.TRIAL).unlink(missing_ok=True)),
              ("journal", lambda: (apps / JOURNAL).unlink(missing_ok=True))]
    for name, part in parts:
        try:
            part()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            on_step("rollback", f"{name} failed: {exc}")
    on_step("start", f"slot {active_slot(apps)} again")
    start()


def _is_healthy(state, version):
    declared = trial.read(Path(state) / trial.HEALTHY)
    return declared is not None and declared.get("version") == version


@contextlib.contextmanager
def _locked(apps):
    """One updater at a time: a second one waits for the first to finish."""
    with open(apps / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _prune_backups(backups, *, keep):
    """Every store backup but ``keep`` goes (and any cut copy): they share the slots' partition."""
    if not backups.is_dir():
        return
    for old in backups.iterdir():
        if old.name.startswith("kiosk-before-") and old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _check_room(apps, slot, manifest, state, free_bytes):
    """Transient unless ``apps`` has room for the slot (venv and unpacked wheels) and the store's
    backup: a slot half built on a full partition is refused late, and may leave no room for
    the journal."""
    wheels = sum(entry.size for entry in manifest.files)
    store = sum(os.lstat(Path(state) / name).st_size for name in store_files.FILES
                if os.path.lexists(Path(state) / name))
    needed = wheels * SLOT_FACTOR + VENV_BYTES + store
    have = free_bytes(apps)
    if have < needed:
        raise release.Transient(f"release {manifest.version} needs {needed / 1e6:.0f} MB free "
                                f"under {apps} for slot {slot} and the store's backup; "
                                f"{have / 1e6:.0f} MB free")


def installed_version(apps, slot):
    """The version a complete slot holds, or None (never installed, or cut mid-install)."""
    try:
        return (Path(apps) / slot / COMPLETE).read_text().strip()
    except OSError:
        return None


def _build(staged, release_dir, manifest, on_step):
    """A fresh venv in the slot not in use, from the verified wheels only, checked, then marked
    complete once it is on disk."""
    on_step("install", f"{manifest.version} into slot {staged.name}")
    shutil.rmtree(staged, ignore_errors=True)  # whatever it held: the slot not in use
    # The system's site-packages: Debian's python3-icu, python3-pyscard and lgpio stand in for
    # projects with no wheel for the Pi (provisioning/README.md).
    has_pip = _give_pip(staged)  # into the folders the venv then takes as they are
    venv.EnvBuilder(system_site_packages=True, with_pip=not has_pip, symlinks=True).create(staged)
    # Only the verified wheels, and only as they were verified: every wheel of the manifest is
    # pinned to its signed hash, so pip checks the very bytes it installs (a release folder
    # changed after verify fails here). pip's config files and PIP_* variables could add a
    # find-links folder (the test plants one): pip runs isolated from both. Wheels only.
    pins = staged / "release-pins.txt"
    pins.write_text("".join(f"{_pinned(entry)}\n" for entry in manifest.files))
    # -I: no PYTHON* variables, and not the working folder on sys.path (an egg-info there would
    # pass for an installed distribution).
    pip = [staged / "bin/python", "-I", "-m", "pip", "--isolated", "--disable-pip-version-check"]
    clean = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
             "PIP_CONFIG_FILE": os.devnull}
    _run([*pip, "install", "--quiet", "--no-index", "--only-binary=:all:", "--no-cache-dir",
          "--no-deps", "--require-hashes", "--find-links", Path(release_dir) / release.WHEELS,
          "-r", pins], "pip could not install the release offline", env=clean)
    # --no-deps installs exactly the manifest; a requirement of the kiosk it leaves unmet
    # (beyond what Debian's packages provide) is a release built wrong.
    _run([staged / "bin/python", "-I", "-c", _UNMET, release.NAME],
         "the release lacks a dependency", env=clean)
    on_step("check", f"slot {staged.name} runs kiosk --version")
    said = _run([staged / "bin/kiosk", "--version"], "the installed kiosk does not start")
    if manifest.version not in said:
        raise ReleaseError(f"the installed kiosk says {said.strip()!r}, not {manifest.version}")
    os.sync()  # the new slot's files are on disk before its mark says it is complete
    (staged / COMPLETE).write_text(manifest.version + "\n")
    atomic.sync_folder(staged)


def _give_pip(staged):
    """Copy the updater's own pip into the new venv, file by file as its RECORD lists them
    (pure Python: it runs from any venv of this interpreter); False when the updater has none,
    and ensurepip must. ensurepip installs pip and setuptools and compiles them: 3.4 s on
    this machine, two minutes of the emulated Pi's update. The slot keeps pip for the next
    update."""
    try:
        dist = importlib.metadata.distribution("pip")
    except importlib.metadata.PackageNotFoundError:
        return False
    site = staged / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for entry in dist.files or ():
        if entry.parts[0] == ".." or "__pycache__" in entry.parts:
            continue  # the bin/ scripts (the venv calls python -m pip) and stale bytecode
        target = site / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dist.locate_file(entry), target)
    return True


def _pinned(entry):
    """A requirement line for one wheel of the manifest: its name and version, and its hash."""
    name, version = PurePosixPath(entry.path).name.split("-")[:2]
    return f"{name}=={version} --hash=sha256:{entry.sha256}"


def switch(apps, slot):
    """Point ``current`` at ``slot`` in one rename (atomic on every POSIX file system)."""
    apps = Path(apps)
    if not (apps / slot / COMPLETE).is_file():
        raise ReleaseError(f"slot {slot} is not completely installed: not switching to it")
    staged = apps / f"{CURRENT}.new"
    staged.unlink(missing_ok=True)
    staged.symlink_to(slot)
    os.replace(staged, apps / CURRENT)
    atomic.sync_folder(apps)


def _run(argv, failure, env=None):
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                          cwd="/")
    if done.returncode != 0:
        raise ReleaseError(f"{failure}: {(done.stderr or done.stdout).strip()[-600:]}")
    return done.stdout
