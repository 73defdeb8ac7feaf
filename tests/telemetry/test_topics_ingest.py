"""The parser's quick path for the collector's ingest (a payload whose JSON text cannot hold a
long number is not walked) refuses every form a long number can take in the text."""

import json

import pytest

from kiosk.errors import MessageRejected
from kiosk.telemetry import topics
from tests.fleet.test_collector import visit

TOPIC = topics.kiosk_topic("bkk-001", "visit")
#: ``note`` as it is written in the payload's JSON text (each decodes to a long number).
HIDDEN = {
    "escaped digits": r'"\u0031234567890123"',
    "float with an exponent": "1.5e13",
    "integer": "1234567890123",
    "Thai digits": '"๑๒๓๔๕๖๗๘๙๐๑๒๓"',
    "grouped in a key": '{"1-2345-67890-12-3": 1}',
}


@pytest.mark.parametrize("written", HIDDEN.values(), ids=HIDDEN)
def test_topics_ingest_parse_refuses_a_long_number_however_the_text_writes_it(written):
    text = visit("v-1").decode()
    payload = f'{text[:-1]},"note":{written}}}'.encode()
    assert "note" in json.loads(payload)
    with pytest.raises(MessageRejected, match="looks like a citizen ID"):
        topics.parse_kiosk_message(TOPIC, payload)


def test_topics_ingest_parse_accepts_a_visit_whose_uuid_reads_like_an_exponent():
    message = topics.parse_kiosk_message(TOPIC, visit("0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10"))
    assert message.event_id == "0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10"
