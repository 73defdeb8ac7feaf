"""The verbs that only read (``kiosk-fleet status`` and ``stats``) open the fleet database
read-only: a replica, a PostgreSQL role with only SELECT, a SQLite file the operator may only
read. Such an open never writes, not even a migration, and refuses a schema that is not the
current one, naming the version found, the version needed and the fix."""

import peewee
import pytest

from kiosk.cli import run_verbs
from kiosk.errors import StoreError
from kiosk.fleet import migrations
from kiosk.fleet.cli import VERBS
from kiosk.fleet.db import open_database, utc_text
from kiosk.telemetry import topics
from tests.fleet.test_alarms import RECEIVED, health
from tests.fleet.test_collector import KIOSK, PERIOD, status, visit

DAY = PERIOD.start.date().isoformat()


def parse(kind, payload):
    return topics.parse_kiosk_message(topics.kiosk_topic(KIOSK, kind), payload)


def populate(where):
    """A kiosk that reported, with a visit, written the usual (migrating) way."""
    db = open_database(where)
    try:
        with db.database.atomic():
            db.apply_status(parse("status", status("online", 1)), RECEIVED)
            db.apply_health([parse("health", health())], RECEIVED)
            db.add_visits([parse("visit", visit("v1"))], utc_text(PERIOD.start))
    finally:
        db.close()


def fleet(capsys, *argv):
    """``kiosk-fleet ARGV``: (exit status, standard output, standard error)."""
    code = run_verbs("kiosk-fleet", VERBS, [str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_both(capsys, where):
    code, out, err = fleet(capsys, "status", "--db", where)
    assert (code, err) == (0, "")
    assert out.startswith(KIOSK) and " online " in out
    code, out, err = fleet(capsys, "stats", "--db", where, "--from", DAY, "--to", DAY)
    assert (code, err) == (0, "")
    assert "visits" in out


def test_read_only_sqlite_file_the_operator_may_only_read(tmp_path, capsys):
    path = tmp_path / "fleet.sqlite3"
    populate(path)
    path.chmod(0o444)
    before = path.read_bytes()
    read_both(capsys, path)
    assert path.read_bytes() == before


def test_read_only_sqlite_open_refuses_every_write(tmp_path):
    path = tmp_path / "fleet.sqlite3"
    populate(path)
    db = open_database(path, read_only=True)
    try:
        assert [k.kiosk_id for k in db.kiosks()] == [KIOSK]
        with pytest.raises(peewee.OperationalError, match="readonly"):
            db.apply_health([parse("health", health(disk_free_mb=1))], RECEIVED)
    finally:
        db.close()


def test_read_only_sqlite_missing_file_is_named(tmp_path, capsys):
    code, _, err = fleet(capsys, "stats", "--db", tmp_path / "nope.sqlite3", "--from", DAY,
                         "--to", DAY)
    assert code == 1 and "nope.sqlite3: no such database" in err
    assert not (tmp_path / "nope.sqlite3").exists()


def test_read_only_postgres_role_with_only_select(postgres, capsys):
    name = postgres.create_database()
    role = f"reader_{name}"
    try:
        populate(postgres.url(name))
        postgres.execute(f'CREATE ROLE "{role}" LOGIN')
        postgres.execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
        postgres.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"', name)
        read_both(capsys, postgres.url(name).replace("postgres@", f"{role}@"))
    finally:
        postgres.drop_database(name)
        postgres.execute(f'DROP ROLE IF EXISTS "{role}"')


def _set_version(where, found):
    db = open_database(where)
    try:
        db.database.execute_sql(f'DELETE FROM "schema_version" WHERE "version" > {found}')
        if found > migrations.LATEST:
            db.database.execute_sql(f"INSERT INTO \"schema_version\" VALUES ({found}, 'later', "
                                    "'2027-01-01T00:00:00Z')")
    finally:
        db.close()


def test_read_only_open_of_an_older_schema_names_versions_and_the_fix(fleet_url, capsys):
    populate(fleet_url)
    _set_version(fleet_url, migrations.LATEST - 1)
    with pytest.raises(StoreError) as refused:
        open_database(fleet_url, read_only=True)
    message = str(refused.value)
    assert f"schema version {migrations.LATEST - 1}" in message
    assert f"needs version {migrations.LATEST}" in message
    assert "kiosk-fleet collect" in message
    code, out, err = fleet(capsys, "status", "--db", fleet_url)
    assert (code, out) == (1, "") and message in err
    db = open_database(fleet_url)  # it was left as it was: the usual open migrates it now
    try:
        assert migrations.migrate(db) == []
        assert migrations.version(db) == migrations.LATEST
    finally:
        db.close()


def test_read_only_open_of_a_newer_schema_says_to_upgrade(fleet_url):
    populate(fleet_url)
    _set_version(fleet_url, migrations.LATEST + 1)
    with pytest.raises(StoreError, match=f"schema version {migrations.LATEST + 1}.*upgrade"):
        open_database(fleet_url, read_only=True)
