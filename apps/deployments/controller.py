"""The deployment controller: one idempotent pass (``deployment_reconcile``) that brings a
deployment's replicas and traffic to what its revisions ask for.

It runs with the deployment's row locked, as a task queued whenever something changed (a
new revision, a replica's event, a wake, a pause: ``deployment_reconcile_soon``) and from
beat every LATTICE_DEPLOYMENT_SCALE_EVERY seconds (apps.deployments.tasks). Each pass:

1. **Repairs**: a replica whose placement the machines reconciler released (its container
   vanished, its host went silent) ends as lost; a start its host never got (silent for
   LATTICE_NOTEBOOK_REDISPATCH_AFTER, not in the host's report) is sent again; a stop
   nobody confirmed is sent again or taken as done; a start that outlived its startup
   timeout fails.
2. **Rollout** of the newest pending revision (older pending ones are superseded): it
   starts as many replicas as serve now (within its min..max, at least one) and waits
   until every one says READY (the model server's own word: never a mere open port).
   With ``canary_percent`` it takes that share of requests first, for
   LATTICE_DEPLOYMENT_CANARY_SECONDS, and fails if it answers a server error meanwhile;
   then 100%. A replica that fails (SETUP_FAILED, an exit) or outlives the startup
   timeout fails the revision, with the reason kept on it and shown in the events and
   the deployment's message, and the revision that served keeps serving. The startup
   timeout counts from when a replica was placed: one still waiting in line for room (no
   host has space beside the serving replicas) is not starting yet. While it waits, the
   revision and the deployment say so, with its place in line; after
   LATTICE_DEPLOYMENT_ROOM_WAIT the rollout fails with that reason (its place in line is
   given up: the line is first come, first served) and the old revision serves on.
3. **Retiring**: revisions no longer in ``traffic`` drain (their ready replicas leave the
   routes, in-flight requests finish: the gateway's in-flight count of that replica
   (apps.deployments.metrics.in_flight_replicas) reaches 0, after at least
   _DRAIN_AT_LEAST, or LATTICE_DEPLOYMENT_DRAIN_SECONDS pass) and are stopped. A replica
   scaled down drains the same way.
4. **Autoscaling** of each revision in traffic on requests in flight per replica
   (apps.deployments.metrics.in_flight): ceil(in flight / target), within min..max; up at
   once, down only once the current count has not been needed for
   LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER seconds (``Revision.scaled_at`` is when it last was);
   to zero (min 0) after ``scale_to_zero_after`` seconds without a request; back to one when
   the gateway holds a request (``deployment_wake``). Lost and failed replicas are
   replaced (not more than _CRASH_LIMIT failures in _CRASH_WINDOW: a crash loop stops).
5. **Status**: the deployment's status and message; the gateway's routes are told on
   commit whenever traffic or a replica's readiness changed.

A paused deployment (the spend cap: ``deployment_pause``) runs no replica until resumed; a
deleted one (``deployment_stop_all``) stops them all. A revision following a model alias
is rolled forward when the alias moves (``on_alias_moved``, the models.hooks.alias_moved
hook registered in apps.deployments.apps).
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.deployments import metrics
from apps.deployments.events import deployment_event
from apps.deployments.models import Deployment, MetricWindow, Replica, Revision
from apps.deployments.replicas import (
    SERVING_STATUSES,
    on_commit_place,
    replica_create,
    replica_dispatch,
    replica_drain,
    replica_end,
    replica_event,
    replica_stop,
    routes_changed_on_commit,
    stop_on_host,
)
from apps.machines.models import PlacementRequest
from apps.machines.queue import queue_position

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from apps.accounts.models import User
    from apps.models.models import ModelAlias
    from apps.teams.models import Team

logger = logging.getLogger(__name__)

RS = Replica.Status
VS = Revision.Status
DS = Deployment.Status
# A serving revision whose replicas failed this often within this window is not given more
# (each would fail the same way): the deployment says so instead.
_CRASH_LIMIT = 3
_CRASH_WINDOW = timedelta(minutes=5)
# A stop unconfirmed this long is sent again (or taken as done once its host no longer
# reports the workload).
_STOP_PATIENCE = timedelta(seconds=60)
# A replica still waiting for room is offered to the line again this often.
_PLACE_AGAIN = timedelta(seconds=30)
# Draining lasts at least this long before an idle replica stops: the gateway's routes learn
# of it at once (a generation bumped on commit), and a request it sent the replica just
# before reaches the database with the next flush (within a second): two flushes and some.
_DRAIN_AT_LEAST = timedelta(seconds=metrics.IN_FLIGHT_SECONDS)
# How a rollout's revision says its new replicas wait in line for room.
_WAITING_FOR_ROOM = "Waiting for room"


# --- what others call ---------------------------------------------------------------------


def deployment_reconcile_soon(deployment_id: int) -> None:
    """Queue the deployment's reconcile once the transaction commits."""
    transaction.on_commit(lambda: deployment_reconcile_task.delay(deployment_id))


