"""Review of the notebooks feature: each test reproduces a bug found in review.

Lifecycle races (a Start or a Restart while a stop is in flight), the idle sweep
and the reconciler judging every team's sessions in one pass, events from a host
that does not run the session, and the JupyterLab proxy's handling of paths.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.machines import agent
from apps.machines.agent import agent_report
from apps.notebooks import lifecycle, services, upkeep
from apps.notebooks.lifecycle import ending
from apps.notebooks.models import Notebook, NotebookSession, Status
from apps.notebooks.selectors import open_session
from apps.runtimes.fake import FakeRuntime
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db(transaction=True)


def start(team, actor, nb) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=nb)
    return NotebookSession.objects.for_team(team).get(pk=session.pk)


class _HeldStops:
    """Stands in for agent_stop: the stop is sent, the agent has not answered yet."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def apply_async(
        self, args: tuple[Any, ...], queue: str, kwargs: dict[str, Any] | None = None
    ) -> None:
        # kwargs: the stop snapshot's ticket, when the notebook's files are on that host.
        self.sent.append(args)


@pytest.fixture
def held_stops(monkeypatch) -> _HeldStops:
    held = _HeldStops()
    monkeypatch.setattr(ending, "agent_stop", held)
    return held


def agent_says_stopped(host, session: NotebookSession) -> None:
    FakeRuntime().stop({"name": session.workload})
    lifecycle.on_workload_event(host.name, session.workload, "stopped", {})


# --- lifecycle: what people want while a stop is in flight ------------------------------


def test_start_while_a_stop_is_in_flight_brings_the_notebook_back(
    acme, alice, host, notebook, held_stops
):
    first = start(acme, alice, notebook)
    services.notebook_stop(team=acme, actor=alice, notebook=notebook)
    assert held_stops.sent

    # Alice changes her mind before the agent confirms the stop.
    services.notebook_start(team=acme, actor=alice, notebook=notebook)
    agent_says_stopped(host, first)

    notebook.refresh_from_db()
    assert notebook.desired_state == Notebook.Desired.RUNNING
    # What she wants (running) must happen: a new session, not a stopped notebook.
    assert open_session(notebook) is not None
    assert notebook.status == Status.RUNNING


def test_restart_while_a_stop_is_in_flight_starts_it_again(
    acme, alice, bob, host, notebook, held_stops
):
    first = start(acme, alice, notebook)
    services.notebook_stop(team=acme, actor=alice, notebook=notebook)

    services.notebook_restart(team=acme, actor=bob, notebook=notebook)
    agent_says_stopped(host, first)

    notebook.refresh_from_db()
    assert open_session(notebook) is not None
    assert notebook.status == Status.RUNNING


# --- events from hosts ------------------------------------------------------------------


def test_an_event_from_a_host_that_does_not_run_the_session_is_ignored(acme, alice, host, notebook):
    session = start(acme, alice, notebook)
    assert session.status == Status.RUNNING

    # Another (GPU) host, which runs strangers' code, names acme's session.
    lifecycle.on_workload_event(
        "someone-elses-host",
        session.workload,
        "failed",
        {"message": "The server exited during start (status 1)."},
    )
    lifecycle.on_workload_event("someone-elses-host", session.workload, "stopped", {})

    session.refresh_from_db()
    assert session.ended_at is None
    assert session.status == Status.RUNNING


# --- the reconciler and a start that is still waiting for Jupyter ----------------------


def test_a_start_still_waiting_for_jupyter_is_not_failed_by_the_reconciler(
    acme, alice, host, notebook
):
    session = start(acme, alice, notebook)
    # The container is up; the agent's start task is still waiting for Jupyter to answer
    # (a big image's first start). The agent's report is taken meanwhile.
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        status=Status.STARTING,
        ready_at=None,
        start_attempts=settings.LATTICE_NOTEBOOK_START_ATTEMPTS,
        progressed_at=timezone.now() - timedelta(seconds=90),
    )
    with agent._starting_workload(session.workload):
        report = agent.managed_report(host.name)
        agent_report(host.name)

    entry = next(w for w in report if w["name"] == session.workload)
    assert entry.get("starting"), entry

    counts = upkeep.reconcile_sessions()

    session.refresh_from_db()
    # Well within LATTICE_NOTEBOOK_START_TIMEOUT: not "did not start after 3 tries".
    assert counts["failed"] == 0
    assert session.ended_at is None


# --- idle shutdown across teams ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status_body", "kernels_body"),
    [
        ("<html>not json</html>", "[]"),
        ('{"last_activity": "2020-01-01T00:00:00"}', "[]"),  # naive: no offset
        ('{"last_activity": "2020-01-01T00:00:00+00:00"}', '["busy"]'),
    ],
    ids=["not-json", "naive-time", "kernels-not-objects"],
)
def test_one_notebooks_odd_jupyter_answer_does_not_stop_idle_shutdown_for_other_teams(
    acme, alice, globex, charlie, host, notebook, catalogue, monkeypatch, status_body, kernels_body
):
    # Acme's notebook runs code its members wrote: its server may answer anything.
    odd = start(acme, alice, notebook)
    theirs = make_notebook(globex, charlie, "Forecast", idle_timeout_minutes=60)
    idle = start(globex, charlie, theirs)
    long_ago = timezone.now() - timedelta(hours=3)
    NotebookSession.objects.for_team(globex).filter(pk=idle.pk).update(
        activity_at=long_ago, ready_at=long_ago
    )
    real_get = upkeep._http.get

    def get(url: str, **kwargs: Any) -> httpx.Response:
        if url.startswith(odd.endpoint):
            body = status_body if url.endswith("/status") else kernels_body
            return httpx.Response(200, text=body, request=httpx.Request("GET", url))
        if url.startswith(idle.endpoint):
            # Globex's Jupyter: idle since long ago.
            body = '{"last_activity": "2020-01-01T00:00:00+00:00"}'
            body = body if url.endswith("/status") else "[]"
            return httpx.Response(200, text=body, request=httpx.Request("GET", url))
        return real_get(url, **kwargs)

    monkeypatch.setattr(upkeep._http, "get", get)

    upkeep.idle_sweep()

    idle.refresh_from_db()
    assert idle.exit_reason == "idle"


# --- the JupyterLab proxy ---------------------------------------------------------------


def fetch(path: str, user) -> httpx.Response:
    """GET ``path`` as ``user`` through Lattice's launch, on to the notebook's own origin."""
    from config.asgi import application

    client = Client()
    client.force_login(user)
    jar = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=jar, follow_redirects=True
        ) as http:
            response = await http.get(path)
            await response.aread()
            return response

    return async_to_sync(run)()


def test_the_proxy_sends_the_path_to_jupyter_as_the_browser_sent_it(acme, bob, host, notebook):
    start(acme, bob, notebook)

    # A file named "100%41.txt" and one named "a/b" cannot exist, but "100%2541" (a
    # percent sign in the name) and "%2F" inside a segment must reach Jupyter unchanged:
    # decoding them once more opens another file than the one asked for.
    response = fetch(f"/nb/{notebook.pk}/files/100%2541.txt", bob)

    assert response.status_code == 200
    assert response.url.host == f"nb-{notebook.pk}.localhost"
    assert response.text == f"fake jupyter: /nb/{notebook.pk}/files/100%2541.txt token=yes"
