"""The team's overview page lists its notebooks (issue 14, defect 1: it said "No notebooks
yet" with five notebooks, one running)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from apps.notebooks.models import Status
from tests.factories import NotebookFactory

pytestmark = pytest.mark.django_db(transaction=True)


def overview(client, team) -> str:
    response = client.get(reverse("teams:home", kwargs={"team_slug": team.slug}))
    assert response.status_code == 200
    return response.content.decode()


def test_five_notebooks_one_running_are_listed_and_counted(acme, bob, client):
    for n in range(4):
        NotebookFactory.create(team=acme, name=f"Analysis {n}")
    running = NotebookFactory.create(team=acme, name="Training run", status=Status.RUNNING)
    client.force_login(bob)

    page = overview(client, acme)

    assert "No notebooks yet" not in page
    assert "5 notebooks, 1 running." in page
    for n in range(4):
        assert f"Analysis {n}" in page
    detail = reverse("notebooks:detail", args=[acme.slug, running.pk])
    # The running one comes first, with its status.
    assert page.index(detail) < page.index("Analysis 0")
    assert "nb-badge-running" in page


def test_deleted_and_other_teams_notebooks_are_not_counted(acme, globex, bob, client):
    NotebookFactory.create(team=acme, name="Gone", deleted_at=datetime.now(tz=UTC))
    NotebookFactory.create(team=globex, name="Someone else's")
    client.force_login(bob)

    page = overview(client, acme)

    assert "No notebooks yet" in page
    assert "Gone" not in page
    assert "Someone else&#x27;s" not in page


def test_a_large_team_shows_eight_and_counts_them_all(acme, bob, client):
    for n in range(12):
        NotebookFactory.create(team=acme, name=f"Sweep {n:02}")
    client.force_login(bob)

    page = overview(client, acme)

    assert "12 notebooks, 0 running." in page
    assert page.count('class="badge nb-badge') == 8
