"""What the browser stories on the real Docker runtime share: a local host running the
notebook image, notebook ids far from other runs', a page on the ASGI server, and the
clean-up of their containers and volumes."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.runtimes import select
from tests.notebook_fixtures import remove_installation_volumes, remove_installation_workloads

if TYPE_CHECKING:
    from collections.abc import Iterator

# Generous: JupyterLab takes ~10 s to start on 2 cores, a kernel a few more.
READY_MS = 180_000
STOPPED_MS = 90_000
JUPYTER_MS = 120_000


@pytest.fixture(autouse=True)
def _navigation_survives_network_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chromium aborts a navigation in flight with net::ERR_NETWORK_CHANGED when the
    machine's network interfaces change, which they do whenever Docker starts or removes a
    container on this host (a veth pair comes or goes): a person would press reload. So a
    page's goto and reload that meet exactly that error are made again, twice at most;
    every other error stands."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page

    def again(real: Any) -> Any:
        def navigate(self: Any, *args: Any, **kwargs: Any) -> Any:
            for attempt in range(3):
                try:
                    return real(self, *args, **kwargs)
                except PlaywrightError as exc:
                    if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == 2:
                        raise
            return None

        return navigate

    monkeypatch.setattr(Page, "goto", again(Page.goto))
    monkeypatch.setattr(Page, "reload", again(Page.reload))


@pytest.fixture
def docker_runtime(
    settings: Any, docker_client: Any, notebook_image: str, scipy_image: str
) -> Iterator[str]:
    # The stories' notebooks are of the Scientific Python template: its image built ahead.
    settings.LATTICE_RUNTIME = "docker"
    select._runtime.cache_clear()
    yield notebook_image
    # This run's containers and volumes (the team's /storage too), not a neighbour's.
    remove_installation_workloads(docker_client)
    select._runtime.cache_clear()


@pytest.fixture
def local_host(docker_runtime: str, catalogue: dict[str, Any], embedded_celery: Any) -> Any:
    return host_ensure_local(name="local", inventory=collect(), runtime="docker")


@pytest.fixture
def unique_ids(transactional_db: None) -> None:
    """Number this test's notebooks and sessions far from other test runs': the containers
    are named after them (nb-<notebook>-s<session>) on a Docker engine others may share."""
    from django.db import connection

    base = 700_000_000 + secrets.randbelow(100_000) * 1_000
    with connection.cursor() as cursor:
        for table in ("notebooks_notebook", "notebooks_notebooksession"):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [table, base],
            )


@pytest.fixture
def asgi_page(browser: Any, asgi_live_server: str) -> Iterator[Any]:
    context = browser.new_context(base_url=asgi_live_server)
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def _remove_notebook_containers(docker_client: Any, notebook_ids: list[int]) -> None:
    remove_installation_workloads(docker_client, notebook_ids=notebook_ids)


def _remove_volumes(docker_client: Any, names: list[str]) -> None:
    remove_installation_volumes(docker_client, names)


def _wait_for_status(page: Any, status: str, timeout: int) -> None:
    """Wait for the badge to read ``status``; say what the page said if it never does."""
    try:
        expect(page.get_by_test_id("status-badge")).to_have_text(status, timeout=timeout)
    except AssertionError as exc:
        said = page.get_by_test_id("status-message").text_content()
        log = (page.get_by_test_id("log-panel").text_content() or "")[-3000:]
        raise AssertionError(f"not {status}: {said!r}\nlog:\n{log}") from exc


def lab_origin(lab: Any) -> str:
    """The origin JupyterLab is served on: the notebook's own (nb-<id>.localhost:<port>)."""
    parts = urlsplit(lab.url)
    return f"{parts.scheme}://{parts.netloc}"


