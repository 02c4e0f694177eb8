"""Placing workloads on hosts: the GPU ledger.

``placement_create`` picks a ready host whose free GPUs of the right model,
CPU and memory fit the machine type, takes the host's row lock (skipping
hosts another placement holds, so concurrent placements spread out instead
of queueing; when every host with room is locked, it waits for one rather
than refuse), re-checks under the lock and records the placement and one
allocation row per GPU, by UUID. Every placement on a host goes through that
host's lock, and the conditional unique constraint on active allocations is
the backstop: a GPU cannot be held twice.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, TypedDict

from django.db import transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.machines.models import GPUAllocation, GPUDevice, Host, MachineType, Placement

if TYPE_CHECKING:
    from datetime import datetime

    from django.db.models import QuerySet

    from apps.teams.models import Team

_GIB = 1024**3
# How many hosts one placement locks and checks before it gives up, and how
# many candidates each attempt considers for a lock nobody else holds.
_ATTEMPTS = 8
_BATCH = 16


class NoCapacityError(Exception):
    """No ready host can take this machine type now."""


def usable_gpus() -> QuerySet[GPUDevice]:
    """GPUs a placement may take whole, each annotated ``held`` (an active allocation has it).
    The one rule the scheduler places by and availability (apps.machines.availability) counts by."""
    held = GPUAllocation.objects.filter(gpu=OuterRef("pk"), active=True)
    # A MIG-enabled GPU is allocatable only as its instances, never whole as well.
    return GPUDevice.objects.filter(present=True, mig_enabled=False).annotate(held=Exists(held))


def host_can_run(host: Host, machine_type: MachineType) -> bool:
    """Whether ``host`` is up and big enough for ``machine_type`` (room or not just now)."""
    if host.status != Host.Status.READY:
        return False
    if host.cpu_count < machine_type.vcpus or host.memory_bytes < machine_type.memory_gib * _GIB:
        return False
    if not machine_type.is_gpu:
        return True
    gpus = usable_gpus().filter(host=host, name=machine_type.gpu_model).count()
    return gpus >= machine_type.gpu_count


def placement_use(host_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per host of ``host_ids``: the vCPUs and memory (bytes) its active placements hold."""
    return {
        row["host_id"]: (row["cpu"] or 0, (row["memory"] or 0) * _GIB)
        for row in Placement.objects.filter(host_id__in=host_ids, active=True)
        .values("host_id")
        .annotate(cpu=Sum("vcpus"), memory=Sum("memory_gib"))
    }


def _free_gpus(model: str) -> QuerySet[GPUDevice]:
    # ``held`` is usable_gpus' annotation, which the stubs cannot see through its return type.
    return usable_gpus().filter(name=model, held=False)  # type: ignore[misc]


def _candidates(machine_type: MachineType, *, skip: set[int], limit: int) -> list[int]:
    """Ids of ready hosts that looked as if they had room when the query ran.

    First fit in host order: the query can stop at the first ``limit`` hosts
    with room instead of weighing the whole fleet, and low-numbered hosts fill
    up first, which keeps whole machines free for big jobs.
    """
    hosts = Host.objects.filter(status=Host.Status.READY).exclude(pk__in=skip)
    if machine_type.is_gpu:
        with_gpus = (
            _free_gpus(machine_type.gpu_model)
            .filter(host__status=Host.Status.READY)
            .exclude(host_id__in=skip)
            .values("host_id")
            .annotate(free=Count("pk"))
            .filter(free__gte=machine_type.gpu_count)
            .order_by("host_id")
            .values_list("host_id", flat=True)
        )
        # Of the first hosts with the GPUs, those with the CPU and memory too:
        # a GPU host filled up by CPU work must not hide the hosts after it.
        return _room_among(list(with_gpus[: limit * 2]), machine_type)[:limit]
    return list(_with_room(hosts, machine_type).values_list("pk", flat=True)[:limit])


def _room_among(ids: list[int], machine_type: MachineType) -> list[int]:
    """Those of ``ids`` (in order) whose free CPU and memory fit: two indexed reads."""
    used = placement_use(ids)
    capacity = {
        pk: (cpus, memory)
        for pk, cpus, memory in Host.objects.filter(pk__in=ids).values_list(
            "pk",
            "cpu_count",
            "memory_bytes",
        )
    }
    fits = []
    for host_id in ids:
        cpus, memory = capacity.get(host_id, (0, 0))
        used_cpus, used_memory = used.get(host_id, (0, 0))
        if (
            cpus >= used_cpus + machine_type.vcpus
            and memory >= used_memory + machine_type.memory_gib * _GIB
        ):
            fits.append(host_id)
    return fits


def _with_room(hosts: QuerySet[Host], machine_type: MachineType) -> QuerySet[Host]:
    """``hosts`` whose CPU and memory, less what active placements hold, fit the type."""
    active = Placement.objects.filter(host=OuterRef("pk"), active=True).values("host")
    used_cpu = Coalesce(
        Subquery(active.annotate(total=Sum("vcpus")).values("total"), output_field=IntegerField()),
        Value(0),
    )
    used_memory = Coalesce(
        Subquery(
            active.annotate(total=Sum("memory_gib")).values("total"),
            output_field=IntegerField(),
        ),
        Value(0),
    )
    return (
        hosts.annotate(used_cpu=used_cpu, used_memory=used_memory)
        .filter(
            cpu_count__gte=machine_type.vcpus + F("used_cpu"),
            memory_bytes__gte=(machine_type.memory_gib + F("used_memory")) * _GIB,
        )
        .order_by("pk")
    )


