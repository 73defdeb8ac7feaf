"""Pseudonymous repeat-card hashes whose key exists only in this process's memory.

The kiosk counts one rating per citizen per service per window, so it needs to notice the same
card inserted again a few minutes later for the same service, without keeping the citizen ID.
``RepeatKeys`` turns a CID into HMAC-SHA256(key, CID) with a random key that is never written,
printed or sent. Keys rotate on a fixed schedule: the key of the current window hashes new
reads, the key of the window before is still tried so a card seen just before a rotation is
recognised just after it, and older keys are dropped. A hash therefore stays linkable to its
card for at least one window and at most two; after that (or after a reboot, which forgets every
key) nobody, the kiosk included, can tell which card it came from.

``RepeatKeys`` is thread-safe: the card worker thread hashes while the main thread may rotate.
A test or soak run may seed it (``kiosk run --repeat-key-seed``) so that a privacy scan knows
every key the run drew (:func:`seeded_keys`) and can look for the keys and the hashes on disk
and on the wire; a kiosk in service never passes a seed and draws its keys from ``secrets``.
``SeenCards`` remembers which hashes rated which service when, in memory only, for the main
thread.
"""

import hashlib
import hmac
import itertools
import secrets
import threading
import time
from collections import OrderedDict

KEY_BYTES = 32
_SEED_DOMAIN = b"citizeninfo repeat key\0"


def seeded_keys(seed, n):
    """The first ``n`` keys a :class:`RepeatKeys` seeded with ``seed`` draws, in order: the
    first is the key it starts with, each next one the key of its next rotation."""
    return list(itertools.islice(_seeded_stream(seed), n))


def _random_stream():
    while True:
        yield secrets.token_bytes(KEY_BYTES)


def _seeded_stream(seed):
    # SHA-256 of the seed and a counter: deterministic for tests, and as wide as a real key.
    raw = seed.encode("utf-8") if isinstance(seed, str) else bytes(seed)
    for counter in itertools.count():
        yield hashlib.sha256(_SEED_DOMAIN + raw + counter.to_bytes(8, "big")).digest()


class RepeatKeys:
    """HMAC keys for repeat detection, rotated every ``window_s`` seconds of ``clock``.

    ``hash(cid)`` is the hash a rated visit is remembered under (in memory, by :class:`SeenCards`);
    ``candidates(cid)`` is every hash the same card may have been remembered under within the
    last window (current key first). ``seed`` (str or bytes) is for test and soak runs only:
    the keys then follow :func:`seeded_keys` instead of being random.
    """

    def __init__(self, window_s, clock=time.monotonic, seed=None):
        if not window_s > 0:
            raise ValueError(f"repeat window must be positive seconds, got {window_s!r}")
        self._window_s = float(window_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys = _random_stream() if seed is None else _seeded_stream(seed)
        self._current = next(self._keys)
        self._previous = None
        self._window_started = clock()

    def __repr__(self):
        # The keys are the only secret here: never let a log line or a traceback show them.
        return f"<RepeatKeys window_s={self._window_s:g}>"

    def __reduce__(self):
        raise TypeError("RepeatKeys holds in-memory keys only and cannot be pickled or copied")

    def rotate_if_due(self):
        """Advance the key schedule to the clock; called by every hash and safe to call any time.

        Returns True when a key was replaced. If more than one window passed unseen (the kiosk
        was idle), both keys are replaced so an old card is not recognised after two windows.
        """
        with self._lock:
            return self._rotate_locked()

    def hash(self, cid):
        """This card's hash under the current key."""
        data = self._encode(cid)
        with self._lock:
            self._rotate_locked()
            key = self._current
        return hmac.new(key, data, hashlib.sha256).digest()

    def candidates(self, cid):
        """Hashes under the current and (while it lives) the previous key, current first."""
        data = self._encode(cid)
        with self._lock:
            self._rotate_locked()
            keys = (self._current,) if self._previous is None else (self._current, self._previous)
        return tuple(hmac.new(key, data, hashlib.sha256).digest() for key in keys)

    def _rotate_locked(self):
        elapsed = self._clock() - self._window_started
        if elapsed < self._window_s:
            return False
        windows = int(elapsed // self._window_s)
        # Keep the schedule aligned to the first window, so every key is current for at most
        # one window and tried as "previous" for exactly the next one.
        self._window_started += windows * self._window_s
        self._previous = self._current if windows == 1 else None
        self._current = next(self._keys)
        return True

    @staticmethod
    def _encode(cid):
        # Do not echo the value: it is a citizen ID, or close to one.
        if not isinstance(cid, str) or not cid.isascii() or not cid.strip():
            raise ValueError("repeat hash needs the card's ID as a non-empty ASCII string")
        return cid.strip().encode("ascii")


class SeenCards:
    """The repeat hashes of rated visits, each with its service, for ``window_s`` seconds of
    ``clock``: one rating per citizen per service per window.

    Memory only, on the monotonic clock: an NTP step of the wall clock (a Pi boots with a stale
    one) can neither expire a hash early nor keep it late, and nothing is left on disk. A
    restart forgets them, as it forgets the keys that made them. The main thread alone uses it.
    ``service_id`` is None on a kiosk that asks only the rating (one rating per window there).
    """

    def __init__(self, window_s, clock=time.monotonic):
        if not window_s > 0:
            raise ValueError(f"repeat window must be positive seconds, got {window_s!r}")
        self._window_s = float(window_s)
        self._clock = clock
        self._seen = OrderedDict()  # (hash, service id) -> when last seen, oldest first

    def __repr__(self):
        return f"<SeenCards {len(self)} within {self._window_s:g} s>"

    def __len__(self):
        self._forget_expired()
        return len(self._seen)

    def note(self, repeat_hash, service_id):
        """A rating of this service with this card was recorded now."""
        self._forget_expired()
        seen = (bytes(repeat_hash), service_id)
        self._seen[seen] = self._clock()
        self._seen.move_to_end(seen)

    def is_repeat(self, candidates, service_id):
        """True when any of ``candidates`` (see :meth:`RepeatKeys.candidates`) rated
        ``service_id`` within the window."""
        self._forget_expired()
        return any((bytes(candidate), service_id) in self._seen
                   for candidate in candidates if candidate)

    def _forget_expired(self):
        cutoff = self._clock() - self._window_s
        while self._seen:
            seen, seen_at = next(iter(self._seen.items()))
            if seen_at >= cutoff:
                return
            del self._seen[seen]
