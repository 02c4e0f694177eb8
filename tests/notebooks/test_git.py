"""A notebook's Git repository: given on the form and through the API, checked, and cloned
into /notebooks/<repo> by the start script of each session's spec (the clone itself, on
real Docker: tests/jobs/test_sources.py, the first-start-only test).
"""

from __future__ import annotations

import pytest

from apps.core.models import AuditEntry
from apps.core.tenancy import team_scope
from apps.notebooks import lifecycle, services
from apps.notebooks.errors import NotebookError
from apps.notebooks.lifecycle.spec import jupyter_command
from apps.notebooks.models import Notebook, NotebookSession
from apps.teams.models import Role
from apps.teams.secrets import secret_delete, secret_set
from tests.factories import TeamFactory, add_member
from tests.helpers import bearer, make_token
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db

URL = "https://git.example.com/acme/churn-model.git"


@pytest.fixture
def token(acme, alice):
    secret_set(team=acme, actor=alice, name="GIT_TOKEN", value="ghp-not-a-real-token-1234")
    return "ghp-not-a-real-token-1234"


def test_a_notebook_is_made_and_changed_with_a_repository(acme, alice, catalogue, token):
    notebook = make_notebook(
        acme, alice, "Churn", git_url=URL, git_ref="v2", git_secret="GIT_TOKEN"
    )
    assert (notebook.git_url, notebook.git_ref, notebook.git_secret) == (URL, "v2", "GIT_TOKEN")

    services.notebook_update(team=acme, actor=alice, notebook=notebook, git_ref="main")
    notebook.refresh_from_db()
    assert (notebook.git_url, notebook.git_ref, notebook.git_secret) == (URL, "main", "GIT_TOKEN")
    updated = AuditEntry.objects.for_team(acme).filter(action="notebook.updated").last()
    assert updated is not None
    assert updated.data["fields"] == ["git_ref"]

    services.notebook_update(
        team=acme, actor=alice, notebook=notebook, git_url="", git_ref="", git_secret=""
    )
    notebook.refresh_from_db()
    assert (notebook.git_url, notebook.git_ref, notebook.git_secret) == ("", "", "")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"git_url": "file:///etc/passwd"}, "git_url", "https:// or ssh:// URL"),
        ({"git_url": URL, "git_ref": "--upload-pack=x"}, "git_ref", "branch, a tag or a commit"),
        ({"git_ref": "main"}, "git_url", "Give the repository's URL too."),
        # Another team's secret of that name is not Acme's.
        ({"git_url": URL, "git_secret": "OTHER_TOKEN"}, "git_secret", "no secret named"),
    ],
)
def test_a_bad_repository_is_refused_on_its_field(acme, alice, catalogue, fields, field, message):
    other = TeamFactory.create(name="Other", slug="other")
    add_member(other, alice, Role.OWNER)
    secret_set(team=other, actor=alice, name="OTHER_TOKEN", value="theirs-1234")
    with pytest.raises(NotebookError, match=message) as refused:
        make_notebook(acme, alice, "Churn", **fields)
    assert refused.value.field == field
    with team_scope(acme):
        assert not Notebook.objects.filter(name="Churn").exists()


