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

from typing import TYPE_CHECKING, TypedDict

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.machines.models import GPUAllocation, GPUDevice, Host, MachineType, Placement

if TYPE_CHECKING:
    from datetime import datetime

    from django.db.models import QuerySet

    from apps.teams.models import Team

_GIB = 1024**3
# How many hosts one placement locks and checks before it gives up.
_ATTEMPTS = 8


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


def _room_sql(machine_type: MachineType) -> tuple[str, list[object]]:
    """WHERE conditions (on ``machines_host h``) for a host with room for ``machine_type``.

    Each host's use is read by correlated subqueries on the (host, active) and
    (model, host) indexes, so the database weighs a host only when its scan in
    host order reaches it, and the caller's LIMIT stops it at the first that
    fits. Written by hand, not by the ORM: compiling the same query with its
    subqueries cost more CPU than the database took to run it, and under 100
    concurrent placements that CPU was most of the time (bench/scheduler.py).
    """
    sql = f"""
        h.status = %s
        AND h.cpu_count >= %s + COALESCE(
            (SELECT SUM(p.vcpus) FROM {_PLACEMENT} p WHERE p.host_id = h.id AND p.active = %s), 0)
        AND h.memory_bytes >= (%s + COALESCE(
            (SELECT SUM(p.memory_gib) FROM {_PLACEMENT} p WHERE p.host_id = h.id AND p.active = %s),
            0)) * {_GIB}
    """  # noqa: S608 (table names from the models; every value is a parameter)
    params: list[object] = [
        Host.Status.READY.value,
        machine_type.vcpus,
        True,
        machine_type.memory_gib,
        True,
    ]
    if machine_type.is_gpu:
        sql += f"AND ({_FREE_GPUS.format(columns='COUNT(*)', where='g.host_id = h.id')}) >= %s"
        params += [*_free_gpu_params(machine_type), machine_type.gpu_count]
    return sql, params


# usable_gpus' rule, as SQL: present, not split into MIG instances, of the model, not held.
_FREE_GPUS = f"""
    SELECT {{columns}} FROM {GPUDevice._meta.db_table} g
    WHERE {{where}} AND g.name = %s AND g.present = %s AND g.mig_enabled = %s
    AND NOT EXISTS (
        SELECT 1 FROM {GPUAllocation._meta.db_table} a WHERE a.gpu_id = g.id AND a.active = %s
    )
"""  # noqa: S608
_PLACEMENT = Placement._meta.db_table


def _free_gpu_params(machine_type: MachineType) -> list[object]:
    return [machine_type.gpu_model, True, False, True]


def _lock_one(
    machine_type: MachineType,
    *,
    skip: set[int],
    host_id: int | None,
    wait: bool,
) -> Host | None:
    """Find and lock, in one query, the first host with room that nobody else holds.

    SKIP LOCKED makes placements that arrive together take different hosts
    instead of queueing behind the first. When every host with room is locked
    and ``wait``, wait for the first of them rather than refuse while capacity
    may remain. The room this query saw may be stale by the time the lock is
    taken (a placement that held the host may have committed in between): the
    caller re-checks under the lock (_fits).
    """
    where, params = _room_sql(machine_type)
    if skip:
        where += f" AND h.id NOT IN ({', '.join(['%s'] * len(skip))})"
        params += sorted(skip)
    if host_id is not None:
        where += " AND h.id = %s"
        params.append(host_id)
    columns = ", ".join(f"h.{field.column}" for field in _HOST_FIELDS)
    sql = f"SELECT {columns} FROM {Host._meta.db_table} h WHERE {where} ORDER BY h.id LIMIT 1"  # noqa: S608
    connection = transaction.get_connection()
    features = connection.features
    lock = ""
    if features.has_select_for_update_skip_locked:
        lock = " FOR NO KEY UPDATE OF h" if features.has_select_for_no_key_update else " FOR UPDATE"
        lock += " SKIP LOCKED"
    # (SQLite has no row locks: its transactions take the whole database.)
    host = _fetch_host(sql + lock, params)
    if host is not None or not wait:
        return host
    # Every host with room is locked by placements in flight. Only while holding
    # no other host's lock, or two placements could wait on each other for ever.
    first = _fetch_host(sql, params)
    if first is None:
        return None
    # The condition again in the locking query: PostgreSQL re-reads it on the row as the
    # holder left it, so a host the holder drained or marked offline is not taken (_fits
    # checks the status too). If so, another host may have come free meanwhile: one more
    # look, without waiting again.
    waited = (
        Host.objects.filter(pk=first.pk, status=Host.Status.READY)
        .select_for_update(no_key=True)
        .first()
    )
    return waited if waited is not None else _fetch_host(sql + lock, params)


_HOST_FIELDS = Host._meta.concrete_fields


