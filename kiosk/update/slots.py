"""Two application slots and the link that picks one: installs that a power cut cannot break.

Under ``apps`` (root-owned, on the persistent data partition; the units start
``apps/current/bin/kiosk``)::

    a/, b/      one virtual environment per slot, built in place (a venv's scripts name its
                path, so it cannot be renamed once built)
    a/COMPLETE  written last, once the slot is installed, checked and on disk
    current     a symlink to the slot in use, only ever replaced by a rename, never edited

A kill at any instant leaves ``current`` on a complete slot: the old one until the link's rename,
the new one after it. A slot without its mark is rebuilt from scratch; ``current`` never points
at one. Running the install again redoes the unfinished part. Steps are announced
through ``on_step`` (the updater's log and progress); nothing of a release runs before
:func:`kiosk.update.release.verify` has passed.

The kiosk is stopped for the store's backup (so no visit comes after it), the trial file is
written before the switch (so a new version started by anyone starts on trial), and the new
version is kept only once it declares itself healthy (:mod:`kiosk.update.trial`). Otherwise
the old slot comes back, and the backup too if the new version moved the store's schema on.
"""

import os
import shutil
import sqlite3
import subprocess
import time
import venv
from pathlib import Path

from kiosk.errors import ReleaseError
from kiosk.store import DB_NAME
from kiosk.update import release, trial

SLOTS = ("a", "b")
CURRENT = "current"
COMPLETE = "COMPLETE"
STEPS = ("verify", "install", "check", "stop", "backup", "switch", "start", "healthy")


def active_slot(apps):
    """The slot ``current`` points at, or None on a kiosk never installed by slot."""
    link = Path(apps) / CURRENT
    target = os.readlink(link) if link.is_symlink() else None
    return target if target in SLOTS else None


def inactive_slot(apps):
    return "b" if active_slot(apps) == "a" else "a"


def install(apps, release_dir, public_pem, *, state, manifest_sha256=None, backups=None,
            stop=lambda: None, start=lambda: None, health_timeout_s=120.0,
            on_step=lambda step, detail: None, sleep=time.sleep, clock=time.monotonic):
    """Install the release in ``release_dir`` into the inactive slot, switch to it, and keep it
    only if the kiosk declares it healthy within ``health_timeout_s`` (:mod:`~kiosk.update.trial`).

    ``state`` is the kiosk's state folder (its store and the trial files); the store is copied
    into ``backups`` (default: ``state``/backups) while the kiosk is stopped, so a rollback can
    put back a store the new version migrated. ``stop`` and ``start`` stop and start the kiosk.
    Returns (slot, Manifest) once healthy. Raises ReleaseError when the release is refused or
    does not install (``current`` untouched), or after rolling back (the reason in the message).
    """
    apps, state = Path(apps), Path(state)
    backups = Path(backups) if backups else state / "backups"
    apps.mkdir(parents=True, exist_ok=True)
    on_step("verify", str(release_dir))
    manifest = release.verify(release_dir, public_pem, manifest_sha256=manifest_sha256)
    version = manifest.version
    active = active_slot(apps)
    if active is not None and installed_version(apps, active) == version:
        if _is_healthy(state, version):
            on_step("healthy", f"{version} is already in use (slot {active})")
            return active, manifest
        previous = _other(active)  # an earlier run was cut after its switch: finish its trial
    else:
        previous, active = active, inactive_slot(apps)
        if installed_version(apps, active) == version:
            on_step("install", f"{version} is already complete in slot {active}")
        else:
            _build(apps / active, release_dir, manifest, on_step)
        on_step("stop", "the kiosk, to back up its store")
        stop()
        store = state / DB_NAME
        if store.exists():
            on_step("backup", f"{store} before {version}")
            backup(store, backups / f"kiosk-before-{version}.db")
        trial.write(state / trial.TRIAL, {"version": version})  # before the switch: see trial
        (state / trial.HEALTHY).unlink(missing_ok=True)
        on_step("switch", f"{CURRENT} -> {active}")
        switch(apps, active)
    on_step("start", f"{version} on trial: no visits until it is healthy")
    start()
    deadline = clock() + health_timeout_s
    while not _is_healthy(state, version):
        if clock() >= deadline:
            reason = f"{version} was not healthy within {health_timeout_s:.0f} s"
            _roll_back(apps, state, backups, version, previous, stop, start, on_step, reason)
            raise ReleaseError(f"rolled back: {reason}")
        sleep(0.5)
    (state / trial.TRIAL).unlink(missing_ok=True)
    on_step("healthy", f"{version} in slot {active}")
    return active, manifest


