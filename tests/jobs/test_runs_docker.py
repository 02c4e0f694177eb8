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
    container = DockerRuntime.container_name(attempt.workload)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        docker_client.containers.list(all=True, filters={"name": container})
        or spec.workspace_volume(run) in volume_names(docker_client)
    ):
        time.sleep(0.3)
    # Its container and the run's volumes are gone once the run ended.
    assert docker_client.containers.list(all=True, filters={"name": container}) == []
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
