"""Warm pools: ready containers kept per host for an (image, machine type), taken by a start.

An admin sets a pool's size (``WarmPool``, Django admin). ``pool_replenish`` (the reconciler's
pass, apps.machines.tasks) keeps each pool at its size: for each missing container it places
a slot like any workload (``placement_create`` on the pool's host, no team: its CPU, memory
and, only with ``hold_gpus``, its GPUs are held in the ledger and shown as such, never
billed) and asks the host's agent (its own queue) to ``pool_fill`` it; the slot is believed
ready only when that host says so of a slot it was asked for (workload kind "pool",
``pool_event``, through the inbox's signed events). Surplus slots, slots that did not get
ready within LATTICE_POOL_FILL_TIMEOUT, and slots whose host is no longer ready or whose
placement ended are removed. While anyone waits in a machine type's line, pools keep
nothing: their room goes to the line (people first), and they fill again once it is empty.

A start takes a ready slot with ``pool_take``: the slot row is locked with SKIP LOCKED (two
starts never take the same one) and its placement becomes the workload's, in one transaction
under the host's lock (the same CPU, memory and GPUs: no double count); the agent then calls
``pool_claim`` with the returned state, and falls back to an ordinary start on PoolMiss. A
claimed container is never given back to the pool: it goes when its session stops.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Value, When
from django.dispatch import receiver
from django.utils import timezone

from apps.machines.agent import agent_pool_fill, agent_pool_remove
from apps.machines.models import (
    GPUAllocation,
    Host,
    MachineType,
    Placement,
    PlacementRequest,
    PoolSlot,
    WarmPool,
)
from apps.machines.queue import placement_free, placement_freed
from apps.machines.scheduler import NoCapacityError, placement_create, placement_gpu_uuids
from apps.runtimes.base import PoolSpec
from apps.runtimes.pool import pool_command

logger = logging.getLogger(__name__)

# The workload kind of pool slots (apps.machines.hooks): "pool-<pool>-<random>".
POOL_KIND = "pool"
_GIB = 1024**3


def pool_spec(slot: PoolSlot, pool: WarmPool) -> PoolSpec:
    """What the host's agent fills ``slot`` with."""
    machine = pool.machine_type
    assert slot.placement is not None  # noqa: S101 - a slot is made with its placement
    return PoolSpec(
        name=slot.name,
        image=pool.image,
        command=pool_command(),
        token=slot.token,
        vcpus=float(machine.vcpus),
        memory_bytes=machine.memory_gib * _GIB,
        gpu_uuids=placement_gpu_uuids(slot.placement),
        labels={
            "installation": settings.LATTICE_INSTALLATION,
            "kind": "pool",
            "pool": str(pool.pk),
        },
    )


def _remove_slot(slot: PoolSlot, *, reason: str = "released") -> None:
    """Give the slot's placement back and ask its host to remove the container."""
    if slot.placement is not None and slot.placement.active:
        placement_free(placement=slot.placement, reason=reason, advance=False)
    state = slot.state or {"name": slot.name}
    host_name, queue = slot.host.name, slot.host.queue
    slot.delete()
    transaction.on_commit(
        lambda: agent_pool_remove.apply_async(args=(host_name, state), queue=queue)
    )


def pool_replenish() -> dict[str, int]:
    """One pass over every pool: remove what is dead, stale or surplus, then fill up to size.
    Idempotent; the reconciler runs it (see the module's docstring)."""
    counts = {"filled": 0, "removed": 0}
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LATTICE_POOL_FILL_TIMEOUT)
    # Claimed slots are only a record (the container is the session's now): kept a while.
    PoolSlot.objects.filter(status=PoolSlot.Status.CLAIMED, changed_at__lt=stale).delete()
    for pk in PoolSlot.objects.exclude(status=PoolSlot.Status.CLAIMED).values_list("pk", flat=True):
        with transaction.atomic():
            # Locked, and judged on the locked row: not one a start is taking right now.
            slot = (
                PoolSlot.objects.select_for_update(skip_locked=True, of=("self",))
                .exclude(status=PoolSlot.Status.CLAIMED)
                .select_related("placement", "host", "pool__host", "pool__machine_type")
                .filter(pk=pk)
                .first()
            )
            if slot is None:
                continue
            pool = slot.pool
            dead = slot.placement is None or not slot.placement.active
            unwanted = (
                pool is None or pool.host.status != Host.Status.READY or pool.host.drain_requested
            )
            late = slot.status == PoolSlot.Status.FILLING and slot.created_at < stale
            if dead or unwanted or late:
                _remove_slot(slot, reason="lost" if dead else "released")
                counts["removed"] += 1
    # People first: while anyone waits in a machine type's line, pools keep nothing (their
    # room goes to the line at the next pass) and fill again once the lines are empty.
    waiting = PlacementRequest.objects.filter(status=PlacementRequest.Status.WAITING).exists()
    for pool in WarmPool.objects.select_related("host", "machine_type"):
        counts_pool = _replenish_one(pool, waiting=waiting)
        counts["filled"] += counts_pool["filled"]
        counts["removed"] += counts_pool["removed"]
    return counts


