"""The jobs' beat tasks: thin, the work is in runs, schedules and upkeep."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="jobs.tick", soft_time_limit=60, time_limit=90)
def jobs_tick() -> dict[str, int]:
    from apps.jobs.runs import runs_tick

    return runs_tick()


@shared_task(name="jobs.upkeep", soft_time_limit=300, time_limit=360)
def jobs_upkeep() -> dict[str, int]:
    """Hourly: the runs' kept files past their time go (apps.jobs.outputs.files_expire)."""
    from apps.jobs.outputs import files_expire

    return {"files_expired": files_expire()}
