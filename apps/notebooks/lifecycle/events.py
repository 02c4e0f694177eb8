"""A notebook session's way from queued to running to ended, and its reconciler.

The steps, each idempotent and each a small transaction:

1. ``session_place``: ask the machine queue for room; placed -> scheduled, and
   the host's agent is asked to start the workload (``session_dispatch``);
   otherwise it stays queued, with its position.
2. The agent reports events (apps.machines.tasks.workload_event routes those of
   workloads named "nb-..." to ``on_workload_event``, registered as the kind "nb"
   in apps.notebooks.apps): pulling (percent),
   started (the container is up: billing starts), waiting for Jupyter, ready
   (Jupyter answered /api/status with the session's token), failed, stopped.
3. ``session_end`` closes the session once, with a reason and a time, frees its
   placement, and acts on what the notebook wants next (a restart starts a new
   session; a deleted notebook's storage is removed).

``reconcile_sessions`` (beat) repairs what a lost task or a dead worker left
half done, and ``idle_sweep`` stops notebooks nobody uses. Each status change
is saved as a NotebookEvent and published to the notebook's live stream after
the transaction commits.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.core.errors import ServiceError
from apps.core.stream import stream_publish
from apps.core.tenancy import team_scope
from apps.datasets.blob_urls import with_read_urls
from apps.machines.agent import (
    AGENT_TIME_LIMIT,
    agent_copy_volume,
    agent_remove_volumes,
    agent_start,
    agent_stop,
    spec_to_task,
)
from apps.machines.models import Host, MachineType, PlacementRequest
from apps.machines.queue import placement_request, queue_advance, queue_position
from apps.machines.scheduler import placement_gpu_uuids, placement_release
from apps.machines.services import endpoint_on_host
from apps.notebooks.entitlements import idle_limit
from apps.notebooks.models import (
    STARTING_STATUSES,
    Notebook,
    NotebookEvent,
    NotebookSession,
    Status,
)
from apps.notebooks.selectors import team_notebook_settings
from apps.runtimes.base import Spec

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)

_GIB = 1024**3
# How far along the way to running each status is: a late event never moves a session back.
_RANK = {
    Status.QUEUED: 0,
    Status.SCHEDULED: 1,
    Status.PULLING: 2,
    Status.STARTING: 3,
    Status.RUNNING: 4,
    Status.STOPPING: 5,
}
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


def lock_session(session_id: int, *related: str) -> NotebookSession | None:
    """The session, locked, after its notebook (inside a transaction and a team scope).

    Every writer takes the notebook's row first, then the session's (the
    services lock the notebook, then change its session): one order, no
    deadlock. FOR NO KEY UPDATE, so inserts that point at these rows (events)
    never wait on the lock.
    """
    notebook_id = (
        NotebookSession.objects.filter(pk=session_id).values_list("notebook_id", flat=True).first()
    )
    if notebook_id is None:
        return None
    Notebook.objects.select_for_update(no_key=True).filter(pk=notebook_id).first()
    return (
        NotebookSession.objects.select_for_update(no_key=True, of=("self",))
        .select_related("notebook", *related)
        .filter(pk=session_id)
        .first()
    )


def open_session(notebook: Notebook) -> NotebookSession | None:
    return (
        NotebookSession.objects.for_team(notebook.team_id)
        .filter(notebook=notebook, ended_at__isnull=True)
        .first()
    )


# --- status and the live stream ---------------------------------------------------------


def start_eta(template: str) -> int | None:
    """Seconds from start to ready, the median of this template's last 20 starts.

    Every status message of a starting notebook carries it (download percent
    included, twice a second): computed at most once a minute per template.
    """

    def compute() -> int | None:
        # Timings only, across teams: no team's data is shown to another.
        recent = (
            NotebookSession.objects.unscoped()
            .filter(template=template, ready_at__isnull=False)
            .order_by("-ready_at")
            .values_list("requested_at", "ready_at")[:20]
        )
        seconds = [(ready - requested).total_seconds() for requested, ready in recent]
        return round(statistics.median(seconds)) if seconds else None

    return cast("int | None", cache.get_or_set(f"notebooks:eta:{template}", compute, 60))


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
    if session is not None and session.ended_at is None:
        if session.status in STARTING_STATUSES:
            message["eta_seconds"] = start_eta(session.template)
            message["started_waiting_at"] = session.requested_at.isoformat()
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
) -> None:
    """Record a status (on the session and its notebook), keep the event, tell viewers."""
    session.status = status
    session.progressed_at = timezone.now()
    session.save(update_fields=["status", "progressed_at"])
    notebook = session.notebook
    notebook.status = status
    notebook.status_message = message
    notebook.save(update_fields=["status", "status_message", "updated_at"])
    NotebookEvent.objects.for_team(session.team_id).create(
        team_id=session.team_id,
        notebook=notebook,
        session=session,
        status=status,
        phase=phase or status,
        message=message,
        percent=percent,
    )
    publish_status(notebook, session, phase=phase or status, percent=percent)


# --- placing and starting ---------------------------------------------------------------


def on_commit_place(session: NotebookSession) -> None:
    from apps.notebooks.tasks import session_place_task

    session_id, team_id = session.pk, session.team_id
    transaction.on_commit(lambda: session_place_task.delay(session_id, team_id=team_id))


def session_place(session: NotebookSession) -> None:
    """Find room for a queued session; start it there, or leave it queued with its position."""
    if session.ended_at is not None or session.status != Status.QUEUED:
        return
    request = placement_request(
        machine_type=session.machine_type,
        workload=session.workload,
        team=session.team,
    )
    with transaction.atomic():
        locked = lock_session(session.pk, "machine_type")
        if locked is None:
            return
        session = locked
        placed = request.status == PlacementRequest.Status.PLACED and request.placement
        if session.ended_at is not None or session.status != Status.QUEUED:
            # Stopped while we looked for room: give the room back.
            if placed and request.placement and session.placement_id != request.placement.pk:
                placement_release(placement=request.placement)
            return
        if not placed or request.placement is None:
            position = queue_position(request) or 1
            ahead = position - 1
            session_set_status(
                session,
                Status.QUEUED,
                f"Waiting for a free {session.machine_type.name}: "
                + (f"{ahead} ahead of you." if ahead else "you are next."),
                phase="queued",
            )
            return
        placement = request.placement
        session.placement = placement
        session.host = placement.host
        session.save(update_fields=["placement", "host"])
        session_set_status(
            session,
            Status.SCHEDULED,
            f"Placed on {placement.host.name}.",
            phase="placed",
        )
        transaction.on_commit(lambda: session_dispatch(session))


def _command(session: NotebookSession) -> list[str]:
    return [
        "jupyter",
        "lab",
        "--ip={ip}",
        "--port={port}",
        "--no-browser",
        "--ServerApp.root_dir={mount:/notebooks}",
        f"--ServerApp.base_url={session.base_path}",
        # The proxy is the only way in; it sends the token, the browser never sees it.
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.terminals_enabled=True",
        # Containers run as uid 1000; a local process runs as the agent's user, root on a
        # single-machine install (the process runtime is not an isolation boundary anyway).
        "--ServerApp.allow_root=True",
    ]


def session_spec(session: NotebookSession) -> Spec:
    # Here, not at the top: apps.notebooks.mounts imports the notebook services, which
    # import this module (until the lifecycle is split from what services need of it).
    from apps.notebooks.mounts import mounts_for_spec

    notebook = session.notebook
    team_settings = team_notebook_settings(session.team_id)
    machine = session.machine_type
    assert session.placement is not None  # noqa: S101 - dispatched only once placed
    return Spec(
        name=session.workload,
        image=session.image,
        command=_command(session),
        env={"JUPYTER_TOKEN": session.jupyter_token, "LATTICE_NOTEBOOK": str(notebook.pk)},
        vcpus=float(machine.vcpus),
        memory_bytes=machine.memory_gib * _GIB,
        gpu_uuids=placement_gpu_uuids(session.placement),
        volumes={notebook.volume: "/notebooks", team_settings.storage_volume: "/storage"},
        datasets=mounts_for_spec(session),
        labels={
            "installation": settings.LATTICE_INSTALLATION,
            "kind": "notebook",
            "team": str(session.team_id),
            "notebook": str(notebook.pk),
            "session": str(session.pk),
            "stream": notebook.stream,
        },
    )


def session_dispatch(session: NotebookSession) -> None:
    """Ask the session's host to start it (idempotent on the host: one container)."""
    session = NotebookSession.objects.for_team(session.team_id).get(pk=session.pk)
    if session.ended_at is not None or session.host is None or session.status == Status.STOPPING:
        return  # stopped meanwhile: starting it now would outlive the stop
    NotebookSession.objects.for_team(session.team_id).filter(pk=session.pk).update(
        start_attempts=session.start_attempts + 1,
        progressed_at=timezone.now(),
    )
    options = {
        "stream": session.notebook.stream,
        "ready_path": f"{session.base_path}api/status",
        "ready_token_env": "JUPYTER_TOKEN",
        "ready_timeout": settings.LATTICE_NOTEBOOK_START_TIMEOUT,
    }
    from apps.notebooks.mounts import copy_allowance  # see session_spec

    spec = session_spec(session)
    # Copying its datasets to the host first may take a while: the task's limits grow by it,
    # and the host reads their blobs through links that work as long as the task may run.
    extra = copy_allowance(sum(int(f[2]) for d in spec.datasets for f in d["files"]))
    time_limit = AGENT_TIME_LIMIT + extra
    spec = replace(spec, datasets=with_read_urls(spec.datasets, seconds=time_limit))
    agent_start.apply_async(
        args=(session.host.name, spec_to_task(spec), options),
        queue=session.host.queue,
        soft_time_limit=time_limit - 30,
        time_limit=time_limit,
    )


