"""Thai ID card fields: map, TIS-620 text, Buddhist-era dates, check digit (stdlib only).

The kiosk reads the least it can (:func:`read_summary`: SELECT, citizen ID, expiry date, and only
when enabled date of birth and gender). The citizen ID exists here just long enough to become a
repeat hash; the date of birth leaves only as a 10-year age band. :class:`CardSummary` (defined
here, the one thing the reader adapter hands to the kiosk) carries no citizen data.

Every parser either returns a value or raises :class:`~kiosk.errors.CardError` whose message
names the field, never its content.
"""

import datetime
import time
from dataclasses import dataclass

from kiosk.card import apdu
from kiosk.errors import CardError, InvalidCitizenId

#: field name -> (offset, length) in the personal-data applet.
FIELDS = {
    "cid": (0x0004, 13),
    "name_th": (0x0011, 100),
    "name_en": (0x0075, 100),
    "birth_date": (0x00D9, 8),
    "gender": (0x00E1, 1),
    "issuer": (0x00F6, 100),
    "issue_date": (0x0167, 8),
    "expiry_date": (0x016F, 8),
    "address": (0x1579, 160),
    "request_number": (0x1619, 14),
}
#: The photo is a JPEG of about 5 KB read in 20 chunks of 255 bytes.
PHOTO_OFFSET, PHOTO_CHUNK, PHOTO_CHUNKS = 0x017B, 255, 20

_LABELS = {
    "cid": "citizen ID",
    "name_th": "Thai name",
    "name_en": "English name",
    "birth_date": "date of birth",
    "gender": "gender",
    "issuer": "issuer",
    "issue_date": "issue date",
    "expiry_date": "expiry date",
    "address": "address",
    "request_number": "card request number",
}
_GENDERS = {b"1": "male", b"2": "female"}
_BE_OFFSET = 543
LIFELONG = b"99999999"


@dataclass(frozen=True)
class CardSummary:
    """What a successful read hands to the kiosk: derived data only, never the citizen ID.

    ``repeat_hash`` is ``keys.hash(cid)``, what a rated visit is remembered under (in the
    runner's memory, never stored); ``repeat_candidates`` is every hash the same card may be
    remembered under within the repeat window (``keys.candidates(cid)``), for the repeat check.
    ``age_band`` ("30-39", "60+") and ``gender`` ("male", "female") are None unless their
    collection is enabled; ``atr`` is upper-case hex; ``read_ms`` is the time from the start of
    the read to the last answer.
    """

    repeat_hash: bytes
    repeat_candidates: tuple
    expired: bool
    age_band: str | None
    gender: str | None
    atr: str
    read_ms: float

    def __repr__(self):
        # The hash is pseudonymous and the rest is about a person: keep all of it out of logs.
        return f"CardSummary(read_ms={self.read_ms:.1f})"


