"""What a session's host says about its workload, and what Lattice makes of it.

The agent reports events for workload "nb-<notebook>-s<session>"
(apps.machines.reports.workload_event routes those of kind "nb" here: the hook
registered in apps.notebooks.apps): progress (pulling the image, with its percent, or
building a template's image on a registry-free installation, with its step; copying the
datasets; waiting for Jupyter), started (the container is up: billing starts), ready
(Jupyter answered /api/status with the session's token), failed, stopped. Only the host
the session was placed on speaks for it, a late event never moves a session back, and a
"ready" counts only with an endpoint on that host's own workload address.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.machines.inbox import said_moment
from apps.machines.services import endpoint_on_host
from apps.notebooks.lifecycle.ending import session_end, stop_on_host
from apps.notebooks.lifecycle.spec import session_token_started
from apps.notebooks.lifecycle.start import OWN_WORDS, session_of_workload
from apps.notebooks.lifecycle.status import session_set_status
from apps.notebooks.locks import lock_session
from apps.notebooks.models import STARTING_STATUSES, Notebook, NotebookSession, Status
from apps.notebooks.templates import TEMPLATES, built_on_hosts
from apps.notebooks.volumes import files_arrived
from apps.runtimes.images import BUILD_STEP_KINDS, WAITING, BuildStep, build_step_message

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)

# How far along the way to running each status is: a late event never moves a session back.
_RANK = {
    Status.QUEUED: 0,
    Status.SCHEDULED: 1,
    Status.PULLING: 2,
    Status.STARTING: 3,
    Status.RUNNING: 4,
    Status.STOPPING: 5,
}


def workload_stream(host_name: str, name: str) -> str | None:
    """The stream workload ``name``'s output goes to, if host ``host_name`` runs it."""
    session_id = session_of_workload(name)
    found = (
        NotebookSession.objects.unscoped()
        .filter(pk=session_id, host__name=host_name)
        .values_list("notebook_id", flat=True)
        .first()
        if session_id is not None
        else None
    )
    return Notebook(pk=found).stream if found is not None else None


def on_workload_event(host_name: str, name: str, event: str, data: dict[str, Any]) -> None:
    """An agent's event for workload "nb-<notebook>-s<session>"."""
    session_id = session_of_workload(name)
    if session_id is None:
        logger.warning("event %s for unknown workload %s on %s", event, name, host_name)
        return
    found = NotebookSession.objects.unscoped().filter(pk=session_id).values("team_id").first()
    if found is None:
        logger.info("event %s for session %s, which no longer exists", event, session_id)
        return
    with team_scope(found["team_id"]), transaction.atomic():
        session = lock_session(session_id, "machine_type", "host")
        if session is None:
            return
        if session.host is None or session.host.name != host_name:
            # Only the host it was sent to speaks for a session (hosts run strangers' code).
            logger.warning("event %s for %s from %s, not its host: ignored", event, name, host_name)
            return
        _apply_event(session, event, data)


def _advance(session: NotebookSession, status: str) -> bool:
    """True when ``status`` moves the open session forward (late events are dropped)."""
    if session.ended_at is not None:
        return False
    return _RANK.get(Status(status), 0) > _RANK.get(Status(session.status), 0)


def _apply_event(session: NotebookSession, event: str, data: dict[str, Any]) -> None:
    handler = _HANDLERS.get(event)
    if handler is not None:
        handler(session, data)


