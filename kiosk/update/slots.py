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
"""

import os
import shutil
import sqlite3
import subprocess
import venv
from pathlib import Path

from kiosk.errors import ReleaseError
from kiosk.update import release

SLOTS = ("a", "b")
CURRENT = "current"
COMPLETE = "COMPLETE"
STEPS = ("verify", "install", "check", "backup", "switch", "restart")


def active_slot(apps):
    """The slot ``current`` points at, or None on a kiosk never installed by slot."""
    link = Path(apps) / CURRENT
    target = os.readlink(link) if link.is_symlink() else None
    return target if target in SLOTS else None


def inactive_slot(apps):
    return "b" if active_slot(apps) == "a" else "a"


def install(apps, release_dir, public_pem, *, manifest_sha256=None, store=None, backups=None,
            restart=lambda: None, on_step=lambda step, detail: None):
    """Install the release in ``release_dir`` into the inactive slot and switch to it.

    ``store`` (the kiosk's SQLite file) is copied into ``backups`` first, so a rollback can put
    back a store the new version migrated. ``restart`` restarts the kiosk on the new slot.
    Returns (slot, Manifest). Raises ReleaseError, with ``current`` untouched, when the release
    is refused or does not install.
    """
    apps = Path(apps)
    apps.mkdir(parents=True, exist_ok=True)
    on_step("verify", str(release_dir))
    manifest = release.verify(release_dir, public_pem, manifest_sha256=manifest_sha256)
    active = active_slot(apps)
    if active is not None and installed_version(apps, active) == manifest.version:
        on_step("restart", f"{manifest.version} is already in use (slot {active})")
        restart()  # an earlier run may have been cut before its restart
        return active, manifest
    slot = inactive_slot(apps)
    if installed_version(apps, slot) == manifest.version:
        on_step("install", f"{manifest.version} is already complete in slot {slot}")
    else:
        _build(apps / slot, release_dir, manifest, on_step)
    if store is not None and Path(store).exists():
        on_step("backup", f"{store} before {manifest.version}")
        backup(Path(store), Path(backups) / f"kiosk-before-{manifest.version}.db")
    on_step("switch", f"{CURRENT} -> {slot}")
    switch(apps, slot)
    on_step("restart", manifest.version)
    restart()
    return slot, manifest


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
    _run([staged / "bin/python", "-m", "pip", "install", "--quiet", "--no-index",
          "--disable-pip-version-check", "--no-cache-dir", "--find-links",
          str(Path(release_dir) / release.WHEELS), f"{release.NAME}[kiosk]=={manifest.version}"],
         "pip could not install the release offline")
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


def _run(argv, failure):
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
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
