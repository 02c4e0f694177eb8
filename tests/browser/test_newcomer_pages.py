"""What a newcomer saw wrong on the pages (issue 14): the team overview said "No notebooks
yet" beside notebooks (defect 1); a second team of the same name was made without a word
(defect 7)."""

from __future__ import annotations

import pytest

from apps.notebooks.models import Status
from apps.teams import services
from tests.factories import NotebookFactory

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(page, live_server, user, password) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_server.url}/")


def test_the_team_overview_lists_its_notebooks(page, live_server, acme, alice, password):
    for n in range(4):
        NotebookFactory.create(team=acme, name=f"Analysis {n}")
    NotebookFactory.create(team=acme, name="Training run", status=Status.RUNNING)
    sign_in(page, live_server, alice, password)

    page.goto("/t/acme/")

    section = page.get_by_role("region", name="Notebooks")
    assert section.get_by_text("5 notebooks, 1 running.").is_visible()
    assert section.get_by_role("link", name="Training run").is_visible()
    assert page.get_by_text("No notebooks yet").count() == 0


def test_a_second_team_of_the_same_name_is_refused_on_the_page(page, live_server, alice, password):
    services.team_create(actor=alice, name="Research")
    sign_in(page, live_server, alice, password)

    page.goto("/teams/new/")
    page.get_by_label("Team name").fill("Research")
    page.get_by_role("button", name="Create team").click()

    page.get_by_text('You are already in a team named "Research"').wait_for()
    assert page.url.endswith("/teams/new/")