@shared_task(name="deployments.reconcile", soft_time_limit=60, time_limit=90)
def deployment_reconcile_task(deployment_id: int) -> None:
    """One pass of the controller for one deployment."""
    # By its own id (queued with only the id): which team's it is, to work in its scope.
    found = Deployment.objects.unscoped().filter(pk=deployment_id).first()
    if found is not None:
        deployment_reconcile(found)


def deployment_wake(deployment_id: int) -> None:
    """A request is held for want of a ready replica: start one (cheap, idempotent; at most
    one reconcile queued a second however many requests wait)."""
    now = timezone.now()
    woke = (
        # By the id the gateway resolved from the request's route.
        Deployment.objects.unscoped()
        .filter(pk=deployment_id, deleted_at__isnull=True)
        .filter(
            Q(wake_requested_at__isnull=True) | Q(wake_requested_at__lt=now - timedelta(seconds=1))
        )
        .update(wake_requested_at=now)
    )
    if woke:
        deployment_reconcile_soon(deployment_id)


def deployment_pause(deployment: Deployment, reason: str) -> None:
    """Hold the deployment at zero replicas (the spend cap), saying why."""
    with team_scope(deployment.team_id), transaction.atomic():
        d = _lock(deployment.pk, deployment.team_id)
        if d is None or d.deleted_at is not None or d.paused_reason == reason[:300]:
            return
        d.paused_reason = reason[:300]
        d.status, d.status_message = DS.PAUSED, f"Paused: {reason}"[:500]
        d.save(update_fields=["paused_reason", "status", "status_message", "updated_at"])
        deployment_event(d, "paused", f"Paused: {reason}")
        deployment_reconcile_soon(d.pk)


def deployment_resume(deployment: Deployment) -> None:
    """Let a paused deployment scale again."""
    with team_scope(deployment.team_id), transaction.atomic():
        d = _lock(deployment.pk, deployment.team_id)
        if d is None or d.deleted_at is not None or not d.paused_reason:
            return
        d.paused_reason = ""
        d.status, d.status_message = DS.DEPLOYING, "Resuming."
        d.save(update_fields=["paused_reason", "status", "status_message", "updated_at"])
        deployment_event(d, "resumed", "Resumed: replicas start again.")
        deployment_reconcile_soon(d.pk)


def deployment_stop_all(deployment: Deployment, reason: str) -> None:
    """Stop every replica of the deployment (it is deleted): no traffic, every revision
    retired."""
    with team_scope(deployment.team_id), transaction.atomic():
        d = _lock(deployment.pk, deployment.team_id)
        if d is not None:
            _stop_everything(d, reason)


def deployment_reconcile(deployment: Deployment) -> None:
    """One idempotent pass of the controller (see the module's docstring)."""
    with team_scope(deployment.team_id), transaction.atomic():
        d = _lock(deployment.pk, deployment.team_id)
        if d is not None:
            _Pass(d).run()


def on_replica_event(host_name: str, name: str, event: str, data: dict[str, Any]) -> None:
    """The workload kind "dp"'s events (registered in apps.deployments.apps): applied to the
    replica, then its deployment reconciled (a replica ready may let a rollout go on; one
    failed may fail it, or be replaced)."""
    deployment_id = replica_event(host_name, name, event, data)
    if deployment_id is not None and event in ("ready", "failed", "stopped"):
        deployment_reconcile_soon(deployment_id)


def on_alias_moved(team: Team, actor: User | None, alias: ModelAlias) -> None:
    """A model alias names another version: each deployment of the team whose newest
    revision follows it gets a new revision serving that version ("alias moved to vN")."""
    with team_scope(team.pk), transaction.atomic():
        live = Deployment.objects.for_team(team).filter(deleted_at__isnull=True).order_by("pk")
        for found in live:
            # Locked as the services lock it, before the newest revision is read: a change or
            # rollback committing meanwhile cannot take the same revision number.
            d = _lock(found.pk, found.team_id)
            if d is None or d.deleted_at is not None:
                continue
            latest = (
                Revision.objects.for_team(team)
                .filter(deployment=d)
                .exclude(status=VS.FAILED)
                .select_related("model_version")
                .order_by("-number")
                .first()
            )
            if (
                latest is None
                or latest.follows_alias != alias.name
                or latest.model_version is None
                or latest.model_version.model_id != alias.model_id
                or latest.model_version_id == alias.version_id
            ):
                continue
            version = alias.version
            revision = revision_copy(
                latest,
                model_version=version,
                reason=f"alias moved to v{version.number}",
                created_by=actor,
            )
            deployment_event(
                d,
                "alias_moved",
                f"The alias {alias.name} moved to v{version.number}: "
                f"rolling out r{revision.number}.",
                revision=revision,
            )
            deployment_reconcile_soon(d.pk)