def test_the_api_takes_shows_and_changes_the_repository(acme, alice, catalogue, token):
    api = bearer(make_token(alice)[1])
    created = api.post(
        "/api/v1/teams/acme/notebooks/",
        {
            "name": "Churn",
            "template": "scipy",
            "machine_type": "cpu-small",
            "git_url": URL,
            "git_secret": "GIT_TOKEN",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["git_url"], body["git_ref"], body["git_secret"]) == (URL, "", "GIT_TOKEN")
    assert token not in created.content.decode()

    detail = f"/api/v1/teams/acme/notebooks/{body['id']}/"
    changed = api.patch(detail, {"git_ref": "feature/x"}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["git_ref"] == "feature/x"
    assert changed.json()["git_url"] == URL  # what was not sent is unchanged

    refused = api.patch(detail, {"git_secret": "NOPE"}, format="json")
    assert refused.status_code == 400
    assert "git_secret" in refused.json()["error"]["fields"]


def test_the_create_page_takes_the_repository(client, acme, alice, catalogue, token):
    client.force_login(alice)
    page = client.get("/t/acme/notebooks/new/")
    assert 'name="git_url"' in page.content.decode()
    response = client.post(
        "/t/acme/notebooks/new/",
        {
            "name": "Forecast",
            "template": "scipy",
            "machine_type": catalogue["cpu-small"].pk,
            "git_url": URL,
            "git_ref": "main",
            "git_secret": "GIT_TOKEN",
        },
    )
    assert response.status_code == 302, response.content
    with team_scope(acme):
        made = Notebook.objects.get(name="Forecast")
    assert (made.git_url, made.git_ref, made.git_secret) == (URL, "main", "GIT_TOKEN")
    detail = client.get(response.url).content.decode()
    assert f'value="{URL}"' in detail  # the change form shows it


@pytest.mark.django_db(transaction=True)  # the start's work runs on commit
def test_a_sessions_spec_clones_with_the_teams_token(acme, alice, host, catalogue, token):
    notebook = make_notebook(acme, alice, "Churn", git_url=URL, git_secret="GIT_TOKEN")
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)

    spec = lifecycle.session_spec(session)

    assert spec.command[:2] == ["sh", "-c"]
    # The URL, ref and folder come as variables, never in the script's text (which the
    # runtime fills {port}, {ip} and {mount:} in).
    assert URL not in spec.command[2]
    assert spec.env["LATTICE_CLONE_URL"] == URL
    assert spec.env["LATTICE_CLONE_FOLDER"] == "churn-model"
    assert 'dest="{mount:/notebooks}/$LATTICE_CLONE_FOLDER"' in spec.command[2]
    # JupyterLab's own command follows, exec'd by the script.
    assert spec.command[3:] == ["lattice-notebook", *jupyter_command(session)]
    assert spec.env["LATTICE_GIT_TOKEN"] == token
    assert token not in " ".join(spec.command)
    assert (
        AuditEntry.objects.for_team(acme)
        .filter(action="secret.used", target="notebook Churn")
        .exists()
    )

    # The secret deleted since: the start says why it does not clone, and goes on.
    secret_delete(team=acme, actor=alice, name="GIT_TOKEN")
    spec = lifecycle.session_spec(session)
    assert "LATTICE_GIT_TOKEN" not in spec.env
    assert "GIT_TOKEN" in spec.env["LATTICE_GIT_ERROR"]
    assert spec.env["LATTICE_CLONE_URL"] == URL


@pytest.mark.django_db(transaction=True)  # the start's work runs on commit
def test_a_notebook_without_a_repository_starts_jupyter_directly(acme, alice, host, notebook):
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    spec = lifecycle.session_spec(session)
    assert spec.command == jupyter_command(session)
    assert not {k for k in spec.env if k.startswith("LATTICE_GIT")}


@pytest.mark.django_db(transaction=True)  # the start's work runs on commit
def test_a_start_sent_again_is_the_same_workload_despite_its_new_token(acme, alice, host, notebook):
    """Each dispatch makes a new workload token (LATTICE_TOKEN); the spec's fingerprint, by
    which a host's runtime keeps a running container for a start sent again, ignores it. It
    did not (issue 20's agent-kill fault): a start the reconciler sent again after an agent
    died replaced the container the first start had running, unbilled."""
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    first, again = lifecycle.session_spec(session), lifecycle.session_spec(session)
    assert first.env["LATTICE_TOKEN"] != again.env["LATTICE_TOKEN"]
    assert first.fingerprint() == again.fingerprint()
    # Any other change is another workload.
    other = lifecycle.session_spec(session)
    changed = type(other)(**{**other.__dict__, "env": {**other.env, "JUPYTER_TOKEN": "x"}})
    assert changed.fingerprint() != first.fingerprint()
