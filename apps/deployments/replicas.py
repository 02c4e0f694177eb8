"""A replica's way from placing to ready to ended: a workload of kind "dp" ("dp-<replica>"),
placed, started and found again exactly as a notebook session is (apps.notebooks.lifecycle).

1. ``replica_create`` makes a replica of a revision and queues ``replica_place``: the machine
   queue (apps.machines.queue) places it or it waits in line; once placed, its host's agent
   is asked to start it (``replica_dispatch``, with the spec apps.deployments.spec builds and
   the options that make the agent wait for the model server's own READY).
2. The agent's events (``replica_event``; the controller registers the kind "dp" and queues
   a reconcile after each): progress (downloading the image, copying the model, "loading":
   setup() runs), started (billing starts), ready (the health route said READY; only with
   an endpoint on its host's own workload address), failed (SETUP_FAILED with setup()'s
   error, a timeout, an exit), stopped. Only the host it was placed on speaks for it, and a
   late event never moves a replica back.
3. ``replica_drain`` takes a ready replica out of the routes (in-flight requests finish),
   ``replica_stop`` asks its host to stop it, ``replica_end`` closes it once (stopped,
   failed, lost) and frees its placement.

Whenever a replica becomes ready or stops being ready, the gateway's routes are told
(apps.deployments.routing.routes_changed) once the transaction commits.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from apps.core.errors import ServiceError
from apps.core.tenancy import team_scope
from apps.datasets.blob_urls import with_read_urls
from apps.deployments import routing
from apps.deployments.events import deployment_event, replica_published
from apps.deployments.models import Replica, Revision
from apps.deployments.spec import health_path, replica_spec
from apps.machines.agent import AGENT_TIME_LIMIT, agent_start, agent_stop, spec_to_task
from apps.machines.models import PlacementRequest
from apps.machines.queue import (
    owner_free_unclaimed,
    owner_placed,
    owner_placement_request,
    owner_take_placement,
    placement_free,
)
from apps.machines.reports import workload_event
from apps.machines.services import endpoint_on_host
from apps.notebooks.mounts import copy_allowance
from apps.teams.scope import team_task

if TYPE_CHECKING:
    from datetime import datetime

    from apps.teams.models import Team

logger = logging.getLogger(__name__)

S = Replica.Status
# How far along the way to ready each status is: a late event never moves a replica back.
_RANK = {S.PLACING: 0, S.STARTING: 1, S.LOADING: 2, S.READY: 3, S.DRAINING: 4, S.STOPPING: 5}
# Statuses that count toward a revision's replicas (not on their way out).
SERVING_STATUSES = frozenset({S.PLACING, S.STARTING, S.LOADING, S.READY})
ENDED_STATUSES = frozenset({S.STOPPED, S.FAILED, S.LOST})


def replica_of_workload(name: str) -> int | None:
    """The replica of workload "dp-<replica>", or None for another name."""
    kind, _, rest = name.partition("-")
    return int(rest) if kind == "dp" and rest.isdigit() else None


def lock_replica(replica_id: int, team: Team | int) -> Replica | None:
    return (
        Replica.objects.for_team(team)
        .select_for_update(of=("self",), no_key=True)
        .select_related("revision", "machine_type", "host", "placement", "deployment")
        .filter(pk=replica_id)
        .first()
    )


def replica_set_status(replica: Replica, status: str, message: str = "") -> None:
    """Record a status; the viewers are told, and the gateway too when readiness changed."""
    was = replica.status
    replica.status = status
    replica.status_message = message[:1000]
    replica.progressed_at = timezone.now()
    replica.save(update_fields=["status", "status_message", "progressed_at"])
    replica_published(replica)
    if S.READY in (was, status) and was != status:
        routes_changed_on_commit(replica.deployment_id)


def routes_changed_on_commit(deployment_id: int) -> None:
    transaction.on_commit(lambda: routing.routes_changed(deployment_id))


# --- placing and starting -------------------------------------------------------------------


def replica_create(revision: Revision, *, why: str = "") -> Replica:
    """A new replica of ``revision``, on its way to a host once the transaction commits."""
    replica = Replica.objects.for_team(revision.team_id).create(
        team_id=revision.team_id,
        deployment_id=revision.deployment_id,
        revision=revision,
        machine_type_id=revision.machine_type_id,
        status=S.PLACING,
        status_message="Waiting for a machine.",
    )
    replica_published(replica)
    deployment_event(
        revision.deployment,
        "replica_started",
        f"Replica {replica.pk} of r{revision.number} is starting" + (f" ({why})." if why else "."),
        revision=revision,
        replica=replica,
    )
    on_commit_place(replica)
    return replica


def on_commit_place(replica: Replica) -> None:
    replica_id, team_id = replica.pk, replica.team_id
    transaction.on_commit(lambda: replica_place_task.delay(replica_id, team_id=team_id))


@shared_task(name="deployments.replica_place", soft_time_limit=60, time_limit=90)
@team_task
def replica_place_task(replica_id: int, *, team: Team) -> None:
    """Find room for a replica waiting to be placed and send it to its host."""
    replica = Replica.objects.for_team(team).filter(pk=replica_id).first()
    if replica is not None:
        replica_place(replica)


def replica_place(replica: Replica) -> None:
    """Find room for a placing replica; start it there, or leave it waiting with its place."""
    request = owner_placement_request(replica, waiting=S.PLACING)
    if request is None:
        return
    with transaction.atomic():
        locked = lock_replica(replica.pk, replica.team_id)
        if locked is None:
            return
        replica = locked
        taken = owner_take_placement(replica, request, waiting=S.PLACING)
        if isinstance(taken, str):
            if taken != replica.status_message:
                replica_set_status(replica, S.PLACING, taken)
            return
        if taken is None:
            return
        replica_set_status(replica, S.STARTING, f"Placed on {taken.host.name}.")
        transaction.on_commit(lambda: replica_dispatch(replica))


def on_workload_placed(name: str) -> None:
    """A waiting replica's request was placed by whoever moved the line: on with it now."""
    owner_placed(
        name, Replica, replica_of_workload(name), waiting=S.PLACING, place=replica_place_task
    )


