"""Celery tasks for datasets: the housekeeping (apps.datasets.upkeep), from beat."""

from __future__ import annotations

from celery import shared_task

from apps.datasets import upkeep


@shared_task(name="datasets.upkeep", soft_time_limit=1800, time_limit=1900)
def upkeep_task() -> dict[str, int]:
    return {"abandoned": upkeep.uploads_abandon(), "blobs_deleted": upkeep.blobs_collect()}
