"""The emulated card and its profiles: strict where real cards are strict, synthetic data only."""

import pytest

from kiosk.card import apdu, thai_id
from kiosk.rigs.card_emulator import EmulatedCard, Emulator
from kiosk.rigs.card_profiles import ALL_CIDS, ALL_NAMES, ATR_3B67, ATR_NID17, PROFILES


def select(card):
    return card.answer(apdu.select())


def test_emulator_profiles_cover_the_field_cases():
    atrs = {p.atr[:2] for p in PROFILES.values()}
    assert {ATR_3B67[:2], ATR_NID17[:2], b"\x3b\x68"} <= atrs
    assert ATR_NID17.endswith(b"TH NID 17")
    assert any(p.expiry_date == "99999999" for p in PROFILES.values())
    assert any(p.birth_date[4:] == "0000" for p in PROFILES.values())
    assert any(not p.has_thai_applet for p in PROFILES.values())


def test_emulator_cids_pass_the_check_digit_except_the_broken_card():
    invalid = [p.name for p in PROFILES.values() if p.cid and not thai_id.is_valid_cid(p.cid)]
    assert invalid == ["bad_check_digit"]
    assert set(ALL_CIDS) == {p.cid for p in PROFILES.values() if p.cid}
    assert "Test Jaidee" in ALL_NAMES and "ทดสอบ ใจดี" in ALL_NAMES


def test_emulator_read_before_select_is_refused():
    card = EmulatedCard(PROFILES["default"])
    assert card.answer(apdu.read_binary(4, 13)) == b"\x69\x85"


def test_emulator_get_response_needs_the_announced_length():
    card = EmulatedCard(PROFILES["default"])
    select(card)
    assert card.answer(apdu.read_binary(4, 13)) == b"\x61\x0d"
    assert card.answer(apdu.get_response(5, card.profile.atr)) == b"\x6c\x0d"
    assert card.answer(apdu.get_response(13, card.profile.atr))[-2:] == b"\x90\x00"


def test_emulator_power_cycle_forgets_the_selection():
    card = EmulatedCard(PROFILES["default"])
    select(card)
    card.reset()
    assert card.answer(apdu.read_binary(4, 13)) == b"\x69\x85"


def test_emulator_other_card_has_no_thai_applet():
    assert select(EmulatedCard(PROFILES["not_thai"])) == b"\x6a\x82"


def test_emulator_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown card profile 'nope'; known: default"):
        Emulator().insert("nope")


def test_emulator_photo_looks_like_a_jpeg_of_about_5_kb():
    memory = PROFILES["default"].memory()
    photo = memory[
        thai_id.PHOTO_OFFSET : thai_id.PHOTO_OFFSET + thai_id.PHOTO_CHUNK * thai_id.PHOTO_CHUNKS
    ]
    assert photo[:3] == b"\xff\xd8\xff" and photo[-2:] == b"\xff\xd9" and len(photo) == 5100