def _free_unclaimed(workload: str) -> None:
    """Give back a placement made for an ended replica that never took it."""
    owner_free_unclaimed(workload, Replica)


def start_options(replica: Replica) -> dict[str, Any]:
    """What the agent needs to know to start it and tell when it is ready."""
    revision = replica.revision
    options: dict[str, Any] = {
        "stream": f"deployment-{replica.deployment_id}",
        "ready_path": health_path(revision),
        "ready_timeout": revision.startup_timeout,
    }
    if revision.serving == Revision.Serving.BUILTIN:
        # The model server's JSON says READY only once setup() finished, SETUP_FAILED
        # with its error: a 200 alone would be readiness that lies.
        options["health"] = "model-server"
    return options


def replica_dispatch(replica: Replica) -> None:
    """Ask the replica's host to start it (idempotent on the host: one workload)."""
    replica = (
        Replica.objects.for_team(replica.team_id)
        .select_related("revision", "machine_type", "host", "placement")
        .get(pk=replica.pk)
    )
    if replica.ended_at is not None or replica.host is None or replica.status == S.STOPPING:
        return
    Replica.objects.for_team(replica.team_id).filter(pk=replica.pk).update(
        start_attempts=replica.start_attempts + 1, progressed_at=timezone.now()
    )
    try:
        spec = replica_spec(replica)
    except ServiceError as refusal:
        # A team secret it names was deleted since the revision was made: it does not start
        # without it. It fails as a start its host refused would, with the reason.
        workload_event(replica.host, replica.workload, "failed", {"message": str(refusal)})
        return
    extra = copy_allowance(sum(int(f[2]) for d in spec.datasets for f in d["files"]))
    time_limit = max(AGENT_TIME_LIMIT, replica.revision.startup_timeout + 60) + extra
    spec = replace(spec, datasets=with_read_urls(spec.datasets, seconds=time_limit))
    host = replica.host
    agent_start.apply_async(
        args=(host.name, spec_to_task(spec), start_options(replica)),
        queue=host.queue,
        soft_time_limit=time_limit - 30,
        time_limit=time_limit,
    )


