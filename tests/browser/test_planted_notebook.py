"""A member plants a script in a notebook; the owner opens it; the script gets nothing.

Bob, a member of Acme, stores a notebook through Jupyter's contents API whose output is
HTML with a script, marked trusted, so that JupyterLab runs the script when the notebook
is shown. Alice, Acme's owner, opens it through Lattice in Chromium. The script tries
what a takeover needs, with fetch(..., {credentials: "include"}) to Lattice's origin:
read /api/v1/me and a page's CSRF token, make a token, make bob an owner (API and form),
add an email address to alice's account, and open Lattice's live stream. It then records
what it saw on the notebook's own origin (a file, through Jupyter's API) and says so on
the console, so the test knows it ran.

Lattice is reached at http://localhost:<port>, the embedded default, where the notebook's
origin (nb-<id>.localhost:<port>) may be same-site with it: SameSite is not the defence.
The assertions are on the server's state afterwards.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress

from apps.accounts.models import PersonalAccessToken
from apps.teams.models import Membership, Role
from tests.browser.conftest import (
    JUPYTER_MS,
    READY_MS,
    _remove_notebook_containers,
    _remove_volumes,
    _wait_for_status,
    jupyter_api,
    lab_origin,
    log_in,
)
from tests.notebook_fixtures import make_notebook

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.browser, pytest.mark.docker]

RECORD = "planted-ran.json"
RAN = "planted script ran"

# The script bob plants. LATTICE, BOB and BASE are filled in below.
SCRIPT = """
(async () => {
  const lattice = "LATTICE";
  const seen = {cookies: document.cookie};
  const call = async (name, path, init) => {
    try {
      const response = await fetch(lattice + path, {credentials: "include", ...init});
      const text = await response.text();
      seen[name] = response.status + " " + text.slice(0, 300);
      return text;
    } catch (error) {
      seen[name] = "blocked: " + error;
      return "";
    }
  };
  const page = await call("page", "/settings/tokens/", {});
  const csrf = (page.match(/name="csrfmiddlewaretoken" value="([^"]+)"/) || [])[1] || "";
  const json = {"Content-Type": "application/json", "X-CSRFToken": csrf};
  const form = {"Content-Type": "application/x-www-form-urlencoded", "X-CSRFToken": csrf};
  const token = JSON.stringify(
    {name: "planted", scopes: ["teams:write", "notebooks:write"], expires_in_days: null});
  await call("me", "/api/v1/me", {});
  await call("token", "/api/v1/tokens/", {method: "POST", headers: json, body: token});
  await call("token_no_cors", "/api/v1/tokens/",
    {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: token});
  await call("role", "/api/v1/teams/acme/members/BOB/",
    {method: "PATCH", headers: json, body: JSON.stringify({role: "owner"})});
  await call("role_form", "/t/acme/members/BOB/role/",
    {method: "POST", headers: form, body: "role=owner&csrfmiddlewaretoken=" + csrf});
  await call("role_form_no_cors", "/t/acme/members/BOB/role/",
    {method: "POST", mode: "no-cors", headers: form, body: "role=owner"});
  await call("email", "/accounts/email/", {method: "POST", headers: form,
    body: "action_add=&email=bob.planted%40example.com&csrfmiddlewaretoken=" + csrf});
  await call("email_no_cors", "/accounts/email/", {method: "POST", mode: "no-cors",
    headers: form, body: "action_add=&email=bob.planted2%40example.com"});
  seen.stream = await new Promise((resolve) => {
    const ws = new WebSocket(lattice.replace("http", "ws") + "/ws/teams/acme/notebooks/NB/");
    ws.onmessage = (event) => { resolve("read: " + event.data.slice(0, 300)); ws.close(); };
    ws.onerror = () => resolve("refused");
    setTimeout(() => resolve("no answer"), 5000);
  });
  await fetch("BASE/api/contents/RECORD", {
    method: "PUT",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({type: "file", format: "text", content: JSON.stringify(seen)}),
  });
  console.log("RAN");
})();
"""


def planted_notebook(script: str) -> dict[str, Any]:
    output = {
        "output_type": "display_data",
        "data": {
            "text/html": f"<p>Quarterly numbers</p><script>{script}</script>",
            "text/plain": "<IPython.core.display.HTML object>",
        },
        "metadata": {},
    }
    cell = {
        "cell_type": "code",
        "execution_count": 1,
        "source": "show_numbers()",
        "metadata": {"trusted": True},
        "outputs": [output],
    }
    return {
        "type": "notebook",
        "content": {
            "cells": [cell],
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        },
    }


@pytest.fixture
def lattice(asgi_live_server: str) -> str:
    """Lattice's origin as the embedded default gives it: localhost, not 127.0.0.1."""
    return f"http://localhost:{urlsplit(asgi_live_server).port}"


@pytest.fixture
def contexts(browser: Any, lattice: str) -> Iterator[tuple[Any, Any]]:
    """Alice's browser and bob's: their own cookies each."""
    made = [browser.new_context(base_url=lattice) for _ in range(2)]
    for context in made:
        context.set_default_timeout(30_000)
    yield made[0], made[1]
    for context in made:
        context.close()


