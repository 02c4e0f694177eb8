"""Waiting for room: a FIFO queue per machine type, with a visible position.

``placement_request`` places at once when it can; otherwise the request waits
behind earlier ones of the same machine type. ``queue_advance`` (called when
capacity frees up, and by the reconciler) places waiting requests oldest
first and stops at the first that still does not fit, so nobody overtakes;
the kind of workload it placed is told (apps.machines.hooks ``placed``) once
that commits, whoever moved the line. ``placement_free`` is how capacity is
given back (stopped, lost, failed): it releases the placement and moves every
line at once, not on the reconciler's next pass.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F, Q
from django.dispatch import Signal

from apps.core.timings import median_seconds
from apps.machines.hooks import workload_kind
from apps.machines.models import MachineType, Placement, PlacementRequest
from apps.machines.scheduler import NoCapacityError, placement_create, placement_release

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from apps.teams.models import Team


def queue_position(request: PlacementRequest) -> int | None:
    """1 for the next in line; None once it is no longer waiting."""
    if request.status != PlacementRequest.Status.WAITING:
        return None
    ahead = PlacementRequest.objects.filter(
        machine_type=request.machine_type,
        status=PlacementRequest.Status.WAITING,
        created_at__lt=request.created_at,
    ).count()
    return ahead + 1


# A request placed within this of asking never waited in line: its "wait" is no queue's.
_WAITED = timedelta(seconds=1)


def queue_wait(machine_type_id: int) -> int | None:
    """Seconds the last 20 requests of the type that had to wait in line waited (median),
    or None when none did: an estimate only from real waits, never a made-up one."""

    return median_seconds(
        f"machines:wait:{machine_type_id}",
        lambda: (
            PlacementRequest.objects.filter(
                machine_type_id=machine_type_id,
                status=PlacementRequest.Status.PLACED,
                placement__isnull=False,
                placement__created_at__gt=F("created_at") + _WAITED,
            )
            .order_by("-placement__created_at")
            .values_list("created_at", "placement__created_at")[:20]
        ),
    )


def placement_request(
    *,
    machine_type: MachineType,
    workload: str,
    team: Team | None = None,
    host_id: int | None = None,
    prefer_host_id: int | None = None,
) -> PlacementRequest:
    """Place now if nobody of this machine type waits and there is room; else wait in line.
    ``host_id``: only that host will do (the line is not held up while it has no room).
    ``prefer_host_id``: that host first when it has room, else any (placement_create)."""
    request, created = PlacementRequest.objects.get_or_create(
        workload=workload,
        defaults={
            "machine_type": machine_type,
            "team": team,
            "host_id": host_id,
            "prefer_host_id": prefer_host_id,
        },
    )
    finished = request.status == PlacementRequest.Status.CANCELLED or (
        request.status == PlacementRequest.Status.PLACED
        and (request.placement is None or not request.placement.active)
    )
    if not created and finished:
        # The same workload asks again after its last placement ended: back in line.
        request.delete()
        request = PlacementRequest.objects.create(
            workload=workload,
            machine_type=machine_type,
            team=team,
            host_id=host_id,
            prefer_host_id=prefer_host_id,
        )
    if request.status == PlacementRequest.Status.WAITING:
        # The asker goes on by itself: it is not told of its own placement.
        queue_advance(machine_type=machine_type, quiet=workload)
        request.refresh_from_db()
    return request


def placement_at_once(
    *,
    machine_type: MachineType,
    workload: str,
    team: Team | None = None,
    prefer_host_id: int | None = None,
) -> Placement | None:
    """Place ``workload`` now, in the caller's transaction, when ``placement_request`` would
    place it at once: nobody of its machine type waits in line and a host has room. Its
    request is recorded as placed (the ledger and the line's history as the line would
    leave them). None otherwise, with nothing recorded: the caller goes the ordinary way.

    The caller's transaction must hold no host's lock (the line's order: the machine
    type's lock, then a host's). The machine type's lock is held until it commits, so
    nobody joins or moves the line in between. ``prefer_host_id``: that host first when it
    has room (placement_create).
    """
    with transaction.atomic():
        MachineType.objects.select_for_update(no_key=True).filter(pk=machine_type.pk).first()
        busy = PlacementRequest.objects.filter(
            Q(machine_type=machine_type, status=PlacementRequest.Status.WAITING)
            | Q(workload=workload)
        ).exists()
        if busy:
            return None
        try:
            placement = placement_create(
                machine_type=machine_type,
                workload=workload,
                team=team,
                may_wait=True,
                prefer_host_id=prefer_host_id,
            )
        except NoCapacityError:
            return None
        PlacementRequest.objects.create(
            workload=workload,
            machine_type=machine_type,
            team=team,
            status=PlacementRequest.Status.PLACED,
            placement=placement,
            prefer_host_id=prefer_host_id,
        )
        return placement


def queue_advance(*, machine_type: MachineType, quiet: str = "") -> int:
    """Place waiting requests of ``machine_type`` in order while they fit; how many were placed.

    Each placed workload's kind is told once that commits (but not ``quiet``'s: the asker).
    """
    placed = 0
    passed: list[int] = []  # requests for one host that has no room: the others go on
    while True:
        with transaction.atomic():
            # One caller at a time advances a machine type's line, so the head
            # is never skipped for the one behind it. FOR NO KEY UPDATE: inserts
            # that point at the machine type (requests, sessions) check that
            # foreign key at commit with FOR KEY SHARE, which must not wait here.
            MachineType.objects.select_for_update(no_key=True).filter(pk=machine_type.pk).first()
            first = (
                PlacementRequest.objects.filter(
                    machine_type=machine_type,
                    status=PlacementRequest.Status.WAITING,
                )
                .exclude(pk__in=passed)
                .order_by("created_at", "pk")
                .values_list("pk", flat=True)
                .first()
            )
            if first is None:
                return placed
            # Locked, and still waiting once locked: a stop (apps.notebooks) cancels a
            # waiting request by updating this row, and must not be overwritten by PLACED.
            head = (
                PlacementRequest.objects.select_for_update()
                .filter(pk=first, status=PlacementRequest.Status.WAITING)
                .first()
            )
            if head is None:
                continue  # cancelled meanwhile: the next one is the head now
            try:
                placement = placement_create(
                    machine_type=machine_type,
                    workload=head.workload,
                    team=head.team,
                    # This transaction holds only the machine type's lock (taken
                    # before any host's, everywhere): waiting for a host is safe.
                    may_wait=True,
                    host_id=head.host_id,
                    prefer_host_id=head.prefer_host_id,
                )
            except NoCapacityError:
                if head.host_id is not None:
                    passed.append(head.pk)
                    continue
                return placed
            head.status = PlacementRequest.Status.PLACED
            head.placement = placement
            head.save(update_fields=["status", "placement"])
            if head.workload != quiet:
                transaction.on_commit(partial(_tell_placed, head.workload))
            placed += 1


def _tell_placed(workload: str) -> None:
    kind = workload_kind(workload)
    if kind is not None and kind.placed is not None:
        kind.placed(workload)


def queue_advance_all() -> int:
    """Advance every machine type's line (the reconciler calls this each pass)."""
    waiting = (
        PlacementRequest.objects.filter(status=PlacementRequest.Status.WAITING)
        .values_list("machine_type", flat=True)
        .distinct()
    )
    return sum(
        queue_advance(machine_type=machine_type)
        for machine_type in MachineType.objects.filter(pk__in=list(waiting))
    )


