"""The jobs story end to end, in Chromium, on the real Docker runtime and the Scientific
Python image, with the ASGI server (pages, the run page's websocket, the results origin)
and the embedded worker (the control plane and the local host's agent):

Alice's notebook "Analysis" holds analysis.ipynb, whose first cell is tagged "parameters"
(``steps = 2``, ``label = "default"``) and whose next cell prints a line per step, a few
seconds apart, then writes /outputs/summary.csv. On the new-job page she makes a job from
that notebook's files that runs analysis.ipynb with ``{"steps": 4, "label": "story"}``,
its /outputs becoming the dataset "Story results"; on the job's page she clicks Run. The
run page shows the steps' lines arrive one by one while the run is running (the same
document: no reload), then Succeeded with exit code 0. "Open the executed notebook" takes
her to the results origin (results.localhost, not Lattice's), where the rendered notebook
shows the injected parameters and every step. The run's dataset version link opens
"Story results" version 1 holding summary.csv, whose lineage names the run and links back
to the run page.

The notebook's files are put into its volume directly (a helper container untars them
there, as owner 1000, the image's user): the story is the job's, and a notebook started in
JupyterLab to save two files is tests/browser/test_model_story.py's already.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.urls import reverse
from playwright.sync_api import expect

from apps.core.tenancy import team_scope
from tests.browser.conftest import create_notebook, log_in

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.browser, pytest.mark.docker]

RUN_MS = 240_000
STEP_SECONDS = 3
PARAMETERS = {"steps": 4, "label": "story"}


def _cell(source: str, **extra: Any) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": extra.pop("metadata", {}),
        "outputs": [],
        "source": source,
        **extra,
    }


def analysis_notebook() -> bytes:
    """analysis.ipynb: a parameters cell, a cell printing each step STEP_SECONDS apart (the
    run page's log shows them arrive), then /outputs/summary.csv."""
    cells = [
        _cell('steps = 2\nlabel = "default"\n', metadata={"tags": ["parameters"]}),
        _cell(
            "import time\n"
            "for step in range(1, steps + 1):\n"
            '    print(f"step {step} of {steps} ({label})", flush=True)\n'
            f"    time.sleep({STEP_SECONDS})\n"
        ),
        _cell(
            "import pathlib\n"
            'rows = "".join(f"{n},{label}\\n" for n in range(1, steps + 1))\n'
            'pathlib.Path("/outputs/summary.csv").write_text("step,label\\n" + rows)\n'
            'print("wrote", steps, "rows")\n'
        ),
    ]
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1).encode()


def put_files(docker_client: Any, image: str, volume: str, files: dict[str, bytes]) -> None:
    """``files`` into the Docker volume ``volume`` (made with this installation's labels,
    as the runtime makes a notebook's), owned by 1000:1000 like the notebook's own."""
    from django.conf import settings

    docker_client.volumes.create(
        volume,
        labels={
            "lattice.managed": "true",
            "lattice.installation": settings.LATTICE_INSTALLATION,
        },
    )
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), 1000, 1000, 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    helper = docker_client.containers.create(
        image,
        ["true"],
        volumes={volume: {"bind": "/notebooks", "mode": "rw"}},
        labels={"lattice.installation": settings.LATTICE_INSTALLATION},
    )
    try:
        assert helper.put_archive("/notebooks", archive.getvalue())
    finally:
        helper.remove(force=True)


