"""The pure card fields: dates, check digit, text, and the minimal read against an honest card."""

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.card import thai_id
from kiosk.card.repeat import RepeatKeys
from kiosk.errors import CardError, InvalidCitizenId, NotThaiIdCard
from kiosk.rigs.card_emulator import EmulatedCard
from kiosk.rigs.card_profiles import ALL_CIDS, ATR_3B68, PROFILES

TODAY = datetime.date(2026, 6, 1)


class RecordingKeys:
    """A stand-in for RepeatKeys that remembers what it hashed, to prove the CID got there."""

    def __init__(self):
        self.seen = []

    def hash(self, cid):
        self.seen.append(cid)
        return b"h" * 32


def card_transmit(profile):
    card = EmulatedCard(PROFILES[profile])
    return card.answer, PROFILES[profile].atr


def summary(profile, **options):
    transmit, atr = card_transmit(profile)
    return thai_id.read_summary(transmit, atr, RepeatKeys(600), today=TODAY, **options)


def test_thai_id_check_digit_matches_the_published_rule():
    # 1*13 + 2*12 + 3*11 + 4*10 + 5*9 + 6*8 + 7*7 + 8*6 + 9*5 + 0*4 + 1*3 + 2*2 = 352 = 32*11
    assert thai_id.cid_check_digit("123456789012") == 1  # (11 - 0) % 10
    # 145 % 11 = 2, so (11 - 2) % 10 = 9
    assert thai_id.cid_check_digit("110170020354") == 9
    assert thai_id.is_valid_cid("1101700203549")
    assert not thai_id.is_valid_cid("1101700203541")


@pytest.mark.parametrize(
    "cid", ["123456789012", "12345678901234", "12345678901a1", "", "１２３４５６７８９０１２１"]
)
def test_thai_id_check_digit_rejects_malformed_ids(cid):
    assert not thai_id.is_valid_cid(cid)


def test_thai_id_mask_keeps_only_the_last_digit():
    assert thai_id.mask_cid("1234567890121") == "x-xxxx-xxxxx-xx-1"


def test_thai_id_dates_are_buddhist_era():
    assert thai_id.parse_date(b"25400315") == thai_id.CardDate(1997, 3, 15)


def test_thai_id_dates_tolerate_unknown_month_and_day():
    year_only = thai_id.parse_date(b"25000000")
    assert year_only == thai_id.CardDate(1957, None, None)
    assert year_only.latest() == datetime.date(1957, 12, 31)
    assert thai_id.parse_date(b"25000200").latest() == datetime.date(1957, 2, 28)


def test_thai_id_99999999_is_lifelong_and_never_expires():
    lifelong = thai_id.parse_date(b"99999999")
    assert lifelong.is_lifelong
    assert not thai_id.is_expired(lifelong, datetime.date(2500, 1, 1))


def test_thai_id_expiry_counts_the_whole_last_day():
    expiry = thai_id.parse_date(b"25690601")  # 2026-06-01
    assert not thai_id.is_expired(expiry, TODAY)
    assert thai_id.is_expired(expiry, TODAY + datetime.timedelta(days=1))


@pytest.mark.parametrize(
    "raw", [b"2540031", b"25401301", b"25400230", b"2540AB01", b"00000101", b"25400015"]
)
def test_thai_id_bad_dates_raise_card_error_naming_the_field(raw):
    with pytest.raises(CardError, match="expiry date") as caught:
        thai_id.parse_date(raw, "expiry_date")
    assert raw.decode(errors="replace") not in str(caught.value)


@pytest.mark.parametrize(
    "birth, band",
    [
        (b"25390602", "20-29"),
        (b"25390601", "30-39"),
        (b"25690101", "0-9"),
        (b"24300000", "60+"),
        (b"25090601", "60+"),
        (b"25090602", "50-59"),
        (b"25390000", "20-29"),
        (b"25700101", None),
    ],
)
def test_thai_id_age_band_never_overstates_age(birth, band):
    assert thai_id.age_band(thai_id.parse_date(birth), TODAY) == band


def test_thai_id_text_is_tis620_split_on_hash():
    raw = "นาย#ทดสอบ##ใจดี".encode("tis_620") + b" " * 20
    assert thai_id.split_fields(thai_id.decode_text(raw)) == ("นาย", "ทดสอบ", "", "ใจดี")


def test_thai_id_minimal_read_hashes_the_cid_and_keeps_nothing_else():
    keys = RecordingKeys()
    transmit, atr = card_transmit("default")
    result = thai_id.read_summary(transmit, atr, keys, today=TODAY)
    assert keys.seen == [PROFILES["default"].cid]
    assert result.repeat_hash == b"h" * 32 and not result.expired
    assert (result.age_band, result.gender) == (None, None)
    assert result.atr == ATR_3B68.hex().upper()
    assert all(PROFILES["default"].cid not in str(value) for value in vars(result).values())


@pytest.mark.parametrize(
    "options, fields",
    [
        ({}, {"cid", "expiry_date"}),
        (
            {"collect_age_band": True, "collect_gender": True},
            {"cid", "expiry_date", "birth_date", "gender"},
        ),
    ],
)
def test_thai_id_minimal_read_touches_only_the_fields_it_needs(options, fields):
    card = EmulatedCard(PROFILES["default"])
    sent = []

    def transmit(command):
        sent.append(command)
        return card.answer(command)

    thai_id.read_summary(transmit, card.profile.atr, RepeatKeys(600), today=TODAY, **options)
    offsets = {(c[2] << 8) | c[3] for c in sent if c[:2] == b"\x80\xb0"}
    assert offsets == {thai_id.FIELDS[name][0] for name in fields}
    assert len(sent) == 1 + 2 * len(fields)  # SELECT, then READ + GET RESPONSE per field


