"""The kiosk's store as files, for the updater (root) to save and put back while the kiosk is
stopped, without ever opening it as SQLite where the kiosk can see.

Root works here in a folder the kiosk user owns, so nothing it opens there follows a symlink
(``O_NOFOLLOW``) and nothing it creates there can be pre-planted (``O_EXCL``); what it puts back
belongs to the kiosk user again, as the store did. The saved copy lives in root's own folder,
where the schema is read from a private copy.
"""

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from kiosk.atomic import sync_folder
from kiosk.errors import ReleaseError
from kiosk.store import DB_NAME

#: The store's files: the database and, after an unclean stop, its write-ahead log.
FILES = (DB_NAME, DB_NAME + "-wal")


def save(state, saved):
    """Copy the stopped kiosk's store from ``state`` into the folder ``saved`` (replaced)."""
    saved = Path(saved)
    staged = saved.with_name(saved.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True, mode=0o700)
    for name in FILES:
        try:
            source = os.open(Path(state) / name, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ReleaseError(f"cannot back up {Path(state) / name}: {exc.strerror}") from None
        with os.fdopen(source, "rb") as src, open(staged / name, "xb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
    shutil.rmtree(saved, ignore_errors=True)
    os.replace(staged, saved)
    sync_folder(saved.parent)


def schema(saved):
    """The saved store's schema version (``PRAGMA user_version``); 0 when none was saved."""
    saved = Path(saved)
    if not (saved / DB_NAME).is_file():
        return 0
    with tempfile.TemporaryDirectory(dir=saved.parent) as private:
        for name in FILES:
            if (saved / name).is_file():
                shutil.copyfile(saved / name, Path(private) / name)
        db = sqlite3.connect(Path(private) / DB_NAME)
        try:
            return db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()


def header_schema(state):
    """The live store's schema version as its file header says (offset 60, where SQLite keeps
    ``user_version``), read without opening it as SQLite; 0 when there is no store. The kiosk
    checkpoints after a migration, so the header is current except after an unclean stop."""
    try:
        fd = os.open(Path(state) / DB_NAME, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0
    with os.fdopen(fd, "rb") as db:
        header = db.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
        return 0
    return int.from_bytes(header[60:64], "big")


def restore(saved, state):
    """Put the saved store back in ``state`` for the kiosk user, replacing what is there."""
    state = Path(state)
    owner = os.stat(state, follow_symlinks=False)
    staged = []
    for name in FILES:
        if not (Path(saved) / name).is_file():
            continue
        target = state / f".{name}.restoring"
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as dst, open(Path(saved) / name, "rb") as src:
            shutil.copyfileobj(src, dst)
            os.fchown(dst.fileno(), owner.st_uid, owner.st_gid)
            dst.flush()
            os.fsync(dst.fileno())
        staged.append((target, state / name))
    for leftover in (DB_NAME + "-wal", DB_NAME + "-shm"):  # the replaced store's own
        (state / leftover).unlink(missing_ok=True)
    for target, final in staged:
        os.replace(target, final)
    sync_folder(state)


