"""The visit schema (kiosk/visit.py): one declaration per field, and everything derived from it."""

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk import flow, visit
from kiosk.fleet.db import open_database
from kiosk.period import Period
from kiosk.store import HAND_WRITTEN, MIGRATIONS, Store
from kiosk.telemetry import topics

PERIOD = Period.of(dt.datetime(2025, 3, 1, 2, 0, 0, 123456, tzinfo=dt.UTC), 3600)
TOPIC = "citizeninfo/v1/kiosk/k1/visit"
ANSWERS = dict(outcome="completed", step="reason", verified=True, expired=False,
               service_id="id_card", copy_answer="both", rating=2, reason="waiting_time",
               language="en", duration_s=21.46, age_band="60+", gender="female")
ENVELOPE = dict(event_id="0b9a3c1e6f1d4c1b9d352a7f5c3e9b10",
                instance="5e0c2d8a9b7f4a1c8e6d3b2a1f0e9d8c", mode="demo")
# Schema 3 for ANSWERS and ENVELOPE in the hour PERIOD: the wire must not change by a byte
# without a new schema.
WIRE = (b'{"schema":3,"event_id":"0b9a3c1e6f1d4c1b9d352a7f5c3e9b10",'
        b'"instance":"5e0c2d8a9b7f4a1c8e6d3b2a1f0e9d8c","mode":"demo",'
        b'"period":"2025-03-01T02:00:00Z","period_s":3600,"clock_synced":true,'
        b'"outcome":"completed","step":"reason","verified":true,"expired":false,'
        b'"service_id":"id_card","copy_answer":"both","rating":2,"reason":"waiting_time",'
        b'"language":"en","duration_s":21,"age_band":"60+","gender":"female"}')
WIRE_UNDATED = (b'{"schema":3,"event_id":"e2","instance":"i2","mode":"production",'
                b'"period":null,"period_s":null,"clock_synced":false,"outcome":"abandoned",'
                b'"step":"rating","verified":false,"expired":null,"service_id":null,'
                b'"copy_answer":null,"rating":null,"reason":null,"language":"th",'
                b'"duration_s":90,"age_band":null,"gender":null}')


def test_visit_schema_payload_bytes_are_pinned():
    assert visit.payload(**ENVELOPE, **ANSWERS, period=PERIOD) == WIRE
    assert visit.payload(event_id="e2", instance="i2", mode="production", outcome="abandoned",
                         step="rating", verified=False, language="th", duration_s=90,
                         period=None) == WIRE_UNDATED


def test_visit_schema_service_point_is_added_without_a_schema_and_optional_both_ways():
    """No new schema for it: with it, the key comes last; without it (a kiosk not upgraded),
    the bytes are as pinned above, and a reader takes it as null."""
    with_point = visit.payload(**ENVELOPE, **ANSWERS, period=PERIOD, service_point_id="dopa-10")
    assert with_point == WIRE[:-1] + b',"service_point_id":"dopa-10"}'
    assert topics.parse_kiosk_message(TOPIC, with_point).service_point_id == "dopa-10"
    assert topics.parse_kiosk_message(TOPIC, WIRE).service_point_id is None
    with pytest.raises(ValueError, match="field 'service_point_id'"):
        visit.payload(**ENVELOPE, **ANSWERS, period=PERIOD, service_point_id="a b")


def test_visit_schema_3_adds_its_fields_only_when_set_and_still_reads_schema_2():
    """The collector is upgraded first: it reads a schema-2 visit (the same answers, no new
    keys) as before, and the schema-3 keys come last, only when the kiosk knows them."""
    schema_2 = WIRE.replace(b'"schema":3', b'"schema":2')
    old = topics.parse_kiosk_message(TOPIC, schema_2)
    assert (old.schema, old.copy_answer, old.card_in_at_commit, old.undone) == (2, "both",
                                                                               None, None)
    new = visit.payload(**ENVELOPE, **{**ANSWERS, "copy_answer": "not_sure"}, period=PERIOD,
                        card_in_at_commit=True, undone=False)
    assert new.endswith(b',"card_in_at_commit":true,"undone":false}')
    parsed = topics.parse_kiosk_message(TOPIC, new)
    assert (parsed.copy_answer, parsed.card_in_at_commit, parsed.undone) == ("not_sure", True,
                                                                            False)
    with pytest.raises(ValueError, match="field 'card_in_at_commit' must be true or false"):
        visit.payload(**ENVELOPE, **ANSWERS, period=PERIOD, card_in_at_commit=1)