# --- what the agent says ------------------------------------------------------------------


def workload_stream(host_name: str, name: str) -> str | None:
    """The stream workload ``name``'s output goes to, if host ``host_name`` runs it."""
    replica_id = replica_of_workload(name)
    found = (
        # By the workload's own id and its host: the reporting host's own replica only.
        Replica.objects.unscoped()
        .filter(pk=replica_id, host__name=host_name)
        .values_list("deployment_id", flat=True)
        .first()
        if replica_id is not None
        else None
    )
    return f"deployment-{found}" if found is not None else None


def replica_event(host_name: str, name: str, event: str, data: dict[str, Any]) -> int | None:
    """An agent's event for workload "dp-<replica>"; the replica's deployment when it was
    believed (the controller reconciles it then), else None."""
    replica_id = replica_of_workload(name)
    found = (
        # By the workload's own id: which team's it is, to work in that team's scope.
        Replica.objects.unscoped().filter(pk=replica_id).values("team_id").first()
        if replica_id is not None
        else None
    )
    if replica_id is None or found is None:
        logger.info("event %s for %s, no such replica", event, name)
        return None
    with team_scope(found["team_id"]), transaction.atomic():
        replica = lock_replica(replica_id, found["team_id"])
        if replica is None:
            return None
        if replica.host is None or replica.host.name != host_name:
            # Only the host it was sent to speaks for a replica (hosts run strangers' code).
            logger.warning("event %s for %s from %s, not its host: ignored", event, name, host_name)
            return None
        handler = _HANDLERS.get(event)
        if handler is not None:
            handler(replica, data)
        return replica.deployment_id


def _advance(replica: Replica, status: str) -> bool:
    if replica.ended_at is not None:
        return False
    return _RANK.get(S(status), 0) > _RANK.get(S(replica.status), 0)


def _on_progress(replica: Replica, data: dict[str, Any]) -> None:
    phase = data.get("phase", "")
    if replica.ended_at is not None or replica.status not in (S.STARTING, S.LOADING):
        return
    if phase == "loading" and _advance(replica, S.LOADING):
        replica_set_status(replica, S.LOADING, "Loading the model (setup() runs).")
    elif phase == "pulling" and replica.status == S.STARTING:
        percent = data.get("percent")
        number = int(percent) if isinstance(percent, int) and 0 <= percent <= 100 else 0  # noqa: PLR2004
        replica_set_status(replica, S.STARTING, f"Downloading the image: {number}%.")
    elif phase == "copying" and replica.status == S.STARTING:
        replica_set_status(replica, S.STARTING, "Copying the model's files to the machine.")


def _on_started(replica: Replica, data: dict[str, Any]) -> None:
    if replica.ended_at is None and replica.started_at is None:
        replica.started_at = timezone.now()
        state = data.get("state")
        replica.runtime_state = state if isinstance(state, dict) else {}
        replica.save(update_fields=["started_at", "runtime_state"])
    if replica.status == S.STARTING and replica.ended_at is None:
        replica_set_status(replica, S.STARTING, "The server is up; waiting for it to be ready.")


def _on_ready(replica: Replica, data: dict[str, Any]) -> None:
    if not _advance(replica, S.READY):
        return
    endpoint = data.get("endpoint")
    assert replica.host is not None  # noqa: S101 - replica_event checked the host
    state = data.get("state")
    if (
        not isinstance(endpoint, str)
        or not endpoint_on_host(replica.host, endpoint)
        or urlsplit(endpoint).port != _reported_port(replica, state)
    ):
        # The gateway would send the callers' requests wherever this points: the host's
        # workload address, on the port the agent reported for this workload, or nothing.
        logger.warning(
            "ready for %s from %s with endpoint %r: not its workload's address and port, ignored",
            replica.workload,
            replica.host,
            endpoint,
        )
        return
    now = timezone.now()
    replica.runtime_state = state if isinstance(state, dict) else replica.runtime_state
    replica.endpoint = endpoint
    replica.started_at = replica.started_at or now
    replica.ready_at = now
    replica.save(update_fields=["runtime_state", "endpoint", "started_at", "ready_at"])
    replica_set_status(replica, S.READY, "Ready.")


