"""A run's executed notebook holds a script in an output; a member opens it in Chromium; the
script neither runs on Lattice's origin nor anywhere else.

The notebook is shown only on the results origin (results.localhost:<port>), sandboxed by
its Content-Security-Policy. The planted script, were it to run, would call Lattice's API
with the member's cookies (make a token), change the page's title and say so on the
console. The assertions are on the page and on the server's state afterwards.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from apps.accounts.models import PersonalAccessToken
from apps.jobs.models import Job, Run, RunFile
from apps.machines.models import MachineType
from tests.browser.conftest import log_in
from tests.dataset_fixtures import store_blob

pytestmark = [pytest.mark.browser]

RAN = "planted script ran"
PLANTED = (
    "<b>bold output</b><script>"
    "document.title = 'taken';"
    "console.log('" + RAN + "');"
    "fetch('LATTICE/api/v1/tokens/', {method: 'POST', credentials: 'include', "
    "headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'stolen'})})"
    "</script>"
)


def executed(lattice: str) -> bytes:
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {
                    "cell_type": "code",
                    "id": "c1",
                    "metadata": {},
                    "execution_count": 1,
                    "source": "print(41 + 1)",
                    "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": "answer 42\n"},
                        {
                            "output_type": "display_data",
                            "metadata": {},
                            "data": {
                                "text/html": PLANTED.replace("LATTICE", lattice),
                                "text/plain": "html",
                            },
                        },
                    ],
                }
            ],
        }
    ).encode()


def test_a_script_in_an_executed_notebook_runs_nowhere(
    browser, asgi_live_server, acme, alice, password, catalogue, media
):
    lattice = asgi_live_server.replace("127.0.0.1", "localhost")
    job = Job.objects.for_team(acme).create(
        team=acme,
        name="Report",
        slug=f"report-{uuid.uuid4().hex[:6]}",
        machine_type=MachineType.objects.order_by("pk").first(),
        template="python",
        entrypoint=Job.Entrypoint.NOTEBOOK,
        created_by=alice,
    )
    run = Run.objects.for_team(acme).create(
        team=acme, job=job, number=1, status=Run.Status.SUCCEEDED, triggered_by=alice
    )
    data = executed(lattice)
    blob = store_blob(data)
    RunFile.objects.for_team(acme).create(
        team=acme,
        run=run,
        kind=RunFile.Kind.RESULT,
        path="executed.ipynb",
        size=len(data),
        sha256=blob.sha256,
        blob=blob,
        expires_at=timezone.now() + timedelta(days=1),
    )
    context = browser.new_context(base_url=lattice)
    context.set_default_timeout(30_000)
    page = context.new_page()
    said: list[str] = []
    page.on("console", lambda message: said.append(message.text))
    try:
        log_in(page, alice.email, password)

        page.goto(f"/t/{acme.slug}/jobs/runs/{run.pk}/notebook/")
        page.get_by_text("answer 42").wait_for()

        shown = urlsplit(page.url)
        assert shown.hostname == "results.localhost"
        assert page.get_by_text("bold output").is_visible()
        page.wait_for_timeout(1500)  # time for a script that did run to be seen
        assert page.title() != "taken"
        assert RAN not in said
        # The same address again (a reload) is refused: the ticket was single-use.
        again = page.goto(page.url)
        assert again is not None
        assert again.status == 403
    finally:
        context.close()
    assert not PersonalAccessToken.objects.filter(user=alice).exists()
