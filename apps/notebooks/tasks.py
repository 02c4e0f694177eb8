"""Celery tasks for notebooks: thin, idempotent, entering the team scope (team_task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import shared_task

from apps.notebooks import lifecycle, upkeep
from apps.notebooks.models import NotebookSession
from apps.teams.scope import team_task

if TYPE_CHECKING:
    from apps.teams.models import Team


@shared_task(name="notebooks.session_place", soft_time_limit=60, time_limit=90)
@team_task
def session_place_task(session_id: int, *, team: Team) -> None:
    """Find room for a queued session and send it to its host."""
    session = (
        NotebookSession.objects.select_related("notebook", "machine_type")
        .filter(pk=session_id)
        .first()
    )
    if session is not None:
        lifecycle.session_place(session)


@shared_task(name="notebooks.reconcile", soft_time_limit=120, time_limit=180)
def reconcile_task() -> dict[str, int]:
    """Bring open sessions to a true state (beat, every LATTICE_RECONCILE_EVERY)."""
    return upkeep.reconcile_sessions()


@shared_task(name="notebooks.idle_sweep", soft_time_limit=120, time_limit=180)
def idle_sweep_task() -> dict[str, int]:
    """Warn about, then stop, notebooks idle past their timeout (beat, every minute)."""
    return upkeep.idle_sweep()
