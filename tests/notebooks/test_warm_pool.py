"""Warm pools, the control plane (apps.machines.pool): an admin's pool is filled by the
reconciler through the host's agent, a notebook start takes a ready container, a stop removes
it. On the fake runtime, Celery eager: fill -> signed "ready" -> slot ready in one call."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections

from apps.machines.admin import WarmPoolForm
from apps.machines.agent import agent_report
from apps.machines.availability import machine_type_availability
from apps.machines.models import (
    GPUAllocation,
    Host,
    MachineType,
    Placement,
    PlacementRequest,
    PoolSlot,
    WarmPool,
)
from apps.machines.pool import pool_take
from apps.machines.reports import workload_event
from apps.machines.scheduler import double_allocations, overcommitted_hosts
from apps.machines.tasks import reconcile
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from apps.notebooks.templates import image_for
from apps.runtimes.fake import FakeRuntime
from tests.factories import GPUDeviceFactory
from tests.notebook_fixtures import make_host, make_notebook

pytestmark = pytest.mark.django_db(transaction=True)

H100 = "NVIDIA H100 80GB HBM3"


def scipy_pool(host: Any, size: int, *, machine: str = "cpu-small", **fields: Any) -> WarmPool:
    return WarmPool.objects.create(
        host=host,
        machine_type=MachineType.objects.get(slug=machine),
        image=image_for("scipy", ""),
        size=size,
        **fields,
    )


def start(team: Any, actor: Any, nb: Any) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=nb)
    return NotebookSession.objects.for_team(team).get(pk=session.pk)


def placement_of(session: NotebookSession) -> Placement:
    assert session.placement_id is not None
    return Placement.objects.get(pk=session.placement_id)


def pool_placements() -> list[Placement]:
    return list(Placement.objects.filter(active=True, workload__startswith="pool-"))


def test_admin_pool_is_filled_a_start_claims_it_and_a_stop_removes_it(acme, alice, host, notebook):
    pool = scipy_pool(host, 2)

    reconcile()

    slots = list(PoolSlot.objects.filter(pool=pool))
    assert [s.status for s in slots] == [PoolSlot.Status.READY] * 2
    assert set(FakeRuntime._pool) == {s.name for s in slots}
    # Each holds its room in the ledger, for no team.
    held = pool_placements()
    assert len(held) == 2
    assert {p.team_id for p in held} == {None}
    assert {p.host_id for p in held} == {host.pk}

    session = start(acme, alice, notebook)

    assert session.status == Status.RUNNING
    assert len(FakeRuntime.claims) == 1
    taken, workload = FakeRuntime.claims[0]
    assert workload == session.workload
    claimed = PoolSlot.objects.get(name=taken)
    assert (claimed.status, claimed.claimed_by) == (PoolSlot.Status.CLAIMED, session.workload)
    # The slot's reservation became the session's: the same room, counted once.
    assert not Placement.objects.get(workload=taken).active
    assert Placement.objects.get(workload=taken).end_reason == "claimed"
    placement = placement_of(session)
    assert (placement.active, placement.team_id, placement.host_id) == (True, acme.pk, host.pk)
    assert Placement.objects.filter(active=True).count() == 2  # the session + one slot left
    # The claimed container runs as the session: its labels, its token, its team's env.
    entry = FakeRuntime._running[session.workload]
    assert entry["labels"]["lattice.team"] == str(acme.pk)
    assert entry["env"]["JUPYTER_TOKEN"] == session.jupyter_token
    assert entry["env"]["JUPYTER_TOKEN"] != claimed.token

    # The next pass fills the pool up again, and does not take the claimed one for an orphan.
    agent_report(host.name)
    # The report brought this machine's own inventory: the test host's size again.
    Host.objects.filter(pk=host.pk).update(cpu_count=16, memory_bytes=64 * 1024**3)
    counts = reconcile()
    assert counts.get("orphans", 0) == 0
    assert PoolSlot.objects.filter(pool=pool, status=PoolSlot.Status.READY).count() == 2
    assert len(pool_placements()) == 2
    assert overcommitted_hosts() == 0

    services.notebook_stop(team=acme, actor=alice, notebook=notebook)

    assert FakeRuntime._running[session.workload]["exit"] == 0
    assert not placement_of(session).active
    # Never reused: the pool still keeps two others, not the stopped one.
    assert taken not in FakeRuntime._pool
    assert len(FakeRuntime._pool) == 2


def test_two_starts_at_once_never_take_the_same_container(host):
    pool = scipy_pool(host, 3)
    reconcile()
    assert PoolSlot.objects.filter(pool=pool, status=PoolSlot.Status.READY).count() == 3
    machine = pool.machine_type
    got: list[Any] = []
    barrier = threading.Barrier(6)

    def take(n: int) -> None:
        try:
            barrier.wait()
            got.append(
                pool_take(machine_type=machine, image=pool.image, workload=f"w-{n}", team_id=None)
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    taken = [t for t in got if t is not None]
    assert len(got) == 6
    assert len(taken) == 3
    assert len({state["pool"] for _, state in taken}) == 3
    assert PoolSlot.objects.filter(status=PoolSlot.Status.CLAIMED).count() == 3
    assert Placement.objects.filter(active=True).count() == 3
    assert overcommitted_hosts() == 0


def test_a_claim_that_misses_starts_as_ever_and_drops_the_container(acme, alice, host, notebook):
    scipy_pool(host, 1)
    reconcile()
    (slot,) = PoolSlot.objects.all()
    FakeRuntime.pool_misses = True

    session = start(acme, alice, notebook)

    assert session.status == Status.RUNNING
    assert FakeRuntime.claims == []
    assert FakeRuntime._running[session.workload]["log"][0].startswith("starting ")
    # Its room went to the session; the container it did not get is not kept.
    assert slot.name not in FakeRuntime._pool
    assert placement_of(session).active
    assert Placement.objects.filter(active=True).count() == 1


def test_no_ready_container_of_the_image_is_an_ordinary_start(acme, alice, host, notebook):
    WarmPool.objects.create(
        host=host, machine_type=notebook.machine_type, image="someone/else:1", size=1
    )
    reconcile()

    session = start(acme, alice, notebook)

    assert session.status == Status.RUNNING
    assert FakeRuntime.claims == []
    assert len(FakeRuntime._pool) == 1


def test_a_notebook_with_a_git_source_skips_the_pool(acme, alice, host, catalogue):
    scipy_pool(host, 1)
    reconcile()
    nb = make_notebook(acme, alice, "Cloned", git_url="https://example.com/a/b.git")

    session = start(acme, alice, nb)

    assert session.status == Status.RUNNING
    assert FakeRuntime.claims == []
    assert len(FakeRuntime._pool) == 1


def test_a_smaller_size_removes_the_surplus_and_frees_its_room(host):
    pool = scipy_pool(host, 2)
    reconcile()
    assert len(FakeRuntime._pool) == 2

    pool.size = 0
    pool.save()
    reconcile()

    assert FakeRuntime._pool == {}
    assert PoolSlot.objects.count() == 0
    assert pool_placements() == []


def test_the_pool_is_never_billed_and_belongs_to_no_team(acme, alice, globex, host, notebook):
    scipy_pool(host, 2)
    reconcile()

    session = start(acme, alice, notebook)

    # The pool's placements serve no team; the only team placement is the session's, made
    # at the claim, and its billing runs from when it ran (as any session).
    assert {p.team_id for p in pool_placements()} == {None}
    placement = placement_of(session)
    assert session.started_at is not None
    assert session.started_at >= placement.created_at
    assert Placement.objects.filter(active=True, team__isnull=False).count() == 1
    # Another team sees nothing of it.
    assert NotebookSession.objects.for_team(globex).count() == 0
    assert not NotebookSession.objects.for_team(globex).filter(pk=session.pk).exists()


def gpu_host() -> Any:
    host = make_host(cpus=64, memory_gib=512, name="gpu")
    for index in range(2):
        GPUDeviceFactory.create(host=host, index=index, uuid=f"GPU-pool-{index}", name=H100)
    return host


def test_gpus_are_held_only_with_hold_gpus_and_then_show_as_reserved(fake_runtime, catalogue):
    host = gpu_host()
    machine = MachineType.objects.filter(gpu_model=H100, gpu_count=1).first()
    assert machine is not None
    free_before = machine_type_availability(machine).free
    pool = scipy_pool(host, 1, machine=machine.slug)

    reconcile()

    assert PoolSlot.objects.count() == 0
    assert machine_type_availability(machine).free == free_before

    pool.hold_gpus = True
    pool.save()
    reconcile()

    (slot,) = PoolSlot.objects.filter(status=PoolSlot.Status.READY)
    held = list(
        GPUAllocation.objects.filter(placement=slot.placement, active=True).values_list(
            "gpu__uuid", flat=True
        )
    )
    assert len(held) == 1
    assert FakeRuntime._pool[slot.name]["gpu_uuids"] == held
    assert machine_type_availability(machine).free == free_before - 1
    assert double_allocations() == 0


def test_the_admin_form_refuses_a_gpu_pool_that_holds_no_gpus(host, catalogue):
    machine = MachineType.objects.filter(gpu_count__gt=0).first()
    assert machine is not None
    data = {"host": host.pk, "machine_type": machine.pk, "image": "x:1", "size": 1}

    assert not WarmPoolForm(data=data).is_valid()
    assert WarmPoolForm(data=data | {"hold_gpus": True}).is_valid()


def test_a_host_is_not_believed_about_slots_it_was_not_asked_for(host, catalogue):
    other = make_host(name="other")
    pool = scipy_pool(host, 1)
    reconcile()
    (slot,) = PoolSlot.objects.all()
    # Back to filling, as if its agent had not answered yet.
    PoolSlot.objects.filter(pk=slot.pk).update(status=PoolSlot.Status.FILLING, state={})

    # Another host speaks of it: not placed there, not believed.
    workload_event(other, slot.name, "ready", {"state": {"name": slot.name, "port": 1}})
    # A name nobody asked for, even from the right host.
    workload_event(host, f"pool-{pool.pk}-00000000", "ready", {"state": {"name": "x"}})

    slot.refresh_from_db()
    assert slot.status == PoolSlot.Status.FILLING
    assert not PoolSlot.objects.filter(name=f"pool-{pool.pk}-00000000").exists()

    workload_event(host, slot.name, "ready", {"state": {"name": slot.name, "port": 1}})
    slot.refresh_from_db()
    assert slot.status == PoolSlot.Status.READY


def test_a_warm_container_nobody_asked_for_is_removed_as_an_orphan(host, catalogue, settings):
    from apps.runtimes.base import PoolSpec

    FakeRuntime().pool_fill(
        PoolSpec(
            name="pool-999-abcdef12",
            image="x",
            command=[],
            token="t",
            labels={"installation": settings.LATTICE_INSTALLATION},
        )
    )
    agent_report(host.name)

    assert reconcile()["orphans"] == 1
    assert FakeRuntime._pool == {}


def test_while_people_wait_in_line_the_pool_gives_its_room_back(host):
    scipy_pool(host, 2)
    reconcile()
    assert len(FakeRuntime._pool) == 2
    gpu_type = MachineType.objects.filter(gpu_count__gt=0).first()
    assert gpu_type is not None
    waiting = PlacementRequest.objects.create(machine_type=gpu_type, workload="jb-waits")

    reconcile()

    assert FakeRuntime._pool == {}
    assert pool_placements() == []

    waiting.delete()
    reconcile()
    assert len(FakeRuntime._pool) == 2


def test_a_host_that_cannot_fill_is_not_asked_again_every_pass(host):
    pool = scipy_pool(host, 1)
    FakeRuntime.pool_fails = True

    first = reconcile()

    pool.refresh_from_db()
    assert first.get("pool_filled") == 1
    assert PoolSlot.objects.count() == 0
    assert pool_placements() == []
    assert pool.failed_at is not None
    assert "cannot keep warm containers" in pool.last_error
    # Within LATTICE_POOL_FILL_TIMEOUT of that, it is not asked again.
    assert "pool_filled" not in reconcile()
