"""Who may use the console: the users file (argon2 hashes, mode 0600), the two roles, the
session's user, CSRF tokens and the brake on failed logins.

The users file is JSON, ``{"users": {name: {"role": ..., "hash": ...}}}``, written whole
through a private temporary file. A session holds the user's name and a fingerprint of their
hash, so changing a password or removing a user ends every session of theirs at the next
request. The file is read again when it changes on disk, so ``kiosk-fleet users`` works while
the console runs.
"""

import hashlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kiosk.errors import ConfigError

ROLES = ("viewer", "operator")
MIN_PASSWORD = 10
NAME = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
#: Failed logins from one address allowed in :data:`FAIL_WINDOW_S` before the next is refused.
FAIL_LIMIT = 5
FAIL_WINDOW_S = 60.0

_hasher = PasswordHasher()
#: Verified against when the name is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str

    @property
    def is_operator(self):
        return self.role == "operator"

    @property
    def fingerprint(self):
        """Changes with the password: a session carries it, so ``passwd`` ends old sessions."""
        return hashlib.sha256(self.hash.encode()).hexdigest()[:16]


def _bad(path, why):
    return ConfigError([why], f"users file {path}")


def read_users(path):
    """``{name: User}`` from the users file; ConfigError naming the file and the fault."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _bad(path, f"cannot read it ({exc.strerror}); create it with "
                         "`kiosk-fleet users add`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _bad(path, f"mode {stat.S_IMODE(mode):04o} lets others read the hashes; "
                         f"chmod 600 {path}")
    try:
        users = json.loads(text)["users"]
        found = {}
        for name, entry in users.items():
            if not NAME.match(name) or entry["role"] not in ROLES or not str(
                    entry["hash"]).startswith("$argon2"):
                raise ValueError(f"user {name!r}: needs a role ({', '.join(ROLES)}) and "
                                 "an argon2 hash")
            found[name] = User(name, entry["role"], entry["hash"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _bad(path, f"not a users file ({exc}); manage it only with "
                         "`kiosk-fleet users`") from None
    return found


def write_users(path, users):
    """Write ``users`` whole, mode 0600 from the start (never readable by others)."""
    path = Path(path)
    data = {"users": {u.name: {"role": u.role, "hash": u.hash}
                      for u in sorted(users.values(), key=lambda u: u.name)}}
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    os.replace(tmp, path)


def hash_password(password):
    if len(password) < MIN_PASSWORD:
        raise ConfigError([f"a password needs at least {MIN_PASSWORD} characters"], "password")
    return _hasher.hash(password)


class Users:
    """The users file as the console reads it: reloaded when its mtime or size changes."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen, self._users = None, read_users(self.path)

    def _current(self):
        with self._lock:
            st = self.path.stat()
            if (st.st_mtime_ns, st.st_size) != self._seen:
                self._users = read_users(self.path)
                self._seen = (st.st_mtime_ns, st.st_size)
            return self._users

    def get(self, name):
        return self._current().get(name)

    def check(self, name, password):
        """The user if ``password`` is theirs, else None (as slow either way)."""
        user = self.get(name)
        try:
            _hasher.verify(user.hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return user


class LoginBrake:
    """At most :data:`FAIL_LIMIT` failed logins per address in :data:`FAIL_WINDOW_S`; more are
    refused without checking, until the window has passed. In memory: a restart forgets."""

    def __init__(self, limit=FAIL_LIMIT, window_s=FAIL_WINDOW_S, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures, self._lock = {}, threading.Lock()

    def _recent(self, address):
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= self.clock() - self.window_s:
            failures.popleft()
        return failures

    def is_braked(self, address):
        with self._lock:
            return len(self._recent(address)) >= self.limit

    def failed(self, address):
        with self._lock:
            self._recent(address).append(self.clock())


def new_csrf_token():
    return secrets.token_urlsafe(32)


def same_token(sent, expected):
    return bool(sent) and bool(expected) and secrets.compare_digest(str(sent), str(expected))