@dataclass(frozen=True)
class CardDate:
    """A card date in the Common Era; ``month``/``day`` are None when the card says 00."""

    year: int
    month: int | None = None
    day: int | None = None
    is_lifelong: bool = False

    def latest(self):
        """The last calendar day this date may stand for (end of year/month when unknown)."""
        if self.is_lifelong:
            return datetime.date.max
        month = self.month or 12
        if self.day:
            return datetime.date(self.year, month, self.day)
        next_month = datetime.date(self.year + month // 12, month % 12 + 1, 1)
        return next_month - datetime.timedelta(days=1)


def field_label(name):
    """The human name of a field for messages ("expiry date")."""
    return _LABELS.get(name, name)


def decode_text(raw):
    """TIS-620 bytes to text, without the space or NUL padding the card adds."""
    return bytes(raw).decode("tis_620", errors="replace").strip(" \x00")


def split_fields(text):
    """``prefix#first#middle#last`` (or an address) into its parts, empty parts kept."""
    return tuple(part.strip() for part in text.split("#"))


def parse_date(raw, name="date"):
    """A ``YYYYMMDD`` Buddhist-era date; ``00`` month/day mean unknown, ``99999999`` lifelong."""
    raw = bytes(raw)
    if raw == LIFELONG:
        return CardDate(9999, is_lifelong=True)
    if len(raw) != 8 or not raw.isdigit():
        raise CardError(f"{field_label(name)}: expected 8 digits YYYYMMDD (Buddhist era)")
    year = int(raw[:4]) - _BE_OFFSET
    month, day = int(raw[4:6]), int(raw[6:8])
    if year < 1 or month > 12 or (day and not month):
        raise CardError(f"{field_label(name)}: not a calendar date")
    if day:
        try:
            datetime.date(year, month, day)
        except ValueError:
            raise CardError(f"{field_label(name)}: not a calendar date") from None
    return CardDate(year, month or None, day or None)


def cid_check_digit(first12):
    """The mod-11 check digit over the first 12 digits of a citizen ID."""
    total = sum(int(d) * (13 - i) for i, d in enumerate(first12))
    return (11 - total % 11) % 10


def is_valid_cid(cid):
    """True when ``cid`` is 13 digits and the last one is the check digit of the others."""
    return (
        len(cid) == 13
        and cid.isascii()
        and cid.isdigit()
        and cid_check_digit(cid[:12]) == int(cid[12])
    )


def mask_cid(cid):
    """``x-xxxx-xxxxx-xx-d``: only the check digit stays, enough for a technician to compare."""
    return f"x-xxxx-xxxxx-xx-{cid[-1:]}"


def parse_cid(raw):
    """The 13 ASCII digits of the citizen ID field; raises if they are not digits."""
    raw = bytes(raw)
    if len(raw) != 13 or not raw.isdigit():
        raise CardError("citizen ID: expected 13 ASCII digits")
    return raw.decode("ascii")


def is_expired(expiry, today):
    """A card is expired after the last day its expiry date may stand for; lifelong never."""
    return not expiry.is_lifelong and today > expiry.latest()


def age_band(birth, today):
    """A 10-year band ("30-39"), "60+" from 60 on; None when the date lies after ``today``.

    Bands stop at 60+ because few citizens are older, and a narrow band of few people is
    close to identifying them.

    An unknown month or day counts as the latest possible one, so the band never overstates age.
    """
    latest = birth.latest()
    age = today.year - latest.year - ((today.month, today.day) < (latest.month, latest.day))
    if age < 0:
        return None
    if age >= 60:
        return "60+"
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def read_field(transmit, atr, name):
    """One field's raw bytes; an answer of the wrong length is an error, not a guess."""
    offset, length = FIELDS[name]
    return _read(transmit, atr, offset, length, f"READ {field_label(name)}")


def read_photo(transmit, atr):
    """The photo's 20 chunks, concatenated (only the benchmark's full read wants it)."""
    return b"".join(
        _read(
            transmit, atr, PHOTO_OFFSET + i * PHOTO_CHUNK, PHOTO_CHUNK, f"READ photo chunk {i + 1}"
        )
        for i in range(PHOTO_CHUNKS)
    )


def select_applet(transmit, atr):
    """SELECT the personal-data applet; a card without it raises NotThaiIdCard."""
    apdu.exchange(transmit, apdu.select(), atr, "SELECT Thai ID applet", wants_data=False)


def read_summary(
    transmit,
    atr,
    keys,
    *,
    today,
    collect_age_band=False,
    collect_gender=False,
    clock=time.monotonic,
):
    """The kiosk's minimal read, as a :class:`CardSummary`.

    ``transmit(apdu: bytes) -> bytes`` talks to a connected card; ``keys`` is anything with
    ``hash(cid) -> bytes`` (:class:`kiosk.card.repeat.RepeatKeys`). A citizen ID failing its check
    digit raises :class:`InvalidCitizenId`.
    """
    started = clock()
    select_applet(transmit, atr)
    cid = parse_cid(read_field(transmit, atr, "cid"))
    if not is_valid_cid(cid):
        raise InvalidCitizenId(
            "citizen ID: the check digit does not match (damaged or forged card)"
        )
    repeat_hash = keys.hash(cid)
    # Keys without rotation (a plain ``hash``) have only the one candidate.
    candidates = tuple(keys.candidates(cid)) if hasattr(keys, "candidates") else (repeat_hash,)
    del cid
    expired = is_expired(parse_date(read_field(transmit, atr, "expiry_date"), "expiry_date"), today)
    band = None
    if collect_age_band:
        band = age_band(parse_date(read_field(transmit, atr, "birth_date"), "birth_date"), today)
    gender = _GENDERS.get(read_field(transmit, atr, "gender")) if collect_gender else None
    return CardSummary(
        repeat_hash,
        candidates,
        expired,
        band,
        gender,
        bytes(atr).hex().upper(),
        (clock() - started) * 1000,
    )


def read_full(transmit, atr):
    """Every field and the photo, raw, as public reader libraries read a card.

    Only the benchmark uses it, to show what the minimal read saves; the kiosk never calls it.
    """
    select_applet(transmit, atr)
    fields = {name: read_field(transmit, atr, name) for name in FIELDS}
    fields["photo"] = read_photo(transmit, atr)
    return fields


def _read(transmit, atr, offset, length, name):
    data = apdu.exchange(transmit, apdu.read_binary(offset, length), atr, name)
    if len(data) != length:
        raise CardError(f"{name}: the card answered {len(data)} bytes, expected {length}")
    return data
