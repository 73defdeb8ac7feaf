"""The pure telemetry contract: docs examples, builders, parsers and the privacy check."""

import datetime as dt
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk import clock, visit
from kiosk.errors import CommandRejected, MessageRejected
from kiosk.telemetry import topics
from kiosk.visit import COPY_ANSWERS, LANGUAGES, REASONS
from tests.fixtures.poison import POISON

DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"
EXAMPLE = re.compile(r"```json topic=(\S+)\n(.*?)```", re.S)
STAMP = clock.stamp(dt.datetime(2025, 1, 31, 2, 41, 7, 250000, tzinfo=dt.UTC), False, 12.5)
CMD = "citizeninfo/v1/cmd/k1/"


def doc_examples():
    return EXAMPLE.findall(DOC.read_text())


def visit_fields(**overrides):
    fields = dict(event_id="0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10",
                  instance="5e0c2d8a9b7f4a1c8e6d3b2a1f0e9d8c", seq=1, epoch=1,
                  mode="production", outcome="completed", step="thank_you", verified=True,
                  expired=False, service_id="id_card", copy_answer="none", rating=5, reason=None,
                  language="th", duration_s=30.0, stamp=STAMP)
    fields.update(overrides)
    return fields


def parse(name, payload, applied_version=None, max_bytes=4096):
    return topics.parse_command(CMD + name, payload, kiosk_id="k1", max_bytes=max_bytes,
                                applied_version=applied_version)


# --- docs/telemetry.md ----------------------------------------------------------------------


def test_topics_docs_show_an_example_of_every_message():
    shown = {topic.rsplit("/", 1)[-1] if "/ack/" not in topic else "ack"
             for topic, _ in doc_examples()}
    assert shown == set(topics.KIOSK_MESSAGES) | set(topics.COMMANDS) | {"ack"}


@pytest.mark.parametrize("topic,text", doc_examples(), ids=lambda v: v[:40])
def test_topics_docs_example_validates(topic, text):
    payload = text.encode()
    assert topics.find_long_numbers(json.loads(payload)) == []
    if "/kiosk/" in topic:
        parsed = topics.parse_kiosk_message(topic, payload)
        assert parsed.kiosk_id == topic.split("/")[3]
    elif "/cmd/" in topic:
        kiosk_id = topic.split("/")[3]
        command = topics.parse_command(topic, payload, kiosk_id=kiosk_id, max_bytes=65536,
                                       applied_version=7)
        assert command.name == topic.rsplit("/", 1)[-1]
    else:
        assert topics.parse_ack(payload)


def test_topics_docs_table_matches_qos_and_retain():
    rows = re.findall(r"^\| `citizeninfo/v1/([^`]+)` \| [^|]+ \| (\d) \| (yes|no) \|",
                      DOC.read_text(), re.M)
    table = {("ack" if topic.startswith("ack/") else topic.rsplit("/", 1)[-1]):
             (int(qos), retain == "yes") for topic, qos, retain in rows}
    assert table == {kind: (topics.QOS[kind], topics.RETAIN[kind]) for kind in topics.QOS}


# --- topics ---------------------------------------------------------------------------------


def test_topics_names_are_built_under_the_v1_root():
    assert topics.kiosk_topic("k1", "visit") == "citizeninfo/v1/kiosk/k1/visit"
    assert topics.cmd_topic("k1", "config") == "citizeninfo/v1/cmd/k1/config"
    assert topics.ack_topic("k1") == "citizeninfo/v1/ack/k1"
    assert topics.split_kiosk_topic("citizeninfo/v1/kiosk/k1/health") == ("k1", "health")


@pytest.mark.parametrize("kiosk_id", ["", "a/b", "k+", "k#", "collector", "ops", "collector-1",
                                      "k1234567890123", "x" * 65, "-lead"])
def test_topics_refuse_a_kiosk_id_that_cannot_be_a_topic_level(kiosk_id):
    with pytest.raises(MessageRejected):
        topics.kiosk_topic(kiosk_id, "visit")


def test_topics_refuse_a_foreign_topic():
    with pytest.raises(MessageRejected, match="not citizeninfo/v1/kiosk"):
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit/extra", b"{}")


@pytest.mark.parametrize("payload", POISON.values(), ids=POISON.keys())
def test_topics_refuse_poison_as_a_rejection_naming_no_value(payload):
    with pytest.raises(MessageRejected) as refused:
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", payload)
    assert not re.search(r"\d{13}", str(refused.value))


