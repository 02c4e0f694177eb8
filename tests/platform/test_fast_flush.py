"""tests/fast_flush.py: after a test that commits, every table is empty again but the content
types and permissions, which are as migrate made them. The first test writes; the second,
which pytest runs after it (file order), looks."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from tests.fast_flush import KEPT

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_test_that_commits_rows_in_many_tables(acme, alice, catalogue, host, notebook):
    from apps.notebooks import services

    services.notebook_start(team=acme, actor=alice, notebook=notebook)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notebooks_notebooksession")
        assert cursor.fetchone()[0] == 1


def test_the_next_one_finds_every_table_empty_but_what_migrate_made() -> None:
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cursor:
        rows = {}
        for table in tables:
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT count(*) FROM {quoted}")  # noqa: S608 - Django's table names
            rows[table] = cursor.fetchone()[0]
    assert {t: n for t, n in rows.items() if n and t not in KEPT} == {}
    assert ContentType.objects.get_for_model(Permission, for_concrete_model=True).pk
    assert Permission.objects.filter(codename="add_user").exists()
