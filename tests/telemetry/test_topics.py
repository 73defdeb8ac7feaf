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
from kiosk.period import DAY_S, Period, count_event_id
from kiosk.telemetry import topics
from kiosk.visit import COPY_ANSWERS, LANGUAGES, REASONS
from tests.fixtures.poison import POISON

DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"
EXAMPLE = re.compile(r"```json topic=(\S+)\n(.*?)```", re.S)
STAMP = clock.stamp(dt.datetime(2025, 1, 31, 2, 41, 7, 250000, tzinfo=dt.UTC), False, 12.5)
#: 09:00-10:00 local (Asia/Bangkok) on 31 January 2025.
HOUR = Period.of(dt.datetime(2025, 1, 31, 2, 41, 7, tzinfo=dt.UTC), 3600)
INSTANCE = "5e0c2d8a9b7f4a1c8e6d3b2a1f0e9d8c"
CMD = "citizeninfo/v1/cmd/k1/"
VISIT = "citizeninfo/v1/kiosk/k1/visit"
PERIOD = "citizeninfo/v1/kiosk/k1/period"
#: What schema 1 timed and counted each visit by; none of it may survive in schema 2.
SCHEMA1_TIMING = ("at", "mono_s", "seq", "epoch")


def doc_examples():
    return EXAMPLE.findall(DOC.read_text())


def visit_fields(**overrides):
    fields = dict(event_id="0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10", instance=INSTANCE,
                  mode="production", outcome="completed", step="thank_you", verified=True,
                  expired=False, service_id="id_card", copy_answer="none", rating=5, reason=None,
                  language="th", duration_s=30, period=HOUR)
    fields.update(overrides)
    return fields


def schema1_visit(**overrides):
    """A visit as a kiosk not yet upgraded sends it: timed to the millisecond and numbered."""
    obj = {"schema": 1, "event_id": "0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10",
           "instance": INSTANCE, "seq": 418, "epoch": 12, "mode": "production",
           "outcome": "completed", "step": "thank_you", "verified": True, "expired": False,
           "service_id": "id_card", "copy_answer": "none", "rating": 4, "reason": None,
           "language": "th", "duration_s": 38.4, "age_band": "60+", "gender": "female",
           "at": "2025-01-31T02:41:07.250Z", "clock_synced": True, "mono_s": 15873.412}
    obj.update(overrides)
    return json.dumps(obj).encode()


def period_fields(**overrides):
    fields = dict(event_id=count_event_id(INSTANCE, HOUR), instance=INSTANCE, mode="production",
                  period=HOUR, visits=7)
    fields.update(overrides)
    return fields


def period_obj(**overrides):
    obj = json.loads(topics.period_payload(**period_fields()))
    obj.update(overrides)
    return json.dumps(obj).encode()


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
        if isinstance(parsed, topics.PeriodMessage):
            period = Period.parse(parsed.period, parsed.period_s)
            assert parsed.event_id == count_event_id(parsed.instance, period)
        if isinstance(parsed, topics.VisitMessage) and parsed.schema == topics.SCHEMA:
            assert not set(SCHEMA1_TIMING) & json.loads(payload).keys()
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


def test_topics_find_long_numbers_checks_each_text_and_key_on_its_own():
    """The quick first pass searches all texts at once: texts side by side never make an ID,
    an ID in a key or deep in a list is still found."""
    assert topics.find_long_numbers({"a": "1234567", "b": "890123", "c": ["1-2345", "67890"]}) \
        == []
    assert topics.find_long_numbers({"1234567890123": 1}) == ["$.<key>"]
    assert topics.find_long_numbers({"x": [[{"y": "id 1 2345 67890 12 3"}]]}) == ["$.x[0][0].y"]


def test_topics_builders_refuse_to_put_a_long_number_on_the_wire():
    with pytest.raises(ValueError):
        visit.payload(**visit_fields(event_id="1234567890123"))
    with pytest.raises(ValueError):
        topics.period_payload(**period_fields(event_id="1234567890123"))
    with pytest.raises(ValueError):
        topics.reply_payload("c1", True, data={"cid": "1234567890123"})


def test_topics_visit_builder_takes_no_repeat_hash_or_row_dump():
    with pytest.raises(TypeError):
        visit.payload(**visit_fields(repeat_hash=b"\x01" * 32))


