"""A session's status and what its viewers see of it.

``session_set_status`` records a status on the session and its notebook, keeps it as a
NotebookEvent and publishes it to the notebook's live stream once the transaction commits.
Each message (``status_message``) carries what a viewer needs to draw the badge, the phase
bar and the idle warning: while queued, the line's real median wait if it has one, once
placed, the template's usual time from placed to ready (``start_eta``); once warned, when
idleness stops it (``idle_timeout``, capped by the plan).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from django.db import transaction
from django.utils import timezone

from apps.core.stream import stream_publish
from apps.core.timings import median_seconds
from apps.machines.queue import queue_wait
from apps.notebooks.entitlements import idle_limit
from apps.notebooks.models import (
    STARTING_STATUSES,
    Notebook,
    NotebookEvent,
    NotebookSession,
    Status,
)
from apps.notebooks.selectors import team_notebook_settings


def start_eta(template: str) -> int | None:
    """Seconds from placed to ready, the median of this template's last 20 starts: shown
    once a session is placed, so a start's wait in line (requested to placed) is no part
    of it.

    Every status message of a starting notebook carries it (download percent
    included, twice a second): computed at most once a minute per template.
    """

    # Timings only, across teams: no team's data is shown to another.
    return median_seconds(
        f"notebooks:eta:{template}",
        lambda: (
            NotebookSession.objects.unscoped()
            .filter(template=template, ready_at__isnull=False, placement__isnull=False)
            .order_by("-ready_at")
            .values_list("placement__created_at", "ready_at")[:20]
        ),
    )


def _eta(session: NotebookSession) -> dict[str, Any]:
    """While queued, the line's real median wait (or nothing); once placed, the usual time
    from placed to ready. No estimate is shown that no real data gave."""
    if session.status == Status.QUEUED:
        seconds = queue_wait(session.machine_type_id)
        text = f"Usually placed within ~{seconds} s (the recent waits in this line)."
    else:
        seconds = start_eta(session.template)
        text = f"Usually ready in ~{seconds} s."
    return {"eta_seconds": seconds, "eta_text": text if seconds else ""}


def idle_timeout(notebook: Notebook, *, limit: int | Literal["plan"] | None = "plan") -> int:
    """Minutes of idleness before the notebook is stopped; 0 = never. The plan caps it at
    ``limit`` (its idle_limit, read here unless the caller has it)."""
    if notebook.idle_timeout_minutes is not None:
        minutes = notebook.idle_timeout_minutes
    else:
        minutes = team_notebook_settings(notebook.team_id).idle_timeout_minutes
    return idle_capped(minutes, idle_limit(notebook.team_id) if limit == "plan" else limit)


def idle_capped(minutes: int, limit: int | None) -> int:
    """``minutes`` of idle shutdown (0: never) within the plan's ``limit`` (None: any)."""
    if limit is not None and (minutes == 0 or minutes > limit):
        return limit
    return minutes


def status_message(
    notebook: Notebook,
    session: NotebookSession | None,
    *,
    phase: str = "",
    percent: int | None = None,
) -> dict[str, Any]:
    """What a viewer needs to draw the status badge, the phase bar and the idle warning.

    ``phase`` is the start step within the status (e.g. "waiting" for Jupyter while
    "starting"); without it, the latest event's.
    """
    if not phase:
        latest = (
            NotebookEvent.objects.for_team(notebook.team_id)
            .filter(notebook=notebook)
            .order_by("-pk")
            .values_list("phase", "percent")
            .first()
        )
        phase, percent = latest if latest else (notebook.status, None)
    message: dict[str, Any] = {
        "type": "status",
        "notebook": notebook.pk,
        "status": notebook.status,
        "phase": phase,
        "percent": percent,
        "desired": notebook.desired_state,
        "message": notebook.status_message,
        "session": session.pk if session else None,
        "at": timezone.now().isoformat(),
    }
    if session is not None and session.ended_at is not None:
        # The live page redraws the session's row in its table of recent sessions.
        message["ended_at"] = session.ended_at.isoformat()
        message["exit_reason"] = session.get_exit_reason_display()
    if session is not None and session.ended_at is None:
        if session.status in STARTING_STATUSES:
            message["started_waiting_at"] = session.requested_at.isoformat()
            message.update(_eta(session))
        if session.idle_warned_at is not None and session.activity_at is not None:
            stop_at = session.activity_at + timedelta(minutes=idle_timeout(notebook))
            message["idle_stop_at"] = stop_at.isoformat()
    return message


def publish_status(
    notebook: Notebook,
    session: NotebookSession | None,
    *,
    phase: str = "",
    percent: int | None = None,
) -> None:
    """Send the notebook's status to its viewers once the transaction commits."""
    body = status_message(notebook, session, phase=phase, percent=percent)
    transaction.on_commit(lambda: stream_publish(notebook.stream, body))


def session_set_status(
    session: NotebookSession,
    status: str,
    message: str,
    *,
    phase: str = "",
    percent: int | None = None,
    same_step: bool = False,
    also: tuple[str, ...] = (),
) -> None:
    """Record a status (on the session and its notebook), keep the event, tell viewers.

    With ``same_step``, a status said again in the same words (a long build step reported
    every few seconds) updates the session's latest event in place rather than adding one.
    ``also``: more of the session's fields the caller changed, saved in the same UPDATE.
    """
    session.status = status
    session.progressed_at = timezone.now()
    session.save(update_fields=["status", "progressed_at", *also])
    notebook = session.notebook
    notebook.status = status
    notebook.status_message = message
    notebook.save(update_fields=["status", "status_message", "updated_at"])
    events = NotebookEvent.objects.for_team(session.team_id)
    latest = events.filter(session=session).order_by("-pk").first() if same_step else None
    if latest is not None and (latest.status, latest.phase, latest.message) == (
        status,
        phase or status,
        message,
    ):
        latest.percent = percent
        latest.save(update_fields=["percent"])
    else:
        events.create(
            team_id=session.team_id,
            notebook=notebook,
            session=session,
            status=status,
            phase=phase or status,
            message=message,
            percent=percent,
        )
    publish_status(notebook, session, phase=phase or status, percent=percent)