def read_record(docker_client: Any, notebook_id: int) -> dict[str, Any] | None:
    """What the script recorded, read from the notebook's folder in its container."""
    containers = docker_client.containers.list(
        filters={"label": f"lattice.notebook={notebook_id}", "status": "running"}
    )
    if not containers:
        return None
    result = containers[0].exec_run(["cat", f"/notebooks/{RECORD}"])
    if result.exit_code != 0:
        return None
    return dict(json.loads(result.output.decode()))


def test_a_script_planted_in_a_notebook_cannot_act_as_the_owner_who_opens_it(  # noqa: PLR0915
    contexts: tuple[Any, Any],
    lattice: str,
    local_host: Any,
    unique_ids: None,
    docker_client: Any,
    acme: Any,
    alice: Any,
    bob: Any,
    password: str,
    catalogue: dict[str, Any],
) -> None:
    alice_context, bob_context = contexts
    notebook = make_notebook(acme, alice, "Shared")
    bob_membership = Membership.objects.for_team(acme).get(user=bob)
    addresses_before = set(EmailAddress.objects.values_list("user_id", "email"))
    try:
        # Alice starts the team's notebook.
        page = alice_context.new_page()
        log_in(page, alice.email, password)
        page.goto(f"/t/acme/notebooks/{notebook.pk}/")
        page.get_by_test_id("start").click()
        page.wait_for_load_state()
        _wait_for_status(page, "Running", READY_MS)

        # Bob opens it through Lattice and plants the notebook through Jupyter's API.
        bob_page = bob_context.new_page()
        bob_page.set_default_timeout(JUPYTER_MS)
        log_in(bob_page, bob.email, password)
        bob_page.goto(f"/nb/{notebook.pk}/lab")
        bob_page.locator(".jp-LabShell").wait_for()
        base = f"/nb/{notebook.pk}"
        script = (
            SCRIPT.replace("LATTICE", lattice)
            .replace("BOB", str(bob_membership.pk))
            .replace("NB", str(notebook.pk))
            .replace("BASE", base)
            .replace("RECORD", RECORD)
            .replace('"RAN"', json.dumps(RAN))
        )
        planted = jupyter_api(
            bob_page, "PUT", f"{base}/api/contents/Report.ipynb", planted_notebook(script)
        )
        assert planted["status"] in (200, 201), planted["text"]
        trusted = jupyter_api(bob_page, "POST", f"{base}/api/contents/Report.ipynb/trust")
        assert trusted["status"] == 201, trusted["text"]
        stored = jupyter_api(bob_page, "GET", f"{base}/api/contents/Report.ipynb")["json"]
        assert stored["content"]["cells"][0]["metadata"]["trusted"] is True
        bob_page.close()

        # Alice opens JupyterLab from Lattice, then the planted notebook.
        said: list[str] = []
        with alice_context.expect_page() as opened:
            page.get_by_test_id("open-jupyter").click()
        lab = opened.value
        lab.set_default_timeout(JUPYTER_MS)
        lab.on("console", lambda message: said.append(message.text))
        lab.locator(".jp-LabShell").wait_for()
        lab.goto(f"{lab_origin(lab)}{base}/lab/tree/Report.ipynb")
        lab.locator(".jp-OutputArea-output", has_text="Quarterly numbers").wait_for()

        record = None
        deadline = time.monotonic() + 60
        while (record is None or RAN not in said) and time.monotonic() < deadline:
            lab.wait_for_timeout(500)  # lets Playwright deliver the console's messages
            record = record or read_record(docker_client, notebook.pk)
        # It ran, as alice, in her browser: the checks below cannot pass vacuously.
        assert record is not None, f"the planted script never ran; the console said {said}"
        assert RAN in said, said

        # Lattice's state afterwards: nothing the script tried took effect.
        # (The session's own workload token, apps/accounts/workload.py, is the platform's.)
        assert not PersonalAccessToken.objects.filter(user__in=[alice, bob], workload="").exists()
        roles = dict(Membership.objects.for_team(acme).values_list("user_id", "role"))
        assert roles == {alice.pk: Role.OWNER, bob.pk: Role.MEMBER}
        assert set(EmailAddress.objects.values_list("user_id", "email")) == addresses_before
        assert not EmailAddress.objects.filter(email__startswith="bob.planted").exists()
        # And it read nothing of Lattice's: not alice's address, nor a CSRF token, nor the
        # live stream, nor Lattice's cookies.
        seen = json.dumps(record)
        assert alice.email not in seen, record
        assert "csrfmiddlewaretoken" not in seen, record
        assert not record["stream"].startswith("read:"), record
        assert "sessionid" not in record["cookies"], record
        lab.close()
    finally:
        _remove_notebook_containers(docker_client, [notebook.pk])
        _remove_volumes(docker_client, [notebook.volume])
