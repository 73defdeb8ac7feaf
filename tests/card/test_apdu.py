"""The pure APDU layer: GET RESPONSE variants, status words, and errors that never show data."""

import pytest

from kiosk.card import apdu
from kiosk.errors import CardError, NotThaiIdCard
from kiosk.rigs.card_profiles import ATR_3B67, ATR_3B68, ATR_NID17


class ScriptedCard:
    """Answers from a script, in order, and keeps every command it was sent."""

    def __init__(self, *answers):
        self.answers = [bytes.fromhex(a) for a in answers]
        self.history = []

    def transmit(self, command):
        self.history.append(command.hex().upper())
        return self.answers.pop(0)


def test_apdu_select_is_the_thai_id_applet():
    assert apdu.select().hex().upper() == "00A4040008A000000054480001"


def test_apdu_read_binary_encodes_the_15_bit_offset():
    assert apdu.read_binary(0x1579, 160).hex().upper() == "80B015790200A0"


@pytest.mark.parametrize("offset, length", [(-1, 1), (0x8000, 1), (0, 0), (0, 256)])
def test_apdu_read_binary_refuses_what_one_apdu_cannot_carry(offset, length):
    with pytest.raises(ValueError):
        apdu.read_binary(offset, length)


@pytest.mark.parametrize("atr, p2", [(ATR_3B67, "01"), (ATR_3B68, "00"), (ATR_NID17, "00")])
def test_apdu_get_response_p2_follows_the_card_generation(atr, p2):
    card = ScriptedCard("6104", "CAFEBABE9000")
    assert apdu.exchange(card.transmit, apdu.read_binary(4, 4), atr, "READ x") == bytes.fromhex(
        "CAFEBABE"
    )
    assert card.history[1] == f"00C000{p2}04"


def test_apdu_plain_9000_needs_no_get_response():
    card = ScriptedCard("9000")
    assert apdu.exchange(card.transmit, apdu.select(), ATR_3B68, "SELECT") == b""
    assert len(card.history) == 1


def test_apdu_select_data_is_not_fetched_when_unwanted():
    card = ScriptedCard("610A")
    assert apdu.exchange(card.transmit, apdu.select(), ATR_3B68, "SELECT", wants_data=False) == b""
    assert card.history == ["00A4040008A000000054480001"]


def test_apdu_wrong_length_6c_is_asked_again_with_the_right_le():
    card = ScriptedCard("6105", "6C03", "AABBCC9000")
    assert apdu.exchange(
        card.transmit, apdu.read_binary(0, 5), ATR_3B68, "READ x"
    ) == bytes.fromhex("AABBCC")
    assert card.history[2] == "00C0000003"


def test_apdu_wrong_length_on_select_is_an_error_not_a_cut_aid():
    card = ScriptedCard("6C05")
    with pytest.raises(CardError, match="SELECT.*6C 05"):
        apdu.exchange(card.transmit, apdu.select(), ATR_3B68, "SELECT Thai ID applet")
    assert card.history == ["00A4040008A000000054480001"]


def test_apdu_missing_applet_is_not_a_thai_id_card():
    card = ScriptedCard("6A82")
    with pytest.raises(NotThaiIdCard, match="SELECT Thai ID applet.*6A 82"):
        apdu.exchange(card.transmit, apdu.select(), ATR_3B68, "SELECT Thai ID applet")


def test_apdu_other_status_words_name_command_and_status_never_data():
    card = ScriptedCard("6107", "313233343536376F00")
    with pytest.raises(CardError) as caught:
        apdu.exchange(card.transmit, apdu.read_binary(4, 7), ATR_3B68, "READ citizen ID")
    message = str(caught.value)
    assert "READ citizen ID" in message and "6F 00" in message
    assert "1234567" not in message and "31323334" not in message.replace(" ", "")
    assert type(caught.value) is CardError


@pytest.mark.parametrize("answer", ["", "90"])
def test_apdu_answer_shorter_than_a_status_word_is_an_error(answer):
    card = ScriptedCard(answer)
    with pytest.raises(CardError, match="READ x.*expected at least a status word"):
        apdu.exchange(card.transmit, apdu.read_binary(0, 1), ATR_3B68, "READ x")