def test_topics_refuse_nesting_deeper_than_the_contract_before_scanning_it():
    """A 65 KB payload nested 900 deep with thousands of leaves once cost the collector 90 MB
    and 33 ms to scan; the depth is refused before the scan."""
    deep = b'{"schema":1,"x":' + b'[1,' * 900 + b"1" + b"]" * 900 + b"}"
    with pytest.raises(MessageRejected, match="nested deeper than 8 levels"):
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", deep)

    def reply(levels):  # the object itself is the first level; data nests the rest in lists
        data = 1
        for _ in range(levels - 1):
            data = [data]
        obj = {"schema": 1, "correlation_id": "c1", "ok": True, "error": None, "data": data}
        return json.dumps(obj).encode()

    assert topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/reply", reply(8)).ok
    with pytest.raises(MessageRejected, match="nested deeper than 8 levels"):
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/reply", reply(9))


def test_topics_rejection_names_no_key_a_kiosk_made_up():
    payload = json.dumps({"schema": 1, "สมชาย ใจดี": 1234567890123}, ensure_ascii=False)
    with pytest.raises(MessageRejected, match=r"at \$\.<key>") as refused:
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", payload.encode())
    assert "สมชาย" not in str(refused.value)


# --- the privacy check ----------------------------------------------------------------------


def test_topics_find_long_numbers_flags_id_shaped_values_only():
    obj = {"n": 1234567890123, "f": 1.5e12, "s": "card 1234567890123", "w": "1-2345-67890-12-3",
           "ok": [999999999999, "2025-01-31T02:41:07.250Z", True, None, 12.25],
           "uuid": "01234567-8901-2345-6789-012345678901"}
    assert topics.find_long_numbers(obj) == ["$.n", "$.f", "$.s", "$.w"]


def test_topics_builders_refuse_to_put_a_long_number_on_the_wire():
    with pytest.raises(ValueError):
        visit.payload(**visit_fields(seq=1_234_567_890_123))
    with pytest.raises(ValueError):
        topics.reply_payload("c1", True, data={"cid": "1234567890123"})


def test_topics_visit_builder_takes_no_repeat_hash_or_row_dump():
    with pytest.raises(TypeError):
        visit.payload(**visit_fields(repeat_hash=b"\x01" * 32))


@settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(0, 10**11), epoch=st.integers(0, 2**31 - 1),
    duration=st.floats(0, 86_400, allow_nan=False), mono=st.floats(0, 10**10, allow_nan=False),
    wall=st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)),
    rating=st.sampled_from((None, 1, 2, 3, 4, 5)), reason=st.sampled_from((None, *REASONS)),
    copy=st.sampled_from((None, *COPY_ANSWERS)), language=st.sampled_from(LANGUAGES),
)
def test_topics_visit_builder_never_emits_a_13_digit_number(seq, epoch, duration, mono, wall,
                                                            rating, reason, copy, language):
    payload = visit.payload(**visit_fields(
        seq=seq, epoch=epoch, duration_s=duration, rating=rating, reason=reason,
        copy_answer=copy, language=language, stamp=clock.stamp(wall, True, mono)))
    assert topics.find_long_numbers(json.loads(payload)) == []
    assert not re.search(rb"\d{13}", payload)
    parsed = topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", payload)
    assert (parsed.seq, parsed.epoch, parsed.rating) == (seq, epoch, rating)


@settings(max_examples=40, deadline=None)
@given(uptime=st.floats(0, 10**10), disk=st.floats(0, 10**9), depth=st.integers(0, 10**9),
       oldest=st.none() | st.floats(0, 10**10), version=st.none() | st.integers(0, 2**31 - 1))
def test_topics_health_builder_never_emits_a_13_digit_number(uptime, disk, depth, oldest,
                                                             version):
    payload = topics.health_payload(
        mode="production", uptime_s=uptime, load_1m=1.0, disk_free_mb=disk, mem_free_mb=disk,
        outbox_depth=depth, outbox_oldest_s=oldest, dead_letters=depth, reader="ready",
        last_card_read_at=None, config_version=version, version="0.1.0", stamp=STAMP)
    assert topics.find_long_numbers(json.loads(payload)) == []
    parsed = topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/health", payload)
    assert parsed.outbox_depth == depth and parsed.cpu_temp_c is None


def test_topics_stamp_needs_aware_utc_time():
    with pytest.raises(ValueError, match="UTC"):
        clock.stamp(dt.datetime(2025, 1, 31), True, 1.0)
    assert clock.stamp(dt.datetime(2025, 1, 31, tzinfo=dt.UTC), False, 1.23456) == {
        "at": "2025-01-31T00:00:00.000Z", "clock_synced": False, "mono_s": 1.235}


# --- kiosk messages -------------------------------------------------------------------------


def test_topics_service_point_payload_reads_a_config_shaped_object():
    kiosk = SimpleNamespace(service_point_id="sp-1", name_th="สำนักงานเขต", name_en="Office",
                            agency="DOPA", ministry="Interior", province="Bangkok", lat=None,
                            lon=None, mode="demo")
    service = SimpleNamespace(id="id_card", name_th="บัตร", name_en="ID card", no_copy="not_yet")
    payload = topics.service_point_payload(SimpleNamespace(kiosk=kiosk, services=(service,)))
    service_point = topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/pin", payload)
    assert service_point.services == (topics.ServiceEntry("id_card", "บัตร", "ID card", "not_yet"),)
    assert ((service_point.mode, service_point.lat, "สำนักงานเขต".encode() in payload)
            == ("demo", None, True))