# --- what the agent says ----------------------------------------------------------------


def _session_id(name: str) -> int | None:
    """The session of workload "nb-<notebook>-s<session>", or None for another name."""
    try:
        return int(name.rsplit("-s", 1)[1])
    except (IndexError, ValueError):
        return None


def workload_stream(host_name: str, name: str) -> str | None:
    """The stream workload ``name``'s output goes to, if host ``host_name`` runs it."""
    session_id = _session_id(name)
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
    session_id = _session_id(name)
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
        percent = data.get("percent")
        session_set_status(
            session,
            Status.PULLING,
            f"Downloading the image: {percent or 0}%.",
            phase="pulling",
            percent=percent,
        )
    elif phase == "copying" and session.ended_at is None and session.status == Status.SCHEDULED:
        # The host copies the notebook's datasets before it starts it (a while, for big ones).
        try:
            percent = max(0, min(100, int(data.get("percent") or 0)))
        except (TypeError, ValueError):
            percent = 0
        session_set_status(
            session,
            Status.SCHEDULED,
            f"Copying its datasets to the machine: {percent}%.",
            phase="copying",
            percent=percent,
        )
    elif phase == "waiting" and session.ended_at is None and session.status in STARTING_STATUSES:
        session_set_status(
            session,
            Status.STARTING,
            "Waiting for JupyterLab to answer.",
            phase="waiting",
        )


