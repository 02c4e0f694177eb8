"""A running notebook's log panel after the server restarts (issue 14, defect 10), in
Chromium on the real Docker runtime.

A restart of ``make dev`` loses the stream's in-memory buffer and the agent's shippers, and
drops the page's websocket. Here the buffer and the shippers are dropped as the restart
drops them, and the page's socket is closed; the agent's next report must ship the
container's recent lines again, the open page must take the restarted stream's numbers and
show them, and so must a page loaded afterwards (not "No log lines yet"). Also when the page
comes back only after the new stream's numbers passed its old one (a chatty notebook).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from apps.core import stream
from apps.machines.agent import managed_report
from apps.runtimes.select import host_runtime
from tests.browser.conftest import (
    JUPYTER_MS,
    READY_MS,
    _remove_notebook_containers,
    _remove_volumes,
    _wait_for_status,
    create_notebook,
    log_in,
)
from tests.helpers import wait_for
from tests.notebooks.test_log_restart import restart_server

pytestmark = [pytest.mark.browser, pytest.mark.docker]

# Keeps every websocket the page opens, so the test can drop them as a restart does.
_KEEP_SOCKETS = """
(() => {
  const Original = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = function (url, protocols) {
    const socket = protocols === undefined ? new Original(url) : new Original(url, protocols);
    window.__sockets.push(socket);
    return socket;
  };
  window.WebSocket.prototype = Original.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


@pytest.mark.parametrize("chatty", [False, True], ids=["quiet", "chatty"])
def test_the_log_panel_shows_the_containers_lines_after_a_server_restart(
    chatty: bool,
    asgi_page: Any,
    asgi_live_server: str,
    local_host: Any,
    unique_ids: None,
    docker_client: Any,
    acme: Any,
    alice: Any,
    password: str,
    catalogue: dict[str, Any],
) -> None:
    page = asgi_page
    page.add_init_script(_KEEP_SOCKETS)
    created = []
    try:
        log_in(page, alice.email, password)
        page.goto("/t/acme/notebooks/")
        notebook = create_notebook(page, acme, "Restarted", catalogue["cpu-small"])
        created.append(notebook)
        page.get_by_test_id("start").click()
        page.wait_for_load_state()
        _wait_for_status(page, "Running", READY_MS)
        panel = page.get_by_test_id("log-panel")
        expect(panel).to_contain_text("Jupyter", timeout=JUPYTER_MS)

        before = stream.stream_last(notebook.stream)
        # The server restarts: its buffer and the agent's shippers are gone...
        restart_server()
        # ...while the container went on printing.
        managed = next(
            m for m in host_runtime().list_managed() if m.name.startswith(f"nb-{notebook.pk}-")
        )
        container = docker_client.containers.get(managed.state["container_id"])
        printed = container.exec_run(
            ["sh", "-c", "echo printed while the server was down >/proc/1/fd/1"]
        )
        assert printed.exit_code == 0, printed.output
        managed_report(local_host.name)  # the restarted agent's first report
        if chatty:
            # The page comes back late: a chatty notebook's new stream is already past the
            # page's old number. Only the stream's epoch tells the page it started over.
            assert wait_for(
                lambda: any(m.get("backfill") for m in stream.stream_after(notebook.stream, 0))
            )
            while stream.stream_last(notebook.stream) <= before + 3:
                stream.stream_publish(notebook.stream, {"type": "logs", "lines": ["chatter"]})
        # The page's connection drops with the server; it reconnects with its old number.
        page.evaluate("window.__sockets.forEach((socket) => socket.close())")

        expect(panel).to_contain_text("printed while the server was down", timeout=30_000)
        expect(panel).to_contain_text("Jupyter")  # the lines from before, from the container

        # A page loaded after the restart shows them too, not "No log lines yet".
        page.reload()
        expect(panel).to_contain_text("printed while the server was down", timeout=30_000)
        expect(panel).to_contain_text("Jupyter")
    finally:
        _remove_notebook_containers(docker_client, [n.pk for n in created])
        _remove_volumes(docker_client, [n.volume for n in created])
