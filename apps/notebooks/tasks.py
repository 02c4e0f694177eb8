"""Celery tasks for notebooks that beat runs: thin, idempotent, each calling into upkeep.

Nothing in this app imports this module. The task that places a session
(``notebooks.session_place``) is queued from the lifecycle itself, so it is defined there,
beside its step (apps.notebooks.lifecycle.start); it is named here so that the worker, which
imports every app's ``tasks``, registers it with the others.
"""

from __future__ import annotations

from celery import shared_task

from apps.notebooks import snapshots, upkeep
from apps.notebooks.lifecycle import session_place_task

__all__ = ["idle_sweep_task", "reconcile_task", "session_place_task", "snapshots_task"]


@shared_task(name="notebooks.reconcile", soft_time_limit=120, time_limit=180)
def reconcile_task() -> dict[str, int]:
    """Bring open sessions to a true state (beat, every LATTICE_RECONCILE_EVERY)."""
    return upkeep.reconcile_sessions()


@shared_task(name="notebooks.idle_sweep", soft_time_limit=120, time_limit=180)
def idle_sweep_task() -> dict[str, int]:
    """Warn about, then stop, notebooks idle past their timeout (beat, every minute)."""
    return upkeep.idle_sweep()


@shared_task(name="notebooks.snapshots", soft_time_limit=120, time_limit=180)
def snapshots_task() -> dict[str, int]:
    """Snapshots whose ticket died marked FAILED, then the scheduled snapshots of running
    notebooks begun (beat, every minute; LATTICE_SNAPSHOT_EVERY)."""
    return {
        "failed": snapshots.snapshots_dead_fail(),
        "begun": snapshots.snapshots_due(),
    }
