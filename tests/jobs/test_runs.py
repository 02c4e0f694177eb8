"""A run's way through its attempts (apps.jobs.runs), with Celery eager and the real agent:
decisions on the process runtime (each attempt a local process run to its end), the
behaviour that depends on containers on real Docker (tests/jobs/test_runs_docker.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing.usage import JOB, usage_pieces
from apps.jobs import runs
from apps.jobs.models import Attempt, Run
from apps.machines import agent
from apps.machines.agent import agent_report
from apps.machines.queue import placement_free
from apps.machines.tasks import reconcile
from tests.jobs.engine_fixtures import attempts_of, log_lines, make_job, placement_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RS = Run.Status
END = Attempt.EndReason


def test_a_command_run_succeeds_with_its_lines_on_the_stream(acme, alice, process_host, no_outputs):
    job = make_job(acme, alice, "echo hello from the job; echo LATTICE_JOB=$LATTICE_JOB")
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.SUCCEEDED, RS.FAILED)

    assert run.status == RS.SUCCEEDED, run.status_message
    assert run.exit_code == 0
    assert run.number == 1
    assert run.definition["command"] == job.command
    assert run.started_at is not None
    assert run.ended_at is not None
    assert run.deadline_at == run.started_at + timedelta(seconds=600)
    [attempt] = attempts_of(run)
    assert attempt.end_reason == END.EXITED
    assert attempt.exit_code == 0
    assert attempt.finished_at is not None
    assert attempt.started_at is not None
    assert attempt.finished_at >= attempt.started_at
    assert not placement_of(attempt).active
    assert no_outputs == [(run.pk, attempt.pk)]
    deadline = time.monotonic() + 10
    while "hello from the job" not in log_lines(run) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "hello from the job" in log_lines(run)
    assert "LATTICE_JOB=train" in log_lines(run)
    statuses = [m["status"] for m in runs_published(run)]
    assert statuses[0] == RS.QUEUED
    assert RS.RUNNING in statuses
    assert statuses[-1] == RS.SUCCEEDED


def runs_published(run: Run) -> list[dict]:
    from apps.core.stream import stream_after

    return [m for m in stream_after(run.stream, 0) if m.get("type") == "run"]


def test_a_non_zero_exit_fails_the_run_and_is_not_tried_again(
    acme, alice, process_host, no_outputs
):
    job = make_job(acme, alice, "echo about to fail; exit 3", max_attempts=3)
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.FAILED, RS.SUCCEEDED)

    assert run.status == RS.FAILED
    assert run.exit_code == 3
    assert run.status_message == "The command exited with status 3."
    [attempt] = attempts_of(run)
    assert attempt.end_reason == END.EXITED
    assert attempt.exit_code == 3
    # Nothing to collect from a failed command.
    assert no_outputs == []
    # Still there after the tick: no retry for an exit.
    runs.runs_tick()
    assert len(attempts_of(run)) == 1


def test_a_lost_attempt_is_tried_again_until_max_attempts_then_the_run_is_lost(
    acme, alice, process_host, no_outputs
):
    job = make_job(acme, alice, "sleep 60", max_attempts=2)
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING)
    [first] = attempts_of(run)

    # The machines reconciler freed its placement as lost (its host went silent, say).
    placement_free(placement=placement_of(first), reason="lost")
    counts = runs.runs_tick()
    assert counts["lost"] == 1
    run = wait_for(run, RS.RUNNING)
    first, second = attempts_of(run)
    assert first.end_reason == END.LOST
    assert second.number == 2
    assert second.status == Attempt.Status.RUNNING
    assert second.workload != first.workload

    placement_free(placement=placement_of(second), reason="lost")
    runs.runs_tick()
    run = wait_for(run, RS.LOST)
    assert run.status_message == "Lost: its machine lost it; no attempts left."
    assert len(attempts_of(run)) == 2


def test_cancel_stops_the_process_and_the_run_ends_cancelled(acme, alice, process_host, no_outputs):
    job = make_job(acme, alice, "echo started; sleep 60")
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING)
    [attempt] = attempts_of(run)
    pid = attempt.runtime_state["pid"]

    runs.run_cancel(run, actor=alice)
    run = wait_for(run, RS.CANCELLED)
    assert run.cancelled_by == alice
    assert run.status_message == f"Cancelled by {alice.email}."
    [attempt] = attempts_of(run)
    assert attempt.end_reason == END.CANCELLED
    assert not placement_of(attempt).active
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(runs.JobConflictError):
        runs.run_cancel(run, actor=alice)


def test_a_queued_run_is_cancelled_at_once(acme, alice, process_host, no_outputs):
    job = make_job(acme, alice, "sleep 60", concurrency=1)
    first = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    second = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    second.refresh_from_db()
    assert second.status == RS.QUEUED
    runs.run_cancel(second, actor=alice)
    second.refresh_from_db()
    assert second.status == RS.CANCELLED
    assert attempts_of(second) == []
    runs.run_cancel(first, actor=alice)
    wait_for(first, RS.CANCELLED)


def test_concurrency_one_keeps_the_second_run_queued_until_the_first_ends(
    acme, alice, process_host, no_outputs
):
    job = make_job(acme, alice, "sleep 2", concurrency=1)
    first = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    second = runs.run_create(job, trigger=Run.Trigger.API, actor=alice)
    second.refresh_from_db()
    assert second.status == RS.QUEUED
    assert second.status_message == "Waiting for run 1 of this job."
    assert attempts_of(second) == []
    assert wait_for(first, RS.RUNNING, RS.SUCCEEDED)

    wait_for(first, RS.SUCCEEDED)
    second = wait_for(second, RS.SUCCEEDED, seconds=30)
    started = attempts_of(second)[0].started_at
    assert started is not None
    assert first.ended_at is not None
    assert started >= first.ended_at


def test_the_deadline_stops_the_run_with_sigterm_and_it_ends_timed_out(
    acme, alice, process_host, no_outputs
):
    job = make_job(acme, alice, "sleep 60", grace_seconds=3, timeout_seconds=600)
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING)
    Run.objects.for_team(acme).filter(pk=run.pk).update(
        deadline_at=timezone.now() - timedelta(seconds=1)
    )
    assert runs.runs_tick()["timed_out"] == 1
    run = wait_for(run, RS.TIMED_OUT)
    assert run.status_message == "Timed out: it ran longer than 600 s."
    [attempt] = attempts_of(run)
    assert attempt.end_reason == END.TIMED_OUT


def test_an_exit_is_recorded_after_the_agent_restarted_and_the_reconciler_keeps_it(
    acme, alice, process_host, monkeypatch
):
    # The outputs are being saved (apps.jobs.outputs, another helper's: stubbed): the
    # exited process's workload is kept, with its placement, until they are.
    from apps.jobs import outputs

    monkeypatch.setattr(outputs, "outputs_collect", lambda _run, _attempt: True)
    job = make_job(acme, alice, "sleep 1; exit 0")
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING)
    [attempt] = attempts_of(run)
    # The agent restarts: its watcher is gone, and nobody is told of the exit.
    agent._unwatch(attempt.workload)
    time.sleep(2.5)
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.RUNNING

    # Its next report finds the exited workload and tells it, with its status.
    agent_report(process_host.name)
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.EXITED
    assert attempt.exit_code == 0
    run = wait_for(run, RS.RUNNING)
    assert run.status_message == "Saving outputs."
    process_host.refresh_from_db()
    [reported] = [w for w in process_host.reported_workloads if w["name"] == attempt.workload]
    assert reported["exited"] is True
    assert reported["exit_code"] == 0
    # The reconciler neither loses it nor removes it as an orphan, report after report.
    for _ in range(3):
        agent_report(process_host.name)
        assert reconcile()["lost"] == 0
    placement = placement_of(attempt)
    assert placement.active
    assert [m.name for m in agent.host_runtime().list_managed()] == [attempt.workload]

    runs.run_outputs_done(run.pk, ok=True, message="")
    run.refresh_from_db()
    assert run.status == RS.SUCCEEDED
    assert run.outputs_state == Run.Outputs.SAVED
    placement.refresh_from_db()
    assert not placement.active


def test_each_attempt_is_billed_for_its_own_seconds(acme, alice, process_host, no_outputs):
    job = make_job(acme, alice, "sleep 60", max_attempts=2)
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run = wait_for(run, RS.RUNNING)
    time.sleep(1.2)
    [first] = attempts_of(run)
    placement_free(placement=placement_of(first), reason="lost")
    runs.runs_tick()
    run = wait_for(run, RS.RUNNING)
    time.sleep(1.2)
    runs.run_cancel(run, actor=alice)
    run = wait_for(run, RS.CANCELLED)

    first, second = attempts_of(run)
    start = timezone.now() - timedelta(hours=1)
    pieces = [p for p in usage_pieces(acme, start, timezone.now()) if p.kind == JOB]
    assert sorted(p.source_id for p in pieces) == [first.pk, second.pk]
    ordered = sorted(pieces, key=lambda p: p.source_id)
    for piece, attempt in zip(ordered, (first, second), strict=True):
        assert piece.label == "Train"
        assert piece.member == alice.email
        assert attempt.finished_at is not None
        assert attempt.started_at is not None
        billed = attempt.finished_at.replace(microsecond=0) - attempt.started_at.replace(
            microsecond=0
        )
        assert piece.seconds == int(billed.total_seconds())
        assert piece.seconds >= 1


def test_the_team_secrets_a_job_names_reach_its_environment(
    acme, alice, globex, charlie, process_host, no_outputs
):
    from apps.core.audit import AuditEntry
    from apps.teams.secrets import secret_set

    secret_set(team=acme, actor=alice, name="API_TOKEN", value="s3cret-value-for-acme")
    secret_set(team=globex, actor=charlie, name="GLOBEX_ONLY", value="not-for-acme")
    command = 'test "$API_TOKEN" = "s3cret-value-for-acme" && echo the token is there'
    job = make_job(acme, alice, command, secrets=["API_TOKEN"], env={"PLAIN": "1"})
    run = wait_for(
        runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice), RS.SUCCEEDED, RS.FAILED
    )
    assert run.status == RS.SUCCEEDED, run.status_message
    used = AuditEntry.objects.for_team(acme).filter(action="secret.used").get()
    assert used.target == f"job Train run {run.number}"

    # A name only another team has is not this team's: the run fails, saying which.
    other = make_job(acme, alice, "true", name="Other", slug="other", secrets=["GLOBEX_ONLY"])
    run = wait_for(
        runs.run_create(other, trigger=Run.Trigger.MANUAL, actor=alice), RS.FAILED, RS.SUCCEEDED
    )
    assert run.status == RS.FAILED
    assert run.status_message.startswith("It could not start:")
    assert "GLOBEX_ONLY" in run.status_message
    [attempt] = attempts_of(run)
    assert attempt.end_reason == END.FAILED
    assert not placement_of(attempt).active


def test_a_notebook_source_runs_on_a_snapshot_of_the_notebooks_files(
    acme, alice, process_host, no_outputs, settings
):
    from tests.notebook_fixtures import make_notebook

    notebook = make_notebook(acme, alice, "Churn")
    # The notebook's volume on this host (the process runtime's folder of it).
    files = settings.LATTICE_RUNTIME_DIR / "volumes"
    (files / notebook.volume).mkdir(parents=True)
    (files / notebook.volume / "train.sh").write_text("echo training from the notebook\n")
    job = make_job(acme, alice, "sh train.sh", source="notebook", notebook=notebook)
    run = wait_for(
        runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice), RS.SUCCEEDED, RS.FAILED
    )
    assert run.status == RS.SUCCEEDED, run.status_message
    deadline = time.monotonic() + 10
    while "training from the notebook" not in log_lines(run) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "training from the notebook" in log_lines(run)


def test_a_start_the_plan_refuses_fails_the_run_with_its_reason(
    acme, alice, process_host, no_outputs
):
    from apps.core.errors import PaymentRequiredError
    from apps.notebooks.entitlements import check_start

    def refuse(_team, _machine_type):
        raise PaymentRequiredError("Your plan's spend cap is reached.")

    job = make_job(acme, alice, "true")
    with check_start.override(refuse):
        run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    run.refresh_from_db()
    assert run.status == RS.FAILED
    assert run.status_message == "It could not start: Your plan's spend cap is reached."
    assert attempts_of(run) == []


def test_a_start_lost_with_the_agent_is_sent_again_then_given_up(
    acme, alice, process_host, no_outputs, monkeypatch
):
    sent = []

    class LostOnTheWay:
        @staticmethod
        def apply_async(**kwargs):
            sent.append(kwargs)

    job = make_job(acme, alice, "echo at last")
    with monkeypatch.context() as patch:
        patch.setattr(runs, "agent_start", LostOnTheWay)
        run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    assert len(sent) == 1
    [attempt] = attempts_of(run)
    assert attempt.status == Attempt.Status.STARTING
    # Not yet: the agent may still be pulling the image.
    assert runs.runs_tick()["sent_again"] == 0
    long_ago = timezone.now() - runs.START_AGAIN_AFTER - timedelta(seconds=1)
    Attempt.objects.for_team(acme).filter(pk=attempt.pk).update(progressed_at=long_ago)
    assert runs.runs_tick()["sent_again"] == 1
    run = wait_for(run, RS.SUCCEEDED, RS.FAILED)
    assert run.status == RS.SUCCEEDED
    assert attempts_of(run)[0].start_attempts == 2

    # A start never heard of after every try: the run fails, saying so.
    with monkeypatch.context() as patch:
        patch.setattr(runs, "agent_start", LostOnTheWay)
        run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
        [attempt] = attempts_of(run)
        for _ in range(runs.START_TRIES):
            Attempt.objects.for_team(acme).filter(pk=attempt.pk).update(progressed_at=long_ago)
            runs.runs_tick()
    run.refresh_from_db()
    assert run.status == RS.FAILED
    assert run.status_message == "It could not start: Its machine did not start it (3 tries)."
    assert not placement_of(attempts_of(run)[0]).active


def test_the_deadline_spares_a_run_whose_outputs_are_being_saved(
    acme, alice, process_host, monkeypatch
):
    # apps.jobs.outputs (another helper's) stubbed: its saves are under way.
    from apps.jobs import outputs

    monkeypatch.setattr(outputs, "outputs_collect", lambda _run, _attempt: True)
    job = make_job(acme, alice, "exit 0")
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    deadline = time.monotonic() + 30
    while attempts_of(run)[0].status != Attempt.Status.EXITED and time.monotonic() < deadline:
        time.sleep(0.2)
    Run.objects.for_team(acme).filter(pk=run.pk).update(
        deadline_at=timezone.now() - timedelta(seconds=1)
    )
    assert runs.runs_tick()["timed_out"] == 0
    runs.run_outputs_done(run.pk, ok=False, message="the folder could not be read")
    run.refresh_from_db()
    assert run.status == RS.FAILED
    assert run.outputs_state == Run.Outputs.FAILED
    assert run.status_message == "The outputs could not be saved: the folder could not be read"


def test_the_queued_runs_of_a_deleted_job_are_cancelled(acme, alice, process_host, no_outputs):
    job = make_job(acme, alice, "sleep 60", concurrency=1)
    first = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    second = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
    job.deleted_at = timezone.now()
    job.save(update_fields=["deleted_at"])
    runs.run_cancel(first, actor=alice)
    wait_for(first, RS.CANCELLED)
    second = wait_for(second, RS.CANCELLED)
    assert second.status_message == "Cancelled: the job was deleted."
    assert attempts_of(second) == []


def test_the_commit_a_git_run_fetched_is_recorded_and_shown(
    acme, alice, process_host, no_outputs, tmp_path
):
    from django.test import Client
    from rest_framework.test import APIClient

    from apps.teams.secrets import secret_set
    from tests.jobs.gitserver import git, git_server

    served = tmp_path / "srv"
    served.mkdir()
    git(served, "init", "-q", "--bare", "-b", "main", "project.git")
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "run.sh").write_text("echo from the repository\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "one")
    sha = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", str(served / "project.git"), "main")
    secret_set(team=acme, actor=alice, name="REPO_TOKEN", value="commit-test-token")
    with git_server(served, address="127.0.0.1", token="commit-test-token") as server:
        job = make_job(
            acme,
            alice,
            "sh run.sh",
            source="git",
            git_url=server.url("project.git"),
            git_ref="main",
            git_secret="REPO_TOKEN",
        )
        run = wait_for(
            runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice), RS.SUCCEEDED, RS.FAILED
        )
    assert run.status == RS.SUCCEEDED, (run.status_message, log_lines(run))
    said_in_log(run, f"lattice: commit {sha}")
    run.refresh_from_db()
    assert run.git_commit == sha

    api = APIClient()
    api.force_login(alice)
    body = api.get(f"/api/v1/teams/acme/jobs/{job.pk}/runs/{run.number}/").json()
    assert body["git_commit"] == sha
    page = Client()
    page.force_login(alice)
    assert sha in page.get(f"/t/acme/jobs/{job.pk}/runs/{run.number}/").content.decode()

    # Only a full commit id, only from the host the attempt is on, the first one said.
    [attempt] = attempts_of(run)
    Run.objects.for_team(acme).filter(pk=run.pk).update(git_commit="")
    other = "b" * 40
    runs.workload_lines("elsewhere", attempt.workload, [f"lattice: commit {other}"])
    runs.workload_lines("local", attempt.workload, ["lattice: commit abc123", "commit " + other])
    run.refresh_from_db()
    assert run.git_commit == ""
    runs.workload_lines("local", attempt.workload, [f"lattice: commit {other}"])
    runs.workload_lines("local", attempt.workload, [f"lattice: commit {'c' * 40}"])
    run.refresh_from_db()
    assert run.git_commit == other
    # A run of no Git source has no commit, whatever its command prints.
    plain = make_job(acme, alice, f"echo lattice: commit {other}", name="Plain", slug="plain")
    plain_run = wait_for(
        runs.run_create(plain, trigger=Run.Trigger.MANUAL, actor=alice), RS.SUCCEEDED, RS.FAILED
    )
    said_in_log(plain_run, f"lattice: commit {other}")
    plain_run.refresh_from_db()
    assert plain_run.git_commit == ""


def said_in_log(run: Run, line: str) -> None:
    deadline = time.monotonic() + 10
    while line not in log_lines(run) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert line in log_lines(run)
