"""Fuzzing the collector's message decoder: any topic and payload a kiosk (or anyone holding
its credentials) publishes is a validated message or a MessageRejected, a refused one leaves the
fleet database as it was (but for the count of refusals), and a validated one is stored."""

import json
import logging
import threading

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from kiosk.errors import MessageRejected
from kiosk.fleet import alarms, ingest
from kiosk.telemetry import topics
from tests.fuzz.budget import budget
from tests.fuzz.mutations import (
    assert_no_id,
    doc_examples,
    json_values,
    logged_lines,
    mutated,
)

SEEDS = doc_examples("kiosk")
#: What a kiosk sends and the collector's parser returns, by topic kind.
RESULTS = {"status": topics.Status, "pin": topics.ServicePoint, "visit": topics.VisitMessage,
           "period": topics.PeriodMessage, "health": topics.HealthMessage,
           "reply": topics.Reply, "csr": topics.CertRequest}
#: A schema-1 visit (a kiosk not yet upgraded), which the parser coarsens.
SCHEMA1_VISIT = {"schema": 1, "event_id": "0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10",
                 "instance": "5e0c2d8a9b7f4a1c8e6d3b2a1f0e9d8c", "seq": 418, "epoch": 12,
                 "mode": "production", "outcome": "completed", "step": "thank_you",
                 "verified": True, "expired": False, "service_id": "id_card",
                 "copy_answer": "none", "rating": 4, "reason": None, "language": "th",
                 "duration_s": 38.4, "at": "2025-01-31T02:41:07.250Z", "clock_synced": True,
                 "mono_s": 15873.412}


def topics_for(kind):
    """Mostly the right topic for a ``kind`` of message; else another kind, or a kiosk id that
    is reserved, too long, ID-shaped or not a topic level."""
    kiosk = st.sampled_from(["1234567890123", "a/b", "", "$SYS", "ops", "collector", "k+",
                             "x" * 65, "k1"])
    kinds = st.sampled_from([*RESULTS, "ack", "", "1101700203549"])
    wrong = st.builds(lambda k, n: f"citizeninfo/v1/kiosk/{k}/{n}", kiosk, kinds) | \
        st.sampled_from(["citizeninfo/v1/kiosk/bkk-001", "citizeninfo/v2/kiosk/bkk-001/visit",
                         "", "citizeninfo/v1/kiosk/1101700203549"])
    return st.integers(0, 5).flatmap(
        lambda n: wrong if n == 0 else st.just(f"citizeninfo/v1/kiosk/bkk-001/{kind}"))


def field_values():
    """Values a field of the contract is likely to be checked against: the scalars of
    :func:`json_values` plus dates, periods, big and tiny numbers."""
    return json_values() | st.sampled_from([
        "2025-01-31T02:00:00Z", "2025-02-30T00:00:00Z", "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z", "2025-01-31T24:00:00Z", "๒๐๒๕-01-31T02:00:00Z",
        "2025-01-31T02:00:00.1234567Z", 1e308, -1e308, 10**400 // 10**390, 2**63, 3600, 86400,
        5, 0, -0.0, 1, 2, 3, 4])


@st.composite
def kiosk_messages(draw):
    """``(topic, payload)``: a documented example (or a schema-1 visit) mutated, encoded as
    JSON or spoiled as bytes; or plain bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(topics_for("visit")), draw(st.binary(max_size=200))
    topic, obj = draw(st.sampled_from(SEEDS + [(SEEDS[0][0].replace("status", "visit"),
                                                SCHEMA1_VISIT)]))
    kind = topic.rsplit("/", 1)[-1]
    if draw(st.integers(0, 3)):  # else the example as it is, but for its topic
        obj = draw(mutated(obj, field_values()))
    if draw(st.integers(0, 9)) == 0:
        # A new dict: the unmutated example is the seed itself, shared by every later case.
        obj = {**obj, "schema": draw(st.sampled_from([1, 2, 3, 4, 0, True, "3", 3.0, None]))}
    payload = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.integers(0, 9)) == 0:
        cut = draw(st.integers(0, len(payload)))
        payload = payload[:cut] + draw(st.binary(max_size=8)) + payload[cut + 1:]
    return draw(topics_for(kind)), payload


def _is_kiosk_topic(topic):
    try:
        topics.split_kiosk_topic(topic)
    except MessageRejected:
        return False
    return True


def _accepted(message, topic):
    """What the parser promises of a message it accepts."""
    kind = topic.rsplit("/", 1)[-1]
    assert isinstance(message, RESULTS[kind])
    assert message.kiosk_id == topic.split("/")[3]
    assert topics.find_long_numbers(vars(message)) == []


@budget(400)
@given(message=kiosk_messages())
def test_fuzz_collector_parse_returns_a_message_or_message_rejected(message):
    """``kiosk.telemetry.topics.parse_kiosk_message``, the collector's only decoder."""
    topic, payload = message
    try:
        parsed = topics.parse_kiosk_message(topic, payload)
    except MessageRejected as exc:
        event(f"refused {topic.rsplit('/', 1)[-1]}")
        assert_no_id(exc)
        return
    event(f"accepted {type(parsed).__name__}")
    _accepted(parsed, topic)


