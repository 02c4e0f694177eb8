"""The notebook story end to end, in Chromium, on the real Docker runtime.

Alice makes a notebook, starts it and watches it come up live (no reload), opens
JupyterLab (through Lattice's launch, on the notebook's own origin, nb-<id>.localhost),
runs a cell, stops the notebook, starts it again, and finds her file still there.
Everything real: uvicorn serving the ASGI app (pages, websocket stream, the launch and
the notebook proxy), a Celery worker thread as the control plane and the local host's
agent, Docker running the locally built notebook image.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from apps.core.tenancy import team_scope
from tests.browser.conftest import (
    JUPYTER_MS,
    READY_MS,
    STOPPED_MS,
    _remove_notebook_containers,
    _remove_volumes,
    _wait_for_status,
    create_notebook,
    jupyter_api,
    log_in,
    run_in_new_notebook,
)

if TYPE_CHECKING:
    from apps.notebooks.models import Notebook

pytestmark = [pytest.mark.browser, pytest.mark.docker]


def _watch_badge(page: Any) -> None:
    """Record every text the status badge shows (to see the phases go by)."""
    page.evaluate(
        """() => {
          window.__lattice_marker = "same document";
          window.__statuses = [document.querySelector('[data-testid=status-badge]').textContent];
          const badge = document.querySelector('[data-testid=status-badge]');
          new MutationObserver(() => window.__statuses.push(badge.textContent))
            .observe(badge, {childList: true, characterData: true, subtree: true});
        }""",
    )


def test_a_notebook_starts_live_runs_code_and_keeps_its_files(  # noqa: PLR0915 - one story
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
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
    page.on(
        "console",
        lambda m: problems.append(f"{page.url}: {m.text}") if m.type == "error" else None,
    )
    created: list[Notebook] = []
    try:
        log_in(page, alice.email, password)

        # Make a notebook from the Scientific Python template on CPU small.
        page.goto("/t/acme/")
        page.get_by_role("navigation", name="Team").get_by_role("link", name="Notebooks").click()
        page.wait_for_url(f"{asgi_live_server}/t/acme/notebooks/")
        notebook = create_notebook(page, acme, "Story", catalogue["cpu-small"])
        created.append(notebook)
        badge = page.get_by_test_id("status-badge")
        assert badge.text_content() == "Stopped"

        # Start it, and watch it come up without reloading the page.
        page.get_by_test_id("start").click()
        page.wait_for_load_state()
        _watch_badge(page)
        page.get_by_test_id("stop").wait_for(state="visible")
        _wait_for_status(page, "Running", READY_MS)
        assert page.evaluate("window.__lattice_marker") == "same document"
        seen = page.evaluate("window.__statuses")
        assert seen[-1] == "Running"
        assert len(set(seen)) >= 2, seen  # at least one phase went by before Running
        assert page.get_by_test_id("phase").get_attribute("data-step") == "ready"
        assert page.get_by_test_id("status-message").text_content() == "Ready."
        assert page.get_by_test_id("start").is_hidden()
        expect(page.get_by_test_id("log-panel")).to_contain_text(
            re.compile(r"jupyter|ServerApp|LabApp", re.IGNORECASE),
            timeout=JUPYTER_MS,
        )
        assert page.get_by_test_id("log-panel").text_content().strip()
        # Pause holds new lines back (and stops scrolling); Follow shows them again.
        page.get_by_test_id("log-pause").click()
        expect(page.get_by_test_id("log-follow")).to_be_visible()
        page.get_by_test_id("log-follow").click()
        expect(page.get_by_test_id("log-pause")).to_be_visible()

        # Open JupyterLab in a new tab; make a notebook there and run a cell.
        with page.context.expect_page() as opened:
            page.get_by_test_id("open-jupyter").click()
        lab = opened.value
        lab.set_default_timeout(JUPYTER_MS)
        lab.wait_for_load_state()
        # Not on Lattice's origin: on the notebook's own, on the same port.
        port = urlsplit(asgi_live_server).port
        assert lab.url.startswith(f"http://nb-{notebook.pk}.localhost:{port}/nb/{notebook.pk}/")
        run_in_new_notebook(lab, f"/nb/{notebook.pk}", "Story.ipynb", "print(6*7)", shows="42")
        contents = jupyter_api(lab, "GET", f"/nb/{notebook.pk}/api/contents")["json"]
        notebooks_made = [f["name"] for f in contents["content"] if f["name"].endswith(".ipynb")]
        assert notebooks_made, contents
        lab.close()

        # Stop it, then start it again: the file is still there.
        page.bring_to_front()
        page.get_by_test_id("stop").click()
        _wait_for_status(page, "Stopped", STOPPED_MS)
        assert page.get_by_test_id("open-jupyter").is_hidden()
        # Without a reload: the session's row says it ended and how, and a stopped
        # notebook shows no idle countdown.
        ended = page.locator("tr[data-session]").first
        expect(ended.get_by_test_id("session-ended").locator("time")).to_be_visible()
        expect(ended.get_by_test_id("session-reason")).to_have_text("Stopped")
        expect(page.get_by_test_id("idle-rule")).to_be_hidden()
        assert (
            docker_client.containers.list(
                filters={"label": f"lattice.notebook={notebook.pk}", "status": "running"},
            )
            == []
        )

        page.get_by_test_id("start").click()
        page.wait_for_load_state()
        _wait_for_status(page, "Running", READY_MS)
        with page.context.expect_page() as reopened:
            page.get_by_test_id("open-jupyter").click()
        lab = reopened.value
        lab.set_default_timeout(JUPYTER_MS)
        lab.wait_for_load_state()
        for name in notebooks_made:
            lab.locator(".jp-DirListing-item", has_text=name).first.wait_for()
        contents = jupyter_api(lab, "GET", f"/nb/{notebook.pk}/api/contents")["json"]
        assert set(notebooks_made) <= {f["name"] for f in contents["content"]}
        lab.close()

        assert problems == []
    finally:
        ids = [n.pk for n in created]
        _remove_notebook_containers(docker_client, ids)
        volumes = [n.volume for n in created]
        with team_scope(acme):
            from apps.notebooks.models import TeamNotebookSettings

            volumes += [s.storage_volume for s in TeamNotebookSettings.objects.all()]
        _remove_volumes(docker_client, volumes)
