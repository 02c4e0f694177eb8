"""Shared pieces of the jobs services, API, pages and schedule tests: a job made by the
service, and the engine's two entry points (apps.jobs.runs.run_create / run_cancel) with
their calls recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.jobs import runs, services

if TYPE_CHECKING:
    import pytest

    from apps.jobs.models import Job, Run


def make_job(team: Any, actor: Any, name: str = "Nightly", **fields: Any) -> Job:
    """A command job on cpu-small (the ``catalogue`` fixture seeds it), made by the service."""
    wanted: dict[str, Any] = {
        "command": "echo hello",
        "machine_type": "cpu-small",
        "template": "scipy",
        **fields,
    }
    return services.job_create(team=team, actor=actor, name=name, **wanted)


def spy_engine(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The engine's real run_create / run_cancel (apps.jobs.runs), each call recorded: the
    list returned says which were called, in order, with the run. (Work they queue on commit
    does not run in a test's transaction: no run is started on a host here.)"""
    calls: list[tuple[str, Any]] = []
    create, cancel = runs.run_create, runs.run_cancel

    def recorded_create(job: Job, **kwargs: Any) -> Run:
        run = create(job, **kwargs)
        calls.append(("create", run))
        return run

    def recorded_cancel(run: Run, **kwargs: Any) -> Run:
        calls.append(("cancel", run))
        return cancel(run, **kwargs)

    monkeypatch.setattr(runs, "run_create", recorded_create)
    monkeypatch.setattr(runs, "run_cancel", recorded_cancel)
    return calls