def revision_copy(revision: Revision, **changes: Any) -> Revision:
    """A new revision of the same deployment with ``revision``'s spec and ``changes``."""
    copied = ("team", "deployment", "reason", "created_by", *Revision.SPEC_FIELDS)
    spec = {name: getattr(revision, name) for name in copied}
    last = (
        Revision.objects.for_team(revision.team_id)
        .filter(deployment_id=revision.deployment_id)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )
    return Revision.objects.for_team(revision.team_id).create(
        **{**spec, **changes, "number": (last or 0) + 1}
    )


# --- the pass -----------------------------------------------------------------------------


def _lock(deployment_id: int, team_id: int) -> Deployment | None:
    # NO KEY UPDATE: an agent's event holds its replica's row and, at commit, the foreign
    # key check of the rows it wrote takes KEY SHARE on this one; FOR UPDATE would block
    # that check while the pass waits for the replica: a deadlock (tests/deployments/
    # test_locks.py). The pass never changes the deployment's key.
    return (
        Deployment.objects.for_team(team_id)
        .select_for_update(of=("self",), no_key=True)
        .filter(pk=deployment_id)
        .first()
    )


def _open_replicas(d: Deployment) -> list[Replica]:
    return list(
        Replica.objects.for_team(d.team_id)
        .select_for_update(of=("self",), no_key=True)
        .select_related("placement", "host", "revision", "machine_type")
        .filter(deployment=d, ended_at__isnull=True)
        .order_by("pk")
    )


def _stop_everything(d: Deployment, reason: str) -> None:
    stopping = [r for r in _open_replicas(d) if r.status != RS.STOPPING]
    for replica in stopping:
        replica_stop(replica, reason="stopped", message=f"Stopping: {reason}")
    revisions = Revision.objects.for_team(d.team_id).filter(deployment=d)
    retired = revisions.exclude(status__in=(VS.FAILED, VS.RETIRED)).update(
        status=VS.RETIRED, retired_at=timezone.now(), replicas_wanted=0
    )
    revisions.filter(status=VS.FAILED).update(replicas_wanted=0)
    if d.traffic or d.rollout_id:
        d.traffic, d.rollout = {}, None
        d.save(update_fields=["traffic", "rollout", "updated_at"])
        routes_changed_on_commit(d.pk)
    if stopping or retired:
        deployment_event(d, "stopped", f"Every replica stops: {reason}")