def test_topics_previous_schema_accepted_and_unknown_fields_ignored():
    obj = {**json.loads(visit.payload(**visit_fields())),
           "schema": topics.SCHEMA - 1, "screen_brightness": 80}
    parsed = topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", json.dumps(obj))
    assert parsed.schema == topics.SCHEMA - 1 and not hasattr(parsed, "screen_brightness")


@pytest.mark.parametrize("schema,hint", [(topics.SCHEMA + 1, "upgrade the reader"),
                                         (topics.SCHEMA - 2, "upgrade the sender")])
def test_topics_schema_outside_n_and_n_minus_1_rejected(schema, hint):
    obj = {**json.loads(visit.payload(**visit_fields())), "schema": schema}
    with pytest.raises(MessageRejected, match=hint):
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", json.dumps(obj))


@pytest.mark.parametrize("field,value", [("rating", 6), ("rating", True), ("verified", "yes"),
                                         ("step", "nowhere"), ("event_id", "a b"),
                                         ("at", "2025-01-31 02:41"), ("duration_s", None)])
def test_topics_visit_with_bad_field_rejected_naming_the_field(field, value):
    obj = {**json.loads(visit.payload(**visit_fields())), field: value}
    with pytest.raises(MessageRejected, match=f"field '{field}'") as caught:
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", json.dumps(obj))
    assert repr(value) not in str(caught.value) or value is None


def test_topics_lost_status_of_an_older_epoch_parses_for_the_collector_to_judge():
    payload = topics.status_payload("lost", 4, "0.1.0", STAMP, instance="i1")
    status = topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/status", payload)
    assert (status.state, status.epoch) == ("lost", 4)


def test_topics_ack_round_trip_and_limits():
    assert topics.parse_ack(topics.ack_payload(["e1", "e2"])) == ("e1", "e2")
    with pytest.raises(ValueError):
        topics.ack_payload([])
    with pytest.raises(MessageRejected, match="event_ids"):
        topics.parse_ack(b'{"schema": 1, "event_ids": "e1"}')


# --- commands -------------------------------------------------------------------------------


def test_topics_config_command_parses_desired_state():
    payload = topics.command_payload("config", "c1", version=8, flow={"thank_you_s": 5})
    command = parse("config", payload, applied_version=7)
    assert command == topics.Command("config", "c1", version=8,
                                     desired={"flow": {"thank_you_s": 5}})


def test_topics_stale_config_rejected_with_correlation_id():
    payload = topics.command_payload("config", "c2", version=7, portal={"url": "https://x.go.th"})
    with pytest.raises(CommandRejected, match="not newer") as caught:
        parse("config", payload, applied_version=7)
    assert (caught.value.correlation_id, caught.value.is_stale) == ("c2", True)


@pytest.mark.parametrize("name,payload,reason", [
    ("config", b"{not json", "not UTF-8 JSON"),
    ("config", b"\xff\xfe", "not UTF-8 JSON"),
    ("ping", b"[1, 2]", "JSON object"),
    ("ping", b'{"correlation_id": "c3"}', "schema"),
    ("config", b'{"schema": 1, "correlation_id": "c4", "version": "8", "flow": {}}', "'version'"),
    ("config", b'{"schema": 1, "correlation_id": "c5", "version": 9}', "must be given"),
    ("replay", b'{"schema": 1, "event_ids": [1]}', "event_ids"),
    ("ping", b'{"schema": 1, "correlation_id": 1234567890123}', "13-digit"),
])
def test_topics_malformed_command_rejected(name, payload, reason):
    with pytest.raises(CommandRejected, match=reason) as caught:
        parse(name, payload, applied_version=3)
    assert caught.value.command == name


def test_topics_oversized_command_rejected():
    payload = topics.command_payload("config", "c6", version=9, flow={"pad": "x" * 5000})
    with pytest.raises(CommandRejected, match="over the limit of 4096"):
        parse("config", payload, max_bytes=4096)


@pytest.mark.parametrize("topic", [CMD + "reboot", "citizeninfo/v1/cmd/k2/ping", CMD + "ping/x"])
def test_topics_unknown_or_misaddressed_command_rejected(topic):
    with pytest.raises(CommandRejected, match="unknown command"):
        topics.parse_command(topic, topics.command_payload("ping", "c7"), kiosk_id="k1",
                             max_bytes=4096, applied_version=None)


def test_topics_replay_command_may_name_event_ids():
    assert parse("replay", topics.command_payload("replay", "c8")).event_ids is None
    named = parse("replay", topics.command_payload("replay", "c9", event_ids=["e1"]))
    assert named.event_ids == ("e1",)