def _replenish_one(pool: WarmPool, *, waiting: bool) -> dict[str, int]:
    counts = {"filled": 0, "removed": 0}
    ready_host = pool.host.status == Host.Status.READY and not pool.host.drain_requested
    target = pool.target if ready_host and not waiting else 0
    resting = pool.failed_at is not None and pool.failed_at > timezone.now() - timedelta(
        seconds=settings.LATTICE_POOL_FILL_TIMEOUT
    )
    kept = list(
        PoolSlot.objects.filter(pool=pool)
        .exclude(status=PoolSlot.Status.CLAIMED)
        .select_related("placement", "host")
        .order_by("-status", "created_at")  # "ready" before "filling": surplus filling goes first
    )
    # Slots filled for what the pool was before an admin changed it go first (never taken).
    stale_key = [s for s in kept if not _slot_matches(s, pool)]
    kept = [s for s in kept if _slot_matches(s, pool)]
    for slot in stale_key + kept[target:]:
        with transaction.atomic():
            # Not one a start is taking right now.
            locked = (
                PoolSlot.objects.select_for_update(skip_locked=True)
                .filter(pk=slot.pk)
                .exclude(status=PoolSlot.Status.CLAIMED)
                .first()
            )
            if locked is not None:
                _remove_slot(locked)
                counts["removed"] += 1
    for _ in range(0 if resting else max(0, target - len(kept))):
        if not _fill_one(pool):
            break
        counts["filled"] += 1
    return counts


def _slot_matches(slot: PoolSlot, pool: WarmPool) -> bool:
    """Whether ``slot`` was filled for what ``pool`` is now (type, image, hold_gpus)."""
    return (
        slot.machine_type_id == pool.machine_type_id
        and slot.image == pool.image
        and slot.hold_gpus == pool.hold_gpus
    )


def _fill_one(pool: WarmPool) -> bool:
    """Place one more slot of ``pool`` on its host and ask the agent to fill it."""
    name = f"{POOL_KIND}-{pool.pk}-{secrets.token_hex(4)}"
    with transaction.atomic():
        try:
            placement = placement_create(
                machine_type=pool.machine_type, workload=name, team=None, host_id=pool.host_id
            )
        except NoCapacityError:
            logger.info("pool %s: no room on %s for another container", pool.pk, pool.host)
            return False
        slot = PoolSlot.objects.create(
            pool=pool,
            host=pool.host,
            name=name,
            placement=placement,
            token=secrets.token_hex(24),
            machine_type=pool.machine_type,
            image=pool.image,
            hold_gpus=pool.hold_gpus,
        )
        spec = asdict(pool_spec(slot, pool))
        host_name, queue = pool.host.name, pool.host.queue
        transaction.on_commit(
            lambda: agent_pool_fill.apply_async(args=(host_name, spec), queue=queue)
        )
    return True


def pool_event(host_name: str, name: str, event: str, data: dict[str, Any]) -> None:
    """What a host says of a pool slot (workload kind "pool"; the inbox checked the signature
    and that ``name`` is placed on that host). Only a slot this control plane asked that host
    for, still filling, becomes ready; "failed" gives its room back."""
    with transaction.atomic():
        slot = (
            PoolSlot.objects.select_for_update(of=("self",))
            .select_related("placement", "host")
            .filter(name=name, host__name=host_name)
            .first()
        )
        if slot is None:
            logger.warning("pool %s for %s from %s: not asked for, ignored", event, name, host_name)
            return
        state = data.get("state")
        if event == "ready" and slot.status == PoolSlot.Status.FILLING and isinstance(state, dict):
            # The host's own words about its own container, handed back only to that host.
            slot.state = state
            slot.status = PoolSlot.Status.READY
            slot.save(update_fields=["state", "status", "changed_at"])
        elif event in ("failed", "stopped") and slot.status != PoolSlot.Status.CLAIMED:
            message = str(data.get("message") or event)
            logger.warning("pool slot %s on %s: %s %s", name, host_name, event, message)
            if slot.pool_id is not None:
                WarmPool.objects.filter(pk=slot.pool_id).update(
                    failed_at=timezone.now(), last_error=message[:300]
                )
            _remove_slot(slot, reason="failed")


def pool_stream(host_name: str, name: str) -> str | None:
    """Pool containers' output goes nowhere: they serve nobody yet."""
    return None


