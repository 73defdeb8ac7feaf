"""Emulated Thai ID cards: synthetic people and the odd cards a kiosk meets (stdlib only).

Every citizen ID here passes the check digit (except the one card built to fail it) yet is an
obvious test value, and every name is fictional. :data:`ALL_CIDS` and :data:`ALL_NAMES` list them
all so the privacy scans can prove none of them leaks into a log, a message or the wire.
"""

import random
from dataclasses import dataclass, field

from kiosk.card.thai_id import FIELDS, PHOTO_CHUNK, PHOTO_CHUNKS, PHOTO_OFFSET, cid_check_digit

ATR_3B68 = bytes.fromhex("3B6800000073C84012009000")
ATR_3B67 = bytes.fromhex("3B6700000073C840120090")
ATR_NID17 = bytes.fromhex("3B799600005448204E4944203137")  # "TH NID 17"
ATR_OTHER = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")  # a contactless-style card

_CARD_SIZE = FIELDS["request_number"][0] + FIELDS["request_number"][1]


def test_cid(first12):
    """A citizen ID from 12 obviously fake digits plus their correct check digit."""
    return first12 + str(cid_check_digit(first12))


@dataclass(frozen=True)
class Profile:
    """One emulated card: its ATR and, for Thai ID cards, the field contents (str, TIS-620 text)."""

    name: str
    atr: bytes
    has_thai_applet: bool = True
    cid: str = ""
    name_th: str = ""
    name_en: str = ""
    birth_date: str = "25200615"
    gender: str = "1"
    issuer: str = "สำนักทะเบียนทดสอบ"
    issue_date: str = "25650101"
    expiry_date: str = "25740101"
    address: str = "99#หมู่ที่ 9#ซอยทดสอบ#ถนนตัวอย่าง##ตำบลสมมุติ#อำเภอจำลอง#จังหวัดทดลอง"
    request_number: str = "0000-00-000000"
    photo_seed: int = 0
    notes: str = field(default="", compare=False)

    def memory(self):
        """The applet's readable memory, fields at their offsets, text space-padded."""
        image = bytearray(b" " * _CARD_SIZE)
        for name, (offset, length) in FIELDS.items():
            raw = getattr(self, name).encode("tis_620")[:length]
            image[offset : offset + len(raw)] = raw
        photo = synthetic_photo(self.photo_seed)
        image[PHOTO_OFFSET : PHOTO_OFFSET + len(photo)] = photo
        return bytes(image)


def synthetic_photo(seed):
    """~5 KB of JPEG-looking bytes (SOI, APP0, noise, EOI): realistic size, no face."""
    header = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    size = PHOTO_CHUNK * PHOTO_CHUNKS
    return header + random.Random(seed).randbytes(size - len(header) - 2) + b"\xff\xd9"


def wrong_cid(first12):
    """A citizen ID whose last digit is deliberately not the check digit."""
    return first12 + str((cid_check_digit(first12) + 1) % 10)


def _person(name, atr, first12, **fields):
    return Profile(
        name=name,
        atr=atr,
        cid=test_cid(first12),
        name_th=fields.pop("name_th", "นาย#ทดสอบ##ใจดี"),
        name_en=fields.pop("name_en", "Mr.#Test##Jaidee"),
        photo_seed=len(name),
        **fields,
    )


PROFILES = {
    p.name: p
    for p in (
        _person("default", ATR_3B68, "123456789012", notes="a current card, 3B 68 ATR"),
        _person(
            "old_3b67",
            ATR_3B67,
            "111111111111",
            name_th="นาง#ตัวอย่าง##สมมุติ",
            name_en="Mrs.#Sample##Sommut",
            gender="2",
            notes="older card: GET RESPONSE P2 = 01",
        ),
        _person(
            "nid17",
            ATR_NID17,
            "222222222222",
            name_th="นางสาว#ทดลอง##มีสุข",
            name_en="Miss#Trial##Meesuk",
            gender="2",
            notes="ATR 'TH NID 17'",
        ),
        _person(
            "odd_dates",
            ATR_3B68,
            "333333333333",
            name_th="นาย#ปีเดียว##รู้ปี",
            name_en="Mr.#Yearonly##Roopee",
            birth_date="24900000",
            issue_date="25600100",
            notes="birth month and day 00, issue day 00",
        ),
        _person(
            "lifelong",
            ATR_NID17,
            "444444444444",
            name_th="นาย#อายุยืน##ตลอดชีพ",
            name_en="Mr.#Lifelong##Talodcheep",
            birth_date="24800000",
            expiry_date="99999999",
            notes="elderly citizen, expiry 99999999",
        ),
        _person(
            "expired",
            ATR_3B68,
            "555555555555",
            name_th="นาย#หมดอายุ##แล้ว",
            name_en="Mr.#Expired##Laew",
            expiry_date="25600101",
            notes="expired in 2017",
        ),
        Profile(
            name="bad_check_digit",
            atr=ATR_3B68,
            cid=wrong_cid("666666666666"),
            name_th="นาย#ผิด##หลัก",
            name_en="Mr.#Wrong##Digit",
            photo_seed=7,
            notes="the citizen ID fails its check digit",
        ),
        Profile(
            name="not_thai",
            atr=ATR_OTHER,
            has_thai_applet=False,
            notes="some other card: SELECT answers 6A 82",
        ),
    )
}

#: Ordinary citizens ``citizen-0`` … ``citizen-199`` for scripted visits and the demo: each a
#: different person, so a hundred scripted visits are a hundred first visits, not repeats.
CITIZENS = 200
_THAI_DIGITS = str.maketrans("0123456789", "๐๑๒๓๔๕๖๗๘๙")
PROFILES.update(
    {
        p.name: p
        for p in (
            _person(
                f"citizen-{n}",
                (ATR_3B68, ATR_NID17, ATR_3B67)[n % 3],
                f"9999900{n:05d}",
                name_th=f"นาย#พลเมือง##ทดสอบที่{str(n).translate(_THAI_DIGITS)}",
                name_en=f"Mr.#Citizen##Number{n}",
                gender="12"[n % 2],
                birth_date=f"25{20 + n % 50:02d}0{1 + n % 9}15",
                notes="an ordinary test citizen",
            )
            for n in range(CITIZENS)
        )
    }
)

#: Every citizen ID and name used by any profile: what the privacy scans look for.
ALL_CIDS = tuple(sorted({p.cid for p in PROFILES.values() if p.cid}))
ALL_NAMES = tuple(
    sorted(
        {
            " ".join(part for part in text.split("#")[1:] if part)
            for p in PROFILES.values()
            for text in (p.name_th, p.name_en)
            if text
        }
    )
)
