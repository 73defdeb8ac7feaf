"""Fuzzing the card answer parser: whatever a card (or a broken reader) answers, the kiosk gets
a :class:`~kiosk.card.thai_id.CardSummary` or a :class:`~kiosk.errors.CardError`, and no error
or log line carries the citizen ID the card holds."""

import datetime
import logging

from hypothesis import event, given
from hypothesis import strategies as st

from kiosk.card import apdu, thai_id
from kiosk.card.repeat import RepeatKeys
from kiosk.errors import CardError
from kiosk.rigs.card_emulator import EmulatedCard
from kiosk.rigs.card_profiles import ATR_3B67, ATR_3B68, ATR_NID17, Profile
from tests.fuzz.budget import budget
from tests.fuzz.mutations import assert_no_id, citizen_ids, logged_lines

TODAY = datetime.date(2026, 6, 1)
KEYS = RepeatKeys(600)
AGE_BANDS = {f"{low}-{low + 9}" for low in range(0, 60, 10)} | {"60+"}


def be_dates():
    """``YYYYMMDD`` in the Buddhist era, with the card's quirks: unknown (00) month or day,
    lifelong ``99999999``, impossible days, and plain garbage."""
    return st.one_of(
        st.dates(datetime.date(1900, 1, 1), datetime.date(2100, 12, 31)).map(
            lambda d: f"{d.year + 543:04d}{d.month:02d}{d.day:02d}"),
        st.builds(lambda y, m, d: f"{y:04d}{m:02d}{d:02d}", st.integers(0, 9999),
                  st.integers(0, 13), st.integers(0, 32)),
        st.sampled_from(["99999999", "25430000", "25430200", "25430229", "25440229", "00000000",
                         "05430101", "99991231", "2543 101", "๒๕๔๓๐๑๐๑"]),
        st.text("0123456789 -/\x00", max_size=9))


def tis620_text(max_size):
    return st.text(st.sampled_from("0123456789# abcกขคงฯ๐๑\x00"), max_size=max_size)


@st.composite
def profiles(draw):
    """An emulated card whose fields are drawn: a real-looking or broken citizen ID, dates
    with the card's quirks, any gender byte, any of the ATR generations."""
    return Profile(
        name="fuzz",
        atr=draw(st.sampled_from([ATR_3B68, ATR_3B67, ATR_NID17, b"", b"\x3b"])),
        has_thai_applet=draw(st.integers(0, 9)) > 0,
        cid=draw(citizen_ids() | tis620_text(14)),
        birth_date=draw(be_dates()), expiry_date=draw(be_dates()),
        gender=draw(st.sampled_from(["1", "2", "0", " ", "9", "\x00"])),
        name_th=draw(tis620_text(100)))


#: How a flaky card or reader may spoil an honest answer.
SPOILS = ("status", "truncate", "chain", "wrong_length",
          "garbage", "empty", "6a82", "6c")


def spoiled(data, card):
    """``transmit`` for ``card``: the answers honest but for a few, spoiled as drawn from
    ``data`` (a read is 3 to 13 APDUs)."""
    schedule = data.draw(st.dictionaries(st.integers(0, 12), st.sampled_from(SPOILS),
                                         max_size=3), label="spoils")
    calls = iter(range(10**6))

    def transmit(command):
        answer = card.answer(bytes(command))
        spoil = schedule.get(next(calls), "keep")
        if spoil == "keep":
            return answer
        if spoil == "status":
            return answer[:-2] + data.draw(st.binary(min_size=2, max_size=2), label="sw")
        if spoil == "truncate":
            return answer[:data.draw(st.integers(0, max(0, len(answer) - 1)), label="cut")]
        if spoil == "chain":  # announce some bytes more or fewer than there are
            return bytes([0x61, data.draw(st.integers(0, 255), label="le")])
        if spoil == "wrong_length":
            extra = data.draw(st.binary(max_size=20), label="extra")
            return answer[:-2][: data.draw(st.integers(0, 300))] + extra + b"\x90\x00"
        if spoil == "garbage":
            return data.draw(st.binary(max_size=300), label="garbage")
        if spoil == "empty":
            return b""
        if spoil == "6a82":
            return b"\x6a\x82"
        return bytes([0x6C, data.draw(st.integers(0, 255), label="6c")])
    return transmit