def pool_take(
    *,
    machine_type: MachineType,
    image: str,
    workload: str,
    team_id: int | None,
    prefer_host_id: int | None = None,
) -> tuple[Placement, dict[str, Any]] | None:
    """Take one ready slot of (``image``, ``machine_type``) on a ready host for ``workload``:
    its placement (CPU, memory, GPUs) becomes the workload's, in the caller's transaction.
    Returns the new placement and the pool state for ``pool_claim``, or None when no slot is
    ready, or while others wait in the type's line (they go first: a warm start queues behind
    them like any start). Two takers never get the same slot (SKIP LOCKED). A slot on
    ``prefer_host_id`` (a notebook's volume host: its files are there) goes before others."""
    if PlacementRequest.objects.filter(
        machine_type=machine_type, status=PlacementRequest.Status.WAITING
    ).exists():
        return None
    with transaction.atomic():
        slot = (
            PoolSlot.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                status=PoolSlot.Status.READY,
                machine_type=machine_type,
                image=image,
                host__status=Host.Status.READY,
                host__drain_requested=False,
                placement__active=True,
            )
            .order_by(
                Case(When(host_id=prefer_host_id, then=Value(0)), default=Value(1)),
                "changed_at",
            )
            .first()
        )
        if slot is None:
            return None
        # The host's lock, as every change to its ledger takes it (apps.machines.scheduler).
        host = Host.objects.select_for_update(no_key=True).get(pk=slot.host_id)
        assert slot.placement_id is not None  # noqa: S101 - filtered on its placement
        old = Placement.objects.select_for_update().get(pk=slot.placement_id)
        # Judged again under the locks: the host may have been drained or lost, and the
        # slot's placement freed (lost, host offline), since the slot was chosen.
        if host.status != Host.Status.READY or host.drain_requested or not old.active:
            return None
        gpus = list(
            GPUAllocation.objects.filter(placement=old, active=True).values_list(
                "gpu_id", flat=True
            )
        )
        now = timezone.now()
        Placement.objects.filter(pk=old.pk).update(
            active=False, released_at=now, end_reason="claimed"
        )
        GPUAllocation.objects.filter(placement=old, active=True).update(active=False)
        placement = Placement.objects.create(
            host=host,
            machine_type=machine_type,
            team_id=team_id,
            workload=workload,
            vcpus=old.vcpus,
            memory_gib=old.memory_gib,
        )
        GPUAllocation.objects.bulk_create(
            [GPUAllocation(placement=placement, gpu_id=gpu) for gpu in gpus]
        )
        slot.status = PoolSlot.Status.CLAIMED
        slot.claimed_by = workload
        slot.save(update_fields=["status", "claimed_by", "changed_at"])
        state = dict(slot.state) | {"pool": slot.name}
        return placement, state


def pool_claimed(workload: str) -> dict[str, Any] | None:
    """The pool state of the warm container ``pool_take`` took for ``workload`` while the
    workload still holds its room there (a start dispatched again claims the same one), or
    None."""
    holding = Placement.objects.filter(workload=workload, active=True).values("host_id")
    slot = (
        PoolSlot.objects.filter(
            status=PoolSlot.Status.CLAIMED, claimed_by=workload, host_id__in=holding
        )
        .order_by("-changed_at")
        .first()
    )
    return dict(slot.state) | {"pool": slot.name} if slot is not None else None


def pool_names_claimed(host: Host) -> set[str]:
    """Names of this host's slots claimed lately: a report taken before the claim still lists
    the container under that name, and it is no orphan."""
    # Only while the workload it was taken for still holds its room on this host: a start
    # that ended before its claim leaves a container outside the ledger (an orphan now).
    holding = Placement.objects.filter(host=host, active=True).values("workload")
    return set(
        PoolSlot.objects.filter(
            host=host, status=PoolSlot.Status.CLAIMED, claimed_by__in=holding
        ).values_list("name", flat=True)
    )


@receiver(placement_freed, dispatch_uid="apps.machines.pool.remove_taken")
def _remove_taken_warm_container(sender: Any, placement: Placement, **kwargs: Any) -> None:
    """A warm container taken for ``placement``'s workload (``pool_take``) that its host may
    not have claimed yet: its room has just gone back, so the host is asked to remove it at
    once (a host that did claim it keeps it: the session's stop removes it)."""
    for slot in PoolSlot.objects.filter(
        host_id=placement.host_id, status=PoolSlot.Status.CLAIMED, claimed_by=placement.workload
    ).select_related("host"):
        state = dict(slot.state) | {"pool": slot.name}
        transaction.on_commit(
            partial(
                agent_pool_remove.apply_async, args=(slot.host.name, state), queue=slot.host.queue
            )
        )
