"""Transactions that hold a lock from their first statement, on SQLite and PostgreSQL alike.

A read-then-write step that two collectors (or two imports) may run at once must not read
before the other has committed: on SQLite the transaction begins ``IMMEDIATE`` (the file's
one write lock, waited for under ``busy_timeout``); on PostgreSQL it takes a
transaction-scoped advisory lock on ``key``, released at commit or rollback. Inside a
transaction already open, the lock joins it (a savepoint): the outer one must then have taken
it, as an ``IMMEDIATE`` one on SQLite has.
"""

import contextlib

from peewee import PostgresqlDatabase


@contextlib.contextmanager
def exclusive(database, key):
    """``database.atomic()`` holding the lock ``key`` (any constant the writers agree on)."""
    if isinstance(database, PostgresqlDatabase):
        with database.atomic() as transaction:
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))
            yield transaction
    else:
        with database.atomic(lock_type="IMMEDIATE") as transaction:
            yield transaction
