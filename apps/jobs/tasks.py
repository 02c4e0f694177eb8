"""The jobs' beat tasks: thin, the work is in runs, schedules and upkeep."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="jobs.tick", soft_time_limit=60, time_limit=90)
def jobs_tick() -> dict[str, int]:
    from apps.jobs.runs import runs_tick

    return runs_tick()
