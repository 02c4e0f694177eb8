"""The invariant checker (tests/faults/converge.py) on the two-host embedded control plane
(tests/multihost.py), standing in for the fault suite's layout: it passes on a healthy
running notebook and fails, naming what is wrong, on each broken state made here on purpose.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from docker.types import DeviceRequest

from apps.machines.models import GPUAllocation, GPUDevice, Host, MachineType, Placement
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from tests.faults import converge
from tests.multihost import GPU_INVENTORY_B, REPORT_EVERY, wait_until
from tests.notebook_fixtures import make_notebook

pytestmark = [pytest.mark.django_db(transaction=True)]

# Billed seconds against seconds run: the product learns of a start or an end from its host's
# report (every REPORT_EVERY seconds here), and bills whole seconds, each end cut to its
# second (apps.billing.usage), so up to 1 s either way on top.
BILLING_TOLERANCE = REPORT_EVERY + 1.0


def sessions(notebook: Any) -> Any:
    return NotebookSession.objects.for_team(notebook.team_id).filter(notebook=notebook)


GPU_MODEL = "NVIDIA H100 80GB HBM3"


@dataclass
class EmbeddedLayout:
    """converge.Layout over the embedded control plane: its database is the test's."""

    installation: str
    hosts: dict[str, str]
    engines: dict[str, Any]

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall()) if cursor.description else []


@pytest.fixture
def layout(two_hosts: Any) -> EmbeddedLayout:
    return EmbeddedLayout(
        installation=two_hosts.installation,
        hosts={"a": two_hosts.a.name, "b": two_hosts.b.name},
        engines={"a": two_hosts.a.client, "b": two_hosts.b.client},
    )


def gpu_type(slug: str = "gpu-test-x1") -> MachineType:
    """A one-GPU machine type that fits this box's cores (the catalogue's H100 asks for 20)."""
    return MachineType.objects.create(
        slug=slug,
        name=slug,
        vcpus=1,
        memory_gib=1,
        disk_gib=1,
        gpu_model=GPU_MODEL,
        gpu_count=1,
        hourly_price=Decimal("1.00"),
    )


def wait_for_gpus(host: str) -> list[GPUDevice]:
    found = wait_until(lambda: list(GPUDevice.objects.filter(host__name=host)), 30)
    assert found, f"{host} reported no GPUs (LATTICE_AGENT_GPU_INVENTORY={GPU_INVENTORY_B})"
    return found


def sleeper(
    client: Any, image: str, installation: str, gpus: list[Any] | None = None, **labels: str
) -> Any:
    """A container of the installation that only sleeps, with ``labels`` (lattice.<key>)."""
    return client.containers.run(
        image,
        ["-c", "sleep 300"],
        entrypoint="sh",
        detach=True,
        labels={
            "lattice.installation": installation,
            **{f"lattice.{k}": v for k, v in labels.items()},
        },
        device_requests=gpus or [],
    )


def one_problem(layout: Any, needle: str) -> str:
    found = converge.problems(layout)
    match = [p for p in found if needle in p]
    assert match, found
    return match[0]


# --- healthy, then broken behind its back ----------------------------------------------------


def test_a_healthy_gpu_notebook_converges_is_billed_as_it_ran_and_keeps_its_files(
    layout, two_hosts, acme, alice
):
    wait_for_gpus(two_hosts.b.name)
    notebook = make_notebook(acme, alice, "Healthy", machine=gpu_type().slug)
    with converge.RunClock(layout) as clock:
        services.notebook_start(team=acme, actor=alice, notebook=notebook)
        session = wait_until(lambda: sessions(notebook).filter(status=Status.RUNNING).first(), 240)
        assert session, list(sessions(notebook).values_list("status", flat=True))
        took = converge.wait_converged(layout, timeout=30)
        print(f"\n[converge] healthy GPU notebook: no problems after {took:.1f}s")  # noqa: T201
        assert converge.problems(layout) == []
        container = converge.container_of(layout, notebook.pk)
        assert container is not None
        assert container[0] == "b"  # the only host with GPUs

        written = converge.write_file(layout, notebook.pk, "kept.txt", "forty-two")
        assert written <= time.time()
        assert converge.read_file(layout, notebook.pk, "kept.txt") == "forty-two"
        assert converge.read_file(layout, notebook.pk, "never-written.txt") is None

        time.sleep(3)
        billed, ran = converge.billed_vs_ran(layout, clock, session.pk)
        print(f"[converge] running: billed {billed:.0f}s, ran {ran:.1f}s")  # noqa: T201
        assert ran > 3
        assert abs(billed - ran) <= BILLING_TOLERANCE

        services.notebook_stop(team=acme, actor=alice, notebook=notebook)
        ended = wait_until(
            lambda: (
                NotebookSession.objects.for_team(acme)
                .filter(pk=session.pk, status=Status.STOPPED)
                .first()
            ),
            60,
        )
        assert ended
        converge.wait_converged(layout, timeout=30)
        time.sleep(1)  # the die event reaches the clock's thread
        billed, ran = converge.billed_vs_ran(layout, clock, session.pk)
        print(f"[converge] stopped: billed {billed:.0f}s, ran {ran:.1f}s")  # noqa: T201
        assert abs(billed - ran) <= BILLING_TOLERANCE
        # The billed seconds are the invoice's: apps.billing.usage reads the same.
        from apps.billing.usage import usage_pieces

        pieces = usage_pieces(
            team=acme, start=ended.started_at - timedelta(days=1), end=timezone.now()
        )
        assert sum(p.seconds for p in pieces if p.source_id == session.pk) == billed

        # Misbilled: a started_at 30 s early is 30 s more than ran, and the check says so.
        NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
            started_at=ended.started_at - timedelta(seconds=30)
        )
        billed, ran = converge.billed_vs_ran(layout, clock, session.pk)
        assert billed - ran > BILLING_TOLERANCE


