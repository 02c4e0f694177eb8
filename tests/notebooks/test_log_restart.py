"""A running notebook's log after a restart of the control plane (issue 14, defect 10).

Under ``make dev`` the stream's buffer is in the server's memory and the agent runs in the
same process: a restart loses every buffered line and the agent starts over. The agent,
finding the notebook running, must ship its recent lines again (a backfill), and a client
that still holds numbers from before the restart must be told the stream started over.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings

from apps.core import stream
from apps.machines import logship
from apps.machines.agent import managed_report
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from tests.asgi_server import session_cookie
from tests.notebook_fixtures import make_notebook
from tests.notebooks.test_api import api_for, url
from tests.notebooks.test_process import process_host  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db(transaction=True)


def _log_lines(name: str, after: int = 0) -> list[str]:
    return [
        line
        for message in stream.stream_after(name, after, 5000)
        if message.get("type") == "logs"
        for line in message["lines"]
    ]


def _wait(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    return check()


def _silent(*_: Any, **__: Any) -> None:
    return None


def restart_server() -> None:
    """What a restart of ``make dev`` does to the log: the in-memory buffer is gone, and so
    is the agent's shipper (its thread would die with the process: here it falls silent)."""
    for shipper in list(logship._shippers.values()):
        shipper._publish = _silent  # type: ignore[method-assign]
    logship._shippers.clear()
    stream.reset_for_tests()


def _websocket(user: Any, path: str, count: int) -> list[dict[str, Any]]:
    from config.asgi import application

    headers = [
        (b"host", b"testserver"),
        (b"origin", b"http://testserver"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_cookie(user)}".encode()),
    ]

    async def run() -> list[dict[str, Any]]:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        got: list[dict[str, Any]] = []
        while len(got) < count:
            received = json.loads(await communicator.receive_from(timeout=5))
            # Live messages may come several in one websocket message (a JSON array).
            got.extend(received if isinstance(received, list) else [received])
        await communicator.disconnect()
        return got

    return async_to_sync(run)()


def test_after_a_restart_the_running_notebooks_log_is_shipped_again(
    acme,
    alice,
    process_host,  # noqa: F811 - the fixture imported above
    catalogue,
):
    notebook = make_notebook(acme, alice, "Restarted")
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    assert session.status == Status.RUNNING
    printed = _wait(lambda: _log_lines(notebook.stream))
    assert printed, "the running notebook shipped no log lines"
    before = stream.stream_last(notebook.stream)
    old_epoch = api_for(alice).get(url(notebook, "logs")).json().get("epoch", "")

    restart_server()
    assert _log_lines(notebook.stream) == []  # what the panel had to show: nothing
    managed_report(process_host.name)  # the restarted agent's first report

    shipped = _wait(lambda: _log_lines(notebook.stream))
    assert shipped, "after the restart the log stream has no lines"
    assert printed[0] in shipped  # the notebook's output from before the restart, again
    logs = api_for(alice).get(url(notebook, "logs")).json()["messages"]
    backfills = [m for m in logs if m["type"] == "logs"]
    assert backfills[0]["backfill"] is True
    assert backfills[0]["lines"] == shipped[: len(backfills[0]["lines"])]

    # A page still open from before holds a number beyond the new stream's: the stream
    # says it started over and sends its whole backlog, the backfill included.
    latest = stream.stream_last(notebook.stream)
    assert before > latest
    got = _websocket(
        alice, f"/ws/teams/{acme.slug}/notebooks/{notebook.pk}/?after={before}", latest + 1
    )
    assert got[0]["type"] == "hello"
    assert got[0]["restarted"] is True
    assert [m["seq"] for m in got[1:]] == list(range(1, latest + 1))
    assert any(m.get("backfill") for m in got[1:])

    # The agent's next reports find the shipper alive: no second backfill.
    managed_report(process_host.name)
    time.sleep(0.5)
    assert sum(1 for m in stream.stream_after(notebook.stream, 0) if m.get("backfill")) == 1

    # A page that comes back late, after a chatty notebook's new stream has passed its old
    # number: only the epoch tells the numbers apart. Restarted, and everything again.
    while stream.stream_last(notebook.stream) <= before:
        stream.stream_publish(notebook.stream, {"type": "logs", "lines": ["chatter"]})
    latest = stream.stream_last(notebook.stream)
    got = _websocket(
        alice,
        f"/ws/teams/{acme.slug}/notebooks/{notebook.pk}/?after={before}&epoch={old_epoch}",
        latest + 1,
    )
    assert got[0]["type"] == "hello"
    assert got[0]["restarted"] is True
    assert [m["seq"] for m in got[1:]] == list(range(1, latest + 1))
    assert any(m.get("backfill") for m in got[1:])
    assert old_epoch
    assert got[0]["epoch"] != old_epoch
    # The logs API resumes the same way.
    api = api_for(alice)
    page = api.get(url(notebook, "logs"), {"after": before, "epoch": old_epoch}).json()
    assert page["restarted"] is True
    assert page["messages"][0]["seq"] == 1
    assert any(m.get("backfill") for m in page["messages"])
    same = api_for(alice).get(url(notebook, "logs"), {"after": 1, "epoch": page["epoch"]}).json()
    assert "restarted" not in same
    assert same["messages"][0]["seq"] == 2
