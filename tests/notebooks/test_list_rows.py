"""The notebook list's rows (issue 14): each with its status, uptime and cost so far while it
runs, and Start, Stop and Open for those whose role allows them; one read of the open
sessions however many rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.notebooks.models import Status
from tests.factories import NotebookFactory, running_notebook

pytestmark = pytest.mark.django_db


def row(page: str, notebook) -> str:
    start = page.index(f'data-testid="notebook-row-{notebook.pk}"')
    return page[start : page.index("</tr>", start)]


def notebook_list(client, team) -> str:
    response = client.get(reverse("notebooks:list", args=[team.slug]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_member_sees_status_uptime_cost_and_the_actions_each_row_allows(
    acme, bob, client, settings
):
    settings.LATTICE_BILLING = True
    running = running_notebook(acme, "Training run", minutes=120, hourly_price="1.25")
    stopped = NotebookFactory.create(team=acme, name="Analysis")
    client.force_login(bob)

    page = notebook_list(client, acme)

    live = row(page, running)
    assert "nb-badge-running" in live
    assert "2\xa0hours" in live
    assert "$2.50" in live
    assert f'href="/nb/{running.pk}/"' in live
    assert reverse("notebooks:stop", args=[acme.slug, running.pk]) in live
    assert reverse("notebooks:start", args=[acme.slug, running.pk]) not in live

    idle = row(page, stopped)
    assert "nb-badge-stopped" in idle
    assert reverse("notebooks:start", args=[acme.slug, stopped.pk]) in idle
    assert reverse("notebooks:stop", args=[acme.slug, stopped.pk]) not in idle
    assert "/nb/" not in idle
    assert "$" not in idle


def test_a_viewer_sees_the_rows_but_no_start_stop_or_open(acme, erin, client, settings):
    settings.LATTICE_BILLING = True
    running = running_notebook(acme, "Training run", minutes=120, hourly_price="1.25")
    stopped = NotebookFactory.create(team=acme, name="Analysis")
    client.force_login(erin)

    page = notebook_list(client, acme)

    assert "2\xa0hours" in row(page, running)
    assert "$2.50" in row(page, running)
    for notebook in (running, stopped):
        assert reverse("notebooks:start", args=[acme.slug, notebook.pk]) not in page
        assert reverse("notebooks:stop", args=[acme.slug, notebook.pk]) not in page
    assert f'href="/nb/{running.pk}/"' not in page


def test_with_billing_off_a_running_row_shows_no_cost(acme, bob, client, settings):
    settings.LATTICE_BILLING = False
    running = running_notebook(acme, "Training run", minutes=120, hourly_price="1.25")
    client.force_login(bob)

    page = notebook_list(client, acme)

    assert "$2.50" not in row(page, running)
    assert "—" in row(page, running)
    assert "Billing is off on this Lattice: nothing is charged." in page


def test_the_rows_cost_the_same_queries_however_many_run(acme, bob, client, settings):
    settings.LATTICE_BILLING = True
    running_notebook(acme, "Run 0", minutes=120, hourly_price="1.25")
    client.force_login(bob)
    notebook_list(client, acme)  # the sign-in's first request writes its own rows
    with CaptureQueriesContext(connection) as one:
        notebook_list(client, acme)
    for n in range(1, 6):
        running_notebook(acme, f"Run {n}", minutes=120, hourly_price="1.25")
    with CaptureQueriesContext(connection) as six:
        page = notebook_list(client, acme)

    assert page.count("nb-badge-running") == 6
    assert len(six.captured_queries) == len(one.captured_queries)


def test_a_running_row_stops_from_the_list(acme, bob, client):
    running = running_notebook(acme, "Training run", minutes=120, hourly_price="1.25")
    client.force_login(bob)

    response = client.post(reverse("notebooks:stop", args=[acme.slug, running.pk]))

    assert response.status_code == 302
    running.refresh_from_db()
    assert running.status in {Status.STOPPING, Status.STOPPED}