@settings(max_examples=60, deadline=None)
@given(
    length=st.sampled_from((5, 60, 300, 900, 3600, DAY_S)),
    duration=st.floats(0, 86_400, allow_nan=False),
    wall=st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)),
    rating=st.sampled_from((None, 1, 2, 3, 4, 5)), reason=st.sampled_from((None, *REASONS)),
    copy=st.sampled_from((None, *COPY_ANSWERS)), language=st.sampled_from(LANGUAGES),
)
def test_topics_visit_builder_never_emits_a_13_digit_number(length, duration, wall, rating,
                                                            reason, copy, language):
    period = Period.of(wall, length)
    payload = visit.payload(**visit_fields(
        period=period, duration_s=duration, rating=rating, reason=reason, copy_answer=copy,
        language=language))
    obj = json.loads(payload)
    assert topics.find_long_numbers(obj) == []
    assert not re.search(rb"\d{13}", payload)
    assert not set(SCHEMA1_TIMING) & obj.keys()
    parsed = topics.parse_kiosk_message(VISIT, payload)
    assert (parsed.period, parsed.period_s, parsed.rating) == (period.text, length, rating)
    assert parsed.duration_s == round(duration) and type(parsed.duration_s) is int


@settings(max_examples=40, deadline=None)
@given(uptime=st.floats(0, 10**10), disk=st.floats(0, 10**9), depth=st.integers(0, 10**9),
       oldest=st.none() | st.floats(0, 10**10), version=st.none() | st.integers(0, 2**31 - 1),
       reads=st.none() | st.integers(0, 10**9))
def test_topics_health_builder_never_emits_a_13_digit_number(uptime, disk, depth, oldest,
                                                             version, reads):
    payload = topics.health_payload(
        mode="production", uptime_s=uptime, load_1m=1.0, disk_free_mb=disk, mem_free_mb=disk,
        outbox_depth=depth, outbox_oldest_s=oldest, dead_letters=depth, reader="ready",
        card_reads_ok=reads, config_version=version, version="0.1.0", stamp=STAMP)
    assert topics.find_long_numbers(json.loads(payload)) == []
    parsed = topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/health", payload)
    assert parsed.outbox_depth == depth and parsed.cpu_temp_c is None
    assert parsed.card_reads_ok == reads


def test_topics_schema1_health_parses_without_a_card_or_a_read_time():
    """A kiosk not yet upgraded reports ``card_present`` and the time of its last read: the
    parser keeps neither."""
    obj = {"schema": 1, "mode": "production", "uptime_s": 15873.4, "load_1m": 0.42,
           "disk_free_mb": 5120.5, "mem_free_mb": 212.3, "outbox_depth": 3,
           "outbox_oldest_s": 61.2, "dead_letters": 0, "reader": "card_present",
           "last_card_read_at": "2025-01-31T02:40:29.000Z", "config_version": 7,
           "version": "0.1.0", "cpu_temp_c": None, "screen": None, **STAMP}
    parsed = topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/health", json.dumps(obj))
    assert (parsed.reader, parsed.card_reads_ok, parsed.schema) == ("ready", None, 1)
    assert not hasattr(parsed, "last_card_read_at")
    assert "2025-01-31T02:40:29" not in repr(parsed)


def test_topics_schema2_health_may_not_say_card_present():
    with pytest.raises(MessageRejected, match="'reader'"):
        topics.health_payload(
            mode="production", uptime_s=1, load_1m=0, disk_free_mb=1, mem_free_mb=1,
            outbox_depth=0, outbox_oldest_s=None, dead_letters=0, reader="card_present",
            card_reads_ok=None, config_version=None, version="0.1.0", stamp=STAMP)


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


def test_topics_visit_round_trip_carries_its_period_and_whole_seconds():
    payload = visit.payload(**visit_fields(duration_s=30.6, age_band="60+", gender="female",
                                           service_point_id="dopa-10"))
    obj = json.loads(payload)
    assert (obj["schema"], obj["period"], obj["period_s"], obj["clock_synced"],
            obj["duration_s"]) == (3, "2025-01-31T02:00:00Z", 3600, True, 31)
    assert not set(SCHEMA1_TIMING) & obj.keys()
    parsed = topics.parse_kiosk_message(VISIT, payload)
    assert parsed == topics.VisitMessage(
        kiosk_id="k1", event_id="0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10", instance=INSTANCE,
        mode="production", outcome="completed", step="thank_you", verified=True, expired=False,
        service_id="id_card", copy_answer="none", rating=5, reason=None, language="th",
        duration_s=31, age_band="60+", gender="female", service_point_id="dopa-10",
        card_in_at_commit=None, undone=None,
        period="2025-01-31T02:00:00Z", period_s=3600, clock_synced=True, schema=3)
    assert not any(hasattr(parsed, name) for name in SCHEMA1_TIMING)