def test_visit_schema_centre_writes_acks_and_commands_a_kiosk_a_release_behind_reads():
    """A kiosk still on schema 2 must read the upgraded collector's acks, or it would resend
    its visits for ever."""
    for payload in (topics.ack_payload(["e1"]), topics.command_payload("ping", "c1")):
        assert json.loads(payload)["schema"] == topics.DOWNSTREAM_SCHEMA == visit.SCHEMA - 1


def test_visit_schema_store_writes_the_same_bytes_in_one_call(tmp_path):
    store = Store.open(tmp_path / "data")
    try:
        row = store.record_visit(visit.Record(**ANSWERS, repeat_hash=b"\x01" * 32),
                                 topic=TOPIC, period=PERIOD, mode="demo")
        [message] = store.OutboxMessage.select()
        expected = json.loads(WIRE)
        expected.update(event_id=row.event_id, instance=store.instance)
        assert message.topic == TOPIC
        assert message.payload.encode() == json.dumps(
            expected, ensure_ascii=False, separators=(",", ":")).encode()
        assert (row.period, row.period_s, row.mode) == (PERIOD.text, 3600, "demo")
    finally:
        store.close()


# --- migrations ---------------------------------------------------------------------------

#: sha256 of the SQL each released store version runs: kiosks in the field are at every version,
#: so these never change (a new field appends a version instead).
RELEASED_SQL = {
    1: "4b28de664d81a9fe50e85d3c1226046711ccc87d50f8c94076df48e921187b09",
    2: "59f12a9379cc63af4f79484f2ae6a6941ec5c05d4dbb91d2adc4f3bf9d08c5d1",
    3: "87a6b7c75025e660898338ba5d05851a446a12a8147754aa321fcb7ad7d9d07a",
    4: "6d70ea482f86191f38b5f5434ea56720a45c4f12f70e5d23c3369572ffbcacd2",
    5: "a4eaba3e2284f4160056bd4b36b58665dfd5b5046b967dd18fb5e7bb7097ee61",
}


class SqlRecorder:
    """Stands in for the database: keeps the statements a migration runs."""

    def __init__(self):
        self.statements = []

    def execute_sql(self, sql, params=None):
        self.statements.append(sql)


def migration_sql(migration):
    db = SqlRecorder()
    migration(db)
    return "\n;\n".join(db.statements)


def test_visit_schema_released_migrations_stay_byte_identical():
    for version, digest in RELEASED_SQL.items():
        sql = migration_sql(MIGRATIONS[version - 1])
        assert hashlib.sha256(sql.encode()).hexdigest() == digest, f"store v{version} changed"


def test_visit_schema_new_fields_come_after_v1_as_nullable_columns():
    for f in visit.FIELDS:
        assert f.since == 1 or not f.required, f"{f.name}: older rows have no value"
        # v4 rebuilt the table by hand with the columns of v1: a field may not claim 2 to 4.
        assert f.since == 1 or f.since > HAND_WRITTEN, f"{f.name}: since {f.since}"
    assert visit.add_column_statements(1) == []  # v1 is the hand-written table
    assert len(MIGRATIONS) == max(HAND_WRITTEN, visit.STORE_VERSION)


# --- adding a field -----------------------------------------------------------------------

NEW_FIELD = '''    Field("wait_band", str, "how long the citizen waited", choices=("short", "long"),
          since=7),
'''
ASKED = "copy_answer=event.answer)"
ASKED_TOO = "copy_answer=event.answer, wait_band=\"short\")"

