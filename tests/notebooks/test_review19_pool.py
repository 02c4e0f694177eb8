"""Review of the warm pool (issue 19, control plane): defects shown on the fake runtime with
real PostgreSQL and Celery eager. Each test was xfail(strict) while its defect was there;
fixed, they are regular tests (docs/reviews/issue19-warm-pool.md has each R<n>)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction

from apps.machines.agent import agent_report
from apps.machines.models import (
    GPUAllocation,
    Host,
    MachineType,
    Placement,
    PlacementRequest,
    PoolSlot,
    WarmPool,
)
from apps.machines.pool import pool_replenish, pool_take
from apps.machines.queue import placement_free
from apps.machines.scheduler import placement_create, placement_release
from apps.machines.tasks import reconcile
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from apps.notebooks.templates import image_for
from apps.runtimes.fake import FakeRuntime
from tests.factories import GPUDeviceFactory
from tests.notebook_fixtures import make_host

pytestmark = pytest.mark.django_db(transaction=True)

H100 = "NVIDIA H100 80GB HBM3"


def scipy_pool(host: Any, size: int, *, machine: MachineType, **fields: Any) -> WarmPool:
    return WarmPool.objects.create(
        host=host, machine_type=machine, image=image_for("scipy", ""), size=size, **fields
    )


def gpu_type() -> MachineType:
    machine = MachineType.objects.filter(gpu_model=H100, gpu_count=1).first()
    assert machine is not None
    return machine


def gpu_host() -> Host:
    host = make_host(cpus=64, memory_gib=512, name="gpu")
    for index in range(2):
        GPUDeviceFactory.create(host=host, index=index, uuid=f"GPU-rev-{index}", name=H100)
    return host


def _wait_until_a_backend_waits_on_a_lock(timeout: float = 10.0) -> None:
    """Block until another PostgreSQL backend of this database waits on a row lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # Inside a transaction the statistics views keep their first snapshot.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("no backend came to wait on the lock")


def test_r1_a_slot_whose_placement_was_freed_meanwhile_is_not_taken(fake_runtime, catalogue):
    host = gpu_host()
    machine = gpu_type()
    pool = scipy_pool(host, 1, machine=machine, hold_gpus=True)
    reconcile()
    (slot,) = PoolSlot.objects.filter(status=PoolSlot.Status.READY)
    assert slot.placement is not None
    assert GPUAllocation.objects.filter(placement=slot.placement, active=True).count() == 1
    got: list[Any] = []

    def take() -> None:
        try:
            got.append(
                pool_take(machine_type=machine, image=pool.image, workload="nb-9-s9", team_id=None)
            )
        finally:
            connections.close_all()

    # The reconciler frees the slot's placement (lost: two reports did not show it) while a
    # start is between choosing the slot and locking its placement. The host's row lock only
    # widens that window so the test is deterministic.
    with transaction.atomic():
        Host.objects.select_for_update(no_key=True).get(pk=host.pk)
        taker = threading.Thread(target=take)
        taker.start()
        _wait_until_a_backend_waits_on_a_lock()
        placement_release(placement=slot.placement, reason="lost")
    taker.join()

    (taken,) = got
    # Either the start finds nothing to take (its slot is dead), or what it got holds the
    # type's GPU. Today it gets a placement for an H100 type that holds no GPU at all.
    if taken is not None:
        placement, _ = taken
        assert GPUAllocation.objects.filter(placement=placement, active=True).count() == 1


def test_r2_replenish_never_removes_a_slot_a_start_is_taking(fake_runtime, catalogue):
    host = make_host()
    machine = MachineType.objects.get(slug="cpu-small")
    pool = scipy_pool(host, 1, machine=machine)
    reconcile()
    (slot,) = PoolSlot.objects.filter(status=PoolSlot.Status.READY)
    took = threading.Event()
    go_on = threading.Event()
    got: list[Any] = []

    def take() -> None:
        try:
            with transaction.atomic():
                got.append(
                    pool_take(
                        machine_type=machine, image=pool.image, workload="nb-9-s9", team_id=None
                    )
                )
                took.set()
                go_on.wait(10)
        finally:
            connections.close_all()

    # The admin drains the host just as a start took the slot (between its choice of the
    # slot and its lock on the host: the host's row lock held here only makes that window
    # deterministic).
    with transaction.atomic():
        Host.objects.select_for_update(no_key=True).get(pk=host.pk)
        taker = threading.Thread(target=take)
        taker.start()
        _wait_until_a_backend_waits_on_a_lock()
        Host.objects.filter(pk=host.pk).update(drain_requested=True)
    assert took.wait(10)

    # The reconciler's pass reads the slot as ready (the take has not committed yet) on a
    # draining host, and goes to remove it: it waits on the slot's placement...
    def replenish() -> None:
        try:
            pool_replenish()
        finally:
            connections.close_all()

    replenisher = threading.Thread(target=replenish)
    replenisher.start()
    # It skips the slot the start holds (SKIP LOCKED) rather than waiting for it...
    replenisher.join(5)
    # ...while the start commits.
    go_on.set()
    taker.join()
    replenisher.join()

    assert got
    (taken,) = got
    if taken is None:
        # The start judged the host again under its lock, saw the drain and took nothing.
        assert not PoolSlot.objects.filter(name=slot.name, status=PoolSlot.Status.CLAIMED).exists()
    else:
        # The start got the slot: its record (which keeps the container from being taken for
        # an orphan) stays, and the container the host is about to claim is not removed.
        assert PoolSlot.objects.filter(name=slot.name, status=PoolSlot.Status.CLAIMED).exists()
        assert slot.name in FakeRuntime._pool


