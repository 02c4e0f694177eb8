"""The notebook pages through Django's test client, on the fake runtime (tests/notebook_fixtures).

Commits are real (transaction=True): a start queues its work on commit, and the eager
Celery tasks then take the notebook all the way to running before the redirect is followed.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from apps.core.tenancy import team_scope
from apps.notebooks.models import Notebook, Status

pytestmark = pytest.mark.django_db(transaction=True)

ACTIONS = ["start", "stop", "restart", "extend", "update", "duplicate", "delete"]


def url(name: str, team: Any, notebook: Notebook | None = None) -> str:
    kwargs: dict[str, Any] = {"team_slug": team.slug}
    if notebook is not None:
        kwargs["notebook_id"] = notebook.pk
    return reverse(f"notebooks:{name}", kwargs=kwargs)


def text(response: Any) -> str:
    return response.content.decode()


def fresh(team: Any, notebook: Notebook) -> Notebook:
    with team_scope(team):
        return Notebook.objects.get(pk=notebook.pk)


def test_the_list_shows_the_teams_notebooks_and_the_create_form(client, alice, notebook):
    client.force_login(alice)
    response = client.get(url("list", notebook.team))
    assert response.status_code == 200
    body = text(response)
    assert "Churn model" in body
    assert "Scientific Python" in body
    # The form is a step of its own (issue 14), linked from the list.
    assert 'data-testid="new-notebook"' in body
    assert f'href="{url("create", notebook.team)}"' in body
    page = client.get(url("create", notebook.team))
    assert page.status_code == 200
    assert 'data-testid="create-form"' in text(page)
    assert 'aria-current="page">Notebooks' in body


def test_creating_a_notebook_opens_its_stopped_page(client, acme, alice, catalogue):
    client.force_login(alice)
    response = client.post(
        url("create", acme),
        {"name": "Forecast", "template": "scipy", "machine_type": catalogue["cpu-small"].pk},
    )
    with team_scope(acme):
        created = Notebook.objects.get(name="Forecast")
    assert response.status_code == 302
    assert response.url == url("detail", acme, created)
    page = client.get(response.url)
    assert page.status_code == 200
    body = text(page)
    assert 'data-testid="status-badge"' in body
    assert ">Stopped<" in body
    assert 'data-ws-path="/ws/teams/acme/notebooks/' in body


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("   ", "Give the notebook a name."),
        ("x" * 81, "A name is at most 80 characters."),
        ("Churn model", "This team already has a notebook called Churn model."),
    ],
)
def test_a_bad_name_is_refused_with_the_reason(
    client, acme, alice, catalogue, notebook, name, message
):
    client.force_login(alice)
    response = client.post(
        url("create", acme),
        {"name": name, "template": "scipy", "machine_type": catalogue["cpu-small"].pk},
    )
    assert response.status_code == 400
    assert message in text(response)
    with team_scope(acme):
        assert Notebook.objects.count() == 1


def test_starting_from_the_page_shows_it_running(client, acme, alice, host, notebook):
    client.force_login(alice)
    response = client.post(url("start", acme, notebook))
    assert response.status_code == 302
    assert response.url == url("detail", acme, notebook)
    assert fresh(acme, notebook).status == Status.RUNNING
    body = text(client.get(response.url))
    assert ">Running<" in body
    assert f'href="/nb/{notebook.pk}/"' in body
    # Open is shown now; Start is not (the buttons follow the status).
    assert 'data-testid="open-jupyter" id="open-jupyter" data-show-when="running">' in body
    assert 'data-show-when="stopped failed lost" hidden>' in body


def test_stopping_from_the_page_stops_it(client, acme, alice, host, notebook):
    client.force_login(alice)
    client.post(url("start", acme, notebook))
    response = client.post(url("stop", acme, notebook), follow=True)
    assert fresh(acme, notebook).status == Status.STOPPED
    assert "Stopping Churn model; its files are kept." in text(response)
    assert ">Stopped<" in text(response)


def test_only_a_notebook_that_runs_shows_its_idle_countdown(client, acme, alice, host, notebook):
    """A stopped notebook is not counting down to an idle stop: the rule is hidden until it
    starts (the live page shows it again then)."""
    client.force_login(alice)
    stopped = text(client.get(url("detail", acme, notebook)))
    assert 'data-testid="idle-rule" hidden>Stops after 60 minutes without activity.</p>' in stopped

    client.post(url("start", acme, notebook))
    running = text(client.get(url("detail", acme, notebook)))
    assert 'data-testid="idle-rule">Stops after 60 minutes without activity.</p>' in running


def test_the_stop_tells_the_live_page_when_and_how_the_session_ended(
    client, acme, alice, host, notebook
):
    """The sessions table's row of the session just ended is redrawn from the stopped
    status (no reload): the status says when and how it ended, the row is found by id."""
    from apps.core import stream

    client.force_login(alice)
    client.post(url("start", acme, notebook))
    page = text(client.get(url("detail", acme, notebook)))
    with team_scope(acme):
        session = notebook.sessions.get()
    assert f'<tr data-session="{session.pk}">' in page
    assert '<td data-testid="session-ended">open</td>' in page

    client.post(url("stop", acme, notebook))

    statuses = [m for m in stream.stream_after(notebook.stream, 0) if m["type"] == "status"]
    last = statuses[-1]
    assert last["status"] == Status.STOPPED
    assert last["session"] == session.pk
    with team_scope(acme):
        session.refresh_from_db()
    assert last["ended_at"] == session.ended_at.isoformat()
    assert last["exit_reason"] == "Stopped"


def test_a_refusal_is_shown_on_the_page_not_as_an_error(
    client, acme, alice, host, notebook, catalogue
):
    client.force_login(alice)
    client.post(url("start", acme, notebook))
    response = client.post(
        url("update", acme, notebook),
        {"machine_type": catalogue["cpu-large"].pk},
        follow=True,
    )
    assert response.status_code == 200
    assert "Stop the notebook before changing its machine; its files stay." in text(response)
    assert fresh(acme, notebook).machine_type_id == catalogue["cpu-small"].pk


def test_rename_and_idle_minutes_are_saved(client, acme, alice, notebook, catalogue):
    client.force_login(alice)
    response = client.post(
        url("update", acme, notebook),
        {
            "name": "Churn model v2",
            "machine_type": catalogue["cpu-large"].pk,
            "idle_timeout_minutes": "15",
        },
    )
    assert response.status_code == 302
    saved = fresh(acme, notebook)
    assert (saved.name, saved.machine_type_id, saved.idle_timeout_minutes) == (
        "Churn model v2",
        catalogue["cpu-large"].pk,
        15,
    )


def test_duplicate_opens_the_copy(client, acme, alice, notebook):
    client.force_login(alice)
    response = client.post(url("duplicate", acme, notebook), {"name": "Churn model B"})
    with team_scope(acme):
        copy = Notebook.objects.get(name="Churn model B")
    assert response.url == url("detail", acme, copy)


def test_delete_needs_the_name_typed(client, acme, alice, notebook):
    client.force_login(alice)
    refused = client.post(url("delete", acme, notebook), {"confirmation": "churn"}, follow=True)
    assert "Type the notebook&#x27;s name, Churn model, to delete it." in text(refused)
    assert fresh(acme, notebook).deleted_at is None

    response = client.post(url("delete", acme, notebook), {"confirmation": "Churn model"})
    assert response.url == url("list", acme)
    assert fresh(acme, notebook).deleted_at is not None
    assert client.get(url("detail", acme, notebook)).status_code == 404
    assert "Churn model" not in text(client.get(url("list", acme)))


def test_a_viewer_sees_no_buttons_and_may_not_start(client, acme, erin, host, notebook):
    client.force_login(erin)
    body = text(client.get(url("detail", acme, notebook)))
    assert 'data-testid="open-jupyter"' not in body
    assert 'data-testid="start"' not in body
    assert 'data-testid="stop"' not in body
    assert 'data-testid="status-badge"' in body
    for action in ACTIONS:
        assert client.post(url(action, acme, notebook)).status_code == 403, action
    assert fresh(acme, notebook).status == Status.STOPPED


def test_a_running_notebook_offers_no_open_button_to_a_viewer(
    client, acme, alice, erin, host, notebook
):
    client.force_login(alice)
    client.post(url("start", acme, notebook))
    client.force_login(erin)
    body = text(client.get(url("detail", acme, notebook)))
    assert ">Running<" in body
    assert "Open JupyterLab" not in body


def test_only_admins_change_the_team_defaults(client, acme, alice, bob):
    client.force_login(bob)
    assert client.get(url("settings", acme)).status_code == 403
    client.force_login(alice)
    assert client.get(url("settings", acme)).status_code == 200
    assert client.post(url("settings", acme), {"idle_timeout_minutes": "-1"}).status_code == 400
    response = client.post(url("settings", acme), {"idle_timeout_minutes": "30"})
    assert response.status_code == 302
    assert 'value="30"' in text(client.get(url("settings", acme)))


def test_it_rejects_other_team(client, acme, charlie, globex, notebook):
    client.force_login(charlie)
    for name in ["list", "create", "settings"]:
        assert client.get(url(name, acme)).status_code == 404, name
    assert client.post(url("create", acme), {"name": "Mine"}).status_code == 404
    assert client.get(url("detail", acme, notebook)).status_code == 404
    for action in ACTIONS:
        assert client.post(url(action, acme, notebook)).status_code == 404, action
    # Nor can charlie reach acme's notebook through his own team's address.
    assert client.get(url("detail", globex, notebook)).status_code == 404
    assert client.post(url("start", globex, notebook)).status_code == 404
    assert fresh(acme, notebook).status == Status.STOPPED


def test_a_visitor_is_sent_to_log_in(client, acme, notebook):
    response = client.get(url("detail", acme, notebook))
    assert response.status_code == 302
    assert "/accounts/login/" in response.url