# Runs on the edited copy of the package: one visit from the flow's questions to the
# collector's row, through a kiosk store and a fleet database made by the unedited package.
NEW_FIELD_VISIT = '''
import sys

import pytest
from pathlib import Path

from kiosk import flow
from kiosk.fleet.db import open_database
from kiosk.period import Period
from kiosk.store import Store
from kiosk.telemetry import topics

here = Path(sys.argv[1])
settings = flow.FlowSettings(
    timeouts={}, service_ids=("a", "b"), thank_you_s=8.0, take_card_s=20.0, reminder_s=5.0,
    allow_rating_without_card=True, ask_reason_at_or_below=2)
state, records = flow.State(), []
for event in (flow.StartedWithoutCard(), flow.ServiceChosen("a"), flow.CopyAnswered("none"),
              flow.RatingChosen(5), flow.Dismissed()):
    state, effects = flow.step(state, event, 1.0, settings)
    records += [effect.record for effect in effects if isinstance(effect, flow.RecordVisit)]
store = Store.open(here / "kiosk")
row = store.record_visit(records[0], topic=topics.kiosk_topic("k1", "visit"),
                         period=Period.of(__import__("datetime").datetime.now(
                             __import__("datetime").UTC), 3600), mode="production")
[message] = store.OutboxMessage.select()
parsed = topics.parse_kiosk_message(message.topic, message.payload.encode())
fleet = open_database(here / "fleet.sqlite3")
fleet.add_visits([parsed], "2025-01-01T00:00:00.000Z")
[kept] = fleet.visits()
print(store.schema_version, store.VisitRow.get_by_id(row.id).wait_band, parsed.wait_band,
      kept.wait_band)
'''


