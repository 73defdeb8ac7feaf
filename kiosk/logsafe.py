"""What may reach a log: text with every ID-shaped number redacted, and text from outside (a
kiosk's reply error, a topic) with control characters escaped and its length capped.

Standard library only, so pure modules (:mod:`kiosk.telemetry.topics` checks payload strings
with :func:`holds_id`) and every adapter can use it. A citizen ID looks like 13 digits, in a row
or written in the card's groups ``1-2345-67890-12-3`` (``-``, space, ``.``, a no-break space,
a dash or ``/`` between groups, Thai digits too), anywhere in a text. A group must stand alone
(no letter or digit either side): an RFC 3339 time, a version, an IP address or a UUID never has
that shape, so uuid4 event ids are never refused. The price: ``ID1-2345-67890-12-3``, glued to
a word, is not caught (without that rule about 1 in 1,000 hyphenated uuid4s would be).
"""

import functools
import logging
import math
import re

_SEPARATOR = "[-. \u00a0\u2010-\u2013/]?"  # hyphen, dot, space, no-break space, dashes, slash
# Both shapes start with a digit, taken first: a search then skips to the next digit instead
# of trying each alternative at every character (three times faster on a visit's payload, which
# every message at the collector goes through). ``(?<![\dA-Za-z]\d)`` is the grouped shape's
# "no letter or digit before it", seen from after its first digit.
_ID_SHAPED = re.compile(
    r"\d(?:\d{12,}"
    rf"|(?<![\dA-Za-z]\d){_SEPARATOR}\d{{4}}{_SEPARATOR}\d{{5}}{_SEPARATOR}\d{{2}}{_SEPARATOR}\d"
    r"(?![\dA-Za-z]))"
)

# C0 and C1 controls, DEL, zero-width and bidi controls, line and paragraph separators: each
# could fake a new log line, rewrite the terminal or reorder what a reader sees.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
#: Longest outside text one log line carries.
MAX_LOGGED_CHARS = 200


def printable(value, limit=MAX_LOGGED_CHARS):
    """``str(value)`` safe to log when a kiosk (or anyone outside) chose it: cut to ``limit``
    characters (saying how many were left off), then each control character written as a
    ``\\xNN`` or ``\\uNNNN`` escape, so it can never start a line of its own."""
    text = str(value)
    if len(text) > limit:
        text = f"{text[:limit]}…(+{len(text) - limit} chars)"
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match):
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def holds_id(text):
    """True if ``text`` holds something shaped like a 13-digit citizen ID."""
    return _ID_SHAPED.search(text) is not None


def is_id_shaped(value):
    """True for a value of decoded JSON that could be a citizen ID: a number of 13 or more
    integer digits, or a text holding one (:func:`holds_id`). Booleans are not numbers here."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):  # never made a float: a sender decides how large it is
        return abs(value) >= 10**12
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) >= 10**12
    return isinstance(value, str) and holds_id(value)


def redact_ids(text):
    """``text`` with each ID-shaped number replaced by ``#``."""
    return _ID_SHAPED.sub("#", text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts ID-shaped numbers from each record's message and
    traceback, whatever module logged it and whatever its arguments held."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:
            return True  # logging reports the broken record itself
        redacted = redact_ids(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_ids(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_ids(record.stack_info)
        return True


def install():
    """Add the filter to every handler of the root logger (once); the CLI calls this right
    after configuring logging, so every log line the project writes passes through it."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def never_raises(log, counted=None):
    """Decorator for callbacks run by a library's thread that an exception would end (paho 2
    re-raises one from a callback, and its network thread dies): log the failure instead, as
    its type and a redacted, capped message, never the arguments (a message's payload or topic).
    ``counted(*args)`` is called on each failure, to count it."""

    def wrap(callback):
        @functools.wraps(callback)
        def guarded(*args):
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - the caller's thread would end on it
                if counted is not None:
                    counted(*args)
                log.error("%s failed and was ignored: %s: %s", callback.__qualname__,
                          type(exc).__name__, printable(redact_ids(str(exc))))

        return guarded

    return wrap
