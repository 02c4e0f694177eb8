"""Cron schedules of jobs: the beat's "jobs.schedules" pass.

``schedules_tick(now=None) -> dict``: every job with a schedule that is due since
``schedule_last_at`` (a cron expression django-celery-beat accepts, read with celery's
crontab in the job's time zone) gets a run (trigger "schedule"), or, when a run of it is
still open, a skip (audited "job.schedule_skipped", shown on its page); each due time is
acted on once, whoever else runs the tick: the job's row is locked while it is decided and
``schedule_last_at`` moves past the due time in the same transaction. Due times missed while
the beat was down are not made up one by one: the latest is acted on once; those that
passed while the schedule was paused are not owed (resuming moves ``schedule_last_at``).

A run the services refuse (the plan, a secret deleted since) is audited
("job.schedule_refused", with the reason) and the due time is spent all the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast
from zoneinfo import ZoneInfo

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from apps.core.audit import audit_record
from apps.core.errors import ServiceError
from apps.core.tenancy import team_scope
from apps.jobs.models import OPEN_RUN_STATUSES, Job, Run
from apps.jobs.services import job_run, schedule_crontab

if TYPE_CHECKING:
    from datetime import datetime, tzinfo

logger = logging.getLogger(__name__)

# A job's due times looked at in one pass at most (a schedule of every minute missed for
# a long outage is caught up by jumping, not by walking each minute).
_MAX_STEPS = 2000


def next_due(schedule: str, zone: str, after: datetime) -> datetime:
    """The first time ``schedule`` (in time zone ``zone``) is due after ``after``, in UTC."""
    tz: tzinfo = ZoneInfo(zone)
    last_run_at, delta, _now = schedule_crontab(schedule).remaining_delta(after, tz=tz)
    due = cast("datetime", last_run_at + delta)
    return due.astimezone(ZoneInfo("UTC"))


def latest_due(schedule: str, zone: str, after: datetime, now: datetime) -> datetime | None:
    """The latest due time in (after, now], or None when none has come."""
    found = None
    due = next_due(schedule, zone, after)
    steps = 0
    while due <= now and steps < _MAX_STEPS:
        found = due
        due = next_due(schedule, zone, due)
        steps += 1
    if steps == _MAX_STEPS and due <= now:
        # Far behind: the due times in between are not owed one by one; now stands for them.
        found = now
    return found


def schedules_tick(now: datetime | None = None) -> dict[str, int]:
    """Act on every due schedule once: a run, or a skip while a run is open."""
    now = now or timezone.now()
    counts = {"started": 0, "skipped": 0, "refused": 0}
    # A beat sweep across teams, limited in the same expression to scheduled live jobs.
    scheduled = (
        Job.objects.unscoped()
        .filter(deleted_at__isnull=True, schedule_paused=False)
        .exclude(schedule="")
        .values_list("pk", flat=True)
    )
    for pk in list(scheduled):
        try:
            outcome = _job_tick(pk, now)
        except Exception:
            # One job's trouble never stops the others' schedules.
            logger.exception("schedule of job %s failed", pk)
            continue
        if outcome:
            counts[outcome] += 1
    return counts


@transaction.atomic
def _job_tick(pk: int, now: datetime) -> str | None:
    # Locked, skipping one another tick holds: that tick decides this due time.
    job = (
        Job.objects.unscoped()
        .select_for_update(skip_locked=True, of=("self",))
        .select_related("team")
        .filter(pk=pk, deleted_at__isnull=True, schedule_paused=False)
        .exclude(schedule="")
        .first()
    )
    if job is None:
        return None
    after = job.schedule_last_at or job.created_at
    due = latest_due(job.schedule, job.schedule_timezone, after, now)
    if due is None:
        return None
    job.schedule_last_at = due
    job.save(update_fields=["schedule_last_at"])
    team = job.team
    with team_scope(team):
        running = (
            Run.objects.for_team(team)
            .filter(job=job, status__in=OPEN_RUN_STATUSES)
            .order_by("number")
            .first()
        )
        if running is not None:
            audit_record(
                team=team,
                actor=None,
                action="job.schedule_skipped",
                target=job.name,
                run=running.number,
                due=due.isoformat(),
            )
            return "skipped"
        try:
            job_run(team=team, actor=None, job=job, trigger=Run.Trigger.SCHEDULE)
        except ServiceError as refusal:
            audit_record(
                team=team,
                actor=None,
                action="job.schedule_refused",
                target=job.name,
                reason=str(refusal),
                due=due.isoformat(),
            )
            return "refused"
    return "started"


@shared_task(name="jobs.schedules", soft_time_limit=60, time_limit=90)
def jobs_schedules() -> dict[str, int]:
    """The beat's pass over the jobs' cron schedules (every 30 s)."""
    return schedules_tick()
