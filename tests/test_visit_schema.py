"""The visit schema (kiosk/visit.py): one declaration per field, and everything derived from it."""

import datetime as dt
import json

from kiosk import visit
from kiosk.store import Store
from kiosk.telemetry import topics

STAMP = topics.stamp(dt.datetime(2025, 3, 1, 2, 0, 0, 123456, tzinfo=dt.UTC), True, 4321.98765)
TOPIC = "citizeninfo/v1/kiosk/k1/visit"
ANSWERS = dict(outcome="completed", step="reason", verified=True, expired=False,
               service_id="id_card", copy_answer="both", rating=2, reason="waiting_time",
               language="en", duration_s=21.46, age_band="60+", gender="female")
ENVELOPE = dict(event_id="0b9a3c1e6f1d4c1b9d352a7f5c3e9b10",
                instance="5e0c2d8a9b7f4a1c8e6d3b2a1f0e9d8c", seq=7, epoch=3, mode="demo")
# What topics.visit_payload (before issue 10) built for ANSWERS and ENVELOPE: the wire must not
# change by a byte.
WIRE = (b'{"schema":1,"event_id":"0b9a3c1e6f1d4c1b9d352a7f5c3e9b10",'
        b'"instance":"5e0c2d8a9b7f4a1c8e6d3b2a1f0e9d8c","seq":7,"epoch":3,"mode":"demo",'
        b'"outcome":"completed","step":"reason","verified":true,"expired":false,'
        b'"service_id":"id_card","copy_answer":"both","rating":2,"reason":"waiting_time",'
        b'"language":"en","duration_s":21.5,"age_band":"60+","gender":"female",'
        b'"at":"2025-03-01T02:00:00.123Z","clock_synced":true,"mono_s":4321.988}')
WIRE_ABANDONED = (b'{"schema":1,"event_id":"e2","instance":"i2","seq":1,"epoch":0,'
                  b'"mode":"production","outcome":"abandoned","step":"rating","verified":false,'
                  b'"expired":null,"service_id":null,"copy_answer":null,"rating":null,'
                  b'"reason":null,"language":"th","duration_s":90.0,"age_band":null,'
                  b'"gender":null,"at":"2025-03-01T02:00:00.123Z","clock_synced":true,'
                  b'"mono_s":4321.988}')


def test_visit_schema_payload_is_byte_identical_to_the_wire_before_the_schema():
    assert visit.payload(**ENVELOPE, **ANSWERS, stamp=STAMP) == WIRE
    assert visit.payload(event_id="e2", instance="i2", seq=1, epoch=0, mode="production",
                         outcome="abandoned", step="rating", verified=False, language="th",
                         duration_s=90, stamp=STAMP) == WIRE_ABANDONED


def test_visit_schema_store_writes_the_same_bytes_in_one_call(tmp_path):
    store = Store.open(tmp_path / "data")
    try:
        row = store.record_visit(visit.Record(**ANSWERS, repeat_hash=b"\x01" * 32),
                                 topic=TOPIC, stamp=STAMP, mode="demo")
        [message] = store.due_messages(1)
        expected = json.loads(WIRE)
        expected.update(event_id=row.event_id, instance=store.instance, seq=1, epoch=0)
        assert message.topic == TOPIC
        assert message.payload.encode() == json.dumps(
            expected, ensure_ascii=False, separators=(",", ":")).encode()
        assert (row.recorded_at, row.mode) == (STAMP["at"], "demo")
    finally:
        store.close()
