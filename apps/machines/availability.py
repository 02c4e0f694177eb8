"""What each offered machine type is, and whether it can run here now, read from the ledger.

``machine_type_offers`` answers for every active machine type at once, in five queries
whatever the number of types and hosts: the ready hosts, what their active placements hold,
their GPUs by model (present, not split into MIG instances; how many and how many free), and
the length of each type's line. Per type:

- ``available``: N more could be placed now (summed over ready hosts: how many whole
  machines of the type fit in each host's free CPU, memory and GPUs) and nobody waits;
- ``busy``: some ready host could run the type, but none has room now (or people wait in
  its line, K of them); or none that could is ready now, but one is only away for a while
  (draining, or offline for less than LATTICE_HOST_GRACE since its last heartbeat): a start
  waits in line for it to come back (``waiting_for_host``);
- ``unavailable``: no host here, ready or only away for a while, could ever run it (too
  little CPU or memory in total, or fewer GPUs of the model than the type needs). Starting
  one is refused, not queued.

A GPU's memory is shown only as the inventory reported it for a ready host's GPU of the
model; otherwise it is unknown (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone

from apps.machines.models import Host, MachineType
from apps.machines.models import PlacementRequest as Request
from apps.machines.scheduler import placement_use, usable_gpus
from apps.machines.selectors import machine_types_offered

if TYPE_CHECKING:
    from collections.abc import Iterable

_GIB = 1024**3

State = Literal["available", "busy", "unavailable"]


@dataclass(frozen=True)
class Availability:
    state: State
    free: int  # how many more of the type could be placed now
    queued: int  # requests waiting in the type's line
    # Busy because every host that could run it is away (draining, or offline within
    # LATTICE_HOST_GRACE): a start waits for one to come back.
    waiting_for_host: bool = False

    @property
    def label(self) -> str:
        if self.state == "available":
            return f"Available now · {self.free} free"
        if self.waiting_for_host:
            return f"Busy · its hosts are away, waiting for one · queue of {self.queued}"
        if self.state == "busy":
            return f"Busy · queue of {self.queued}"
        return "No host here offers this type"


@dataclass(frozen=True)
class MachineTypeOffer:
    machine_type: MachineType
    gpu_memory_bytes: int | None  # as a ready host's inventory reported it; None: unknown
    availability: Availability

    @property
    def gpu_memory_gib(self) -> int | None:
        if self.gpu_memory_bytes is None:
            return None
        return round(self.gpu_memory_bytes / _GIB)


@dataclass
class _Host:
    cpus: int
    memory: int  # bytes
    ready: bool = True  # False: away for a while (draining, or offline within the grace)
    used_cpus: int = 0
    used_memory: int = 0  # bytes
    gpus: dict[str, tuple[int, int]] | None = None  # model -> (usable, free)


def _hosts() -> dict[int, _Host]:
    """The ready hosts, and those only away for a while: draining (an admin may take it
    back), or offline but heard from within LATTICE_HOST_GRACE (a heartbeat gap, a restart)."""
    seen_since = timezone.now() - timedelta(seconds=settings.LATTICE_HOST_GRACE)
    counted = Q(status__in=[Host.Status.READY, Host.Status.DRAINING]) | Q(
        status=Host.Status.OFFLINE, last_heartbeat_at__gte=seen_since
    )
    hosts = {
        pk: _Host(cpus=cpus, memory=memory, ready=status == Host.Status.READY, gpus={})
        for pk, cpus, memory, status in Host.objects.filter(counted).values_list(
            "pk", "cpu_count", "memory_bytes", "status"
        )
    }
    for pk, (cpus, memory) in placement_use(list(hosts)).items():
        hosts[pk].used_cpus, hosts[pk].used_memory = cpus, memory
    return hosts


def _gpus(hosts: dict[int, _Host]) -> dict[str, int]:
    """Fill each host's usable and free GPUs by model; the largest memory seen per model."""
    memory: dict[str, int] = {}
    rows = (
        usable_gpus()
        .filter(host_id__in=list(hosts))
        .values("host_id", "name")
        .annotate(
            usable=Count("pk"), free=Count("pk", filter=Q(held=False)), memory=Max("memory_bytes")
        )
    )
    for row in rows:
        host = hosts[row["host_id"]]
        assert host.gpus is not None  # noqa: S101 - set by _hosts
        host.gpus[row["name"]] = (row["usable"], row["free"])
        if host.ready:
            memory[row["name"]] = max(memory.get(row["name"], 0), row["memory"] or 0)
    return memory


def _fits_ever(host: _Host, machine_type: MachineType) -> bool:
    if host.cpus < machine_type.vcpus or host.memory < machine_type.memory_gib * _GIB:
        return False
    if not machine_type.is_gpu:
        return True
    usable, _ = (host.gpus or {}).get(machine_type.gpu_model, (0, 0))
    return usable >= machine_type.gpu_count


def _fits_now(host: _Host, machine_type: MachineType) -> int:
    """How many more of the type fit in the host's free CPU, memory and GPUs."""
    limits = []
    if machine_type.vcpus:
        limits.append((host.cpus - host.used_cpus) // machine_type.vcpus)
    if machine_type.memory_gib:
        limits.append((host.memory - host.used_memory) // (machine_type.memory_gib * _GIB))
    if machine_type.is_gpu:
        _, free = (host.gpus or {}).get(machine_type.gpu_model, (0, 0))
        limits.append(free // machine_type.gpu_count)
    return max(0, min(limits)) if limits else 0


def machine_type_offers(types: Iterable[MachineType] | None = None) -> list[MachineTypeOffer]:
    """Each of ``types`` (default: every offered type, in the catalogue's order) with its
    GPU memory and live availability."""
    machine_types = list(machine_types_offered() if types is None else types)
    hosts = _hosts()
    gpu_memory = _gpus(hosts)
    waiting = dict(
        Request.objects.filter(
            status=Request.Status.WAITING,
            machine_type_id__in=[t.pk for t in machine_types],
        )
        .values("machine_type_id")
        .annotate(n=Count("pk"))
        .values_list("machine_type_id", "n")
    )
    offers = []
    for machine_type in machine_types:
        able = [host for host in hosts.values() if _fits_ever(host, machine_type)]
        ready = [host for host in able if host.ready]
        free = sum(_fits_now(host, machine_type) for host in ready)
        queued = waiting.get(machine_type.pk, 0)
        state: State = "unavailable" if not able else "available" if free and not queued else "busy"
        offers.append(
            MachineTypeOffer(
                machine_type=machine_type,
                gpu_memory_bytes=gpu_memory.get(machine_type.gpu_model) or None
                if machine_type.is_gpu
                else None,
                availability=Availability(
                    state=state, free=free, queued=queued, waiting_for_host=bool(able and not ready)
                ),
            )
        )
    return offers


def machine_type_availability(machine_type: MachineType) -> Availability:
    """One type's live availability (see ``machine_type_offers``)."""
    return machine_type_offers([machine_type])[0].availability
