"""Reads of jobs and runs that the API, the pages and the consumer share, scoped here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from apps.jobs.costs import run_costs
from apps.jobs.models import Attempt, Job, Run

if TYPE_CHECKING:
    from collections.abc import Sequence
    from decimal import Decimal

    from django.db.models import QuerySet

    from apps.teams.models import Team


def open_attempts(team: Team | int) -> QuerySet[Attempt]:
    """The team's attempts that have not ended: each holds (or waits for) a machine, as a
    notebook session does (billing counts them against the plan's running limit)."""
    return Attempt.objects.for_team(team).filter(ended_at__isnull=True)


def live_jobs(team: Team) -> QuerySet[Job]:
    """The team's jobs (not deleted), each with ``last_run_id`` (None if it never ran)."""
    last = Run.objects.for_team(team).filter(job=OuterRef("pk")).order_by("-number")
    return (
        Job.objects.for_team(team)
        .filter(deleted_at__isnull=True)
        .select_related("machine_type", "created_by")
        .annotate(last_run_id=Subquery(last.values("pk")[:1]))
    )


def job_of(team: Team, job_id: object) -> Job | None:
    """The team's live job ``job_id``, or None (another team's reads as missing)."""
    try:
        pk = int(str(job_id))
    except ValueError:
        return None
    return live_jobs(team).filter(pk=pk).first()


def last_runs(team: Team, jobs: Sequence[Job]) -> dict[int, Run]:
    """The latest run of each of ``jobs`` (from ``live_jobs``), by job id."""
    wanted = [getattr(j, "last_run_id", None) for j in jobs]
    found = Run.objects.for_team(team).filter(pk__in=[pk for pk in wanted if pk])
    return {r.job_id: r for r in found}


def job_runs(team: Team, job: Job) -> QuerySet[Run]:
    """A job's runs, newest first."""
    return (
        Run.objects.for_team(team)
        .filter(job=job)
        .select_related("triggered_by", "rerun_of")
        .order_by("-number")
    )


def run_of(team: Team, job: Job, number: object) -> Run | None:
    """Run ``number`` of ``job``, or None."""
    try:
        wanted = int(str(number))
    except ValueError:
        return None
    return (
        job_runs(team, job)
        .select_related("job", "dataset_version__dataset", "model_version__model")
        .filter(number=wanted)
        .first()
    )


def run_by_id(team: Team, run_id: int) -> Run | None:
    """The team's run ``run_id`` (its job not deleted), or None."""
    return (
        Run.objects.for_team(team)
        .select_related("job")
        .filter(pk=run_id, job__deleted_at__isnull=True)
        .first()
    )


def run_attempts(team: Team, run: Run) -> list[Attempt]:
    return list(
        Attempt.objects.for_team(team)
        .filter(run=run)
        .select_related("machine_type", "host")
        .order_by("number")
    )


def run_duration(run: Run) -> int | None:
    """Seconds from its first start to its end (or now while open); None before a start."""
    if run.started_at is None:
        return None
    end = run.ended_at or timezone.now()
    return max(0, int((end - run.started_at).total_seconds()))


def costs_of(runs: Sequence[Run]) -> dict[int, Decimal] | None:
    """What each run has cost so far, by run id; None where nothing is charged."""
    return run_costs(runs)


def run_status(run: Run) -> dict[str, Any]:
    """A run's status as its page shows it live: the websocket's hello. The engine's status
    messages on the run's stream (apps.jobs.runs.run_published) carry the same keys."""
    attempt = Attempt.objects.for_team(run.team_id).filter(run=run).order_by("-number").first()
    return {
        "type": "status",
        "run": run.pk,
        "number": run.number,
        "status": run.status,
        "label": run.get_status_display(),
        "message": run.status_message,
        "exit_code": run.exit_code,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "outputs_state": run.outputs_state,
        "attempt": attempt.number if attempt is not None else None,
        "attempt_status": attempt.status if attempt is not None else None,
    }
