"""Celery tasks for models: the housekeeping of host saves, from beat."""

from __future__ import annotations

from celery import shared_task

from apps.models.services.saves import saves_expire


@shared_task(name="models.upkeep")
def upkeep_task() -> dict[str, int]:
    return {"saves_failed": saves_expire()}
