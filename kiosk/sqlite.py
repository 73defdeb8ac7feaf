"""Peewee models bound per database: the one way the kiosk's store and the collector do it.

A module declares its models once, unbound, each with its table name fixed (a class may be
renamed, its table may not). Every open database gets its own bound subclasses from
:func:`bind`, so two databases in one process (a test reopening a file, an ops tool beside the
kiosk, two collectors) never swap each other's binding, as ``Model.bind`` on the shared classes
would.
"""

import peewee


def bind(database, *models):
    """Subclasses of ``models`` bound to ``database``, in order, with the same names and tables."""
    return tuple(
        type(model.__name__, (model,), {
            "__module__": model.__module__,
            "__doc__": model.__doc__,
            "Meta": type("Meta", (), {"database": database,
                                      "table_name": model._meta.table_name}),
        })
        for model in models
    )


def schema_columns(fields, *, text=peewee.TextField):
    """A column per field of the visit schema (:mod:`kiosk.visit`), nullable unless required;
    ``text`` is the column class for text fields."""
    types = {str: text, int: peewee.IntegerField, bool: peewee.BooleanField,
             float: peewee.FloatField}
    return {field.name: types[field.type](null=not field.required) for field in fields}