def _roll_back(apps, state, backups, version, previous, stop, start, on_step, reason):
    """The old slot back, and the store as it was before the new version migrated it."""
    on_step("rollback", reason)
    stop()
    saved = backups / f"kiosk-before-{version}.db"
    if saved.exists() and _schema(state / DB_NAME) > _schema(saved):
        on_step("restore", f"{saved}: the store from before {version}'s migration")
        restore(saved, state / DB_NAME)
    if previous is not None and installed_version(apps, previous):
        switch(apps, previous)
    (state / trial.TRIAL).unlink(missing_ok=True)
    on_step("start", f"slot {active_slot(apps)} again")
    start()


def _is_healthy(state, version):
    declared = trial.read(Path(state) / trial.HEALTHY)
    return declared is not None and declared.get("version") == version


def _other(slot):
    return SLOTS[1 - SLOTS.index(slot)]


def _schema(path):
    """A store's schema version (``PRAGMA user_version``, :mod:`kiosk.store`); 0 if none."""
    if not Path(path).exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


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
    venv.EnvBuilder(system_site_packages=True, with_pip=True, symlinks=True).create(staged)
    # Only the verified wheels: pip's config files and PIP_* variables could add a find-links
    # folder (the test plants one), so pip runs isolated from both; wheels only, no build.
    _run([staged / "bin/python", "-m", "pip", "install", "--isolated", "--quiet", "--no-index",
          "--only-binary=:all:", "--disable-pip-version-check", "--no-cache-dir",
          "--find-links", str(Path(release_dir) / release.WHEELS),
          f"{release.NAME}[kiosk]=={manifest.version}"],
         "pip could not install the release offline",
         env={**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
              "PIP_CONFIG_FILE": os.devnull})
    on_step("check", f"slot {staged.name} runs kiosk --version")
    said = _run([staged / "bin/kiosk", "--version"], "the installed kiosk does not start")
    if manifest.version not in said:
        raise ReleaseError(f"the installed kiosk says {said.strip()!r}, not {manifest.version}")
    os.sync()  # the new slot's files are on disk before its mark says it is complete
    (staged / COMPLETE).write_text(manifest.version + "\n")
    _sync(staged)


def switch(apps, slot):
    """Point ``current`` at ``slot`` in one rename (atomic on every POSIX file system)."""
    apps = Path(apps)
    if not (apps / slot / COMPLETE).is_file():
        raise ReleaseError(f"slot {slot} is not completely installed: not switching to it")
    staged = apps / f"{CURRENT}.new"
    staged.unlink(missing_ok=True)
    staged.symlink_to(slot)
    os.replace(staged, apps / CURRENT)
    _sync(apps)


def backup(store, target):
    """A consistent copy of the SQLite store (its online backup API, so a live WAL is included),
    written beside ``target`` and renamed into place: a cut leaves no half backup."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    source, copy = sqlite3.connect(store), sqlite3.connect(partial)
    try:
        with copy:
            source.backup(copy)
    finally:
        source.close()
        copy.close()
    os.replace(partial, target)
    _sync(target.parent)


def restore(saved, store):
    """Put a backup back in place of the (stopped) kiosk's store: its WAL and shared-memory
    files go first, as they belong to the store being replaced."""
    partial = store.with_name(store.name + ".restoring")
    shutil.copyfile(saved, partial)
    for leftover in (store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
        leftover.unlink(missing_ok=True)
    os.replace(partial, store)
    _sync(store.parent)


def _run(argv, failure, env=None):
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise ReleaseError(f"{failure}: {(done.stderr or done.stdout).strip()[-600:]}")
    return done.stdout


def _sync(folder):
    """Make renames in ``folder`` durable before the next step relies on them."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