def placement_free(
    *,
    placement: Placement,
    reason: str = "released",
    at: datetime | None = None,
    advance: bool = True,
) -> None:
    """Give a placement's capacity back (``placement_release``: stopped, lost, failed) and,
    once that commits, move every line: the freed CPU and memory may fit another type.

    A caller freeing many at once passes ``advance=False`` and calls ``queue_advance_all``
    once after them: each advance reads and locks every line.
    """
    placement_release(placement=placement, reason=reason, at=at)
    placement_freed.send(sender=Placement, placement=placement)
    if advance:
        transaction.on_commit(queue_advance_all)


# Sent once a placement's room went back (in its transaction): ``placement``. The warm pool
# (apps.machines.pool) removes a container taken for it that its host may not have claimed.
placement_freed = Signal()


def placement_free_unclaimed(workload: str, *, claimed: Callable[[Placement], bool]) -> None:
    """Give back the placement the line made for ``workload`` if nothing ``claimed`` it (its
    owner ended before it was placed: otherwise it would hold its room for nothing).
    ``claimed(placement)`` says whether an open owner (a session, a replica) holds it."""
    with transaction.atomic():
        request = (
            PlacementRequest.objects.select_for_update(of=("self",))
            .select_related("placement")
            .filter(workload=workload, status=PlacementRequest.Status.PLACED)
            .first()
        )
        if request is None or request.placement is None or not request.placement.active:
            return
        if not claimed(request.placement):
            placement_free(placement=request.placement)


