"""A faster flush after each test that commits (``django_db(transaction=True)``), on PostgreSQL.

Django's ``TransactionTestCase`` empties the database after such a test with ``flush``: one
TRUNCATE of every table, then the ``post_migrate`` signal, which makes the content types and
permissions again (a query or two per app). Together 0.25 s on an idle machine and up to
1.5 s on a busy one, after each of about 1,200 tests: the largest single cost of the suite.

Here, within one transaction, only the tables that hold a row are emptied, with DELETE: a test
writes to a few of the seventy-odd tables, and deleting a few rows costs far less than
truncating every table (each TRUNCATE makes new files for a table and its indexes). Django's
foreign keys are DEFERRABLE INITIALLY DEFERRED on PostgreSQL, so the order of the DELETEs does
not matter: the constraints are checked at the commit, when the rows that point at deleted
ones are gone too. The content types and permissions are left as they are, as
``post_migrate`` would have made them again, so it is not sent.

Django's own flush runs instead whenever this one cannot stand for it: on another database,
with ``reset_sequences``, when a test changed the number of content types or permissions, or
when the DELETEs fail (a constraint that is not deferred, say).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management.commands import flush
from django.db import DatabaseError, connections, transaction

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)

# What post_migrate makes (django.contrib.contenttypes and auth): left in place.
KEPT = ("django_content_type", "auth_permission")


# The SQL below names tables from KEPT and from Django's introspection, quoted: no input.


def _counts(cursor: Any) -> tuple[int, ...]:
    cursor.execute(" UNION ALL ".join(f"SELECT count(*) FROM {t}" for t in KEPT))  # noqa: S608
    return tuple(row[0] for row in cursor.fetchall())


def _nonempty(cursor: Any, tables: list[str], quote: Any) -> list[str]:
    """The tables of ``tables`` with a row, in one query."""
    if not tables:
        return []
    cursor.execute(
        " UNION ALL ".join(
            f"SELECT %s WHERE EXISTS (SELECT 1 FROM {quote(table)})"  # noqa: S608
            for table in tables
        ),
        tables,
    )
    return [row[0] for row in cursor.fetchall()]


def _delete_rows(database: str, kept_counts: tuple[int, ...]) -> bool:
    """Empty every table of ``database`` but KEPT; whether it could (else nothing changed)."""
    connection = connections[database]
    quote = connection.ops.quote_name
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    try:
        with transaction.atomic(using=database), connection.cursor() as cursor:
            if _counts(cursor) != kept_counts:
                return False
            for table in _nonempty(cursor, [t for t in tables if t not in KEPT], quote):
                cursor.execute(f"DELETE FROM {quote(table)}")  # noqa: S608
    except DatabaseError:
        logger.warning("the fast flush failed; Django's flush runs instead", exc_info=True)
        return False
    return True


@pytest.fixture(scope="session", autouse=True)
def _fast_flush(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    connection = connections["default"]
    if connection.vendor != "postgresql":
        yield
        return
    try:
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            kept_counts = _counts(cursor)
    except DatabaseError:  # no tables to count (a run of tests without a database): no need
        yield
        return
    handle = flush.Command.handle

    def fast_handle(self: flush.Command, **options: Any) -> None:
        database = options["database"]
        if (
            connections[database].vendor == "postgresql"
            and not options.get("reset_sequences")
            and not options.get("interactive")
            and _delete_rows(database, kept_counts)
        ):
            return
        handle(self, **options)

    flush.Command.handle = fast_handle  # type: ignore[method-assign]
    try:
        yield
    finally:
        flush.Command.handle = handle  # type: ignore[method-assign]