@pytest.fixture
def store(tmp_path):
    """The collector's store process's :class:`kiosk.fleet.ingest.Store`, run in this one,
    on a SQLite fleet database."""
    store = ingest.Store(ingest.Options(str(tmp_path / "fleet.sqlite3"), 60.0, 2.0,
                                        alarms.DEFAULT_THRESHOLDS, 10.0),
                         threading.Event(), [], lambda: None)
    yield store
    store.db.close()


def rows(store, *, without=("malformed",)):
    """Every row of every table of the fleet database (the count of refusals aside)."""
    db = store.db.database
    tables = [name for (name,) in db.execute_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        if name not in without]
    return {name: db.execute_sql(f'SELECT * FROM "{name}" ORDER BY 1').fetchall()
            for name in tables}


@budget(150)
@given(message=kiosk_messages())
def test_fuzz_collector_store_keeps_a_valid_message_and_nothing_of_a_refused_one(
        store, caplog, message):
    """``kiosk.fleet.ingest.Store.handle``: one message a batch, as the collector's store
    process gets it."""
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="kiosk")
    topic, payload = message
    try:
        parsed = topics.parse_kiosk_message(topic, payload)
    except MessageRejected:
        parsed = None
    valid = parsed is not None
    event("valid" if valid else "refused")
    before = rows(store)
    released, acks = store.handle([(1, 1, topic, payload)])
    counters = store.report(None).counters
    assert released
    assert_no_id(*logged_lines(caplog), *counters.malformed_by_reason, counters.last_rejection)
    assert counters.store_failures == 0, counters.store_failures_by_reason
    if not valid:
        # An empty payload is how a retained message is deleted (revocation empties a kiosk's),
        # and a certificate request is the signing service's to judge: both ignored, not
        # malformed (docs/telemetry.md).
        ignored = _is_kiosk_topic(topic) and (payload == b"" or topic.endswith("/csr"))
        assert (counters.malformed, counters.ignored) == ((0, 1) if ignored else (1, 0))
        assert rows(store) == before, "a refused message changed the fleet database"
        assert acks == {}
    else:
        assert counters.malformed == 0
        if isinstance(parsed, topics.VisitMessage | topics.PeriodMessage):
            # Stored (or already stored: the seeds repeat event ids), so acked either way.
            assert acks == {parsed.kiosk_id: [parsed.event_id]}


def test_collector_rejection_of_an_id_shaped_kiosk_id_never_logs_the_id(store, caplog):
    """Found by the fuzzer: a topic whose kiosk id is a citizen ID was refused, but the refusal
    logged the topic, and with it the ID, and kept it as the last rejection."""
    caplog.set_level(logging.DEBUG, logger="kiosk")
    topic, payload = SEEDS[0]
    store.handle([(1, 1, topic.replace("bkk-001", "1101700203549"),
                   json.dumps(payload).encode())])
    counters = store.report(None).counters
    assert counters.malformed == 1
    assert "1101700203549" not in counters.last_rejection
    assert "1101700203549" not in caplog.text
    assert "citizeninfo/v1/kiosk/#/status" in caplog.text  # the topic, its ID redacted


def test_collector_refusal_of_a_topic_never_quotes_an_id_in_it():
    """Found by the fuzzer: a topic of no known message kind was refused quoting the whole
    topic, a citizen ID in its kiosk id level included."""
    with pytest.raises(MessageRejected) as refused:
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/1101700203549/ack", b"{}")
    assert "1101700203549" not in str(refused.value)
    assert "citizeninfo/v1/kiosk/#/ack" in str(refused.value)