class _Pass:
    """One reconcile of one locked deployment."""

    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.now = timezone.now()
        self.replicas = _open_replicas(d)
        self.revisions = {
            r.pk: r for r in Revision.objects.for_team(d.team_id).filter(deployment=d)
        }
        self._in_flight: dict[int, int] | None = None
        self._in_flight_replicas: dict[int, int] | None = None
        self.replaced: set[int] = set()  # revisions that lost a replica this pass

    # -- helpers

    @property
    def in_flight(self) -> dict[int, int]:
        if self._in_flight is None:
            self._in_flight = {int(k): int(v) for k, v in metrics.in_flight(self.d.pk).items()}
        return self._in_flight

    @property
    def in_flight_replicas(self) -> dict[int, int]:
        if self._in_flight_replicas is None:
            found = metrics.in_flight_replicas(self.d.pk)
            self._in_flight_replicas = {int(k): int(v) for k, v in found.items()}
        return self._in_flight_replicas

    def traffic(self) -> dict[int, int]:
        return {int(k): int(v) for k, v in (self.d.traffic or {}).items()}

    def set_traffic(self, split: dict[int, int]) -> None:
        value = {str(k): v for k, v in split.items() if v > 0}
        if value != self.d.traffic:
            self.d.traffic = value
            self.d.save(update_fields=["traffic", "updated_at"])
            routes_changed_on_commit(self.d.pk)

    def of(self, revision: Revision, statuses: Iterable[str] = SERVING_STATUSES) -> list[Replica]:
        wanted = set(statuses)
        return [
            r
            for r in self.replicas
            if r.revision_id == revision.pk and r.ended_at is None and r.status in wanted
        ]

    def save_revision(self, revision: Revision, **fields: Any) -> None:
        changed = [k for k, v in fields.items() if getattr(revision, k) != v]
        for k in changed:
            setattr(revision, k, fields[k])
        if changed:
            assert set(changed) <= Revision.MUTABLE  # noqa: S101 - a spec never changes
            revision.save(update_fields=changed)

    def event(self, kind: str, message: str, **kw: Any) -> None:
        deployment_event(self.d, kind, message, **kw)

    # -- the steps

    def run(self) -> None:
        self.repair()
        if self.d.deleted_at is not None:
            _stop_everything(self.d, "the deployment was deleted")
            return
        if self.d.paused_reason:
            self.hold_paused()
            return
        self.rollout()
        self.retire()
        for revision_id in sorted(self.traffic()):
            revision = self.revisions.get(revision_id)
            if revision is not None:
                self.scale(revision)
        self.drain()
        self.set_status()

    def repair(self) -> None:
        for replica in list(self.replicas):
            placement = replica.placement
            if placement is not None and not placement.active and replica.status == RS.STOPPING:
                # Asked to stop, and gone: stopped, whoever noticed first.
                replica_end(replica, status=RS.STOPPED, reason=replica.exit_reason or "stopped")
            elif placement is not None and not placement.active:
                lost = placement.end_reason == "lost"
                replica_end(
                    replica,
                    status=RS.LOST if lost else RS.FAILED,
                    reason="lost" if lost else "failed",
                    at=placement.released_at,
                )
                self.replaced.add(replica.revision_id)
                self.event(
                    "replica_lost",
                    f"Replica {replica.pk} of r{replica.revision.number} was lost "
                    "(its container or its machine went away).",
                    revision=replica.revision,
                    replica=replica,
                )
            elif (
                replica.status == RS.STOPPING and self.now - replica.progressed_at > _STOP_PATIENCE
            ):
                self.confirm_stop(replica)
            elif replica.status == RS.PLACING and self.now - replica.progressed_at > _PLACE_AGAIN:
                Replica.objects.for_team(self.d.team_id).filter(pk=replica.pk).update(
                    progressed_at=self.now
                )
                on_commit_place(replica)
            elif replica.status == RS.STARTING and self.start_lost(replica):
                # Its start made no progress and its host does not run it (an agent killed
                # with the message): sent again; the agent's start is idempotent.
                Replica.objects.for_team(self.d.team_id).filter(pk=replica.pk).update(
                    progressed_at=self.now
                )
                transaction.on_commit(partial(replica_dispatch, replica))
                self.event(
                    "replica_redispatched",
                    f"Replica {replica.pk}'s start made no progress: sent to "
                    f"{replica.host.name if replica.host else 'its host'} again.",
                    revision=replica.revision,
                    replica=replica,
                )
            elif replica.status in (RS.STARTING, RS.LOADING) and self.timed_out(replica):
                timeout = replica.revision.startup_timeout
                replica_end(
                    replica,
                    status=RS.FAILED,
                    reason="failed",
                    message=f"It did not become ready within its startup timeout ({timeout} s).",
                )
                stop_on_host(replica)
        self.replicas = [r for r in self.replicas if r.ended_at is None]

    def start_lost(self, replica: Replica) -> bool:
        """Placed and sent, yet silent for a while, and not running or starting on its
        host by the host's last report (taken after the start was sent)."""
        host = replica.host
        redispatch = timedelta(seconds=settings.LATTICE_NOTEBOOK_REDISPATCH_AFTER)
        if host is None or replica.started_at is not None:
            return False
        if self.now - replica.progressed_at < redispatch:
            return False
        if host.reported_at is None or host.reported_at < replica.progressed_at:
            return False
        return not any(w.get("name") == replica.workload for w in host.reported_workloads)

    def timed_out(self, replica: Replica) -> bool:
        # The agent says so itself at the timeout; this is for a start whose agent died.
        limit = timedelta(seconds=replica.revision.startup_timeout + 60)
        return self.now - _placed_at(replica) > limit

    def confirm_stop(self, replica: Replica) -> None:
        host = replica.host
        reported = host is not None and any(
            w.get("name") == replica.workload for w in host.reported_workloads
        )
        if host is None or (
            not reported and host.reported_at and host.reported_at > replica.progressed_at
        ):
            replica_end(replica, status=RS.STOPPED, reason=replica.exit_reason or "stopped")
            return
        stop_on_host(replica)
        Replica.objects.for_team(self.d.team_id).filter(pk=replica.pk).update(
            progressed_at=self.now
        )

    def hold_paused(self) -> None:
        for replica in self.replicas:
            replica_stop(replica, reason="paused", message=f"Stopping: {self.d.paused_reason}")
        for revision in self.revisions.values():
            self.save_revision(revision, replicas_wanted=0)
        if self.d.status != DS.PAUSED:
            self.d.status = DS.PAUSED
            self.d.status_message = f"Paused: {self.d.paused_reason}"[:500]
            self.d.save(update_fields=["status", "status_message", "updated_at"])

    # -- rollout

    def candidate(self) -> Revision | None:
        """The newest pending revision; older pending ones are superseded by it."""
        pending = sorted(
            (r for r in self.revisions.values() if r.status in (VS.PENDING, VS.STARTING)),
            key=lambda r: r.number,
            reverse=True,
        )
        for older in pending[1:]:
            if older.pk not in self.traffic():
                self.save_revision(
                    older,
                    status=VS.RETIRED,
                    status_message=f"Superseded by r{pending[0].number}.",
                    retired_at=self.now,
                    replicas_wanted=0,
                )
                self.event(
                    "superseded",
                    f"r{older.number} was superseded by r{pending[0].number}.",
                    revision=older,
                )
        return pending[0] if pending else None

    def rollout(self) -> None:
        revision = self.candidate()
        if revision is None:
            if self.d.rollout_id is not None:
                self.d.rollout = None
                self.d.save(update_fields=["rollout", "updated_at"])
            return
        serving = [
            self.revisions[i] for i in self.traffic() if i in self.revisions and i != revision.pk
        ]
        if revision.status == VS.PENDING or self.d.rollout_id != revision.pk:
            self.save_revision(
                revision, status=VS.STARTING, status_message="Starting its replicas."
            )
            self.d.rollout = revision
            self.d.save(update_fields=["rollout", "updated_at"])
            why = f" ({revision.reason})" if revision.reason else ""
            self.event(
                "rollout_started", f"Rolling out r{revision.number}{why}.", revision=revision
            )
        size = max(1, revision.min_replicas, sum(r.replicas_wanted for r in serving))
        size = min(size, max(1, revision.max_replicas))
        if revision.replicas_wanted != size:
            # The stabilisation window of its size counts from here (scaled down, once it
            # serves, only after a window that did not need it).
            self.save_revision(revision, replicas_wanted=size, scaled_at=self.now)
        failure = self.rollout_failure(revision)
        if failure:
            self.fail_rollout(revision, failure, serving)
            return
        mine = self.of(revision)
        for _ in range(size - len(mine)):
            self.replicas.append(replica_create(revision, why=f"rolling out r{revision.number}"))
        self.say_waiting(revision)
        ready = self.of(revision, [RS.READY])
        if len(ready) < size:
            return
        if revision.ready_at is None:
            self.save_revision(revision, ready_at=self.now)
            self.event(
                "revision_ready",
                f"r{revision.number}'s {len(ready)} replica(s) said READY.",
                revision=revision,
            )
        canary = serving and 0 < revision.canary_percent < 100  # noqa: PLR2004
        if canary and not self.canary(revision, serving):
            return
        self.set_traffic({revision.pk: 100})
        self.save_revision(revision, status=VS.SERVING, status_message="")
        self.d.rollout = None
        self.d.status_message = f"Serving r{revision.number}."
        self.d.save(update_fields=["rollout", "status_message", "updated_at"])
        self.event("rolled_out", f"r{revision.number} takes all requests.", revision=revision)

    def rollout_failure(self, revision: Revision) -> str:
        """Why the rollout of ``revision`` failed, or "" while it may still succeed."""
        failed = (
            Replica.objects.for_team(self.d.team_id)
            .filter(revision=revision, status__in=(RS.FAILED, RS.LOST))
            .order_by("ended_at", "pk")
            .first()
        )
        if failed is not None:
            return failed.status_message or "A replica failed to start."
        for replica in self.of(revision, [RS.STARTING, RS.LOADING]):
            # From when it was placed: its wait in line for room was no start.
            if self.now - _placed_at(replica) > timedelta(seconds=revision.startup_timeout):
                return f"Not ready within its startup timeout ({revision.startup_timeout} s)."
        room_wait = settings.LATTICE_DEPLOYMENT_ROOM_WAIT
        for replica in self.of(revision, [RS.PLACING]):
            if (self.now - replica.requested_at).total_seconds() > room_wait:
                return (
                    f"No room for its replicas within {_span(room_wait)}: no host had a free "
                    f"{replica.machine_type.name} beside the serving replicas. Free some room "
                    "(or add a host), then roll out again."
                )
        return ""

    def waiting_in_line(self, revision: Revision) -> list[tuple[Replica, int | None]]:
        """The revision's replicas waiting in line for room, each with its place (1: next)."""
        placing = {r.workload: r for r in self.of(revision, [RS.PLACING])}
        if not placing:
            return []
        requests = PlacementRequest.objects.filter(
            workload__in=placing, status=PlacementRequest.Status.WAITING
        ).select_related("machine_type")
        return [(placing[request.workload], queue_position(request)) for request in requests]

    def say_waiting(self, revision: Revision) -> None:
        """While a rollout's replica waits in line for room, its revision says so (with its
        place and how long it may wait); once none waits, it says it is starting again."""
        waiting = self.waiting_in_line(revision)
        if not waiting:
            if revision.status_message.startswith(_WAITING_FOR_ROOM):
                self.save_revision(revision, status_message="Starting its replicas.")
            return
        replica, place = min(waiting, key=lambda w: w[1] or 1)
        where = "next in line" if (place or 1) <= 1 else f"{(place or 1) - 1} ahead in line"
        waited = (self.now - min(r.requested_at for r, _ in waiting)).total_seconds()
        message = (
            f"{_WAITING_FOR_ROOM}: no host has a free {replica.machine_type.name} beside the "
            f"serving replicas ({where}; waited {_span(waited)} of at most "
            f"{_span(settings.LATTICE_DEPLOYMENT_ROOM_WAIT)}, then the rollout fails and what "
            "serves keeps serving)."
        )
        if not revision.status_message.startswith(_WAITING_FOR_ROOM):
            self.event(
                "waiting_for_room",
                f"r{revision.number} waits for room: no host has a free "
                f"{replica.machine_type.name} beside the serving replicas ({where}).",
                revision=revision,
                replica=replica,
            )
        self.save_revision(revision, status_message=message[:1000])

    def fail_rollout(self, revision: Revision, why: str, serving: list[Revision]) -> None:
        self.save_revision(revision, status=VS.FAILED, status_message=why[:1000], replicas_wanted=0)
        for replica in self.of(revision, [*SERVING_STATUSES, RS.DRAINING]):
            replica_stop(replica, reason="failed", message="Stopping: its revision failed.")
        if revision.pk in self.traffic():
            rest = {k: v for k, v in self.traffic().items() if k != revision.pk}
            self.set_traffic(_scaled_to_100(rest))
        self.d.rollout = None
        still = ", ".join(f"r{r.number}" for r in serving)
        tail = f" {still} keeps serving." if still else " Nothing is serving."
        self.d.status_message = f"r{revision.number} failed and was rolled back: {why}"[:500]
        self.d.save(update_fields=["rollout", "status_message", "updated_at"])
        self.event("rollout_failed", f"r{revision.number} failed: {why}{tail}", revision=revision)

    def canary(self, revision: Revision, serving: list[Revision]) -> bool:
        """Give the canary its share, watch it; True once it may take everything."""
        split = self.traffic()
        if split.get(revision.pk, 0) != revision.canary_percent:
            others = _scaled_to_100({k: v for k, v in split.items() if k != revision.pk})
            rest = 100 - revision.canary_percent
            shares = _scaled_to_100(others, total=rest)
            self.set_traffic({**shares, revision.pk: revision.canary_percent})
            self.save_revision(revision, ready_at=self.now)  # the canary's watch starts now
            self.event(
                "canary",
                f"r{revision.number} takes {revision.canary_percent}% of requests (canary).",
                revision=revision,
            )
            return False
        assert revision.ready_at is not None  # noqa: S101 - set when it became ready
        errors = (
            MetricWindow.objects.for_team(self.d.team_id)
            .filter(revision=revision, second__gte=revision.ready_at)
            .aggregate(n=Sum("status_5xx"))["n"]
            or 0
        )
        if errors:
            self.fail_rollout(
                revision, f"The canary answered {errors} server error(s) (5xx).", serving
            )
            return False
        watch = timedelta(seconds=settings.LATTICE_DEPLOYMENT_CANARY_SECONDS)
        return self.now - revision.ready_at >= watch

    # -- retiring and draining

    def retire(self) -> None:
        in_traffic = set(self.traffic())
        rollout = self.d.rollout_id
        for revision in self.revisions.values():
            if revision.pk in in_traffic or revision.pk == rollout:
                if revision.status == VS.RETIRED:  # put back in traffic by the person
                    self.save_revision(revision, status=VS.SERVING, retired_at=None)
                continue
            if revision.status == VS.SERVING:
                self.save_revision(
                    revision, status=VS.RETIRED, retired_at=self.now, replicas_wanted=0
                )
                self.event(
                    "retired", f"r{revision.number} no longer takes requests.", revision=revision
                )
            for replica in self.of(revision):
                if replica.status == RS.READY:
                    replica_drain(replica)
                else:
                    replica_stop(
                        replica, reason="stopped", message="Stopping: its revision retired."
                    )

    def drain(self) -> None:
        drain_for = timedelta(seconds=settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS)
        for replica in self.replicas:
            if replica.status != RS.DRAINING or replica.ended_at is not None:
                continue
            draining_for = self.now - replica.progressed_at
            # Its own requests, not its revision's: one replica scaled down out of several
            # stops once it is idle, while the others serve on.
            idle = self.in_flight_replicas.get(replica.pk, 0) == 0
            if (idle and draining_for >= _DRAIN_AT_LEAST) or draining_for >= drain_for:
                replica_stop(replica, reason="stopped", message="Drained; stopping.")

    # -- scaling

    def scale(self, revision: Revision) -> None:
        """Set the revision's replicas_wanted from its in-flight requests, then make its
        replicas that many."""
        if revision.pk == self.d.rollout_id and revision.status != VS.SERVING:
            return  # a canary: its size is the rollout's
        wanted = self.wanted(revision)
        current = revision.replicas_wanted
        n = revision.number
        flight = self.in_flight.get(revision.pk, 0)
        if wanted > current:
            self.save_revision(revision, replicas_wanted=wanted, scaled_at=self.now)
            if current:
                self.event(
                    "scaled_up",
                    f"r{n}: {current} -> {wanted} replicas ({flight} requests in flight, "
                    f"target {revision.target_in_flight} each).",
                    revision=revision,
                )
            elif revision.ready_at is not None:
                self.event(
                    "woken", f"r{n}: a request arrived; starting a replica.", revision=revision
                )
        elif wanted < current:
            if wanted == 0:
                self.save_revision(revision, replicas_wanted=0, scaled_at=self.now)
                self.event(
                    "scaled_to_zero",
                    f"r{n}: no request for {revision.scale_to_zero_after} s; scaled to zero.",
                    revision=revision,
                )
            elif revision.scaled_at is None or self.now - revision.scaled_at >= timedelta(
                seconds=settings.LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER
            ):
                self.save_revision(revision, replicas_wanted=wanted, scaled_at=self.now)
                self.event(
                    "scaled_down",
                    f"r{n}: {current} -> {wanted} replicas ({flight} requests in flight).",
                    revision=revision,
                )
        elif (
            wanted
            and math.ceil(flight / max(1, revision.target_in_flight)) >= current
            and (
                revision.scaled_at is None or self.now - revision.scaled_at >= timedelta(seconds=1)
            )
        ):
            # The load still needs the current count: the stabilisation window counts from
            # now. (At min with no load nothing is written: it cannot go lower anyway.)
            self.save_revision(revision, scaled_at=self.now)
        self.fit(revision)

    def wanted(self, revision: Revision) -> int:
        flight = self.in_flight.get(revision.pk, 0)
        need = math.ceil(flight / max(1, revision.target_in_flight))
        wanted = max(revision.min_replicas, min(need, revision.max_replicas))
        if revision.min_replicas > 0 or wanted > 0:
            return wanted
        # min 0: one while requests come, none after the idle time, one again on a wake.
        wake = self.d.wake_requested_at
        cold_wait = timedelta(seconds=settings.LATTICE_DEPLOYMENT_COLD_WAIT)
        if wake is not None and self.now - wake < cold_wait:
            return 1
        if revision.replicas_wanted == 0:
            return 0
        if revision.scale_to_zero_after is None:
            return 1
        # Idle since the last request, the last wake, or since it became ready.
        seen = [t for t in (self.d.last_request_at, wake, revision.ready_at) if t]
        last = max(seen) if seen else revision.created_at
        idle = self.now - last >= timedelta(seconds=revision.scale_to_zero_after)
        return 0 if idle else 1

    def fit(self, revision: Revision) -> None:
        """Start or stop replicas until the revision has ``replicas_wanted``."""
        mine = self.of(revision)
        missing = revision.replicas_wanted - len(mine)
        if missing > 0:
            if self.crash_looping(revision):
                return
            why = "replacing a lost replica" if revision.pk in self.replaced else "scaling"
            for _ in range(missing):
                self.replicas.append(replica_create(revision, why=why))
        elif missing < 0:
            # The ones not serving yet go first, then the newest ready ones.
            rank = {RS.PLACING: 0, RS.STARTING: 1, RS.LOADING: 2, RS.READY: 3}
            extra = sorted(mine, key=lambda r: (rank[RS(r.status)], -r.pk))[:-missing]
            for replica in extra:
                if replica.status == RS.READY:
                    replica_drain(replica)
                else:
                    replica_stop(replica, reason="stopped", message="Stopping: scaled down.")

    def crash_looping(self, revision: Revision) -> bool:
        recent = (
            Replica.objects.for_team(self.d.team_id)
            .filter(revision=revision, status=RS.FAILED, ended_at__gte=self.now - _CRASH_WINDOW)
            .count()
        )
        if recent < _CRASH_LIMIT:
            return False
        message = (
            f"r{revision.number}'s replicas failed {recent} times in "
            f"{int(_CRASH_WINDOW.total_seconds() // 60)} minutes: not starting more for now."
        )
        if revision.status_message != message:
            self.save_revision(revision, status_message=message)
            self.event("crash_loop", message, revision=revision)
        return True

    # -- status

    def set_status(self) -> None:
        serving = [self.revisions[i] for i in self.traffic() if i in self.revisions]
        ready = sum(len(self.of(r, [RS.READY])) for r in serving)
        wanted = sum(r.replicas_wanted for r in serving)
        rollout = self.revisions.get(self.d.rollout_id) if self.d.rollout_id else None
        if rollout is not None:
            have = len(self.of(rollout, [RS.READY]))
            status = DS.DEPLOYING
            message = f"Rolling out r{rollout.number}: {have} of {rollout.replicas_wanted} ready."
            if rollout.status_message.startswith(_WAITING_FOR_ROOM):
                message = f"{message} {rollout.status_message}"
        elif not serving:
            latest = max(self.revisions.values(), key=lambda r: r.number, default=None)
            if latest is not None and latest.status == VS.FAILED:
                status, message = DS.FAILED, self.d.status_message
            else:
                status, message = DS.DEPLOYING, "Waiting for a revision."
        elif wanted == 0:
            status, message = DS.SCALED_TO_ZERO, "Scaled to zero: the next request wakes it."
        elif ready >= wanted:
            # A rolled-back revision's reason stays shown until the next rollout.
            kept = "rolled back" in self.d.status_message
            names = ", ".join(f"r{r.number}" for r in sorted(serving, key=lambda r: r.number))
            status, message = DS.READY, self.d.status_message if kept else f"Serving {names}."
        elif ready == 0 and any(r.replicas_wanted and not self.of(r, [RS.READY]) for r in serving):
            status, message = DS.DEPLOYING, f"Starting: 0 of {wanted} replicas ready."
        else:
            status, message = DS.DEGRADED, f"{ready} of {wanted} replicas ready."
        if (status, message[:500]) != (self.d.status, self.d.status_message):
            self.d.status, self.d.status_message = status, message[:500]
            self.d.save(update_fields=["status", "status_message", "updated_at"])


