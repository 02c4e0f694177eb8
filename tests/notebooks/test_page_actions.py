"""What each action on a notebook's page says, and where it goes: the message in the
service's words, or the form's, on the page the action lands on (the fake runtime,
tests/notebook_fixtures; real commits, so a start runs to the end before the redirect)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from apps.core.tenancy import team_scope
from apps.notebooks.models import Notebook, Status

pytestmark = pytest.mark.django_db(transaction=True)


def url(name: str, team: Any, notebook: Notebook) -> str:
    return reverse(f"notebooks:{name}", kwargs={"team_slug": team.slug, "notebook_id": notebook.pk})


def landed(response: Any) -> str:
    """The URL the redirects ended at."""
    return response.redirect_chain[-1][0]


def fresh(team: Any, notebook: Notebook) -> Notebook:
    with team_scope(team):
        return Notebook.objects.get(pk=notebook.pk)


def test_a_duplicate_opens_the_copy_saying_what_it_is(client, acme, alice, notebook):
    client.force_login(alice)

    response = client.post(url("duplicate", acme, notebook), {"name": "Churn B"}, follow=True)

    with team_scope(acme):
        copy = Notebook.objects.get(name="Churn B")
    assert landed(response) == url("detail", acme, copy)
    assert "Churn B is a new notebook like Churn model, with a copy of its files." in (
        response.content.decode()
    )


def test_a_refused_duplicate_stays_on_the_notebook_with_the_reason(client, acme, alice, notebook):
    client.force_login(alice)

    response = client.post(url("duplicate", acme, notebook), {"name": "Churn model"}, follow=True)

    assert landed(response) == url("detail", acme, notebook)
    assert "This team already has a notebook called Churn model." in response.content.decode()
    with team_scope(acme):
        assert Notebook.objects.count() == 1


def test_an_update_the_form_refuses_goes_back_with_its_error_and_saves_nothing(
    client, acme, alice, notebook
):
    client.force_login(alice)

    response = client.post(
        url("update", acme, notebook),
        {"name": "Renamed", "idle_timeout_minutes": "soon"},
        follow=True,
    )

    assert landed(response) == url("detail", acme, notebook)
    assert "Enter a whole number." in response.content.decode()
    saved = fresh(acme, notebook)
    assert (saved.name, saved.idle_timeout_minutes) == ("Churn model", None)


def test_stop_and_extend_of_a_stopped_notebook_say_it_is_not_running(client, acme, alice, notebook):
    client.force_login(alice)

    for action in ("stop", "extend"):
        response = client.post(url(action, acme, notebook), follow=True)
        assert landed(response) == url("detail", acme, notebook), action
        assert "Churn model is not running." in response.content.decode(), action
    assert fresh(acme, notebook).status == Status.STOPPED


def test_restart_and_extend_of_a_running_notebook_say_so(client, acme, alice, host, notebook):
    client.force_login(alice)
    client.post(url("start", acme, notebook))

    restarted = client.post(url("restart", acme, notebook), follow=True)
    extended = client.post(url("extend", acme, notebook), follow=True)

    assert "Restarting Churn model; its files are kept." in restarted.content.decode()
    assert "Churn model keeps running; the idle countdown starts again." in (
        extended.content.decode()
    )
    assert fresh(acme, notebook).status == Status.RUNNING
