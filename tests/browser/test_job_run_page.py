"""A run's page in real Chromium on the ASGI server (websockets included): the status,
phases, exit code and log lines the engine publishes on the run's stream reach the open
page live, with no script error and nothing refused by the CSP.

The messages are published here as the engine publishes them (apps.jobs.runs.run_published
and the agent's log frames): the run itself is tests/jobs/test_runs.py's."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from apps.core.stream import stream_publish
from apps.jobs.models import Run
from tests.browser.conftest import log_in
from tests.jobs.api_helpers import make_job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_run_page_follows_its_phases_and_log_live(asgi_page, acme, alice, password, catalogue):
    job = make_job(acme, alice, "Nightly")
    run = Run.objects.for_team(acme).create(
        team=acme, job=job, number=1, definition={}, status=Run.Status.QUEUED
    )
    page = asgi_page
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, alice.email, password)
    page.goto(f"/t/acme/jobs/{job.pk}/runs/1/")
    expect(page.get_by_test_id("connection")).to_have_text("")
    expect(page.locator('[data-phase="queued"]')).to_have_class("nb-phase nb-phase-current")

    base = {"type": "run", "run": run.pk, "number": 1, "exit_code": None}
    stream_publish(run.stream, {**base, "status": "running", "message": "Running."})
    expect(page.get_by_test_id("status-badge")).to_have_text("Running")
    expect(page.locator('[data-phase="running"]')).to_have_class("nb-phase nb-phase-current")
    stream_publish(run.stream, {"type": "logs", "lines": ["epoch 1 loss 0.31"]})
    expect(page.get_by_test_id("log-panel")).to_contain_text("epoch 1 loss 0.31")
    stream_publish(
        run.stream, {**base, "status": "failed", "message": "Exited with 3.", "exit_code": 3}
    )
    expect(page.get_by_test_id("status-badge")).to_have_text("Failed")
    expect(page.get_by_test_id("exit-code")).to_have_text("3")
    expect(page.get_by_test_id("run-message")).to_have_text("Exited with 3.")
    expect(page.locator('[data-phase="ended"]')).to_have_class("nb-phase nb-phase-done")
    assert errors == []
