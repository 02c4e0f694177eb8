"""A run's kept files for members: downloads on Lattice's origin, and the executed notebook
rendered read-only on the results origin only, behind a single-use ticket, sandboxed.

Every request goes through the real ASGI application (config.asgi), as a browser's would:
the Host header picks the origin.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.utils import timezone

from apps.jobs.models import Job, Run, RunFile
from apps.jobs.results import RESULT_PATH, results_host
from tests.asgi_server import asgi_request, session_cookie
from tests.job_fixtures import executed_notebook, keep_file, make_job, make_run

pytestmark = pytest.mark.django_db(transaction=True)

LATTICE = "testserver"
SCRIPT = "<script>document.title = 'ran: ' + document.cookie</script><b>bold output</b>"


@pytest.fixture
def run(acme, alice, catalogue, media):
    made = make_run(make_job(acme, alice, entrypoint=Job.Entrypoint.NOTEBOOK), alice)
    keep_file(made, "executed.ipynb", executed_notebook(SCRIPT), kind=RunFile.Kind.RESULT)
    keep_file(made, "report.html", SCRIPT.encode(), kind=RunFile.Kind.ARTIFACT)
    return made


def get(url: str, user=None):
    if url.startswith("/"):
        url = f"http://{LATTICE}{url}"
    headers = {}
    if user is not None:
        headers["cookie"] = f"{settings.SESSION_COOKIE_NAME}={session_cookie(user)}"
    return asgi_request("GET", url, headers, None)


def notebook_link(run: Run) -> str:
    return f"/t/{run.team.slug}/jobs/runs/{run.pk}/notebook/"


def test_the_executed_notebook_is_shown_on_the_results_origin_only_sandboxed(run, bob):
    on_lattice = get(notebook_link(run), bob)

    # Lattice's origin never serves it: a redirect to the results origin with a ticket.
    assert on_lattice.status_code == 302
    assert "answer 42" not in on_lattice.text
    where = urlsplit(on_lattice.headers["location"])
    assert where.hostname == results_host() != LATTICE
    assert where.path == RESULT_PATH
    assert parse_qs(where.query)["ticket"]

    shown = get(on_lattice.headers["location"])  # no cookie of any kind goes there

    assert shown.status_code == 200
    assert shown.headers["content-type"].startswith("text/html")
    assert "answer 42" in shown.text
    assert "bold output" in shown.text
    # The output's script is in the page as it was printed: the sandbox is what stops it.
    assert "document.title = 'ran: '" in shown.text
    csp = shown.headers["content-security-policy"]
    assert csp.split(";")[0].strip() == "sandbox"
    assert "allow-scripts" not in csp
    assert "allow-same-origin" not in csp
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in shown.headers
    # Single use: the same link again is refused.
    again = get(on_lattice.headers["location"])
    assert again.status_code == 403
    assert "answer 42" not in again.text


def test_the_results_path_is_not_served_on_lattices_origin(run, bob):
    ticket_link = urlsplit(get(notebook_link(run), bob).headers["location"])

    on_lattice = get(f"{RESULT_PATH}?{ticket_link.query}", bob)

    assert on_lattice.status_code == 404
    assert "answer 42" not in on_lattice.text


def test_a_forged_or_foreign_ticket_shows_nothing(run, bob, charlie):
    assert get(f"http://{results_host()}{RESULT_PATH}?ticket=forged").status_code == 403
    # An outsider gets no ticket at all.
    assert get(notebook_link(run), charlie).status_code == 404
    # A member removed after the ticket was issued: refused there.
    link = get(notebook_link(run), bob).headers["location"]
    from apps.teams.models import Membership

    Membership.objects.for_team(run.team).filter(user=bob).delete()
    assert get(link).status_code == 403


def test_members_download_a_runs_files_never_rendered_here(run, bob, charlie):
    artifact = RunFile.objects.for_team(run.team).get(run=run, kind=RunFile.Kind.ARTIFACT)
    link = f"/t/{run.team.slug}/jobs/runs/{run.pk}/files/{artifact.pk}/"

    got = get(link, bob)

    assert got.status_code == 200
    assert got.content == SCRIPT.encode()
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment")
    assert got.headers["content-security-policy"] == "sandbox"
    assert get(link, charlie).status_code == 404
    assert get(link).status_code == 302  # to sign in

    # Past its time it is gone, even before the upkeep deletes its row.
    RunFile.objects.for_team(run.team).filter(pk=artifact.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert get(link, bob).status_code == 404


def test_the_executed_notebook_page_names_no_other_site(run, bob):
    """The sandbox's CSP refuses anything from elsewhere (nbconvert's require.js, MathJax and
    Mermaid come from a CDN): the page is made without them, its CSS inline."""
    shown = get(get(notebook_link(run), bob).headers["location"])

    assert shown.status_code == 200
    assert "answer 42" in shown.text
    assert "<style" in shown.text
    assert re.findall(r"<script[^>]*\bsrc\s*=", shown.text, re.IGNORECASE) == []
    assert re.findall(r"<link\b[^>]*>", shown.text, re.IGNORECASE) == []
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", shown.text, re.I) == []
    assert "cdnjs" not in shown.text
    assert "mathjax" not in shown.text.lower()