@pytest.fixture
def storage(settings: Any, tmp_path: Path, asgi_live_server: str) -> None:
    """Blobs in a local folder; the host's agent sends /outputs and the executed notebook
    through this server (signed links, the save's ticket), as any host does."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LATTICE_DATASET_CACHE = tmp_path / "cache"
    settings.LATTICE_INTERNAL_URL = asgi_live_server


@pytest.fixture
def unique_run_ids(transactional_db: None) -> None:
    """Number this test's runs and attempts far from other test runs': their containers
    (jb-<attempt>) and volumes (lattice-jb-run-<run>-*) are named after them on a Docker
    engine others share."""
    base = 600_000_000 + secrets.randbelow(100_000) * 1_000
    with connection.cursor() as cursor:
        for table in ("jobs_run", "jobs_attempt"):
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, base])


def watch_log(page: Any) -> None:
    """Note, in the page, when each line of the log panel first appeared (ms since the
    page's start) and the status badge's text then; and mark the document (a reload
    loses the mark)."""
    page.evaluate(
        """() => {
          window.__story_document = "same";
          window.__arrivals = [];
          const panel = document.querySelector('[data-testid=log-panel]');
          const badge = document.querySelector('[data-testid=status-badge]');
          const seen = new Set();
          const note = () => {
            for (const line of panel.textContent.split("\\n")) {
              if (line && !seen.has(line)) {
                seen.add(line);
                window.__arrivals.push(
                  {line, at: performance.now(), status: badge.textContent.trim()});
              }
            }
          };
          note();
          new MutationObserver(note)
            .observe(panel, {childList: true, characterData: true, subtree: true});
        }"""
    )


def create_job(page: Any, notebook: Any, machine_type: Any) -> None:
    """The new-job page's form: the notebook's files, analysis.ipynb with PARAMETERS, on
    ``machine_type`` and the Scientific Python image; /outputs -> dataset Story results."""
    page.goto("/t/acme/")
    page.get_by_role("navigation", name="Team").get_by_role("link", name="Jobs").click()
    page.wait_for_url("**/t/acme/jobs/")
    page.get_by_role("link", name="New job").click()
    page.wait_for_url("**/t/acme/jobs/new/")
    form = page.get_by_test_id("job-form")
    form.get_by_label("Name", exact=True).fill("Story job")
    form.get_by_label("Files", exact=True).select_option(value="notebook")
    form.get_by_label("Notebook", exact=True).select_option(value=str(notebook.pk))
    form.get_by_label("Runs", exact=True).select_option(value="notebook")
    form.get_by_label("Notebook path", exact=True).fill("analysis.ipynb")
    form.get_by_label("Parameters (JSON)").fill(json.dumps(PARAMETERS))
    form.get_by_label("Machine", exact=True).select_option(value=str(machine_type.pk))
    form.get_by_label("Image", exact=True).select_option(label="Scientific Python")
    form.get_by_label("/outputs becomes").select_option(value="dataset")
    form.get_by_label("Dataset or model name").fill("Story results")
    form.get_by_test_id("job-save").click()
    try:
        page.wait_for_url("**/t/acme/jobs/*/")
    except Exception as exc:
        errors = page.locator(".field-error, .errorlist, [role=alert]").all_inner_texts()
        raise AssertionError(f"the job form said {errors}") from exc


def said(run: Any) -> str:
    """The run's rows and stream (for a failure's message)."""
    from apps.core.stream import stream_after
    from apps.jobs.models import Attempt

    run.refresh_from_db()
    attempts = [
        f"{a.workload} {a.status} {a.end_reason} exit {a.exit_code}"
        for a in Attempt.objects.for_team(run.team_id).filter(run=run)
    ]
    return (
        f"run {run.status}: {run.status_message!r}; outputs {run.outputs_state} "
        f"{run.outputs_message!r}; attempts {attempts}; stream {stream_after(run.stream, 0)[-30:]}"
    )


def test_a_job_runs_a_notebooks_files_live_and_leaves_a_notebook_and_a_dataset_version(  # noqa: PLR0915 - one story
    asgi_page: Any,
    asgi_live_server: str,
    storage: None,
    local_host: Any,
    unique_ids: None,
    unique_run_ids: None,
    docker_client: Any,
    scipy_image: str,
    acme: Any,
    alice: Any,
    password: str,
    catalogue: dict[str, Any],
) -> None:
    from apps.datasets.models import DatasetVersion
    from apps.jobs.models import Job, Run

    page = asgi_page
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
    started = time.monotonic()

    log_in(page, alice.email, password)
    page.goto("/t/acme/notebooks/")
    notebook = create_notebook(page, acme, "Analysis", catalogue["cpu-small"])
    put_files(docker_client, scipy_image, notebook.volume, {"analysis.ipynb": analysis_notebook()})

    create_job(page, notebook, catalogue["cpu-small"])
    with team_scope(acme):
        job = Job.objects.get(name="Story job")
    assert (job.source, job.notebook_id, job.entrypoint) == ("notebook", notebook.pk, "notebook")
    assert job.parameters == PARAMETERS
    assert (job.output, job.output_name) == ("dataset", "Story results")

    # Run, from the job's page: the run page opens and its log fills while it runs.
    page.get_by_test_id("job-run").click()
    page.wait_for_url(f"**/t/acme/jobs/{job.pk}/runs/1/")
    with team_scope(acme):
        run = Run.objects.get(job=job, number=1)
    watch_log(page)
    log = page.get_by_test_id("log-panel")
    badge = page.get_by_test_id("status-badge")
    try:
        expect(log).to_contain_text("step 1 of 4 (story)", timeout=RUN_MS)
        expect(log).to_contain_text("step 4 of 4 (story)", timeout=60_000)
        expect(badge).to_have_text("Succeeded", timeout=RUN_MS)
    except AssertionError as exc:
        raise AssertionError(said(run)) from exc
    assert page.evaluate("window.__story_document") == "same"
    arrivals = page.evaluate("window.__arrivals")
    steps = {
        n: next(a for a in arrivals if f"step {n} of 4 (story)" in a["line"]) for n in (1, 2, 3, 4)
    }
    # Live: each step's line came while the run was running, about STEP_SECONDS after the
    # one before (not all at once at the end, not after a reload).
    for n in (1, 2, 3, 4):
        assert steps[n]["status"] == "Running", steps[n]
    for n in (2, 3, 4):
        gap = (steps[n]["at"] - steps[n - 1]["at"]) / 1000
        assert gap > STEP_SECONDS / 2, (n, gap, arrivals)
    expect(page.get_by_test_id("exit-code")).to_have_text("0")
    run.refresh_from_db()
    assert (run.status, run.exit_code, run.outputs_state) == (
        Run.Status.SUCCEEDED,
        0,
        Run.Outputs.SAVED,
    ), said(run)
    assert run.dataset_version_id is not None

    # The executed notebook, on the results origin (never Lattice's).
    page.reload()
    with page.context.expect_page() as opened:
        page.get_by_test_id("executed-notebook").click(modifiers=["ControlOrMeta"])
    shown = opened.value
    shown.wait_for_load_state()
    lattice, there = urlsplit(asgi_live_server), urlsplit(shown.url)
    assert there.hostname == "results.localhost", shown.url
    assert (there.hostname, there.port) != (lattice.hostname, lattice.port)
    body = shown.locator("body")
    expect(body).to_contain_text("step 4 of 4 (story)")
    expect(body).to_contain_text('label = "story"')  # papermill's injected parameters
    expect(body).to_contain_text("wrote 4 rows")
    shown.close()

    # The dataset version the run's /outputs made, and its lineage back to the run.
    page.get_by_test_id("output-dataset").get_by_role("link").click()
    page.wait_for_url("**/t/acme/datasets/story-results/**")
    files = page.get_by_test_id("file-list")
    expect(files.locator("tbody tr td:first-child")).to_have_text(["summary.csv"])
    with team_scope(acme):
        version = DatasetVersion.objects.get(pk=run.dataset_version_id)
    assert (version.number, version.source, version.source_id) == (1, "job", run.pk)
    made_by = page.get_by_test_id("version-source").get_by_role("link")
    expect(made_by).to_have_text("Story job, run 1")
    run_page = reverse("jobs:run", args=["acme", job.pk, 1])
    expect(made_by).to_have_attribute("href", run_page)
    made_by.click()
    page.wait_for_url(f"**{run_page}")
    expect(page.get_by_test_id("status-badge")).to_have_text("Succeeded")
    assert problems == [], problems
    print(f"job story: {time.monotonic() - started:.0f} s")  # noqa: T201
