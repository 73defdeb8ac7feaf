"""The soak's privacy scanner can fail: planted citizen data is found in every form and place a
leak could put it, a clean run gives nothing, and no report holds what it found."""

import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import pytest

from kiosk.card.repeat import seeded_keys
from kiosk.rigs.card_profiles import PROFILES
from kiosk.rigs.privacy_scan import CHUNK_BYTES, MqttCapture, Needles, scan_bytes, scan_paths
from kiosk.telemetry import topics
from tests.fixtures.broker import WAIT_S, wait_until

SEED = "privacy-scan-test"
KEYS = 3
CITIZEN = PROFILES["citizen-3"]


@pytest.fixture(scope="module")
def needles():
    return Needles.for_profiles(repeat_key_seed=SEED, repeat_keys=KEYS)


def planted(data):
    """``data`` amid ordinary bytes, as a leak would sit in a real file."""
    return b"visit ok, 3 ms\n\x00\x01" + data + b"\nrating=4 service=id-card\n"


def grouped(cid, sep):
    return sep.join((cid[0], cid[1:5], cid[5:10], cid[10:12], cid[12])).encode()


ENCODINGS = [
    (CITIZEN.cid.encode(), "citizen-3 CID, plain"),
    (grouped(CITIZEN.cid, " "), "citizen-3 CID, grouped with spaces"),
    (grouped(CITIZEN.cid, "-"), "citizen-3 CID, grouped with dashes"),
    (CITIZEN.cid.encode().hex().encode(), "citizen-3 CID, hex"),
    (CITIZEN.cid.encode().hex(" ").upper().encode(), "citizen-3 CID, hex spaced"),
    ("พลเมือง ทดสอบที่๓".encode("tis-620"), "citizen-3 Thai name, without title, TIS-620"),
    (CITIZEN.name_th.encode("tis-620").hex(" ").upper().encode(),
     "citizen-3 Thai name, card field in hex spaced upper-case"),
    (b"Citizen Number3", "citizen-3 English name, without title, UTF-8"),
]


# Test ids name the label only: the planted values must not show up in a report either.
@pytest.mark.parametrize("data, label", ENCODINGS, ids=[label for _, label in ENCODINGS])
def test_privacy_scan_finds_each_encoding_in_a_file(tmp_path, needles, data, label):
    (tmp_path / "kiosk.log").write_bytes(planted(data))
    assert (tmp_path / "kiosk.log", label) in scan_paths(needles, [tmp_path])


def test_privacy_scan_finds_a_cid_in_an_uncheckpointed_wal(tmp_path, needles):
    db = sqlite3.connect(tmp_path / "kiosk.db")
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE state (key TEXT, value TEXT)")
        db.execute("INSERT INTO state VALUES ('oops', ?)", (CITIZEN.cid,))
        db.commit()
        wal = tmp_path / "kiosk.db-wal"
        assert wal.stat().st_size > 0
        assert (wal, "citizen-3 CID, plain") in scan_paths(needles, [tmp_path])
    finally:
        db.close()


def test_privacy_scan_finds_a_needle_across_a_chunk_boundary(tmp_path, needles):
    path = tmp_path / "big.bin"
    path.write_bytes(b"." * (CHUNK_BYTES - 5) + CITIZEN.cid.encode() + b"." * 100)
    assert scan_paths(needles, [path]) == [(path, "citizen-3 CID, plain")]


def test_privacy_scan_finds_seeded_repeat_keys_and_hashes(tmp_path, needles):
    key = seeded_keys(SEED, KEYS)[-1]
    digest = hmac.new(key, CITIZEN.cid.encode(), hashlib.sha256).digest()
    (tmp_path / "a.bin").write_bytes(planted(key))
    (tmp_path / "b.log").write_bytes(planted(digest.hex().encode()))
    assert scan_paths(needles, [tmp_path]) == [
        (tmp_path / "a.bin", f"repeat key {KEYS - 1}, raw"),
        (tmp_path / "b.log", f"repeat hash of citizen-3 CID under key {KEYS - 1}, hex"),
    ]


def test_privacy_scan_clean_files_give_no_findings(tmp_path, needles):
    db = sqlite3.connect(tmp_path / "kiosk.db")
    db.execute("CREATE TABLE visit (id INTEGER, rating INTEGER, service TEXT)")
    db.executemany("INSERT INTO visit VALUES (?, ?, 'id-card')", [(n, n % 5) for n in range(500)])
    db.commit()
    db.close()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kiosk.log").write_text("card read in 3.1 ms\nscreen rating\n" * 1000)
    (tmp_path / "logs" / "noise.bin").write_bytes(bytes(range(256)) * 1000)
    assert scan_paths(needles, [tmp_path]) == []
    assert scan_bytes(needles, "scene", "ขอบคุณค่ะ 4/5") == []


def test_privacy_scan_reports_an_unreadable_file(needles):
    # Reading /proc/self/mem at offset 0 fails even for root, where chmod 000 would not.
    mem = Path("/proc/self/mem")
    assert scan_paths(needles, [mem]) == [(mem, "unreadable: OSError")]


def test_privacy_scan_reports_a_named_path_that_does_not_exist(tmp_path, needles):
    assert scan_paths(needles, [tmp_path / "typo"]) == [
        (tmp_path / "typo", "unreadable: FileNotFoundError")]


def test_privacy_scan_labels_never_hold_the_value(needles):
    labels = "\n".join(needles.labels())
    values = [key.hex() for key in seeded_keys(SEED, KEYS)]
    for profile in PROFILES.values():
        values += [profile.cid, profile.cid[1:5], *profile.name_th.split("#"),
                   *profile.name_en.split("#")[1:]]
    assert "citizen-3 CID" in labels
    assert [value for value in values if len(value) > 3 and value in labels] == []
    assert CITIZEN.cid not in repr(needles)


def test_privacy_scan_mqtt_capture_finds_a_payload_across_a_broker_restart(broker, mqtt_client):
    kiosk = mqtt_client("k1", broker.add_kiosk("k1"))
    needles = Needles.for_profiles([CITIZEN])
    visit = topics.kiosk_topic("k1", "visit")
    with MqttCapture(broker) as capture:
        assert capture.wait_for_subscribed(WAIT_S)
        kiosk.publish(visit, json.dumps({"note": "พลเมือง ทดสอบที่๓"}))
        broker.restart()
        assert capture.wait_for_subscribed(WAIT_S)
        kiosk = mqtt_client("k1", broker.add_kiosk("k1"))
        kiosk.publish(visit, json.dumps({"ok": CITIZEN.cid.encode().hex()}))
        payloads = wait_until(lambda: len(capture.payloads()) == 2 and capture.payloads(),
                              "both payloads captured")
    findings = [finding for topic, payload in payloads
                for finding in scan_bytes(needles, topic, payload)]
    assert findings == [(visit, "citizen-3 Thai name, without title, JSON-escaped"),
                        (visit, "citizen-3 CID, hex")]
