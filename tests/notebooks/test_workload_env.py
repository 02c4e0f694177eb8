"""A notebook session's SDK environment: LATTICE_URL, LATTICE_TOKEN and LATTICE_TEAM reach its
workload, the token acts as the person who started it in that team only, until the session
ends (stop, restart, failure) or its deadline, and never shows in the session's logs.

Each test plays the host that read the container's environment: it sends what it found."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from apps.accounts.models import PersonalAccessToken
from apps.core.stream import stream_after, stream_last
from apps.machines.reports import workload_logs
from apps.notebooks import entitlements, services
from apps.notebooks.models import NotebookSession, Status
from apps.runtimes.fake import FakeRuntime
from apps.teams.secrets import MASK
from tests.helpers import bearer
from tests.notebook_fixtures import make_host, make_notebook

if TYPE_CHECKING:
    from apps.teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)


def start(team, actor, notebook) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=notebook)
    return NotebookSession.objects.for_team(team).get(pk=session.pk)


def env_of(session: NotebookSession) -> dict[str, str]:
    return FakeRuntime._running[session.workload]["env"]


def test_the_session_gets_the_url_a_token_and_its_team(acme, alice, bob, host, settings):
    settings.LATTICE_WORKLOAD_API_URL = "https://lattice.example.com"
    notebook = make_notebook(acme, alice, "Train")

    session = start(acme, bob, notebook)

    env = env_of(session)
    assert session.status == Status.RUNNING
    assert env["LATTICE_URL"] == "https://lattice.example.com"
    assert env["LATTICE_TEAM"] == "acme"
    api = bearer(env["LATTICE_TOKEN"])
    # It acts as the person who started the session (bob), not the notebook's maker.
    assert api.get("/api/v1/me").json()["email"] == bob.email
    assert api.get("/api/v1/teams/acme/datasets/").status_code == 200
    token = PersonalAccessToken.objects.get(workload=session.workload)
    assert (token.user, token.team) == (bob, acme)


def test_it_cannot_act_in_another_team(acme, globex, alice, charlie, host):
    session = start(acme, alice, make_notebook(acme, alice, "Train"))
    api = bearer(env_of(session)["LATTICE_TOKEN"])

    assert api.get("/api/v1/teams/globex/datasets/").status_code == 404
    made = api.post("/api/v1/teams/globex/datasets/", {"name": "stolen"}, format="json")
    assert made.status_code == 404


def test_it_stops_working_at_once_when_the_session_stops(acme, alice, host):
    notebook = make_notebook(acme, alice, "Train")
    session = start(acme, alice, notebook)
    api = bearer(env_of(session)["LATTICE_TOKEN"])
    assert api.get("/api/v1/teams/acme/notebooks/").status_code == 200

    services.notebook_stop(team=acme, actor=alice, notebook=notebook)

    assert api.get("/api/v1/teams/acme/notebooks/").status_code == 401
    assert PersonalAccessToken.objects.get(workload=session.workload).revoked_at is not None


def test_a_restart_revokes_the_first_sessions_token_and_gives_the_next_its_own(acme, alice, host):
    notebook = make_notebook(acme, alice, "Train")
    first = start(acme, alice, notebook)
    first_token = env_of(first)["LATTICE_TOKEN"]

    services.notebook_restart(team=acme, actor=alice, notebook=notebook)

    second = NotebookSession.objects.for_team(acme).exclude(pk=first.pk).get()
    second_token = env_of(second)["LATTICE_TOKEN"]
    assert second_token != first_token
    assert bearer(first_token).get("/api/v1/me").status_code == 401
    assert bearer(second_token).get("/api/v1/me").status_code == 200


def test_a_failed_start_revokes_its_token(acme, alice, settings, fake_runtime, catalogue):
    settings.LATTICE_RUNTIME = "fake:crashes"
    make_host()

    session = start(acme, alice, make_notebook(acme, alice, "Train"))

    assert session.status == Status.FAILED
    token = PersonalAccessToken.objects.get(workload=session.workload)
    assert token.revoked_at is not None
    assert not token.is_active


def test_it_expires_at_the_plans_session_cap_from_the_start(acme, alice, host):
    def six_hours(team: Team | int) -> timedelta | None:
        return timedelta(hours=6)

    with entitlements.run_limit.override(six_hours):
        session = start(acme, alice, make_notebook(acme, alice, "Train"))

    token = PersonalAccessToken.objects.get(workload=session.workload)
    assert session.started_at is not None
    assert token.expires_at == session.started_at + timedelta(hours=6)


def test_without_a_cap_it_lives_no_longer_than_the_setting(acme, alice, host, settings):
    settings.LATTICE_WORKLOAD_TOKEN_MAX_HOURS = 2

    session = start(acme, alice, make_notebook(acme, alice, "Train"))

    token = PersonalAccessToken.objects.get(workload=session.workload)
    assert session.started_at is not None
    assert token.expires_at == session.started_at + timedelta(hours=2)


def test_the_token_is_masked_in_the_sessions_logs(acme, alice, host):
    notebook = make_notebook(acme, alice, "Leaky")
    session = start(acme, alice, notebook)
    plaintext = env_of(session)["LATTICE_TOKEN"]
    before = stream_last(notebook.stream)

    assert session.host is not None
    workload_logs(
        session.host, session.workload, uuid.uuid4().hex, 1, [f"LATTICE_TOKEN={plaintext}"]
    )

    published = [m["lines"] for m in stream_after(notebook.stream, before) if m["type"] == "logs"]
    assert [f"LATTICE_TOKEN={MASK}"] in published
    assert not any(plaintext in line for lines in published for line in lines)