def owner_free_unclaimed(workload: str, owners: Any) -> None:
    """``placement_free_unclaimed`` for a workload whose owner is a row of the model
    ``owners`` (a notebook session, a replica, a job attempt: each with ``placement`` and
    ``ended_at``): claimed while an open one holds the placement."""
    placement_free_unclaimed(
        workload,
        claimed=lambda placement: (
            # Across teams by the placement itself: the line is every team's.
            owners.objects.unscoped().filter(placement=placement, ended_at__isnull=True).exists()
        ),
    )


def owner_placement_request(
    owner: Any, *, waiting: str, host_id: int | None = None
) -> PlacementRequest | None:
    """The placement request of an owner waiting to be placed (a replica, a job attempt: a
    row with ``workload``, ``machine_type``, ``team``, ``status``, ``ended_at``) while it
    still has status ``waiting``; None once it does not (one that ended gives back a
    placement made for it that it never took)."""
    if owner.ended_at is not None:
        owner_free_unclaimed(owner.workload, type(owner))
        return None
    if owner.status != waiting:
        return None
    return placement_request(
        machine_type=owner.machine_type, workload=owner.workload, team=owner.team, host_id=host_id
    )


def waiting_message(machine_type: MachineType, request: PlacementRequest) -> str:
    """What a start waiting in ``machine_type``'s line is told: how many are ahead of it."""
    ahead = (queue_position(request) or 1) - 1
    where = f"{ahead} ahead of you." if ahead else "you are next."
    return f"Waiting for a free {machine_type.name}: {where}"


def owner_take_placement(
    owner: Any, request: PlacementRequest, *, waiting: str
) -> Placement | str | None:
    """For ``owner`` read again under its row lock, and its ``request``: the placement the
    request got, now the owner's (its ``placement`` and ``host`` saved); or, while it
    waits, the message that says where it is in line; or None when it ended or moved on
    meanwhile (a placement made for it given back)."""
    placed = request.status == PlacementRequest.Status.PLACED and request.placement
    if owner.ended_at is not None or owner.status != waiting:
        if placed and request.placement and owner.placement_id != request.placement.pk:
            placement_free(placement=request.placement)
        return None
    if not placed or request.placement is None:
        return waiting_message(owner.machine_type, request)
    placement = request.placement
    owner.placement = placement
    owner.host = placement.host
    owner.save(update_fields=["placement", "host"])
    return placement


def owner_placed(
    workload: str, owners: Any, owner_id: int | None, *, waiting: str, place: Any
) -> None:
    """A kind's ``placed`` (apps.machines.hooks): a waiting request of ``workload`` was placed
    by whoever moved the line. Its owner, row ``owner_id`` of ``owners`` (with ``team``,
    ``status``, ``ended_at``), goes on at once through its ``place`` task (``place.delay(
    owner_id, team_id=...)``) while it still has status ``waiting``; one that ended
    meanwhile (a stop raced the line) gives the room back."""
    found = (
        # Across teams by the workload's own id: the line is every team's.
        owners.objects.unscoped()
        .filter(pk=owner_id)
        .values("team_id", "status", "ended_at")
        .first()
        if owner_id is not None
        else None
    )
    if found is None:
        return
    if found["ended_at"] is not None:
        owner_free_unclaimed(workload, owners)
    elif found["status"] == waiting:
        place.delay(owner_id, team_id=found["team_id"])