def test_topics_visit_of_a_day_starts_at_local_midnight():
    day = Period.of(dt.datetime(2025, 1, 31, 2, 41, tzinfo=dt.UTC), DAY_S)
    parsed = topics.parse_kiosk_message(VISIT, visit.payload(**visit_fields(period=day)))
    assert (parsed.period, parsed.period_s) == ("2025-01-30T17:00:00Z", DAY_S)


def test_topics_visit_without_a_period_is_unsynced():
    """Recorded before the clock synced, and the kiosk restarted since: no time at all."""
    payload = visit.payload(**visit_fields(period=None))
    obj = json.loads(payload)
    assert (obj["period"], obj["period_s"], obj["clock_synced"]) == (None, None, False)
    parsed = topics.parse_kiosk_message(VISIT, payload)
    assert (parsed.period, parsed.period_s, parsed.clock_synced) == (None, None, False)


@pytest.mark.parametrize("overrides", [
    {"period": None},  # period_s without a period
    {"period_s": None},  # a period without its length
    {"clock_synced": False},  # a period on a clock that was not synced
    {"period": None, "period_s": None, "clock_synced": True},  # synced, yet no period
    {"period": "2025-01-31T02:30:00Z"},  # not the start of an hour
    {"period": "2025-01-31T02:00:00.000Z"},  # finer than a period start is written
    {"period": "2025-01-31T00:00:00Z", "period_s": DAY_S},  # UTC midnight, not Bangkok's
    {"period_s": 7},  # does not divide a day
    {"period_s": 2 * DAY_S},
    {"period_s": 3600.0},
])
def test_topics_visit_with_a_period_that_breaks_the_rules_rejected(overrides):
    obj = {**json.loads(visit.payload(**visit_fields())), **overrides}
    with pytest.raises(MessageRejected, match="field 'period"):
        topics.parse_kiosk_message(VISIT, json.dumps(obj))


def test_topics_schema1_visit_is_coarsened_to_its_hour():
    parsed = topics.parse_kiosk_message(VISIT, schema1_visit())
    assert (parsed.period, parsed.period_s, parsed.clock_synced) == (
        "2025-01-31T02:00:00Z", 3600, True)
    assert (parsed.duration_s, parsed.rating, parsed.schema) == (38, 4, 1)
    assert not any(hasattr(parsed, name) for name in SCHEMA1_TIMING)
    assert "02:41" not in repr(parsed) and "418" not in repr(parsed)


def test_topics_schema1_visit_on_an_unsynced_clock_has_no_period():
    parsed = topics.parse_kiosk_message(VISIT, schema1_visit(clock_synced=False))
    assert (parsed.period, parsed.period_s, parsed.clock_synced) == (None, None, False)


@pytest.mark.parametrize("field,value", [("seq", -1), ("epoch", 2**31), ("at", "yesterday"),
                                         ("mono_s", -1.0)])
def test_topics_schema1_visit_still_checked_before_its_timing_is_dropped(field, value):
    with pytest.raises(MessageRejected, match=f"field '{field}'"):
        topics.parse_kiosk_message(VISIT, schema1_visit(**{field: value}))


def test_topics_period_message_round_trip():
    payload = topics.period_payload(**period_fields())
    obj = json.loads(payload)
    assert obj == {"schema": 3, "event_id": count_event_id(INSTANCE, HOUR), "instance": INSTANCE,
                   "mode": "production", "period": "2025-01-31T02:00:00Z", "period_s": 3600,
                   "visits": 7}
    assert topics.parse_kiosk_message(PERIOD, payload) == topics.PeriodMessage(
        kiosk_id="k1", event_id=count_event_id(INSTANCE, HOUR), instance=INSTANCE,
        mode="production", period="2025-01-31T02:00:00Z", period_s=3600, visits=7, schema=3)
    assert (topics.QOS["period"], topics.RETAIN["period"]) == (1, False)
    assert topics.parse_kiosk_message(PERIOD, period_obj(visits=0)).visits == 0


def test_topics_period_message_event_id_is_the_same_for_every_close():
    assert count_event_id(INSTANCE, HOUR) == count_event_id(INSTANCE, Period.of(
        HOUR.start + dt.timedelta(minutes=59), 3600))
    assert count_event_id(INSTANCE, HOUR) != count_event_id("other", HOUR)
    assert count_event_id(INSTANCE, HOUR) != count_event_id(INSTANCE, Period.of(HOUR.start, 60))