def test_thai_id_summary_repr_reveals_nothing():
    result = summary("default", collect_age_band=True, collect_gender=True)
    assert repr(result).startswith("CardSummary(read_ms=")
    for hidden in (
        result.repeat_hash.hex(),
        str(result.repeat_hash),
        "male",
        "expired",
        result.age_band,
    ):
        assert hidden not in repr(result)


def test_thai_id_same_card_same_hash_other_card_other_hash():
    keys = RepeatKeys(600)
    first = thai_id.read_summary(*card_transmit("default"), keys, today=TODAY)
    again = thai_id.read_summary(*card_transmit("default"), keys, today=TODAY)
    other = thai_id.read_summary(*card_transmit("nid17"), keys, today=TODAY)
    assert first.repeat_hash == again.repeat_hash != other.repeat_hash


def test_thai_id_candidates_let_the_store_see_a_card_across_a_key_rotation():
    now = [0.0]
    keys = RepeatKeys(10, clock=lambda: now[0])
    before = thai_id.read_summary(*card_transmit("default"), keys, today=TODAY)
    assert before.repeat_candidates == (before.repeat_hash,)
    now[0] = 11.0
    after = thai_id.read_summary(*card_transmit("default"), keys, today=TODAY)
    assert after.repeat_hash != before.repeat_hash
    assert after.repeat_candidates == (after.repeat_hash, before.repeat_hash)


def test_thai_id_keys_without_candidates_give_the_hash_alone():
    result = thai_id.read_summary(*card_transmit("default"), RecordingKeys(), today=TODAY)
    assert result.repeat_candidates == (result.repeat_hash,)


def test_thai_id_optional_fields_only_when_enabled():
    result = summary("old_3b67", collect_age_band=True, collect_gender=True)
    assert (result.age_band, result.gender) == ("40-49", "female")  # born 1977-06-15, 48 on TODAY


@pytest.mark.parametrize(
    "profile, expired",
    [
        ("default", False),
        ("expired", True),
        ("lifelong", False),
        ("odd_dates", False),
        ("nid17", False),
        ("old_3b67", False),
    ],
)
def test_thai_id_every_thai_profile_reads(profile, expired):
    assert summary(profile, collect_age_band=True).expired is expired


def test_thai_id_odd_birth_date_still_gives_a_band():
    assert (
        summary("odd_dates", collect_age_band=True).age_band == "60+"
    )  # 1947, month unknown: at least 78


def test_thai_id_bad_check_digit_is_invalid_citizen_id():
    with pytest.raises(InvalidCitizenId) as caught:
        summary("bad_check_digit")
    assert PROFILES["bad_check_digit"].cid not in str(caught.value)


def test_thai_id_other_card_is_not_thai_id():
    with pytest.raises(NotThaiIdCard):
        summary("not_thai")


def test_thai_id_wrong_get_response_p2_fails_against_the_strict_card():
    """The emulated old card refuses P2 = 00, as the field reports: the parser must choose 01."""
    transmit, _ = card_transmit("old_3b67")
    with pytest.raises(CardError, match="6A 86"):
        thai_id.read_summary(transmit, ATR_3B68, RepeatKeys(600), today=TODAY)


def _answers(*responses):
    queue = [bytes.fromhex(r) for r in responses]
    return lambda command: queue.pop(0)


def test_thai_id_short_field_answer_is_an_error():
    transmit = _answers("610A", "610D", "313233" + "9000")
    with pytest.raises(CardError, match="READ citizen ID: the card answered 3 bytes, expected 13"):
        thai_id.read_summary(transmit, ATR_3B68, RepeatKeys(600), today=TODAY)


def test_thai_id_over_long_field_answer_is_an_error():
    cid = ALL_CIDS[0].encode().hex()
    transmit = _answers("610A", "610D", cid + "3030" + "9000")
    with pytest.raises(CardError, match="expected 13") as caught:
        thai_id.read_summary(transmit, ATR_3B68, RepeatKeys(600), today=TODAY)
    assert ALL_CIDS[0] not in str(caught.value)


def test_thai_id_full_read_has_every_field_and_the_photo():
    transmit, atr = card_transmit("default")
    fields = thai_id.read_full(transmit, atr)
    assert set(fields) == set(thai_id.FIELDS) | {"photo"}
    assert fields["photo"][:2] == b"\xff\xd8" and len(fields["photo"]) == 20 * 255
    assert thai_id.split_fields(thai_id.decode_text(fields["address"]))[-1] == "จังหวัดทดลอง"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=12), st.binary(max_size=4))
def test_thai_id_parser_only_returns_a_summary_or_raises_card_error(answers, atr):
    queue = list(answers)

    def transmit(command):
        # Once the script runs out, keep answering the last entry, as a stuck card would.
        return queue.pop(0) if len(queue) > 1 else queue[0]

    try:
        result = thai_id.read_summary(
            transmit, atr, RepeatKeys(600), today=TODAY, collect_age_band=True, collect_gender=True
        )
    except CardError:
        return
    assert isinstance(result, thai_id.CardSummary)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_thai_id_date_parser_only_returns_a_date_or_raises_card_error(raw):
    try:
        parsed = thai_id.parse_date(raw)
    except CardError:
        return
    assert parsed.latest() >= datetime.date(1, 1, 1)
