"""Stopping and ending a session, and what its notebook wants next.

``session_stop`` ends a session still waiting for room at once, and otherwise revokes its
workload token (apps.accounts.workload) and asks its host to stop it (``stop_on_host``);
the host's "stopped" (apps.notebooks.lifecycle.events) or the reconciler then ends it.
``session_end`` closes it once, with a reason and a time, revokes its workload token, frees
its placement and sets the notebook's status. Once that commits, the line for its machine type
moves on, and the notebook gets what it wants next: a deleted one loses its storage, and one
still wanted running (a Restart, or a Start while a stop was in flight) starts again
(apps.notebooks.lifecycle.start.notebook_start, as the person who last started it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.accounts.workload import workload_tokens_revoke
from apps.core.errors import ServiceError
from apps.core.tenancy import team_scope
from apps.machines.agent import agent_stop
from apps.machines.models import PlacementRequest
from apps.machines.queue import placement_free
from apps.notebooks.lifecycle.start import notebook_start, session_place_task
from apps.notebooks.lifecycle.status import session_set_status
from apps.notebooks.lifecycle.storage import on_commit_remove_storage
from apps.notebooks.models import Notebook, NotebookEvent, NotebookSession, Status
from apps.notebooks.selectors import open_session, open_session_ids
from apps.notebooks.snapshots import snapshot_for_stop

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)

_END_STATUS = {
    NotebookSession.ExitReason.FAILED: Status.FAILED,
    NotebookSession.ExitReason.LOST: Status.LOST,
    NotebookSession.ExitReason.EXITED: Status.FAILED,
}
_END_MESSAGES: dict[str, str] = {
    NotebookSession.ExitReason.IDLE: "Stopped after being idle. Your files are kept.",
    Status.LOST: "The notebook stopped unexpectedly (its machine lost it). Start it again; "
    "your files are kept.",
    Status.STOPPED: "Stopped. Your files are kept.",
}


def stop_on_host(session: NotebookSession, remove_volumes: list[str] | None = None) -> None:
    """Ask the session's host, once the transaction commits, to stop its workload (and
    remove ``remove_volumes`` with it), then to snapshot its volume when it holds the
    notebook's files (``snapshot=``: apps.notebooks.snapshots.snapshot_for_stop)."""
    if session.host is None:
        return
    host = session.host
    args = (host.name, session.workload, session.runtime_state or None, remove_volumes)
    snapshot = snapshot_for_stop(session, remove_volumes)
    if snapshot is None:
        transaction.on_commit(lambda: agent_stop.apply_async(args=args, queue=host.queue))
        return
    kwargs = {"snapshot": snapshot}
    transaction.on_commit(
        lambda: agent_stop.apply_async(args=args, kwargs=kwargs, queue=host.queue)
    )


def session_stop(session: NotebookSession, *, reason: str) -> None:
    """Stop an open session: at once if it was still waiting for room, else through its host."""
    if session.ended_at is not None:
        return
    if session.placement is None:
        PlacementRequest.objects.filter(
            workload=session.workload,
            status=PlacementRequest.Status.WAITING,
        ).update(status=PlacementRequest.Status.CANCELLED)
        session_end(
            session,
            reason=NotebookSession.ExitReason.CANCELLED
            if reason == NotebookSession.ExitReason.STOPPED
            else reason,
        )
        return
    session.exit_reason = reason
    session.save(update_fields=["exit_reason"])
    # Asked to stop: what runs in it acts no more from now, not from when its host confirms.
    workload_tokens_revoke(workloads=[session.workload])
    session_set_status(session, Status.STOPPING, "Stopping; your files are kept.", phase="stopping")
    notebook = session.notebook
    remove = [notebook.volume] if reason == NotebookSession.ExitReason.DELETED else None
    stop_on_host(session, remove)


def session_end(
    session: NotebookSession,
    *,
    reason: str,
    at: datetime | None = None,
    message: str = "",
) -> None:
    """Close the session (once): revoke its workload token, free its placement, set the
    notebook's status, act on what the notebook wants next."""
    if session.ended_at is not None:
        return
    ended = at or timezone.now()
    # Never before it started: billing reads ended_at - started_at.
    session.ended_at = max(ended, session.started_at) if session.started_at else ended
    session.exit_reason = reason
    session.save(update_fields=["ended_at", "exit_reason"])
    workload_tokens_revoke(workloads=[session.workload])
    if session.placement is not None and session.placement.active:
        placement_free(placement=session.placement, reason="released", at=session.ended_at)
    status = _END_STATUS.get(NotebookSession.ExitReason(reason), Status.STOPPED)
    if not message:
        message = _END_MESSAGES.get(reason) or _END_MESSAGES.get(status, "")
    notebook = session.notebook
    if status != Status.STOPPED and notebook.desired_state != Notebook.Desired.STOPPED:
        # Failed or lost: it does not come back by itself.
        notebook.desired_state = Notebook.Desired.STOPPED
        notebook.save(update_fields=["desired_state", "updated_at"])
    session_set_status(session, status, message, phase=reason)
    machine_type = session.machine_type
    transaction.on_commit(lambda: _after_end(notebook.pk, session.team_id, machine_type.pk))


def _after_end(notebook_id: int, team_id: int, machine_type_id: int) -> None:
    """The line moved (placement_free; those it placed are told): the sessions still
    waiting of this type learn their new place. Then what the notebook wants next."""
    for session_id, session_team in open_session_ids(
        status=Status.QUEUED, machine_type_id=machine_type_id
    ):
        session_place_task.delay(session_id, team_id=session_team)
    with team_scope(team_id):
        notebook = Notebook.objects.get(pk=notebook_id)
        if notebook.deleted_at is not None:
            on_commit_remove_storage(notebook)
        elif notebook.desired_state == Notebook.Desired.RUNNING and open_session(notebook) is None:
            _restart(notebook)


def _restart(notebook: Notebook) -> None:
    # Still wanted running once its session ended as stopped: a Restart, or a Start (or
    # Restart) clicked while a stop was in flight. Failures and losses set desired to stopped.
    last = NotebookSession.objects.filter(notebook=notebook).order_by("-pk").first()
    actor = last.started_by if last else notebook.created_by
    if actor is None or last is None:
        return
    try:
        notebook_start(team=notebook.team, actor=actor, notebook=notebook)
    except ServiceError as exc:
        # Refused now (the plan, the cap, the machine withdrawn): it stays stopped, and
        # its history says why, rather than wanting to run with nothing on the way.
        logger.info("restart of notebook %s refused: %s", notebook.pk, exc)
        Notebook.objects.for_team(notebook.team_id).filter(pk=notebook.pk).update(
            desired_state=Notebook.Desired.STOPPED
        )
        NotebookEvent.objects.for_team(notebook.team_id).create(
            team_id=notebook.team_id,
            notebook=notebook,
            status=Status.STOPPED,
            phase="refused",
            message=f"Not started again: {exc}"[:500],
        )
