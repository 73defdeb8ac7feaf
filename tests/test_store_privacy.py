"""PDPA check on the bytes: after 50 card visits no CID, name, repeat hash or hash key is anywhere
on disk."""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from kiosk.card.repeat import RepeatKeys, SeenCards
from kiosk.store import Store
from tests.test_store import outgoing, visit_record

WINDOW_S = 1800.0

THAI_FIRST = ("สมศักดิ์ชัย", "วิไลวรรณา", "ประเสริฐศรี", "กาญจนาพร", "ธนากรณ์", "พิมพ์ชนกนันท์",
              "อนุชาติชัย", "จันทร์เพ็ญศรี", "ณัฐวุฒิกร", "รัตนาภรณ์")
THAI_LAST = ("ใจดีมากมาย", "รักษ์ไทยทองคำ", "ศรีสุขสันต์วงศ์", "บุญประเสริฐกุล", "แก้วมณีวงศ์ทอง")
EN_FIRST = ("Somsakchai", "Wilaiwanna", "Prasertsri", "Kanjanaporn", "Thanakorn",
            "Pimchanoknan", "Anuchatchai", "Chanphensri", "Nattawutkorn", "Rattanaporn")
EN_LAST = ("Jaideemakmai", "Rakthaithongkham", "Srisuksanwong", "Boonprasertkul",
           "Kaewmaneewongthong")


@dataclass(frozen=True)
class SyntheticCard:
    cid: str
    name_th: str
    name_en: str


def check_digit(first12):
    total = sum(int(digit) * (13 - i) for i, digit in enumerate(first12))
    return (11 - total % 11) % 10


def synthetic_cards(count, seed=2025):
    rng = random.Random(seed)
    cards, seen = [], set()
    while len(cards) < count:
        first12 = str(rng.randint(1, 8)) + "".join(str(rng.randint(0, 9)) for _ in range(11))
        cid = first12 + str(check_digit(first12))
        if cid in seen:
            continue
        seen.add(cid)
        i = len(cards)
        cards.append(SyntheticCard(
            cid=cid,
            name_th=f"{THAI_FIRST[i % 10]} {THAI_LAST[i // 10]}",
            name_en=f"{EN_FIRST[i % 10]} {EN_LAST[i // 10]}",
        ))
    return cards


def needles(card):
    """Every shape the card's identity could take on disk."""
    found = {"CID ascii": card.cid.encode("ascii"),
             "CID hex text": card.cid.encode("ascii").hex().encode(),
             "CID hex text upper": card.cid.encode("ascii").hex().upper().encode(),
             "CID as hex number": format(int(card.cid), "x").encode()}
    for label, name in (("Thai name", card.name_th), ("English name", card.name_en)):
        for part in (name, *name.split()):
            found[f"{label} {part!r} utf-8"] = part.encode("utf-8")
            found[f"{label} {part!r} json-escaped"] = json.dumps(part).strip('"').encode()
            if label == "Thai name":
                found[f"{label} {part!r} tis-620"] = part.encode("cp874")
    return found


def key_needles(keys):
    found = {}
    for label, key in (("current key", keys._current), ("previous key", keys._previous)):
        if key is not None:
            found[f"{label} bytes"] = key
            found[f"{label} hex"] = key.hex().encode()
    return found


def scan(data_dir, wanted):
    """Labels of ``wanted`` byte strings found in any file of the data directory."""
    blobs = [path.read_bytes() for path in sorted(Path(data_dir).iterdir()) if path.is_file()]
    return sorted(label for label, needle in wanted.items()
                  if any(needle in blob for blob in blobs))


class FakeMonotonic:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_store_privacy_check_digits_are_valid():
    cards = synthetic_cards(50)
    assert len({card.cid for card in cards}) == 50
    assert all(len(card.cid) == 13 and card.cid.isdigit() for card in cards)
    # By hand: 1*13 + 1*12 + 0 + 1*10 + 7*9 + 0 + 0 + 2*6 + 0 + 3*4 + 4*3 + 5*2 = 144;
    # 144 mod 11 = 1; (11 - 1) mod 10 = 0.
    assert check_digit("110170020345") == 0


def test_store_privacy_no_identity_on_disk_after_50_visits(tmp_path):
    cards = synthetic_cards(50)
    monotonic = FakeMonotonic()
    keys = RepeatKeys(WINDOW_S, clock=monotonic)
    seen = SeenCards(WINDOW_S, clock=monotonic)
    data = tmp_path / "data"
    store = Store.open(data)
    try:
        repeats, hashes = [], {}
        for i, card in enumerate(cards + cards[:5]):
            if i == 25:
                monotonic.now += WINDOW_S  # rotate: two keys alive, both must stay off disk
            # What kiosk.card hands out: derived facts only; the runner does the rest.
            candidates = keys.candidates(card.cid)
            repeats.append(seen.is_repeat(candidates, "id-card"))
            repeat_hash = keys.hash(card.cid)
            store.record_visit(
                visit_record(rating=1 + i % 5, language="th" if i % 2 else "en",
                       age_band="60+" if i % 3 else "30-39", gender="female" if i % 2 else "male",
                       repeat_hash=repeat_hash),
                **outgoing())
            seen.note(repeat_hash, "id-card")
            hashes[f"repeat hash {i}"] = repeat_hash
        # The five cards inserted again were recognised, and nobody else was.
        assert repeats == [False] * 50 + [True] * 5
        assert keys._previous is not None

        wal = Path(f"{store.path}-wal")
        assert wal.stat().st_size > 0, "the scan must include the un-checkpointed WAL"
        wanted = {**key_needles(keys), **hashes}
        for card in cards:
            wanted.update({f"card {card.cid[-2:]}: {label}": needle
                           for label, needle in needles(card).items()})
        assert scan(data, wanted) == []

        # The scanner can fail: plant identity in the WAL the way a leak would put it there.
        planted = cards[7]
        store.set_state("leak_ascii", planted.cid)
        store.set_state("leak_utf8", planted.name_th)
        store._db.execute_sql("INSERT INTO kiosk_state VALUES ('leak_tis620', ?)",
                              (planted.name_th.encode("cp874"),))
        store.enqueue("leak/topic", {"note": keys._current.hex()})
        found = scan(data, wanted)
        assert f"card {planted.cid[-2:]}: CID ascii" in found
        assert f"card {planted.cid[-2:]}: Thai name {planted.name_th!r} utf-8" in found
        assert f"card {planted.cid[-2:]}: Thai name {planted.name_th!r} tis-620" in found
        assert "current key hex" in found
        store.set_state("leak_hash", hashes["repeat hash 3"].hex())
        store._db.execute_sql("INSERT INTO kiosk_state VALUES ('leak_hash_blob', ?)",
                              (hashes["repeat hash 9"],))
        assert "repeat hash 9" in scan(data, wanted)
    finally:
        store.close()
