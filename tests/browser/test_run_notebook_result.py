"""A run's executed notebook holds a script in an output; a member opens it in Chromium; the
script neither runs on Lattice's origin nor anywhere else.

The notebook is shown only on the results origin (results.localhost:<port>), sandboxed by
its Content-Security-Policy. The planted script, were it to run, would call Lattice's API
with the member's cookies (make a token), change the page's title and say so on the
console. The assertions are on the page and on the server's state afterwards.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from apps.accounts.models import PersonalAccessToken
from apps.jobs.models import Job, RunFile
from tests.browser.conftest import log_in
from tests.job_fixtures import executed_notebook, keep_file, make_job, make_run

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


def test_a_script_in_an_executed_notebook_runs_nowhere(
    browser, asgi_live_server, acme, alice, password, catalogue, media
):
    lattice = asgi_live_server.replace("127.0.0.1", "localhost")
    run = make_run(make_job(acme, alice, entrypoint=Job.Entrypoint.NOTEBOOK), alice)
    planted = executed_notebook(PLANTED.replace("LATTICE", lattice))
    keep_file(run, "executed.ipynb", planted, kind=RunFile.Kind.RESULT)
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
    assert not PersonalAccessToken.objects.filter(user=alice, workload="").exists()