def test_visit_schema_a_new_field_needs_only_the_schema_and_the_screen_asking(tmp_path):
    package = tmp_path / "copy" / "kiosk"
    shutil.copytree(Path(visit.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    schema_py = package / "visit.py"
    text = schema_py.read_text()
    hash_field = text.index('    Field("repeat_hash"')
    schema_py.write_text(text[:hash_field] + NEW_FIELD + text[hash_field:])
    flow_py = package / "flow.py"
    assert ASKED in flow_py.read_text()
    flow_py.write_text(flow_py.read_text().replace(ASKED, ASKED_TOO).replace(
        "    copy_answer: str | None = None\n",
        "    copy_answer: str | None = None\n    wait_band: str | None = None\n"))
    # A kiosk and a collector that ran the released package already have their databases.
    Store.open(tmp_path / "kiosk").close()
    open_database(tmp_path / "fleet.sqlite3").close()

    done = subprocess.run([sys.executable, "-c", NEW_FIELD_VISIT, str(tmp_path)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(package.parent)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7", "short", "short", "short"]


# --- where a field's name may appear ------------------------------------------------------

KIOSK = Path(visit.__file__).parent
#: Every stored field but the five whose names mean other things too (a screen's ``step``, the
#: display's ``language``, a ``reason`` for going out of service, the faces' ``rating``, the
#: config's and the pin's ``service_point_id``).
GREPPED = [f.name for f in visit.STORED
           if f.name not in ("step", "language", "reason", "rating", "service_point_id")]
#: The schema, the flow that asks the questions, the card code that reads a card's facts (and
#: the emulated cards that hold them), the collector's statistics and rollups that count them,
#: and the fleet simulator that answers as citizens would.
MAY_NAME = ("visit.py", "flow.py", "card/thai_id.py", "card/probe.py", "rigs/", "fleet/db.py",
            "fleet/statistics.py", "fleet/rollups.py", "fleet/simulate.py")
#: Uses elsewhere, each with its reason.
MAY_NAME_TOO = {
    **{("runner.py", name): "the runner hands the card's derived facts to the flow"
       for name in ("age_band", "gender", "expired")},
    ("runner.py", "service_id"): "the repeat store keys on the card and the service: one "
                                 "rating per citizen per service per window",
    **{("demo.py", name): "the demo prints the visits it stored, for the operator"
       for name in ("service_id", "copy_answer", "outcome", "verified")},
    **{(module, "service_id"): "the registry's service ids are the ids kiosks send (its CSV "
                               "column, tables and sample)"
       for module in ("fleet/registry.py", "fleet/registry_csv.py", "fleet/registry_sample.py")},
    ("store.py", "duration_s"): "store v4 rounds the seconds of queued schema-1 visits, "
                                "whose payloads it rewrites as schema 2 (fixed SQL)",
    ("fleet/migrations.py", "duration_s"): "the schema-1 collector's visits are rebuilt with "
                                           "whole seconds, as fleet/db.py stored them before",
    **{("fleet/console/i18n.py", name): "the console labels the statistics core's key column "
                                        "and measure in Thai and English"
       for name in ("service_id", "verified", "undone")},
    ("fleet/console/stats.py", "service_id"): "the drill-down opens a service by the "
                                              "statistics core's key column",
    ("fleet/console/metrics.py", "outcome"): "/metrics counts the visits stored by outcome "
                                             "(issue 13)",
    **{(module, "verified"): "an update's step 'verified' (the release's signature and hashes "
                             "checked, issue 17), not the visit's field of that name"
       for module in ("telemetry/topics.py", "fleet/rollout.py", "update/updater.py")},
    **{(module, "expired"): "a kiosk's client certificate expired (issue 18's alarm and the "
                            "console's label), not the citizen's card"
       for module in ("fleet/alarms.py", "fleet/console/i18n.py")},
    **{("display/screens.py", name): "the confirm screen shows the citizen's answers before "
                                     "they are sent (issue 14)"
       for name in ("service_id", "copy_answer")},
    **{("display/screenshot.py", name): "the confirm screen's screenshot is drawn from a "
                                        "sample visit draft"
       for name in ("service_id", "copy_answer", "verified")},
}


def test_visit_schema_field_names_appear_only_where_asked_or_counted():
    assert {"service_id", "copy_answer", "duration_s", "age_band", "gender", "verified",
            "expired", "outcome"} <= set(GREPPED)
    names = "|".join(GREPPED)
    use = re.compile(rf"""["'.]({names})\b|\b({names})=""")  # "name", .name, name=
    found = set()
    for path in KIOSK.rglob("*.py"):
        where = path.relative_to(KIOSK).as_posix()
        if where.startswith(MAY_NAME):
            continue
        found |= {(where, quoted or keyword) for quoted, keyword in use.findall(path.read_text())}
    assert found <= set(MAY_NAME_TOO), sorted(found - set(MAY_NAME_TOO))


def test_visit_schema_docs_field_table_is_the_schemas():
    doc = (KIOSK.parent / "docs" / "telemetry.md").read_text(encoding="utf-8")
    start = doc.index("<!-- generated: kiosk.visit.doc_table() -->\n")
    table = doc[start:doc.index("<!-- end generated -->", start)].split("\n", 1)[1]
    assert table == visit.doc_table()


def test_visit_schema_every_step_the_flow_records_is_on_the_wire():
    assert {screen.value for screen in flow.Screen} <= set(visit.STEPS)


@pytest.mark.parametrize("field, value", [
    ("event_id", "e 1"), ("instance", ""), ("mode", "bogus"),
    ("period_s", Period(PERIOD.start, 7))])  # not a length a period may have
def test_visit_schema_payload_refuses_an_envelope_the_collector_would(field, value):
    """The old builder parsed its own output; a bad envelope must still fail where it is made
    (the kiosk goes out of service) rather than be resent and refused for ever."""
    envelope = {"event_id": "e1", "instance": "i1", "mode": "production", "period": PERIOD}
    envelope["period" if field == "period_s" else field] = value
    with pytest.raises(ValueError, match=f"field '{field}'"):
        visit.payload(**envelope, **ANSWERS)