@pytest.mark.parametrize("overrides,field", [
    ({"period": "2025-01-31T02:30:00Z"}, "period"),
    ({"period": "2025-01-31T00:00:00Z", "period_s": DAY_S}, "period"),
    ({"period_s": 7}, "period_s"),
    ({"period_s": 0}, "period_s"),
    ({"visits": -1}, "visits"),
    ({"visits": topics.MAX_PERIOD_VISITS + 1}, "visits"),
    ({"visits": True}, "visits"),
    ({"visits": "7"}, "visits"),
    ({"visits": None}, "visits"),
    ({"period": None}, "period"),
    ({"period_s": None}, "period_s"),
    ({"instance": None}, "instance"),
    ({"schema": 1}, "schema"),
])
def test_topics_period_message_that_breaks_the_rules_rejected(overrides, field):
    with pytest.raises(MessageRejected, match=f"field '{field}'"):
        topics.parse_kiosk_message(PERIOD, period_obj(**overrides))


def test_topics_period_builder_refuses_a_count_out_of_range():
    with pytest.raises(MessageRejected, match="field 'visits'"):
        topics.period_payload(**period_fields(visits=-1))


def test_topics_previous_schema_accepted_and_unknown_fields_ignored():
    parsed = topics.parse_kiosk_message(VISIT, schema1_visit(screen_brightness=80))
    assert parsed.schema == 1 and not hasattr(parsed, "screen_brightness")
    newer = {**json.loads(visit.payload(**visit_fields())), "screen_brightness": 80}
    parsed = topics.parse_kiosk_message(VISIT, json.dumps(newer))
    assert parsed.schema == topics.SCHEMA and not hasattr(parsed, "screen_brightness")


@pytest.mark.parametrize("schema,hint", [(topics.SCHEMA + 1, "upgrade the reader"),
                                         (0, "upgrade the sender")])
def test_topics_schema_outside_those_in_the_field_rejected(schema, hint):
    obj = {**json.loads(visit.payload(**visit_fields())), "schema": schema}
    with pytest.raises(MessageRejected, match=hint):
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/visit", json.dumps(obj))


@pytest.mark.parametrize("field,value", [("rating", 6), ("rating", True), ("verified", "yes"),
                                         ("step", "nowhere"), ("event_id", "a b"),
                                         ("period", "2025-01-31 02:41"),
                                         ("duration_s", None), ("duration_s", True),
                                         ("duration_s", 86_401), ("rating", 3.0),
                                         ("verified", 0), ("copy_answer", ["none"]),
                                         ("language", {"th": 1}), ("age_band", 45)])
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


# --- renewal: csr and cert -----------------------------------------------------------------

#: PEM blocks as the contract checks them (shape only: kiosk-fleet ca and the kiosk's root unit
#: judge the contents).
CSR_PEM = ("-----BEGIN CERTIFICATE REQUEST-----\nMIHMMHQCAQAwEjEQMA4GA1UEAwwHYmtrLTAwMTBZ\n"
           "-----END CERTIFICATE REQUEST-----\n")
CERT_PEM = CSR_PEM.replace("CERTIFICATE REQUEST", "CERTIFICATE")


def test_topics_csr_carries_the_request_and_takes_the_kiosk_id_from_the_topic():
    parsed = topics.parse_kiosk_message(topics.kiosk_topic("k1", "csr"),
                                        topics.csr_payload(CSR_PEM))
    assert parsed == topics.CertRequest(kiosk_id="k1", csr=CSR_PEM, schema=topics.SCHEMA)


@pytest.mark.parametrize("pem", [CERT_PEM, "MIHMMHQCAQAw", CSR_PEM.replace(
    "MIHM", "A" * topics.MAX_PEM_CHARS)], ids=["a certificate", "no PEM", "too long"])
def test_topics_csr_refuses_anything_but_one_pem_request(pem):
    with pytest.raises(MessageRejected, match="field 'csr'"):
        topics.csr_payload(pem)


def test_topics_cert_command_carries_the_certificate_and_refuses_a_request():
    command = parse("cert", topics.command_payload("cert", "ca-abc", cert=CERT_PEM))
    assert (command.name, command.correlation_id, command.cert) == ("cert", "ca-abc", CERT_PEM)
    with pytest.raises(CommandRejected, match="field 'cert'"):
        parse("cert", json.dumps({"schema": 2, "correlation_id": "ca-abd",
                                  "cert": CSR_PEM}).encode())