def _fetch_host(sql: str, params: list[object]) -> Host | None:
    """The Host of the first row ``sql`` selects (``_HOST_FIELDS``' columns), or None.

    What Host.objects.raw does, less its per-query setup, which cost a placement more CPU
    than the query: each value through its field's converters, then Host.from_db."""
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for field, value in zip(_HOST_FIELDS, row, strict=True):
        column = field.cached_col
        converted = value
        for convert in [
            *connection.ops.get_db_converters(column),
            *field.get_db_converters(connection),  # type: ignore[attr-defined]
        ]:
            converted = convert(converted, column, connection)
        values.append(converted)
    return Host.from_db(connection.alias, [field.attname for field in _HOST_FIELDS], values)


def _fits(host: Host, machine_type: MachineType) -> list[int] | None:
    """Under the host's lock: the ids of the GPUs to take, or None if it no longer fits.

    Every placement on the host holds this lock, so what this reads (a new
    statement, after the lock) is all of them: its use and free GPUs, one query. The
    host's status is as its row was locked: one drained or gone offline takes nothing."""
    if host.status != Host.Status.READY:
        return None
    sums = "COALESCE(SUM(vcpus), 0) AS cpu, COALESCE(SUM(memory_gib), 0) AS memory"
    used = f"SELECT {sums} FROM {_PLACEMENT} WHERE host_id = %s AND active = %s"  # noqa: S608
    params: list[object] = [host.pk, True]
    if machine_type.is_gpu:
        free = _FREE_GPUS.format(columns='g.id, g."index", g.uuid', where="g.host_id = %s")
        sql = (
            f"SELECT u.cpu, u.memory, f.id FROM ({used}) u LEFT JOIN"  # noqa: S608
            f' ({free} ORDER BY g."index", g.uuid LIMIT %s) f ON 1 = 1 ORDER BY f."index", f.uuid'
        )
        params += [host.pk, *_free_gpu_params(machine_type), machine_type.gpu_count]
    else:
        sql = f"SELECT u.cpu, u.memory, NULL FROM ({used}) u"  # noqa: S608
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    used_cpu, used_memory = rows[0][0], rows[0][1]
    if host.cpu_count < used_cpu + machine_type.vcpus:
        return None
    if host.memory_bytes < (used_memory + machine_type.memory_gib) * _GIB:
        return None
    gpus = [row[2] for row in rows if row[2] is not None]
    wanted = machine_type.gpu_count if machine_type.is_gpu else 0
    return gpus if len(gpus) == wanted else None


def placement_create(
    *,
    machine_type: MachineType,
    workload: str,
    team: Team | None = None,
    may_wait: bool = False,
    host_id: int | None = None,
    prefer_host_id: int | None = None,
) -> Placement:
    """Place ``workload`` on a host with room (on host ``host_id`` only, when given); raise
    NoCapacityError when none has it.

    ``may_wait``: the caller's transaction holds no host lock, so waiting for
    one is safe even inside it (the machine queue's advance, which holds only
    its machine type's lock).
    ``prefer_host_id``: tried first (a notebook's volume host: its files are there); when
    it has no room (or is not ready), the others first-fit as without it.
    """
    tried: set[int] = set()
    # Inside a caller's transaction, host locks from earlier attempts are held
    # until it commits: never block then (see _lock_one), unless the caller says
    # it holds none. Refusing instead would leave a request waiting although a
    # host has room, only because an agent's report held that host's row.
    inside_outer_transaction = transaction.get_connection().in_atomic_block and not may_wait
    if prefer_host_id is not None and host_id is None:
        # The preferred host first, waiting for its lock as a first attempt may (a placement
        # in flight there must not send this one elsewhere, and its files with it).
        with transaction.atomic():
            host = _lock_one(
                machine_type, skip=tried, host_id=prefer_host_id, wait=not inside_outer_transaction
            )
            if host is not None:
                # Its lock is held from here: no later attempt waits (see _lock_one).
                tried.add(host.pk)
                gpus = _fits(host, machine_type)
                if gpus is not None:
                    return _record(host, machine_type, team, workload, gpus)
    for _ in range(_ATTEMPTS):
        with transaction.atomic():
            host = _lock_one(
                machine_type,
                skip=tried,
                host_id=host_id,
                wait=not tried and not inside_outer_transaction,
            )
            if host is None:
                break
            tried.add(host.pk)
            gpus = _fits(host, machine_type)
            if gpus is None:
                continue
            return _record(host, machine_type, team, workload, gpus)
    raise NoCapacityError(f"No ready host has room for {machine_type.name} right now.")


def _record(
    host: Host, machine_type: MachineType, team: Team | None, workload: str, gpus: list[int]
) -> Placement:
    """Under ``host``'s lock: the placement and one allocation per GPU of ``gpus``."""
    placement = Placement.objects.create(
        host=host,
        machine_type=machine_type,
        team=team,
        workload=workload,
        vcpus=machine_type.vcpus,
        memory_gib=machine_type.memory_gib,
    )
    if gpus:
        GPUAllocation.objects.bulk_create(
            [GPUAllocation(placement=placement, gpu_id=gpu) for gpu in gpus],
        )
    return placement


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
