"""Shared pieces of the jobs API, pages and schedule tests: a job made by the service, and
the engine's two entry points (apps.jobs.runs.run_create / run_cancel) replaced by their
contract's bookkeeping where a test is about the API side only, not the run itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Max
from django.utils import timezone

from apps.jobs import runs, services
from apps.jobs.models import Job, Run

if TYPE_CHECKING:
    import pytest


def make_job(team: Any, actor: Any, name: str = "Nightly", **fields: Any) -> Job:
    """A command job on cpu-small (the ``catalogue`` fixture seeds it), made by the service."""
    wanted: dict[str, Any] = {
        "command": "echo hello",
        "machine_type": "cpu-small",
        "template": "scipy",
        **fields,
    }
    return services.job_create(team=team, actor=actor, name=name, **wanted)


def _run_create(
    job: Job,
    *,
    trigger: str,
    actor: Any,
    definition: dict[str, Any] | None = None,
    rerun_of: Run | None = None,
) -> Run:
    last = Run.objects.for_team(job.team_id).filter(job=job).aggregate(n=Max("number"))["n"]
    return Run.objects.for_team(job.team_id).create(
        team_id=job.team_id,
        job=job,
        number=(last or 0) + 1,
        trigger=trigger,
        triggered_by=actor,
        rerun_of=rerun_of,
        definition=definition if definition is not None else services.job_definition(job),
    )


def _run_cancel(run: Run, *, actor: Any) -> Run:
    run.cancel_requested_at = timezone.now()
    run.cancelled_by = actor
    run.status = Run.Status.CANCELLED
    run.ended_at = timezone.now()
    run.save()
    return run


def stub_engine(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The engine's run_create / run_cancel as their contract's bookkeeping (a queued run
    numbered per job; a cancel that ends it): these tests are about the API side, the
    engine's own tests (tests/jobs/test_runs.py) run real runs. Returns the calls made."""
    calls: list[tuple[str, Any]] = []

    def create(job: Job, **kwargs: Any) -> Run:
        run = _run_create(job, **kwargs)
        calls.append(("create", run))
        return run

    def cancel(run: Run, **kwargs: Any) -> Run:
        calls.append(("cancel", run))
        return _run_cancel(run, **kwargs)

    monkeypatch.setattr(runs, "run_create", create)
    monkeypatch.setattr(runs, "run_cancel", cancel)
    return calls
