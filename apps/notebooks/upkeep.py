"""Periodic upkeep of notebook sessions (beat): the reconciler and idle shutdown.

``reconcile_sessions`` brings every open session to a true state whatever a
dead worker or a lost message left behind: a session whose placement the
machines reconciler released (the container vanished, the host went silent)
ends as lost at the time it was last seen; a start that made no progress is
sent to its host again (the agent's start is idempotent) and, after
LATTICE_NOTEBOOK_START_ATTEMPTS tries, fails; a stop nobody confirmed is sent
again, or taken as done once the host no longer reports the workload.

``idle_sweep`` reads activity from Jupyter's own API (``/api/status``'s
last_activity covers browser, kernel and terminal activity; a busy kernel in
``/api/kernels`` counts as activity now), warns viewers before stopping
(they can Extend), and stops notebooks idle past their timeout.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.machines.availability import Availability, machine_type_offers
from apps.machines.models import MachineType, PlacementRequest
from apps.notebooks import lifecycle, volumes
from apps.notebooks.entitlements import idle_limit
from apps.notebooks.locks import lock_session
from apps.notebooks.models import STARTING_STATUSES, Notebook, NotebookSession, Status
from apps.notebooks.mounts import copy_allowance, mounted_bytes
from apps.notebooks.selectors import open_session_ids
from apps.notebooks.services import notebook_stop

logger = logging.getLogger(__name__)


def _reported(session: NotebookSession) -> dict[str, Any] | None:
    """The host's latest report of this session's workload, if it listed it."""
    if session.host is None:
        return None
    for workload in session.host.reported_workloads:
        if workload.get("name") == session.workload:
            return dict(workload)
    return None


def _queued_availability() -> dict[int, Availability]:
    """The availability of every machine type a session waits for, by its pk: read once a
    pass (machine_type_offers answers for all of them in a few queries), not per session."""
    waited_for = (
        NotebookSession.objects.unscoped()
        .filter(ended_at__isnull=True, status=Status.QUEUED)
        .values_list("machine_type_id", flat=True)
    )
    types = MachineType.objects.filter(pk__in=waited_for)
    return {offer.machine_type.pk: offer.availability for offer in machine_type_offers(types)}


def reconcile_sessions() -> dict[str, int]:
    counts = {"ended": 0, "placed": 0, "redispatched": 0, "failed": 0, "stops": 0}
    availability = _queued_availability()
    for session_id, team_id in open_session_ids():
        with team_scope(team_id), transaction.atomic():
            session = lock_session(session_id, "placement", "host", "machine_type")
            if session is not None and session.ended_at is None:
                _reconcile(session, counts, availability)
    return counts


def _reconcile(
    session: NotebookSession,
    counts: dict[str, int],
    availability: dict[int, Availability] | None = None,
) -> None:
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LATTICE_NOTEBOOK_REDISPATCH_AFTER)
    placement = session.placement
    if placement is not None and not placement.active:
        # The machines reconciler gave up on it: lost as of when it was last seen.
        reason = (
            NotebookSession.ExitReason.LOST
            if placement.end_reason == "lost"
            else session.exit_reason or NotebookSession.ExitReason.FAILED
        )
        lifecycle.session_end(session, reason=reason, at=placement.released_at)
        counts["ended"] += 1
        return
    if session.status == Status.QUEUED:
        offer = (availability or {}).get(session.machine_type_id)
        if offer is None or offer.state == "unavailable":
            # Queued since this pass read them (or called alone), or about to be ended on
            # what the pass read a while ago: this type alone, read now.
            offer = machine_type_offers([session.machine_type])[0].availability
            if availability is not None:
                availability[session.machine_type_id] = offer
        if offer.state == "unavailable":
            _end_unoffered(session)
            counts["ended"] += 1
            return
        lifecycle.on_commit_place(session)
        counts["placed"] += 1
        return
    if session.progressed_at > stale:
        return
    if session.status in STARTING_STATUSES:
        _reconcile_start(session, counts)
    elif session.status == Status.STOPPING:
        _reconcile_stop(session, counts)


def _end_unoffered(session: NotebookSession) -> None:
    """Queued for a machine type no host offers any more (its hosts went away, and none is
    only away for a while: draining, or offline within LATTICE_HOST_GRACE): it would wait
    for ever, so it ends now, saying why, and its notebook stays stopped."""
    PlacementRequest.objects.filter(
        workload=session.workload, status=PlacementRequest.Status.WAITING
    ).update(status=PlacementRequest.Status.CANCELLED)
    notebook = session.notebook
    notebook.desired_state = Notebook.Desired.STOPPED
    notebook.save(update_fields=["desired_state", "updated_at"])
    lifecycle.session_end(
        session,
        reason=NotebookSession.ExitReason.CANCELLED,
        message=lifecycle.no_host_message(session.machine_type.name),
    )


def _reconcile_start(session: NotebookSession, counts: dict[str, int]) -> None:
    """A start that made no progress for a while: still pulling, sent again, or failed."""
    now = timezone.now()
    if volumes.files_waiting(session):
        # Waiting for its files to be saved on their host: the snapshot's end dispatches it
        # again (and one whose ticket died is failed by the snapshots' own upkeep).
        return
    reported = _reported(session)
    if reported and reported.get("starting"):
        copying = copy_allowance(mounted_bytes(session.notebook) + volumes.restore_bytes(session))
        limit = timedelta(seconds=settings.LATTICE_NOTEBOOK_START_TIMEOUT + 60 + copying)
        if now - session.requested_at < limit:
            return  # the agent is still at it (a long image download, a big dataset's copy)
    if session.start_attempts >= settings.LATTICE_NOTEBOOK_START_ATTEMPTS:
        lifecycle.session_end(
            session,
            reason=NotebookSession.ExitReason.FAILED,
            message=(
                f"The notebook did not start after {session.start_attempts} tries. "
                "Start it again; if it keeps failing, tell your administrator."
            ),
        )
        lifecycle.stop_on_host(session)
        counts["failed"] += 1
        return
    transaction.on_commit(lambda: lifecycle.session_dispatch(session))
    counts["redispatched"] += 1


def _reconcile_stop(session: NotebookSession, counts: dict[str, int]) -> None:
    """A stop nobody confirmed: done if the host no longer reports it, else sent again."""
    now = timezone.now()
    reported = _reported(session)
    host = session.host
    if (
        reported is None
        and host is not None
        and host.reported_at
        and (host.reported_at > session.progressed_at)
    ):
        lifecycle.session_end(
            session,
            reason=session.exit_reason or NotebookSession.ExitReason.STOPPED,
            at=session.progressed_at,
        )
        counts["ended"] += 1
        return
    if host is not None:
        lifecycle.stop_on_host(session)
        NotebookSession.objects.filter(pk=session.pk).update(progressed_at=now)
        counts["stops"] += 1


# --- idle shutdown ------------------------------------------------------------------------


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# Shared: a client per request would build a TLS context each time.
_http = httpx.Client(timeout=3.0)


def jupyter_activity(session: NotebookSession) -> datetime | None:
    """When Jupyter last saw activity (now, if a kernel is busy); None if it did not answer."""
    if not session.endpoint:
        return None
    base = f"{session.endpoint}{session.base_path}api"
    headers = {"Authorization": f"token {session.jupyter_token}"}
    try:
        status = _http.get(f"{base}/status", headers=headers)
        # no_track_activity: our own look must not count as activity.
        kernels = _http.get(f"{base}/kernels", params={"no_track_activity": "1"}, headers=headers)
    except httpx.HTTPError:
        return None
    if status.status_code != 200:  # noqa: PLR2004
        return None
    # The server runs its team's code and may answer anything: never let that stop the
    # sweep of every other team's notebooks.
    try:
        busy = kernels.status_code == 200 and any(  # noqa: PLR2004
            isinstance(k, dict) and k.get("execution_state") == "busy" for k in kernels.json()
        )
        last_activity = status.json().get("last_activity")
    except (ValueError, TypeError, AttributeError):
        return None
    if busy:
        return timezone.now()
    seen = _parse(last_activity if isinstance(last_activity, str) else None)
    return seen if seen is not None and seen.tzinfo is not None else None


def idle_sweep() -> dict[str, int]:
    counts = {"warned": 0, "stopped": 0}
    limits: dict[int, int | None] = {}  # each team's plan, read once a sweep
    for session_id, team_id in open_session_ids(status=Status.RUNNING):
        with team_scope(team_id):
            session = (
                NotebookSession.objects.select_related("notebook")
                .filter(pk=session_id, ended_at__isnull=True)
                .first()
            )
            if session is not None:
                if team_id not in limits:
                    limits[team_id] = idle_limit(team_id)
                _judge_idle(session, jupyter_activity(session), counts, limits[team_id])
    return counts


def _judge_idle(
    session: NotebookSession,
    seen: datetime | None,
    counts: dict[str, int],
    limit: int | Literal["plan"] | None = "plan",
) -> None:
    notebook = session.notebook
    minutes = lifecycle.idle_timeout(notebook, limit=limit)
    if minutes <= 0:
        return
    now = timezone.now()
    last = max(t for t in (session.activity_at, session.ready_at, seen) if t is not None)
    timeout = timedelta(minutes=minutes)
    warn_before = min(timedelta(minutes=settings.LATTICE_IDLE_WARN_MINUTES), timeout / 4)
    idle_for = now - last
    if idle_for >= timeout:
        notebook_stop(
            team=notebook.team,
            actor=None,
            notebook=notebook,
            reason=NotebookSession.ExitReason.IDLE,
        )
        counts["stopped"] += 1
        return
    with transaction.atomic():
        fields = []
        if session.activity_at != last:
            session.activity_at = last
            fields.append("activity_at")
        warn = idle_for >= timeout - warn_before
        if warn and session.idle_warned_at is None:
            session.idle_warned_at = now
            fields.append("idle_warned_at")
            counts["warned"] += 1
        elif not warn and session.idle_warned_at is not None:
            session.idle_warned_at = None  # active again: the warning goes away
            fields.append("idle_warned_at")
        if fields:
            session.save(update_fields=fields)
        if "idle_warned_at" in fields:
            lifecycle.publish_status(notebook, session)