def _on_progress(session: NotebookSession, data: dict[str, Any]) -> None:
    phase = data.get("phase", "")
    if phase == "pulling" and _advance(session, Status.PULLING):
        # A number, whatever the host sent: its text never reaches the page.
        percent = _percent(data)
        session_set_status(
            session,
            Status.PULLING,
            f"Downloading the image: {percent or 0}%.",
            phase="pulling",
            percent=percent,
        )
    elif phase == "building" and (
        _advance(session, Status.PULLING)
        or (session.ended_at is None and session.status == Status.PULLING)
    ):
        _on_building(session, data)
    elif phase == "copying" and session.ended_at is None and session.status == Status.SCHEDULED:
        # The host copies the notebook's datasets before it starts it (a while, for big ones).
        percent = _percent(data) or 0
        session_set_status(
            session,
            Status.SCHEDULED,
            f"Copying its datasets to the machine: {percent}%.",
            phase="copying",
            percent=percent,
        )
    elif phase == "restoring" and session.ended_at is None and session.status in _BEFORE_START:
        _on_restoring(session, data)
    elif phase == "waiting" and session.ended_at is None and session.status in STARTING_STATUSES:
        session_set_status(
            session,
            Status.STARTING,
            "Waiting for JupyterLab to answer.",
            phase="waiting",
        )


# Where a restore runs: before the workload starts (after its image, or while it downloads).
_BEFORE_START = (Status.SCHEDULED, Status.PULLING)
# A restore's byte counts a host may report: whole numbers up to a petabyte.
_MAX_BYTES = 10**15


