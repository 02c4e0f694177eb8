"""Runs on the real Docker runtime (the notebook image's scipy template), Celery eager, the
real agent: a command's lines on the run's stream, a container removed behind Lattice's back
(a new attempt, each billed for its own seconds), and the maximum run time's SIGTERM."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.billing.usage import JOB, usage_pieces
from apps.core import stream
from apps.jobs import runs, spec
from apps.jobs.models import Attempt, Run
from apps.jobs.tasks import jobs_tick
from apps.machines import agent
from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.runtimes import select
from apps.runtimes.docker import DockerRuntime
from tests.jobs.engine_fixtures import attempts_of, log_lines, make_job, wait_for
from tests.notebook_fixtures import remove_installation_workloads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

RS = Run.Status


@pytest.fixture
def docker_host(settings, docker_client, scipy_image, catalogue):
    settings.LATTICE_RUNTIME = "docker"
    select._runtime.cache_clear()
    stream.reset_for_tests()
    yield host_ensure_local(name="local", inventory=collect(), runtime="docker")
    # This run's containers and volumes only: a dev server or another run shares the engine.
    remove_installation_workloads(docker_client)
    select._runtime.cache_clear()


def wait_for_line(run: Run, line: str, seconds: float = 30) -> list[str]:
    deadline = time.monotonic() + seconds
    while line not in log_lines(run) and time.monotonic() < deadline:
        time.sleep(0.2)
    return log_lines(run)


def volume_names(docker_client: Any) -> set[str]:
    return {v.name for v in docker_client.volumes.list()}


def test_a_command_runs_in_a_container_and_its_lines_reach_the_stream(
    acme, alice, docker_host, docker_client, no_outputs
):
    job = make_job(
        acme,
        alice,
        ("echo hello from docker; id -u; touch /workspace/a /outputs/b && echo wrote both"),
    )
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.SUCCEEDED, RS.FAILED, seconds=120)
    assert run.status == RS.SUCCEEDED, run.status_message
    assert run.exit_code == 0
    lines = wait_for_line(run, "hello from docker")
    assert "hello from docker" in lines
    # It runs as the notebook user, who may write in its workspace and its outputs.
    assert "1000" in lines
    assert "wrote both" in wait_for_line(run, "wrote both")
    [attempt] = attempts_of(run)
    # It is billed from the container's own start (Docker's State.StartedAt), not from
    # when the host's message about it arrived.
    began = attempt.runtime_state["started_at"]
    assert attempt.requested_at.timestamp() <= began <= time.time()
    assert attempt.started_at is not None
    assert attempt.started_at.timestamp() == pytest.approx(began, abs=1e-5)
    container = DockerRuntime.container_name(attempt.workload)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        docker_client.containers.list(all=True, sparse=True, filters={"name": container})
        or spec.workspace_volume(run) in volume_names(docker_client)
    ):
        time.sleep(0.3)
    # Its container and the run's volumes are gone once the run ended.
    assert docker_client.containers.list(all=True, sparse=True, filters={"name": container}) == []
    assert spec.workspace_volume(run) not in volume_names(docker_client)
    assert spec.outputs_volume(run) not in volume_names(docker_client)


def test_a_container_removed_behind_our_back_is_tried_again_and_billed_per_attempt(
    acme, alice, docker_host, docker_client, no_outputs
):
    # The first attempt leaves a mark in the run's workspace (kept for its retries) and
    # waits; the second finds the mark and succeeds.
    command = (
        "if [ -e /workspace/first ]; then echo second attempt; sleep 2; exit 0; fi; "
        "touch /workspace/first; echo first attempt; sleep 300"
    )
    job = make_job(acme, alice, command, max_attempts=2)
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING, seconds=120)
    assert "first attempt" in wait_for_line(run, "first attempt")
    time.sleep(1.5)
    [first] = attempts_of(run)
    docker_client.containers.get(DockerRuntime.container_name(first.workload)).remove(force=True)

    run = wait_for(run, RS.SUCCEEDED, RS.FAILED, RS.LOST, seconds=120)
    assert run.status == RS.SUCCEEDED, run.status_message
    first, second = attempts_of(run)
    assert first.end_reason == Attempt.EndReason.LOST
    assert first.exit_code is None
    assert second.end_reason == Attempt.EndReason.EXITED
    assert second.exit_code == 0
    assert "second attempt" in wait_for_line(run, "second attempt")

    start = timezone.now() - timedelta(hours=1)
    pieces = sorted(
        (p for p in usage_pieces(acme, start, timezone.now()) if p.kind == JOB),
        key=lambda p: p.source_id,
    )
    assert [p.source_id for p in pieces] == [first.pk, second.pk]
    assert all(p.seconds >= 1 for p in pieces)
    for piece, attempt in zip(pieces, (first, second), strict=True):
        assert attempt.started_at is not None
        assert attempt.finished_at is not None
        billed = attempt.finished_at.replace(microsecond=0) - attempt.started_at.replace(
            microsecond=0
        )
        assert piece.seconds == int(billed.total_seconds())


def test_the_maximum_run_time_sends_sigterm_and_the_run_ends_timed_out(
    acme, alice, docker_host, docker_client, no_outputs
):
    command = "trap 'echo got TERM; exit 143' TERM; echo waiting; while true; do sleep 0.2; done"
    job = make_job(acme, alice, command, grace_seconds=5, timeout_seconds=3)
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING, seconds=120)
    assert "waiting" in wait_for_line(run, "waiting")
    time.sleep(3.2)
    assert jobs_tick()["timed_out"] == 1  # the beat's task
    run = wait_for(run, RS.TIMED_OUT, seconds=60)
    assert run.status_message == "Timed out: it ran longer than 3 s."
    assert "got TERM" in wait_for_line(run, "got TERM", seconds=10)
    [attempt] = attempts_of(run)
    assert attempt.end_reason == Attempt.EndReason.TIMED_OUT
    assert attempt.ended_at is not None


def test_a_run_ends_once_its_outputs_are_saved_as_a_dataset_version(
    acme, alice, docker_host, docker_client, live_server, settings, media
):
    # The whole way, apps.jobs.outputs included: the exited container is kept until its
    # host has sent /outputs through the save ticket, then the run ends with the version.
    from apps.datasets.models import DatasetVersion

    settings.LATTICE_INTERNAL_URL = live_server.url
    command = "echo 0.93 > /outputs/score.txt; echo wrote the score"
    job = make_job(acme, alice, command, output="dataset", output_name="scores")
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.SUCCEEDED, RS.FAILED, seconds=120)
    assert run.status == RS.SUCCEEDED, (run.status_message, run.outputs_message)
    assert run.outputs_state == Run.Outputs.SAVED
    assert run.dataset_version_id is not None
    version = DatasetVersion.objects.for_team(acme).get(pk=run.dataset_version_id)
    assert version.source == "job"
    assert version.source_id == run.pk

    def statuses() -> list[tuple[str, str]]:
        return [
            (m["status"], m["message"])
            for m in stream.stream_after(run.stream, 0)
            if m.get("type") == "run"
        ]

    # Celery runs eagerly here: the host's save runs inside the commit callback queued
    # just before the one that publishes "Saving outputs.", so that message can come
    # after the run's end is read (on a real queue the save starts later).
    deadline = time.monotonic() + 10
    while (RS.RUNNING, "Saving outputs.") not in statuses() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (RS.RUNNING, "Saving outputs.") in statuses()
    [attempt] = attempts_of(run)
    assert attempt.end_reason == Attempt.EndReason.EXITED
    assert attempt.ended_at is not None


def test_cancel_gives_sigterm_and_an_exit_after_an_agent_restart_is_still_recorded(
    acme, alice, docker_host, docker_client, no_outputs
):
    command = "trap 'echo got TERM; exit 143' TERM; echo waiting; while true; do sleep 0.2; done"
    job = make_job(acme, alice, command, grace_seconds=5)
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING, seconds=120)
    assert "waiting" in wait_for_line(run, "waiting")
    runs.run_cancel(run, actor=alice)
    run = wait_for(run, RS.CANCELLED, seconds=30)
    assert "got TERM" in wait_for_line(run, "got TERM", seconds=10)
    assert attempts_of(run)[0].end_reason == Attempt.EndReason.CANCELLED

    # The agent restarts while a run's process runs: nobody watches it when it exits 5.
    other = make_job(acme, alice, "sleep 2; exit 5", name="Other", slug="other")
    run = wait_for(
        runs.run_create(other, trigger=Run.Trigger.MANUAL, actor=alice), RS.RUNNING, seconds=120
    )
    [attempt] = attempts_of(run)
    agent._unwatch(attempt.workload)
    time.sleep(3)
    run.refresh_from_db()
    assert run.status == RS.RUNNING
    # Its next report finds the exited container, with its status.
    agent.agent_report(docker_host.name)
    run = wait_for(run, RS.FAILED, seconds=10)
    assert run.exit_code == 5
    assert run.status_message == "The command exited with status 5."


def test_a_notebook_source_runs_on_a_copy_of_the_notebooks_volume(
    acme, alice, docker_host, docker_client, scipy_image, no_outputs, settings
):
    from tests.notebook_fixtures import make_notebook, remove_installation_volumes

    notebook = make_notebook(acme, alice, "Churn")
    docker_client.volumes.create(
        notebook.volume, labels={"lattice.installation": settings.LATTICE_INSTALLATION}
    )
    docker_client.containers.run(
        scipy_image,
        ["sh", "-c", "echo 'from the notebook' > /notebooks/train.txt"],
        entrypoint=[],
        volumes={notebook.volume: {"bind": "/notebooks", "mode": "rw"}},
        remove=True,
    )
    try:
        job = make_job(
            acme, alice, "cat /workspace/train.txt", source="notebook", notebook=notebook
        )
        run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
        run = wait_for(run, RS.SUCCEEDED, RS.FAILED, seconds=120)
        assert run.status == RS.SUCCEEDED, run.status_message
        assert "from the notebook" in wait_for_line(run, "from the notebook")
    finally:
        remove_installation_volumes(docker_client, [notebook.volume])


RAISING_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "source": ["print('before the error')\n", "raise ValueError('the data is bad')\n"],
            "outputs": [],
            "execution_count": None,
        }
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 4,
}


def test_a_failed_notebook_keeps_its_executed_notebook_with_the_error(
    acme, alice, docker_host, docker_client, scipy_image, live_server, settings, media
):
    # A cell raised: the run fails with papermill's exit status, but the executed notebook
    # (the traceback in it) is kept as the run's result and shown on the results origin;
    # /outputs is not saved.
    import json
    from urllib.parse import urlsplit

    from django.conf import settings as django_settings

    from apps.jobs.models import RunFile
    from apps.jobs.outputs import outputs_described
    from tests.asgi_server import asgi_request, session_cookie
    from tests.notebook_fixtures import make_notebook, remove_installation_volumes

    settings.LATTICE_INTERNAL_URL = live_server.url
    notebook = make_notebook(acme, alice, "Broken")
    docker_client.volumes.create(
        notebook.volume, labels={"lattice.installation": settings.LATTICE_INSTALLATION}
    )
    docker_client.containers.run(
        scipy_image,
        ["sh", "-c", 'printf "%s" "$0" > /notebooks/broken.ipynb', json.dumps(RAISING_NOTEBOOK)],
        entrypoint=[],
        volumes={notebook.volume: {"bind": "/notebooks", "mode": "rw"}},
        remove=True,
    )
    try:
        job = make_job(
            acme,
            alice,
            "",
            source="notebook",
            notebook=notebook,
            entrypoint="notebook",
            notebook_path="broken.ipynb",
            output="dataset",
            output_name="never",
            keep_files_days=7,
        )
        run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
        run = wait_for(run, RS.SUCCEEDED, RS.FAILED, seconds=180)
    finally:
        remove_installation_volumes(docker_client, [notebook.volume])

    assert run.status == RS.FAILED
    assert run.exit_code not in (None, 0)
    assert run.status_message == f"The command exited with status {run.exit_code}."
    assert run.outputs_state == Run.Outputs.SAVED, run.outputs_message
    assert run.dataset_version_id is None  # /outputs is a success's only
    [kept] = RunFile.objects.for_team(acme).filter(run=run)
    assert (kept.kind, kept.path) == (RunFile.Kind.RESULT, "executed.ipynb")
    [attempt] = attempts_of(run)
    assert attempt.end_reason == Attempt.EndReason.EXITED
    link = outputs_described(run)["notebook_url"]
    assert link == f"/t/acme/jobs/runs/{run.pk}/notebook/"

    cookie = f"{django_settings.SESSION_COOKIE_NAME}={session_cookie(alice)}"
    redirect = asgi_request("GET", f"http://testserver{link}", {"cookie": cookie}, None)
    assert redirect.status_code == 302
    assert urlsplit(redirect.headers["location"]).hostname != "testserver"
    shown = asgi_request("GET", redirect.headers["location"], {}, None)
    assert shown.status_code == 200
    assert "before the error" in shown.text
    assert "ValueError" in shown.text
    assert "the data is bad" in shown.text