def _placed_at(replica: Replica) -> datetime:
    """When the replica got its room (its startup timeout counts from here, not from its
    wait in line); when it was asked for if it has no placement."""
    placement = replica.placement
    return placement.created_at if placement is not None else replica.requested_at


def _span(seconds: float) -> str:
    """A wait in words: "45 s", "3 min", "2 h 5 min"."""
    whole = int(seconds)
    if whole < 60:  # noqa: PLR2004
        return f"{whole} s"
    hours, minutes = divmod(whole // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _scaled_to_100(split: dict[int, int], *, total: int = 100) -> dict[int, int]:
    """``split``'s shares scaled to sum to ``total`` (the largest takes the rounding)."""
    whole = sum(split.values())
    if not split or whole <= 0:
        return {}
    shares = {k: v * total // whole for k, v in split.items()}
    biggest = max(shares, key=lambda k: shares[k])
    shares[biggest] += total - sum(shares.values())
    return shares


def active_deployment_ids() -> list[tuple[int, int]]:
    """(deployment, team) of every deployment with something to look after: not deleted, or
    deleted with replicas still open."""
    # Across teams for the beat: ids only, each pass then works in its team's scope.
    open_ids = Replica.objects.unscoped().filter(ended_at__isnull=True).values("deployment_id")
    return list(
        Deployment.objects.unscoped()
        .filter(Q(deleted_at__isnull=True) | Q(pk__in=open_ids))
        .values_list("pk", "team_id")
    )


__all__ = [
    "active_deployment_ids",
    "deployment_pause",
    "deployment_reconcile",
    "deployment_reconcile_soon",
    "deployment_resume",
    "deployment_stop_all",
    "deployment_wake",
    "on_alias_moved",
    "on_replica_event",
    "revision_copy",
]
