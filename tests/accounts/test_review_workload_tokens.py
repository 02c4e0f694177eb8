"""Review of issue 18's workload tokens (REVIEW18.md): each test proves one finding and is
expected to fail (xfail, strict) until it is fixed. Played as the untrusted host that read
LATTICE_TOKEN from a notebook container's environment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.workload import TOKEN_ENV, workload_env, workload_tokens_revoke
from apps.jobs.models import Job
from apps.teams.models import TeamSecret
from tests.helpers import bearer

pytestmark = pytest.mark.django_db

JOB = {
    "name": "Harmless",
    "command": "python train.py",
    "machine_type": "cpu-small",
    "template": "scipy",
}


def session_token(user, team, workload="nb-1-s1"):
    return workload_env(
        user=user,
        team=team,
        workload=workload,
        name="Notebook Train, session 1",
        expires_at=timezone.now() + timedelta(minutes=60),
    )[TOKEN_ENV]


@pytest.mark.xfail(
    strict=True,
    reason="R2: a workload token makes a scheduled job, whose runs get fresh tokens acting "
    "as the person long after the session (and its token) ended",
)
def test_a_workload_token_cannot_leave_a_schedule_behind(acme, alice, catalogue):
    api = bearer(session_token(alice, acme))

    made = api.post(
        f"/api/v1/teams/{acme.slug}/jobs/", {**JOB, "schedule": "*/5 * * * *"}, format="json"
    )
    workload_tokens_revoke(workloads=["nb-1-s1"])  # the session ends

    # Refused; or at least nothing left that keeps acting as alice every five minutes.
    assert made.status_code in (400, 403), made.json()
    assert not Job.objects.for_team(acme).exclude(schedule="").exists()


@pytest.mark.xfail(
    strict=True,
    reason="R3: a workload token (no secrets scope) names the team's secrets in a job it "
    "makes, so a run of its choosing receives their values",
)
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