def _bytes(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= _MAX_BYTES else None


def _on_restoring(session: NotebookSession, data: dict[str, Any]) -> None:
    """The host restores the notebook's files from a snapshot before it starts it: numbers
    only (a host's text never reaches the page), the words are ours, in decimal GB."""
    done, total = _bytes(data.get("done")), _bytes(data.get("total"))
    if done is None or total is None or done > total:
        logger.warning("a restore's progress %r from %s: ignored", data, session.host)
        return
    percent = 100 if total == 0 else int(done * 100 / total)
    session_set_status(
        session,
        session.status,
        f"Restoring files: {done / 1e9:.1f} of {total / 1e9:.1f} GB",
        phase="restoring",
        percent=percent,
    )


def _percent(data: dict[str, Any]) -> int | None:
    """The event's percent as a whole number from 0 to 100, or None (absent or not a number)."""
    value = data.get("percent")
    # JSON from a host may carry NaN or Infinity: not a number either.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0, min(100, int(value)))


# build-template.sh has 3 steps; a host saying more is not believed.
_MAX_STEPS = 9


def _count(value: Any) -> int | None:
    """A step number a host may report: a small positive whole number, else None."""
    return value if type(value) is int and 1 <= value <= _MAX_STEPS else None


def _on_building(session: NotebookSession, data: dict[str, Any]) -> None:
    """The host builds the template's image (a local installation's first start of it).
    It reports only numbers and a step kind; the words are ours, from the template's name
    (a host's credentials are assumed stolen: its text never reaches the page). Believed only
    where this installation builds that template's image on its hosts. The step said again
    (every BUILD_REPORT_EVERY seconds while pip runs) updates its event in place."""
    template = TEMPLATES.get(session.template)
    if template is None or not built_on_hosts(session.template):
        logger.warning(
            "a build of %s's image reported by %s: not built there, ignored",
            session.template,
            session.host,
        )
        return
    kind, step, of = data.get("kind") or "", _count(data.get("step")), _count(data.get("of"))
    if not isinstance(kind, str):
        logger.warning("a build step %r from %s: ignored", data, session.host)
        return
    if kind == WAITING:
        said = BuildStep(WAITING)
    elif kind in BUILD_STEP_KINDS and step is not None and of is not None and step <= of:
        said = BuildStep(str(kind), step, of, _percent(data))
    elif not kind:
        said = BuildStep()
    else:
        logger.warning("a build step %r from %s: ignored", data, session.host)
        return
    session_set_status(
        session,
        Status.PULLING,
        build_step_message(template.name, said),
        phase="pulling",
        percent=said.percent,
        same_step=True,
    )


def _started_at(session: NotebookSession, data: dict[str, Any]) -> datetime:
    """When the workload's process really started, as its runtime says (the "started" event's
    ``started_at``, or the runtime state's in "ready": Unix time, Docker's State.StartedAt),
    not when the event was read: an event that waited in the inbox (the control worker was
    down), or a "started" lost with a broker restart, would otherwise leave the seconds it
    ran meanwhile unbilled. Believed only within reason (a host is not trusted): a time
    before the session was placed on a host (the wait in the line is never billed), or
    after now, is not believed, and now is taken."""
    state = data.get("state")
    said = data.get("started_at")
    if said is None and isinstance(state, dict):  # "ready" carries it in the runtime's state
        said = state.get("started_at")
    placed = session.placement.created_at if session.placement is not None else None
    earliest = max(session.requested_at, placed or session.requested_at)
    return said_moment(said, earliest=earliest) or timezone.now()


def _on_started(session: NotebookSession, data: dict[str, Any]) -> None:
    if session.ended_at is None and session.started_at is None:
        session.started_at = _started_at(session, data)
        state = data.get("state")
        session.runtime_state = state if isinstance(state, dict) else {}
        session.save(update_fields=["started_at", "runtime_state"])
        session_token_started(session)
        # Its files are on this host now (and it changes them): not saved anywhere else.
        files_arrived(session)
    if _advance(session, Status.STARTING):
        session_set_status(session, Status.STARTING, "Starting JupyterLab.", phase="starting")


def _on_ready(session: NotebookSession, data: dict[str, Any]) -> None:
    if not _advance(session, Status.RUNNING):
        return
    endpoint = data.get("endpoint")
    assert session.host is not None  # noqa: S101 - on_workload_event checked the host
    if not isinstance(endpoint, str) or not endpoint_on_host(session.host, endpoint):
        # The proxy would carry the member's browser, and the Jupyter token, wherever this
        # points: only the host's own workload address is believed.
        logger.warning(
            "ready for %s from %s with endpoint %r, not on its workload address %s: ignored",
            session.workload,
            session.host,
            endpoint,
            session.host.workload_address,
        )
        return
    now = timezone.now()
    state = data.get("state")
    session.runtime_state = state if isinstance(state, dict) else session.runtime_state
    session.endpoint = endpoint
    # A "started" event lost on the way (a broker restart): started as the runtime says.
    session.started_at = session.started_at or _started_at(session, data)
    session.ready_at = now
    session.activity_at = now
    session_set_status(
        session,
        Status.RUNNING,
        "Ready.",
        phase="ready",
        percent=100,
        also=("runtime_state", "endpoint", "started_at", "ready_at", "activity_at"),
    )


def _on_failed(session: NotebookSession, data: dict[str, Any]) -> None:
    if session.ended_at is not None:
        return
    if session.status == Status.STOPPING:
        session_end(session, reason=session.exit_reason or NotebookSession.ExitReason.STOPPED)
        return
    message = str(data.get("message", ""))
    session_end(
        session,
        reason=NotebookSession.ExitReason.FAILED,
        message=message if data.get("advised") is OWN_WORDS else _failure_advice(message, data),
    )
    stop_on_host(session)


def _on_stopped(session: NotebookSession, data: dict[str, Any]) -> None:
    if session.ended_at is None and session.status == Status.STOPPING:
        session_end(session, reason=session.exit_reason or NotebookSession.ExitReason.STOPPED)


_HANDLERS = {
    "progress": _on_progress,
    "started": _on_started,
    "ready": _on_ready,
    "failed": _on_failed,
    "stopped": _on_stopped,
}


def _failure_advice(message: str, data: dict[str, Any]) -> str:
    """The agent's message, with what the person can do about it."""
    if "could not be downloaded" in message or "not on this host" in message:
        return f"{message} Check the image name, or choose one of the templates."
    if data.get("timeout"):
        return (
            f"{message} The log shows how far it got; start it again, or choose a larger machine."
        )
    if "exited" in message:
        return f"{message} The log above says why; fix it and start again."
    return f"{message} Start it again; if it keeps failing, tell your administrator."
