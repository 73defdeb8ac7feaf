"""Files one process hands to another: replaced whole, and read with distrust. Standard library
only.

A power cut must leave the old file or the new one, never a part, and a file a less trusted
process could have written (the kiosk user's, read by a root unit) is read only if it is a
small regular file reached without a symlink.
"""

import errno
import os
import stat
import tempfile
from pathlib import Path


def replace(path, data, mode):
    """Write ``data`` beside ``path`` and rename it into place, durably. The temporary file is
    made afresh under a random name (never a planted symlink), 0600 until it gets ``mode``
    just before the rename, so no reader ever sees a key with wider rights."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder):
    """fsync a folder, so the renames and deletions in it survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_limited(path, limit, what, error):
    """The bytes of the regular file ``path`` (None if missing), never through a symlink and
    never more than ``limit``; raises ``error`` (an exception class) naming ``what`` otherwise.
    O_NONBLOCK: a FIFO planted at the name cannot hang the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{what} {path} is a symlink: refused") from None
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise error(f"{what} {path} is not a regular file: refused")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what} {path} is over {limit} bytes: refused")
    return data