def _lock_one(ids: list[int], *, wait: bool) -> Host | None:
    """Lock one of ``ids`` nobody else holds; if all are held and ``wait``, wait for one.

    The candidates are taken in random order, so placements that arrive
    together spread over them instead of forming a queue behind the first.
    """
    random.shuffle(ids)
    hosts = Host.objects.filter(status=Host.Status.READY)
    for start in range(0, len(ids), 4):
        host = (
            hosts.filter(pk__in=ids[start : start + 4])
            .select_for_update(skip_locked=True, no_key=True)
            .first()
        )
        if host is not None:
            return host
    if ids and wait:
        # Every candidate is locked by placements in flight: wait rather than
        # refuse while capacity may remain. Only while holding no other host's
        # lock, or two placements could wait on each other for ever.
        return hosts.filter(pk=ids[0]).select_for_update(no_key=True).first()
    return None


def _fits(host: Host, machine_type: MachineType) -> list[GPUDevice] | None:
    """Under the host's lock: the GPUs to take, or None if it no longer fits."""
    used = Placement.objects.filter(host=host, active=True).aggregate(
        cpu=Coalesce(Sum("vcpus"), 0),
        memory=Coalesce(Sum("memory_gib"), 0),
    )
    if host.cpu_count < used["cpu"] + machine_type.vcpus:
        return None
    if host.memory_bytes < (used["memory"] + machine_type.memory_gib) * _GIB:
        return None
    if not machine_type.is_gpu:
        return []
    gpus = list(
        _free_gpus(machine_type.gpu_model)
        .filter(host=host)
        .order_by("index", "uuid")[: machine_type.gpu_count],
    )
    return gpus if len(gpus) == machine_type.gpu_count else None


def placement_create(
    *,
    machine_type: MachineType,
    workload: str,
    team: Team | None = None,
    may_wait: bool = False,
    host_id: int | None = None,
) -> Placement:
    """Place ``workload`` on a host with room (on host ``host_id`` only, when given); raise
    NoCapacityError when none has it.

    ``may_wait``: the caller's transaction holds no host lock, so waiting for
    one is safe even inside it (the machine queue's advance, which holds only
    its machine type's lock).
    """
    tried: set[int] = set()
    # Inside a caller's transaction, host locks from earlier attempts are held
    # until it commits: never block then (see _lock_one), unless the caller says
    # it holds none. Refusing instead would leave a request waiting although a
    # host has room, only because an agent's report held that host's row.
    inside_outer_transaction = transaction.get_connection().in_atomic_block and not may_wait
    for _ in range(_ATTEMPTS):
        with transaction.atomic():
            if host_id is None:
                ids = _candidates(machine_type, skip=tried, limit=_BATCH)
            else:
                ids = [] if host_id in tried else [host_id]  # _fits says if it has room
            host = _lock_one(ids, wait=not tried and not inside_outer_transaction)
            if host is None:
                break
            tried.add(host.pk)
            gpus = _fits(host, machine_type)
            if gpus is None:
                continue
            placement = Placement.objects.create(
                host=host,
                machine_type=machine_type,
                team=team,
                workload=workload,
                vcpus=machine_type.vcpus,
                memory_gib=machine_type.memory_gib,
            )
            GPUAllocation.objects.bulk_create(
                [GPUAllocation(placement=placement, gpu=gpu) for gpu in gpus],
            )
            return placement
    raise NoCapacityError(f"No ready host has room for {machine_type.name} right now.")


@transaction.atomic
def placement_release(
    *,
    placement: Placement,
    reason: str = "released",
    at: datetime | None = None,
) -> None:
    """Free the placement's CPU, memory and GPUs. Releasing twice does nothing.

    ``reason`` "lost" with ``at`` = the last time it was seen alive, when the
    workload vanished: billing reads released_at and stops there.
    """
    ended = at or timezone.now()
    updated = Placement.objects.filter(pk=placement.pk, active=True).update(
        active=False,
        released_at=ended,
        end_reason=reason,
    )
    if not updated:
        return
    GPUAllocation.objects.filter(placement=placement, active=True).update(active=False)
    placement.active = False
    placement.released_at = ended
    placement.end_reason = reason


def placement_gpu_uuids(placement: Placement) -> list[str]:
    """The UUIDs a container for this placement gets, and no others."""
    return list(
        placement.gpu_allocations.filter(active=True)
        .order_by("gpu__index", "gpu__uuid")
        .values_list("gpu__uuid", flat=True),
    )


_GIB = 1024**3


class SpecLimits(TypedDict):
    """A runtime Spec's limits (apps.runtimes.base.Spec's fields of the same names)."""

    vcpus: float
    memory_bytes: int
    gpu_uuids: list[str]


def spec_limits(machine: MachineType, placement: Placement) -> SpecLimits:
    """What a workload of machine type ``machine`` placed by ``placement`` may use, as a
    Spec's fields (``Spec(..., **spec_limits(machine, placement))``): the machine type's
    CPUs and memory, the placement's GPUs and no others."""
    return {
        "vcpus": float(machine.vcpus),
        "memory_bytes": machine.memory_gib * _GIB,
        "gpu_uuids": placement_gpu_uuids(placement),
    }


def double_allocations() -> int:
    """GPUs held by more than one active allocation. The ledger's invariant says 0."""
    return (
        GPUAllocation.objects.filter(active=True)
        .values("gpu")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )


def overcommitted_hosts() -> int:
    """Hosts whose active placements ask more CPU or memory than they have. Should be 0."""
    active = Q(placements__active=True)
    return (
        Host.objects.annotate(
            cpu=Coalesce(Sum("placements__vcpus", filter=active), 0),
            memory=Coalesce(Sum("placements__memory_gib", filter=active), 0),
        )
        .filter(Q(cpu__gt=F("cpu_count")) | Q(memory_bytes__lt=F("memory") * _GIB))
        .count()
    )
