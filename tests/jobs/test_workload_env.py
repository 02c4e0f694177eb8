"""A job run's SDK environment: each attempt's process gets LATTICE_URL, LATTICE_TOKEN and
LATTICE_TEAM; the token acts as whoever started the run (a scheduled run: the job's creator)
in its team only, expires at the run's deadline and stops working when the attempt ends.

On the process runtime, with Celery eager and the real agent: the command writes what it
got to a file, and the test, playing the host that read it, sends it to the API."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from apps.accounts.models import PersonalAccessToken
from apps.jobs import runs
from apps.jobs.models import Run
from tests.helpers import bearer
from tests.jobs.engine_fixtures import attempts_of, make_job, wait_for

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db(transaction=True)

RS = Run.Status


def written(path: Path, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"{path} was not written")


def env_command(path: Path, then: str = "true") -> str:
    return f'printf "%s %s %s\\n" "$LATTICE_URL" "$LATTICE_TEAM" "$LATTICE_TOKEN" > {path}; {then}'


def test_a_running_attempt_acts_as_its_starter_in_its_team_until_cancelled(
    acme, globex, alice, bob, process_host, no_outputs, settings, tmp_path
):
    settings.LATTICE_WORKLOAD_API_URL = "http://lattice.internal:8000"
    got = tmp_path / "env.txt"
    job = make_job(acme, alice, env_command(got, "sleep 60"))
    run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=bob)
    run = wait_for(run, RS.RUNNING)

    url, team, token = written(got).split()
    assert (url, team) == ("http://lattice.internal:8000", "acme")
    api = bearer(token)
    assert api.get("/api/v1/me").json()["email"] == bob.email
    mine = api.get(f"/api/v1/teams/acme/jobs/{job.pk}/runs/{run.number}/")
    assert mine.status_code == 200
    assert mine.json()["status"] == RS.RUNNING
    assert api.get("/api/v1/teams/globex/jobs/").status_code == 404
    assert api.get("/api/v1/teams/acme/billing/").status_code == 403

    runs.run_cancel(run, actor=alice)
    wait_for(run, RS.CANCELLED)

    assert api.get("/api/v1/me").status_code == 401
    [attempt] = attempts_of(run)
    assert PersonalAccessToken.objects.get(workload=attempt.workload).revoked_at is not None


def test_its_token_expires_at_the_runs_deadline_and_ends_with_the_run(
    acme, alice, process_host, no_outputs, tmp_path
):
    got = tmp_path / "env.txt"
    job = make_job(acme, alice, env_command(got), timeout_seconds=900)
    run = wait_for(
        runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice), RS.SUCCEEDED, RS.FAILED
    )

    assert run.status == RS.SUCCEEDED, run.status_message
    [attempt] = attempts_of(run)
    token = PersonalAccessToken.objects.get(workload=attempt.workload)
    assert run.deadline_at is not None
    assert token.expires_at == run.deadline_at
    assert token.revoked_at is not None
    assert bearer(written(got).split()[2]).get("/api/v1/me").status_code == 401


def test_a_scheduled_run_acts_as_the_jobs_creator(acme, alice, process_host, no_outputs, tmp_path):
    got = tmp_path / "env.txt"
    job = make_job(acme, alice, env_command(got))

    run = wait_for(
        runs.run_create(job, trigger=Run.Trigger.SCHEDULE, actor=None), RS.SUCCEEDED, RS.FAILED
    )

    assert run.status == RS.SUCCEEDED, run.status_message
    [attempt] = attempts_of(run)
    assert PersonalAccessToken.objects.get(workload=attempt.workload).user == alice


def test_a_run_nobody_can_act_for_gets_no_token(
    acme, alice, bob, process_host, no_outputs, tmp_path
):
    from apps.teams.models import Membership

    got = tmp_path / "env.txt"
    job = make_job(acme, bob, env_command(got))
    Membership.objects.for_team(acme).filter(user=bob).delete()  # its creator left

    run = wait_for(
        runs.run_create(job, trigger=Run.Trigger.SCHEDULE, actor=None), RS.SUCCEEDED, RS.FAILED
    )

    assert run.status == RS.SUCCEEDED, run.status_message
    assert written(got).split() == []
    assert not PersonalAccessToken.objects.exclude(workload="").exists()


def test_a_start_sent_again_is_the_same_workload_despite_its_new_token(
    acme, alice, process_host, no_outputs, tmp_path
):
    """Each dispatch makes a new workload token; the spec's fingerprint, by which the host
    keeps a running container for a start sent again (a lost "started", sent again by the
    jobs tick), ignores it. It did not: the attempt's container was replaced, the job run
    from its start again."""
    from apps.core.tenancy import team_scope
    from apps.jobs import spec

    got = tmp_path / "env.txt"
    job = make_job(acme, alice, env_command(got, "sleep 60"))
    run = wait_for(runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice), RS.RUNNING)
    [attempt] = attempts_of(run)

    with team_scope(acme.pk):
        first, _ = spec.attempt_spec(attempt)
        again, _ = spec.attempt_spec(attempt)
    assert first.env["LATTICE_TOKEN"] != again.env["LATTICE_TOKEN"]
    assert first.fingerprint() == again.fingerprint()
    changed = type(again)(**{**again.__dict__, "env": {**again.env, "LATTICE_TEAM": "x"}})
    assert changed.fingerprint() != first.fingerprint()
    runs.run_cancel(run, actor=alice)
    wait_for(run, RS.CANCELLED)