# --- update ---------------------------------------------------------------------------------

#: A manifest hash whose hex holds a run of 13 digits: plain hex on the wire would be refused.
DIGIT_RUN_SHA = "1234567890123" + "ab" * 25 + "c"


def test_topics_update_command_carries_a_grouped_hash_that_never_looks_like_an_id():
    grouped = topics.grouped_sha256(DIGIT_RUN_SHA)
    payload = topics.command_payload("update", "u1", version="0.2.0",
                                     url="https://releases.example/0.2.0/", sha256=grouped,
                                     rollout="r1")
    assert topics.find_long_numbers(json.loads(payload)) == []
    command = parse("update", payload)
    assert command.release == topics.WantedRelease("0.2.0", "https://releases.example/0.2.0/",
                                                   DIGIT_RUN_SHA, "r1")
    assert topics.grouped_sha256(grouped) == grouped
    with pytest.raises(ValueError, match="64 hex digits"):
        topics.grouped_sha256("ab" * 31)


@pytest.mark.parametrize("field,value,reason", [
    ("url", "http://releases.example/0.2.0/", "https://"),
    ("url", "https://releases.example/a b/", "https://"),
    ("sha256", "ab" * 32, "eight groups"),
    ("version", "0.2.0; rm -rf /", "version like"),
    ("rollout", "r 1", "'rollout'"),
])
def test_topics_malformed_update_command_rejected(field, value, reason):
    fields = {"version": "0.2.0", "url": "https://releases.example/0.2.0/",
              "sha256": topics.grouped_sha256("ab" * 32), "rollout": "r1", field: value}
    payload = json.dumps({"schema": 2, "correlation_id": "u2", **fields}).encode()
    with pytest.raises(CommandRejected, match=reason) as caught:
        parse("update", payload)
    assert (caught.value.command, caught.value.correlation_id) == ("update", "u2")


def test_topics_health_carries_the_update_state():
    state = topics.UpdateState("rolled_back", "0.2.0", "not healthy within 120 s", "r1")
    payload = topics.health_payload(
        mode="production", uptime_s=1, load_1m=0, disk_free_mb=1, mem_free_mb=1,
        outbox_depth=0, outbox_oldest_s=None, dead_letters=0, reader="ready",
        card_reads_ok=None, config_version=None, version="0.1.0", stamp=STAMP, update=state)
    assert topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/health", payload).update == state
    obj = json.loads(payload)
    obj["update"]["state"] = "exploded"
    with pytest.raises(MessageRejected, match="update: field 'state'"):
        topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/health", json.dumps(obj))
    del obj["update"]
    assert topics.parse_kiosk_message("citizeninfo/v1/kiosk/k1/health",
                                      json.dumps(obj)).update is None


@pytest.mark.parametrize("bad", [
    "2027-12-02", "2027-12-02T03:00:00+07:00", "2027-02-31T03:00:00Z", 1827803200,
    1827803200000, "", True])
def test_topics_health_cert_expires_is_a_real_utc_time_or_absent(bad):
    """The loaded certificate's notAfter, as text: never a number (a 13-digit one would be a
    millisecond time to a reader and a citizen ID to a privacy scan), never a day that does
    not exist (the collector compares it with its clock on every evaluation)."""
    fields = dict(mode="production", uptime_s=1, load_1m=0, disk_free_mb=1, mem_free_mb=1,
                  outbox_depth=0, outbox_oldest_s=None, dead_letters=0, reader="ready",
                  card_reads_ok=None, config_version=None, version="0.1.0", stamp=STAMP)
    payload = topics.health_payload(**fields, cert_expires="2027-12-02T03:00:00Z")
    health = "citizeninfo/v1/kiosk/k1/health"
    assert topics.parse_kiosk_message(health, payload).cert_expires == "2027-12-02T03:00:00Z"
    obj = json.loads(payload)
    obj["cert_expires"] = bad
    with pytest.raises(MessageRejected, match="'cert_expires'|13-digit"):
        topics.parse_kiosk_message(health, json.dumps(obj))
    with pytest.raises(MessageRejected, match="'cert_expires'"):
        topics.health_payload(**fields, cert_expires=str(bad))
    del obj["cert_expires"]  # a password kiosk, or one not upgraded
    assert topics.parse_kiosk_message(health, json.dumps(obj)).cert_expires is None
    assert "cert_expires" not in json.loads(topics.health_payload(**fields))