def jupyter_api(lab: Any, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """Call Jupyter's REST API from JupyterLab's own page, as JupyterLab does: on the
    notebook's origin, with its cookie. (Playwright's own requests resolve host names
    outside the browser, which does not know *.localhost the way browsers do.) Returns
    ``{"status", "text", "json"}``."""
    result: dict[str, Any] = lab.evaluate(
        """async ([method, path, body]) => {
            const init = {method};
            if (body !== null) {
                init.headers = {"Content-Type": "application/json"};
                init.body = JSON.stringify(body);
            }
            const response = await fetch(path, init);
            const text = await response.text();
            let json = null;
            try { json = JSON.parse(text); } catch (e) {}
            return {status: response.status, text, json};
        }""",
        [method, path, body],
    )
    return result


def run_in_new_notebook(lab: Any, base: str, name: str, code: str, *, shows: str) -> None:
    """Make ``name`` (a .ipynb) holding ``code`` and its kernel session through Jupyter's
    API, from JupyterLab's page as its own requests go; open it, wait until its kernel is
    connected and idle, run the cell from the toolbar, and wait for an output that shows
    ``shows``. ``base`` is Jupyter's base path, /nb/<id>, on the page's origin.

    Clicking the launcher's card made JupyterLab open two sessions at once and wait on the
    kernel of the one it shut down; and it may ask which kernel to use (its "Select Kernel"
    dialog) before it has attached the session's. The toolbar's execution indicator is no
    sign of a kernel: it says "idle" from the moment the notebook opens, before JupyterLab
    has connected the session's kernel, and a Run clicked then does nothing (no kernel:
    the cell stays "[ ]" and a new cell is added below). So the readiness waited for is the
    status bar's kernel item, which says "<kernel> | Idle" only once the kernel is
    connected; a Run that still sends no execute_request is clicked again, on the same
    cell; the dialog is answered as a person would: the preselected kernel, or a fresh
    session and a reload (docs/notebooks.md, known issues).
    """
    cell = {"cell_type": "code", "source": code, "metadata": {}, "outputs": []}
    notebook = {
        "type": "notebook",
        "content": {
            "cells": [{**cell, "execution_count": None}],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        },
    }
    made = jupyter_api(lab, "PUT", f"{base}/api/contents/{name}", notebook)
    assert made["status"] in (200, 201), made["text"]
    new_session = {"path": name, "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    session = jupyter_api(lab, "POST", f"{base}/api/sessions", new_session)
    assert session["status"] == 201, session["text"]
    seen = _watch_kernel_traffic(lab)
    lab.goto(f"{lab_origin(lab)}{base}/lab/tree/{name}")
    answer = lab.locator(".jp-OutputArea-output", has_text=shows).first
    # "Python 3 (ipykernel) | Idle": the session context's kernel, connected and idle.
    ready = lab.locator(".jp-StatusBar-TextItem", has_text=re.compile(r" \| Idle$")).first
    select_kernel = lab.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    first_cell = lab.locator(".jp-Notebook .jp-Cell").first
    run = lab.locator(
        '.jp-NotebookPanel-toolbar [data-command="notebook:run-cell-and-select-next"]'
    ).first
    tries: list[str] = []
    for attempt in range(1, 4):
        try:
            ready.or_(select_kernel).first.wait_for(timeout=90_000)
            if select_kernel.is_visible():
                select_kernel.click()
                ready.wait_for(timeout=90_000)
            for click in range(1, 4):
                before = len(seen)
                first_cell.click(timeout=10_000)
                run.click(timeout=10_000)
                if _execute_sent(lab, seen, before, seconds=10):
                    break
                tries.append(
                    f"attempt {attempt}, click {click}: no execute_request within 10 s; "
                    + _kernel_state(lab)
                )
            answer.wait_for(timeout=45_000)
        except PlaywrightTimeoutError as exc:
            tries.append(f"attempt {attempt}: {str(exc).splitlines()[0]}; {_kernel_state(lab)}")
            if attempt == 3:
                said = lab.locator(".jp-Notebook").first.inner_text(timeout=5_000)
                raise AssertionError(
                    f"no output showing {shows!r}; the tries:\n"
                    + "\n".join(tries)
                    + f"\nthe notebook:\n{said}\n"
                    "what the page said and its websockets carried, last first:\n"
                    + "\n".join(reversed(seen[-60:]))
                ) from exc
        else:
            return
        for old in jupyter_api(lab, "GET", f"{base}/api/sessions")["json"]:
            jupyter_api(lab, "DELETE", f"{base}/api/sessions/{old['id']}")
        jupyter_api(lab, "POST", f"{base}/api/sessions", new_session)
        lab.reload()


def _execute_sent(lab: Any, seen: list[str], since: int, *, seconds: float) -> bool:
    """Whether ``lab`` sent an execute_request on a kernel's websocket after the record's
    ``since``-th entry, waiting up to ``seconds`` for it (the waits let the frames in)."""
    for _ in range(int(seconds * 4)):
        if any(entry.startswith("sent execute_request") for entry in seen[since:]):
            return True
        lab.wait_for_timeout(250)
    return any(entry.startswith("sent execute_request") for entry in seen[since:])


def _kernel_state(lab: Any) -> str:
    """What JupyterLab's page shows of the notebook's kernel: the toolbar's kernel name and
    execution indicator, and the status bar's items (for the failure message)."""
    state: str = lab.evaluate(
        """() => {
            const all = (selector, read) =>
                Array.from(document.querySelectorAll(selector), read).join(" / ");
            const text = (e) => e.textContent.trim();
            const kernel = ".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName";
            return "toolbar kernel: " + all(kernel, text)
                + "; indicator: " + all(".jp-Notebook-ExecutionIndicator", (e) => e.dataset.status)
                + "; status bar: " + all(".jp-StatusBar-TextItem", text);
        }"""
    )
    return state


def _watch_kernel_traffic(lab: Any) -> list[str]:
    """A running record of ``lab``'s console errors and its websockets: opened, closed and
    each frame's Jupyter message type (for the failure message of a cell that never ran)."""
    seen: list[str] = []
    msg_type = re.compile(r'"msg_type":\s*"(\w+)"')

    def frame(way: str, url: str) -> Any:
        def note(payload: str | bytes) -> None:
            text = payload.decode("latin-1") if isinstance(payload, bytes) else payload
            kind = msg_type.search(text)
            seen.append(f"{way} {kind[1] if kind else len(text)} ({url.rsplit('/', 2)[-2]})")

        return note

    def websocket(ws: Any) -> None:
        seen.append(f"opened {ws.url}")
        ws.on("framesent", frame("sent", ws.url))
        ws.on("framereceived", frame("received", ws.url))
        ws.on("close", lambda _: seen.append(f"closed {ws.url}"))

    lab.on("websocket", websocket)
    lab.on("console", lambda m: seen.append(f"console {m.type}: {m.text[:300]}"))
    return seen


def log_in(page: Any, email: str, password: str) -> None:
    """Sign in through the login page and wait until it has let the person in."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def create_notebook(
    page: Any, team: Any, name: str, machine_type: Any, template: str = "Scientific Python"
) -> Any:
    """From the notebooks page, make a notebook of ``template`` on ``machine_type`` with
    the new-notebook page's form (the picker's choice for it); the page ends on the
    notebook's own page. Returns the Notebook row."""
    from apps.core.tenancy import team_scope
    from apps.notebooks.models import Notebook

    page.get_by_role("link", name="New notebook").click()
    page.wait_for_url(f"**/t/{team.slug}/notebooks/new/")
    form = page.get_by_test_id("create-form")
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Template", exact=True).select_option(label=template)
    form.get_by_test_id(f"machine-{machine_type.slug}").get_by_role("radio").check()
    form.get_by_role("button", name="Create notebook").click()
    page.wait_for_url(f"**/t/{team.slug}/notebooks/*/")
    with team_scope(team):
        return Notebook.objects.get(name=name)