def test_a_running_session_whose_container_died_is_a_problem(layout, two_hosts, acme, alice):
    notebook = make_notebook(acme, alice, "Killed behind its back")
    services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = wait_until(lambda: sessions(notebook).filter(status=Status.RUNNING).first(), 240)
    assert session
    converge.wait_converged(layout, timeout=30)
    found_container = converge.container_of(layout, notebook.pk)
    assert found_container is not None
    found_container[1].kill()
    # Until the product sees it gone (the agent's reports), the session says running.
    found = converge.problems(layout)
    assert any(f"session {session.pk}" in p and "no running container" in p for p in found), found


# --- broken states made on purpose --------------------------------------------------------------


def test_a_container_with_no_session_is_a_problem(layout, two_hosts, notebook_image):
    orphan = sleeper(two_hosts.a.client, notebook_image, layout.installation, notebook="987654321")
    try:
        problem = one_problem(layout, "no live session")
        assert "notebook 987654321" in problem
        assert orphan.name in problem
    finally:
        orphan.remove(force=True)
    assert converge.problems(layout) == []


def _session(acme: Any, alice: Any, host: Host, status: str, **fields: Any) -> NotebookSession:
    notebook = make_notebook(acme, alice, f"Made {secrets.token_hex(3)}")
    return NotebookSession.objects.for_team(acme).create(
        team=acme,
        notebook=notebook,
        machine_type=notebook.machine_type,
        template=notebook.template,
        image="x",
        status=status,
        host=host,
        jupyter_token="t",
        started_at=timezone.now(),
        **fields,
    )


def test_a_running_session_with_no_container_is_a_problem(layout, two_hosts, acme, alice):
    session = _session(acme, alice, Host.objects.get(name=two_hosts.a.name), Status.RUNNING)
    problem = one_problem(layout, "no running container")
    assert f"session {session.pk}" in problem


def test_a_session_stuck_starting_is_a_problem(layout, two_hosts, acme, alice):
    session = _session(acme, alice, Host.objects.get(name=two_hosts.b.name), Status.STARTING)
    assert converge.problems(layout) == []  # just starting: fine
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        progressed_at=timezone.now() - timedelta(seconds=converge.TRANSIENT_TIMEOUT + 5)
    )
    problem = one_problem(layout, "has been starting for")
    assert f"session {session.pk}" in problem


def test_an_allocation_on_an_offline_host_or_of_no_session_is_a_problem(layout, two_hosts):
    host = Host.objects.create(name=f"gone-{secrets.token_hex(3)}", status=Host.Status.OFFLINE)
    gpu = GPUDevice.objects.create(
        host=host, uuid=f"GPU-{secrets.token_hex(8)}", index=0, name=GPU_MODEL, memory_bytes=1
    )
    placement = Placement.objects.create(
        host=host, machine_type=gpu_type(), workload="nb-1-s1", vcpus=1, memory_gib=1
    )
    GPUAllocation.objects.create(placement=placement, gpu=gpu)
    found = converge.problems(layout)
    assert any(gpu.uuid in p and f"offline host {host.name}" in p for p in found), found
    assert any(gpu.uuid in p and "which no session holds" in p for p in found), found


def test_a_gpu_allocated_twice_is_a_problem(layout, two_hosts):
    gpu = wait_for_gpus(two_hosts.b.name)[0]
    host = gpu.host
    kind = gpu_type()
    # The database refuses this (machines_one_active_allocation_per_gpu): its index is
    # dropped inside a transaction that is rolled back, so the check sees what it guards.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX machines_one_active_allocation_per_gpu")
        for n in (1, 2):
            placement = Placement.objects.create(
                host=host, machine_type=kind, workload=f"pool-x-{n}", vcpus=1, memory_gib=1
            )
            GPUAllocation.objects.create(placement=placement, gpu=gpu)
        problem = one_problem(layout, "active allocations")
        assert f"GPU {gpu.uuid} has 2 active allocations" == problem
        transaction.set_rollback(True)
    assert converge.problems(layout) == []


def test_one_gpu_in_two_containers_or_not_its_sessions_is_a_problem(
    layout, two_hosts, notebook_image
):
    uuid = wait_for_gpus(two_hosts.b.name)[0].uuid
    ask = [DeviceRequest(device_ids=[uuid], capabilities=[["gpu"]])]
    made = [
        sleeper(two_hosts.b.client, notebook_image, layout.installation, ask),
        sleeper(two_hosts.b.client, notebook_image, layout.installation, ask, session="424242"),
    ]
    try:
        found = converge.problems(layout)
        assert any(f"GPU {uuid} is in two running containers" in p for p in found), found
        assert any(made[1].name in p and "its session 424242 holds []" in p for p in found), found
    finally:
        for container in made:
            container.remove(force=True)


def test_the_clock_ends_a_killed_engines_containers_at_the_kill():
    layout = EmbeddedLayout("x", {"a": "host-a", "b": "host-b"}, {})
    clock = converge.RunClock(layout)  # not started: fed by hand
    clock._record("b", "start", "c1", 100.0, {"lattice.session": "7"})
    clock._record("a", "start", "c2", 100.0, {"lattice.session": "7"})
    clock._record("a", "kill", "c2", 105.0, {})
    clock._record("a", "die", "c2", 106.0, {})
    clock._record("a", "start", "c2", 100.0, {})  # the same event, replayed after a reconnect
    clock.engine_killed("b", 110.0)
    assert clock.ran(session=7, until=200.0) == pytest.approx(10.0 + 6.0)