@budget(300)
@given(profile=profiles(), data=st.data(), age=st.booleans(), gender=st.booleans())
def test_fuzz_card_read_summary_returns_a_summary_or_a_card_error(caplog, profile, data, age,
                                                                  gender):
    """``kiosk.card.thai_id.read_summary`` (through ``kiosk.card.apdu.exchange``: 61xx and
    6Cxx chains, status words, field lengths, TIS-620, Buddhist-era dates) against an emulated
    card whose answers are spoiled at random."""
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    card = EmulatedCard(profile)
    try:
        summary = thai_id.read_summary(spoiled(data, card), profile.atr, KEYS, today=TODAY,
                                       collect_age_band=age, collect_gender=gender)
    except CardError as exc:
        event(f"refused: {type(exc).__name__}")
        assert_no_id(exc, *logged_lines(caplog))
        return
    event("read")
    assert_no_id(*logged_lines(caplog))
    # Only a valid citizen ID may have become the repeat hash; the summary says nothing more
    # than it is allowed to.
    assert thai_id.is_valid_cid(profile.cid) and summary.repeat_hash == KEYS.hash(profile.cid)
    assert isinstance(summary.expired, bool)
    assert summary.age_band is None if not age else summary.age_band in AGE_BANDS | {None}
    assert summary.gender in ({None} if not gender else {None, "male", "female"})
    assert profile.cid not in repr(summary)


@budget(300)
@given(answers=st.lists(st.binary(max_size=40), min_size=1, max_size=12),
       command=st.sampled_from([apdu.select(), apdu.read_binary(4, 13),
                                apdu.get_response(13, ATR_3B68)]),
       atr=st.sampled_from([ATR_3B68, ATR_3B67, b""]), wants_data=st.booleans())
def test_fuzz_card_exchange_follows_any_answers_to_data_or_a_card_error(answers, command, atr,
                                                                        wants_data):
    """``kiosk.card.apdu.exchange`` fed raw answers: data bytes, or CardError naming the
    command and status word, never the data (here digits a citizen ID is made of)."""
    pending = [b"1101700203549" + answer for answer in answers]

    def transmit(_command):
        return pending.pop(0) if pending else b"\x6f\x00"

    try:
        data = apdu.exchange(transmit, command, atr, "READ citizen ID", wants_data=wants_data)
    except CardError as exc:
        assert_no_id(exc)
        return
    assert isinstance(data, bytes)


@budget(500)
@given(raw=be_dates().map(lambda t: t.encode("utf-8")) | st.binary(max_size=10),
       today=st.dates(datetime.date(2000, 1, 1), datetime.date(2100, 12, 31)))
def test_fuzz_card_dates_parse_to_a_calendar_day_or_a_card_error(raw, today):
    """``kiosk.card.thai_id.parse_date`` and what the kiosk derives from a date (expiry, age
    band): a Buddhist-era date whose month or day may be 00, or lifelong."""
    try:
        date = thai_id.parse_date(raw, "birth_date")
    except CardError as exc:
        assert_no_id(exc)
        assert "date of birth" in str(exc)
        return
    latest = date.latest()
    assert isinstance(latest, datetime.date)
    assert date.is_lifelong or latest.year == date.year
    assert isinstance(thai_id.is_expired(date, today), bool)
    assert thai_id.age_band(date, today) in AGE_BANDS | {None}


@budget(300)
@given(raw=st.binary(max_size=200))
def test_fuzz_card_text_fields_decode_from_any_bytes(raw):
    """``kiosk.card.thai_id.decode_text``/``split_fields``/``parse_cid``: TIS-620 text never
    fails to decode (undefined bytes become U+FFFD), and a citizen ID is 13 ASCII digits or a
    CardError without them."""
    text = thai_id.decode_text(raw)
    assert text == text.strip(" \x00")
    assert len(thai_id.split_fields(text)) == text.count("#") + 1
    try:
        cid = thai_id.parse_cid(raw)
    except CardError as exc:
        assert_no_id(exc)
    else:
        assert len(cid) == 13 and cid.isascii() and cid.isdigit()