def test_r2_replenish_skips_a_slot_a_start_holds(fake_runtime, catalogue):
    """The removal pass never waits on nor removes a slot row a start has locked (as
    pool_take does), even when it would remove it (its host is draining)."""
    host = make_host()
    machine = MachineType.objects.get(slug="cpu-small")
    scipy_pool(host, 1, machine=machine)
    reconcile()
    (slot,) = PoolSlot.objects.filter(status=PoolSlot.Status.READY)
    held = threading.Event()
    go_on = threading.Event()

    def start() -> None:
        try:
            with transaction.atomic():
                PoolSlot.objects.select_for_update().get(pk=slot.pk)
                held.set()
                go_on.wait(10)
                PoolSlot.objects.filter(pk=slot.pk).update(
                    status=PoolSlot.Status.CLAIMED, claimed_by="nb-9-s9"
                )
        finally:
            connections.close_all()

    starter = threading.Thread(target=start)
    starter.start()
    assert held.wait(10)
    Host.objects.filter(pk=host.pk).update(drain_requested=True)
    began = time.monotonic()
    pool_replenish()
    assert time.monotonic() - began < 5
    go_on.set()
    starter.join()
    assert PoolSlot.objects.filter(name=slot.name, status=PoolSlot.Status.CLAIMED).exists()
    assert slot.name in FakeRuntime._pool


def test_r3_a_warm_take_does_not_jump_the_line(acme, alice, fake_runtime, catalogue, notebook):
    # Room for two cpu-small: one held by the pool, one by a running workload.
    host = make_host(cpus=4, memory_gib=16)
    machine = MachineType.objects.get(slug="cpu-small")
    scipy_pool(host, 1, machine=machine)
    reconcile()
    assert PoolSlot.objects.filter(status=PoolSlot.Status.READY).count() == 1
    placement_create(machine_type=machine, workload="jb-1-r1", team=None)
    # Someone queued first for this type (a job, or a notebook of another image).
    waiting = PlacementRequest.objects.create(machine_type=machine, workload="jb-2-r2")

    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    waiting.refresh_from_db()

    # An ordinary start would queue behind the waiting request; the warm path places it now.
    assert session.status == Status.QUEUED or waiting.status == PlacementRequest.Status.PLACED


def test_r4_slots_of_an_edited_pool_are_not_handed_to_the_new_type(
    acme, alice, fake_runtime, catalogue, notebook
):
    host = gpu_host()
    pool = scipy_pool(host, 1, machine=gpu_type(), hold_gpus=True)
    reconcile()
    assert PoolSlot.objects.filter(status=PoolSlot.Status.READY).count() == 1
    # The admin turns the pool into a cpu-small one (the admin form allows it).
    cpu_small = MachineType.objects.get(slug="cpu-small")
    pool.machine_type = cpu_small
    pool.save()
    reconcile()

    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)

    assert session.machine_type_id == cpu_small.pk
    placement = Placement.objects.get(pk=session.placement_id)
    # A cpu-small session holds cpu-small's room and no GPU, and its container sees none.
    assert placement.vcpus == cpu_small.vcpus
    assert not GPUAllocation.objects.filter(placement=placement, active=True).exists()
    assert FakeRuntime._running[session.workload]["gpu_uuids"] == []


def test_r5_a_taken_container_whose_session_ended_is_not_kept_outside_the_ledger(
    fake_runtime, catalogue
):
    host = make_host()
    machine = MachineType.objects.get(slug="cpu-small")
    pool = scipy_pool(host, 1, machine=machine)
    reconcile()
    (slot,) = PoolSlot.objects.filter(status=PoolSlot.Status.READY)
    taken = pool_take(machine_type=machine, image=pool.image, workload="nb-9-s9", team_id=None)
    assert taken is not None
    placement, _ = taken
    # The session is stopped before its host got to the claim: its room goes back.
    placement_free(placement=placement, reason="released")

    agent_report(host.name)
    Host.objects.filter(pk=host.pk).update(cpu_count=16, memory_bytes=64 * 1024**3)
    reconcile()

    # The ledger holds no room for the taken container any more, so the host must not keep
    # running it (the next pass already filled a new slot in its room).
    held = Placement.objects.filter(active=True, workload=slot.name).exists()
    assert held or slot.name not in FakeRuntime._pool