def _on_started(session: NotebookSession, data: dict[str, Any]) -> None:
    if session.ended_at is None and session.started_at is None:
        session.started_at = timezone.now()
        state = data.get("state")
        session.runtime_state = state if isinstance(state, dict) else {}
        session.save(update_fields=["started_at", "runtime_state"])
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
    session.started_at = session.started_at or now
    session.ready_at = now
    session.activity_at = now
    session.save(
        update_fields=["runtime_state", "endpoint", "started_at", "ready_at", "activity_at"],
    )
    session_set_status(session, Status.RUNNING, "Ready.", phase="ready", percent=100)


def _on_failed(session: NotebookSession, data: dict[str, Any]) -> None:
    if session.ended_at is not None:
        return
    if session.status == Status.STOPPING:
        session_end(session, reason=session.exit_reason or NotebookSession.ExitReason.STOPPED)
        return
    session_end(
        session,
        reason=NotebookSession.ExitReason.FAILED,
        message=_failure_advice(data.get("message", ""), data),
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


def stop_on_host(session: NotebookSession, remove_volumes: list[str] | None = None) -> None:
    if session.host is None:
        return
    host = session.host
    args = (host.name, session.workload, session.runtime_state or None, remove_volumes)
    transaction.on_commit(lambda: agent_stop.apply_async(args=args, queue=host.queue))


# --- stopping and ending ----------------------------------------------------------------


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
    """Close the session (once): free its placement, set the notebook's status, act on what
    the notebook wants next."""
    if session.ended_at is not None:
        return
    ended = at or timezone.now()
    # Never before it started: billing reads ended_at - started_at.
    session.ended_at = max(ended, session.started_at) if session.started_at else ended
    session.exit_reason = reason
    session.save(update_fields=["ended_at", "exit_reason"])
    if session.placement is not None and session.placement.active:
        placement_release(placement=session.placement, reason="released", at=session.ended_at)
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
    """Room freed: let the line move. Then what the notebook wants next."""
    from apps.notebooks.tasks import session_place_task

    queue_advance(machine_type=MachineType.objects.get(pk=machine_type_id))
    for session_id, session_team in (
        NotebookSession.objects.unscoped()
        .filter(status=Status.QUEUED, ended_at__isnull=True, machine_type_id=machine_type_id)
        .values_list("pk", "team_id")
    ):
        session_place_task.delay(session_id, team_id=session_team)
    with team_scope(team_id):
        notebook = Notebook.objects.get(pk=notebook_id)
        if notebook.deleted_at is not None:
            on_commit_remove_storage(notebook)
        elif notebook.desired_state == Notebook.Desired.RUNNING and open_session(notebook) is None:
            _restart(notebook)


def _restart(notebook: Notebook) -> None:
    from apps.notebooks.services import notebook_start

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


def on_commit_copy_storage(source: Notebook, target: Notebook) -> None:
    """Copy ``source``'s files into ``target``'s volume, on the host where they last were."""
    last = (
        NotebookSession.objects.for_team(source.team_id)
        .filter(notebook=source, host__isnull=False)
        .select_related("host")
        .order_by("-pk")
        .first()
    )
    if last is None or last.host is None:
        return  # never ran: there are no files yet
    host = last.host
    args = (host.name, source.volume, target.volume, last.image)
    transaction.on_commit(lambda: agent_copy_volume.apply_async(args=args, queue=host.queue))


def on_commit_remove_storage(notebook: Notebook) -> None:
    """Remove a deleted notebook's volume from every host (it lives where it last ran)."""
    volume = notebook.volume

    def remove() -> None:
        for host in Host.objects.exclude(status=Host.Status.OFFLINE):
            agent_remove_volumes.apply_async(args=(host.name, [volume]), queue=host.queue)

    transaction.on_commit(remove)