def _reported_port(replica: Replica, state: Any) -> int | None:
    """The port the agent reported for this workload: in its "started" state (kept in
    ``runtime_state``), else in the "ready" report's state; None when none was."""
    recorded = replica.runtime_state if replica.started_at is not None else state
    port = recorded.get("port") if isinstance(recorded, dict) else None
    return port if isinstance(port, int) and not isinstance(port, bool) else None


def failure_message(data: dict[str, Any]) -> str:
    """The agent's reason in words a person can act on."""
    if data.get("setup_failed"):
        return f"SETUP_FAILED: the model's setup() raised: {str(data.get('error', ''))[:900]}"
    message = str(data.get("message", ""))[:900]
    if data.get("timeout"):
        return f"It did not become ready in time. {message}"
    return message or "It failed to start."


def _on_failed(replica: Replica, data: dict[str, Any]) -> None:
    if replica.ended_at is not None:
        return
    if replica.status == S.STOPPING:
        replica_end(replica, status=S.STOPPED, reason=replica.exit_reason or "stopped")
        return
    replica_end(replica, status=S.FAILED, reason="failed", message=failure_message(data))
    stop_on_host(replica)


def _on_stopped(replica: Replica, data: dict[str, Any]) -> None:
    if replica.ended_at is None and replica.status == S.STOPPING:
        replica_end(replica, status=S.STOPPED, reason=replica.exit_reason or "stopped")


_HANDLERS = {
    "progress": _on_progress,
    "started": _on_started,
    "ready": _on_ready,
    "failed": _on_failed,
    "stopped": _on_stopped,
}


# --- draining, stopping, ending -------------------------------------------------------------


def replica_drain(replica: Replica) -> None:
    """Out of the routes now; its in-flight requests finish before it is stopped."""
    if replica.ended_at is None and replica.status == S.READY:
        replica_set_status(replica, S.DRAINING, "Draining: no new requests, in-flight ones finish.")


def stop_on_host(replica: Replica) -> None:
    """Ask the replica's host, once the transaction commits, to stop its workload."""
    if replica.host is None:
        return
    host = replica.host
    args = (host.name, replica.workload, replica.runtime_state or None)
    transaction.on_commit(lambda: agent_stop.apply_async(args=args, queue=host.queue))


def replica_stop(replica: Replica, *, reason: str = "stopped", message: str = "Stopping.") -> None:
    """Stop an open replica: at once if it still waits for room, else through its host."""
    if replica.ended_at is not None or replica.status == S.STOPPING:
        return
    if replica.placement is None:
        PlacementRequest.objects.filter(
            workload=replica.workload, status=PlacementRequest.Status.WAITING
        ).update(status=PlacementRequest.Status.CANCELLED)
        replica_end(replica, status=S.STOPPED, reason=reason)
        return
    replica.exit_reason = reason[:16]
    replica.save(update_fields=["exit_reason"])
    replica_set_status(replica, S.STOPPING, message)
    stop_on_host(replica)


_END_WORDS = {S.STOPPED: "Stopped.", S.FAILED: "Failed.", S.LOST: "Lost: its machine lost it."}


def replica_end(
    replica: Replica,
    *,
    status: str,
    reason: str,
    at: datetime | None = None,
    message: str = "",
) -> None:
    """Close the replica (once): its end time and reason, its placement freed."""
    if replica.ended_at is not None:
        return
    ended = at or timezone.now()
    # Never before it started: billing reads ended_at - started_at.
    replica.ended_at = max(ended, replica.started_at) if replica.started_at else ended
    replica.exit_reason = reason[:16]
    replica.save(update_fields=["ended_at", "exit_reason"])
    if replica.placement is not None and replica.placement.active:
        placement_free(placement=replica.placement, reason="released", at=replica.ended_at)
    replica_set_status(replica, status, message or _END_WORDS.get(S(status), ""))
