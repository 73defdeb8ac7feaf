"""ISO 7816-4 command APDUs and status words, as the Thai ID card speaks them (stdlib only).

The card answers every command with ``61 xx`` ("xx bytes waiting") and hands the data over only
on GET RESPONSE, whose P2 depends on the card generation: cards whose ATR begins ``3B 67`` want
``00 C0 00 01 Le``, all others ``00 C0 00 00 Le``. :func:`exchange` hides that dance.

Errors name the command and the status word, never data bytes: data bytes may be citizen data.
"""

from kiosk.errors import CardError, NotThaiIdCard

#: AID of the personal-data applet on the Thai national ID card.
THAI_ID_AID = bytes.fromhex("A000000054480001")

#: The ATR prefix of the older card generation that wants GET RESPONSE with P2 = 01.
OLD_GENERATION_ATR = bytes.fromhex("3B67")

_OK = (0x90, 0x00)


def select(aid=THAI_ID_AID):
    """SELECT by application identifier (no Le: the card answers 61 xx or 90 00)."""
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid


def read_binary(offset, length):
    """The Thai card's proprietary READ: ``80 B0 P1 P2 02 00 Le`` with a 15-bit offset."""
    if not 0 <= offset <= 0x7FFF:
        raise ValueError(f"offset {offset:#x} does not fit the card's 15-bit address")
    if not 1 <= length <= 255:
        raise ValueError(f"length {length} does not fit one short APDU (1-255)")
    return bytes([0x80, 0xB0, offset >> 8, offset & 0xFF, 0x02, 0x00, length])


def get_response(length, atr):
    """GET RESPONSE for ``length`` bytes, with P2 chosen by the card generation (see module doc)."""
    p2 = 0x01 if bytes(atr[:2]) == OLD_GENERATION_ATR else 0x00
    return bytes([0x00, 0xC0, 0x00, p2, length & 0xFF])


def split_response(response, name):
    """``(data, sw1, sw2)`` from a raw response; shorter than a status word is an error."""
    if len(response) < 2:
        raise CardError(
            f"{name}: the card answered {len(response)} byte(s), expected at least a status word"
        )
    return bytes(response[:-2]), response[-2], response[-1]


def _ends_in_length(command):
    """Whether the command's last byte is the length a 6C answer corrects.

    True for GET RESPONSE (ISO case 2: a lone Le) and for this card's READ (``80 B0 … 02 00
    Le``, the length wanted is the last data byte); SELECT ends in its AID, which a retry
    "with the right length" would cut.
    """
    return len(command) == 5 or command[:2] == b"\x80\xb0"


def exchange(transmit, command, atr, name, *, wants_data=True):
    """Send ``command`` and return its data bytes, following 61 xx and 6C xx.

    With ``wants_data=False`` a ``61 xx`` answer counts as success without fetching the data:
    SELECT's answer is of no use to the kiosk, and skipping its GET RESPONSE saves one of the
    five APDUs of the minimal read (the card drops pending data when the next command comes).

    ``transmit(apdu: bytes) -> bytes`` returns the raw response including the status word.
    ``name`` says what the command was for ("SELECT Thai ID applet", "READ expiry date") and is
    the only description of it that reaches an error message.

    Raises :class:`NotThaiIdCard` for 6A 82 (no such applet) and :class:`CardError` naming the
    command and status word for every other non-success answer.
    """
    data, sw1, sw2 = split_response(transmit(command), name)
    if sw1 == 0x6C and _ends_in_length(command):
        # Wrong Le: the card tells the right one; ask once more with it.
        data, sw1, sw2 = split_response(transmit(command[:-1] + bytes([sw2])), name)
    if sw1 == 0x61 and not wants_data:
        return b""
    collected = data
    # A card may chain several 61 xx answers; 8 rounds cover 2 KB, far beyond any field here.
    for _ in range(8):
        if sw1 != 0x61:
            break
        data, sw1, sw2 = split_response(transmit(get_response(sw2, atr)), f"{name} (GET RESPONSE)")
        if sw1 == 0x6C:
            data, sw1, sw2 = split_response(
                transmit(get_response(sw2, atr)), f"{name} (GET RESPONSE)"
            )
        collected += data
    if (sw1, sw2) == _OK:
        return collected
    if (sw1, sw2) == (0x6A, 0x82):
        raise NotThaiIdCard(f"{name}: the card has no Thai ID applet (status word 6A 82)")
    raise CardError(f"{name}: the card answered status word {sw1:02X} {sw2:02X}")
