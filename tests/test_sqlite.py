"""One way to bind peewee models to a database, for the kiosk's store and the collector alike."""

import peewee

from kiosk import store as store_module
from kiosk import visit
from kiosk.fleet import db as fleet_module
from kiosk.sqlite import bind, schema_columns
from kiosk.store import Store


class Note(peewee.Model):
    """A model declared once, unbound."""

    text = peewee.TextField()

    class Meta:
        table_name = "note"


def test_sqlite_bind_gives_each_database_its_own_models(tmp_path):
    first, second = (peewee.SqliteDatabase(str(tmp_path / name)) for name in ("a.db", "b.db"))
    (FirstNote,), (SecondNote,) = bind(first, Note), bind(second, Note)
    first.create_tables([FirstNote])
    second.create_tables([SecondNote])
    FirstNote.create(text="only in a")
    assert [note.text for note in FirstNote.select()] == ["only in a"]
    assert SecondNote.select().count() == 0
    assert (FirstNote.__name__, FirstNote._meta.table_name) == ("Note", "note")
    assert Note._meta.database is None  # the declared class stays unbound
    first.close()
    second.close()


def test_sqlite_schema_columns_follow_the_visit_schema():
    columns = schema_columns(visit.KEPT, text=peewee.CharField)
    assert list(columns) == [field.name for field in visit.KEPT]
    for field in visit.KEPT:
        assert columns[field.name].null is not field.required


def test_sqlite_store_and_fleet_bind_their_declared_models(tmp_path):
    store = Store.open(tmp_path / "kiosk", min_free_mb=1)
    fleet = fleet_module.open_database(tmp_path / "fleet.sqlite3")
    try:
        assert store.VisitRow.__bases__ == (store_module.VisitRow,)
        assert store.VisitRow._meta.table_name == "visit"
        assert [(model.__bases__, model._meta.table_name) for model in (
            fleet.KioskRow, fleet.ServicePointRow, fleet.FleetVisit, fleet.Alarm)] == [
            ((fleet_module.KioskRow,), "kiosk"), ((fleet_module.ServicePointRow,), "pin"),
            ((fleet_module.FleetVisit,), "visit"), ((fleet_module.Alarm,), "alarm")]
    finally:
        store.close()
        fleet.close()
