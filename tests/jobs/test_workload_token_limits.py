"""What a workload token (a notebook's or a job's own, read off an untrusted host) may do with
jobs: read them and start runs of them as they are, never make, change or delete one, and a
run it starts gets a token that expires no later than it (REVIEW18 R2, R3). Played as the
host that read LATTICE_TOKEN from a notebook container's environment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import PersonalAccessToken
from apps.accounts.workload import TOKEN_ENV, workload_env, workload_tokens_revoke
from apps.jobs.api.views import WORKLOAD_REFUSAL
from apps.jobs.models import Attempt, Job, Run
from apps.jobs.spec import attempt_token_deadline
from apps.machines.models import MachineType
from apps.teams.models import TeamSecret
from tests.factories import PersonalAccessTokenFactory
from tests.helpers import bearer

pytestmark = pytest.mark.django_db

JOB = {
    "name": "Harmless",
    "command": "python train.py",
    "machine_type": "cpu-small",
    "template": "scipy",
}


def session_token(user, team, workload="nb-1-s1", minutes=60):
    return workload_env(
        user=user,
        team=team,
        workload=workload,
        name="Notebook Train, session 1",
        expires_at=timezone.now() + timedelta(minutes=minutes),
    )[TOKEN_ENV]


def test_a_workload_token_cannot_leave_a_schedule_behind(acme, alice, catalogue):
    api = bearer(session_token(alice, acme))

    made = api.post(
        f"/api/v1/teams/{acme.slug}/jobs/", {**JOB, "schedule": "*/5 * * * *"}, format="json"
    )
    workload_tokens_revoke(workloads=["nb-1-s1"])  # the session ends

    # Refused; or at least nothing left that keeps acting as alice every five minutes.
    assert made.status_code in (400, 403), made.json()
    assert not Job.objects.for_team(acme).exclude(schedule="").exists()


def test_a_workload_token_cannot_hand_team_secrets_to_a_job_it_makes(acme, alice, catalogue):
    TeamSecret.objects.for_team(acme).create(team=acme, name="PROD_DB_PASSWORD", sealed=b"x")
    api = bearer(session_token(alice, acme))

    made = api.post(
        f"/api/v1/teams/{acme.slug}/jobs/",
        {**JOB, "command": "echo $PROD_DB_PASSWORD | base64", "secret_names": ["PROD_DB_PASSWORD"]},
        format="json",
    )

    assert made.status_code in (400, 403), made.json()
    assert not Job.objects.for_team(acme).filter(secrets__contains=["PROD_DB_PASSWORD"]).exists()


def existing_job(team, user):
    return Job.objects.for_team(team).create(
        team=team,
        created_by=user,
        name="Train",
        slug="train",
        source=Job.Source.NONE,
        command="python train.py",
        machine_type=MachineType.objects.get(slug="cpu-small"),
        template="scipy",
        output=Job.Output.NONE,
    )


def test_a_workload_token_cannot_change_or_delete_a_job(acme, alice, catalogue):
    job = existing_job(acme, alice)
    api = bearer(session_token(alice, acme))
    one = f"/api/v1/teams/{acme.slug}/jobs/{job.pk}/"

    changed = api.patch(one, {"schedule": "*/5 * * * *"}, format="json")
    deleted = api.delete(one)

    assert changed.status_code == 403
    assert changed.json()["error"]["message"] == WORKLOAD_REFUSAL
    assert deleted.status_code == 403
    job.refresh_from_db()
    assert (job.schedule, job.deleted_at) == ("", None)
    # A person's own token still may.
    person = bearer_of_person(alice)
    assert person.patch(one, {"description": "x"}, format="json").status_code == 200


def bearer_of_person(user):
    return bearer(PersonalAccessTokenFactory.create(user=user).plaintext)


@pytest.mark.parametrize(
    "changes",
    [{"command": "env | base64"}, {"secret_names": ["PROD_DB_PASSWORD"]}, {"git_url": "x"}],
)
def test_a_workload_token_cannot_change_what_a_run_it_starts_does(acme, alice, catalogue, changes):
    job = existing_job(acme, alice)
    api = bearer(session_token(alice, acme))

    started = api.post(
        f"/api/v1/teams/{acme.slug}/jobs/{job.pk}/run/", {"changes": changes}, format="json"
    )

    assert started.status_code == 403, started.json()
    assert started.json()["error"]["message"].startswith(WORKLOAD_REFUSAL)
    assert not Run.objects.for_team(acme).exists()


def test_a_run_a_workload_token_starts_has_a_token_no_longer_lived(acme, alice, catalogue):
    job = existing_job(acme, alice)
    plaintext = session_token(alice, acme, minutes=10)
    api = bearer(plaintext)

    started = api.post(
        f"/api/v1/teams/{acme.slug}/jobs/{job.pk}/run/",
        {"changes": {"parameters": {"lr": "0.1"}}},
        format="json",
    )

    assert started.status_code == 202, started.json()
    run = Run.objects.for_team(acme).get(job=job)
    starting = PersonalAccessToken.objects.get(workload="nb-1-s1")
    assert run.token_not_after == starting.expires_at
    # The run's own token (made when an attempt is sent) expires with the starting one,
    # not at the run's deadline (600 s and more away).
    assert attempt_token_deadline(Attempt(run=run)) == starting.expires_at
