"""The dashboard and the team overview show what runs now: each running notebook's uptime
and cost so far, and the team's spend this period (issue 14, "what a Gradient/Kaggle user
expects"). Costs are billing's: with billing off nothing is charged, and no figure is shown."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.teams.models import Role
from tests.factories import NotebookFactory, TeamFactory, add_member, running_notebook

pytestmark = pytest.mark.django_db


def section(page: str, testid: str) -> str:
    """The dashboard's card marked ``data-testid=testid``."""
    found = re.search(rf'<section [^>]*data-testid="{testid}".*?</section>', page, re.S)
    assert found, f"no {testid} section"
    return found.group(0)


def dashboard(client) -> str:
    response = client.get(reverse("core:dashboard"))
    assert response.status_code == 200
    return response.content.decode()


def test_the_dashboard_shows_running_notebooks_with_uptime_cost_and_spend(
    acme, alice, client, settings
):
    settings.LATTICE_BILLING = True
    running_notebook(acme, "Training run", minutes=120, hourly_price="1.50")
    NotebookFactory.create(team=acme, name="Idle analysis")
    client.force_login(alice)

    page = dashboard(client)

    assert "Running notebooks" in page
    assert "Training run" in page
    assert "Idle analysis" not in page
    assert "2\xa0hours" in page
    # Two hours at $1.50 an hour, as the usage page bills it.
    assert "$3.00" in page
    # Alice owns Acme: she sees its spend this period (the same two hours), in its section.
    spend = section(page, "dashboard-spend")
    assert "Spend this period" in spend
    assert re.search(r">Acme</a>\s*<span><strong>\$3\.00</strong>", spend), spend
    assert reverse("billing:overview", args=[acme.slug]) in spend
    assert "Training run" in section(page, "dashboard-running")


def test_with_billing_off_no_cost_or_spend_is_made_up(acme, alice, client, settings):
    settings.LATTICE_BILLING = False
    running_notebook(acme, "Training run", minutes=120, hourly_price="1.50")
    client.force_login(alice)

    page = dashboard(client)

    assert "Training run" in page
    assert "2\xa0hours" in page
    assert "$3.00" not in page
    assert "Billing is off on this Lattice: nothing is charged." in page
    assert "Spend this period" not in page


def test_a_member_sees_the_cost_of_what_runs_but_not_the_teams_bill(acme, bob, client, settings):
    settings.LATTICE_BILLING = True
    running_notebook(acme, "Training run", minutes=120, hourly_price="1.50")
    client.force_login(bob)

    page = dashboard(client)

    assert "$3.00" in page
    assert "Spend this period" not in page


def test_an_outsider_sees_nothing_of_another_teams_notebooks(acme, globex, charlie, client):
    running_notebook(acme, "Acme secret run", minutes=60, hourly_price="1.50")
    client.force_login(charlie)

    page = dashboard(client)

    assert "Acme secret run" not in page
    assert "Nothing is running in your teams." in page


def test_the_team_overview_shows_uptime_cost_and_spend(acme, alice, bob, client, settings):
    settings.LATTICE_BILLING = True
    running_notebook(acme, "Training run", minutes=180, hourly_price="2.00")
    client.force_login(alice)

    page = client.get(reverse("teams:home", args=[acme.slug])).content.decode()

    assert "up 3\xa0hours" in page
    assert "$6.00 so far" in page
    assert 'data-testid="team-spend">$6.00<' in page

    client.force_login(bob)
    page = client.get(reverse("teams:home", args=[acme.slug])).content.decode()
    assert "$6.00 so far" in page
    assert 'data-testid="team-spend"' not in page


def dashboard_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        dashboard(client)
    return len(queries)


def test_the_dashboard_costs_the_same_queries_for_one_team_as_for_five(alice, client, settings):
    """Each team's running notebooks, their costs and its spend are read for all the
    person's teams at once: a person in more teams does not cost more queries."""
    settings.LATTICE_BILLING = True
    client.force_login(alice)

    def team_with_a_run(n: int) -> None:
        team = TeamFactory.create(name=f"Team {n}", slug=f"team-{n}")
        add_member(team, alice, Role.OWNER)
        running_notebook(team, f"Run {n}", minutes=60, hourly_price="1.50")

    team_with_a_run(0)
    dashboard(client)  # the session and the first read's caches are warm
    one_team = dashboard_queries(client)
    assert "Run 0" in dashboard(client)

    for n in range(1, 5):
        team_with_a_run(n)
    five_teams = dashboard_queries(client)

    page = dashboard(client)
    assert all(f"Run {n}" in page for n in range(5))
    assert five_teams == one_team
