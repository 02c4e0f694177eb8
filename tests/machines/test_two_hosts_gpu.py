"""The GPU path on the second host (tests/multihost.py): its engine has a fake of NVIDIA's
container toolkit hook, so Docker serves device requests for GPUs by UUID there, and its
agent reports the two H100s of tests/fixtures/gpu/h100-80gb-x2-derived (which are not there).

First Docker alone: a container asking for a GPU by UUID starts and has that UUID in
NVIDIA_VISIBLE_DEVICES (set by Docker's nvidia driver, not by us). Then the product: a GPU
notebook is placed on host B with its allocated GPUs' UUIDs in its container's device request
and environment, and a second one, with no GPU left, waits in the queue rather than share;
it runs, with a GPU of its own, once the first stops.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
from docker.types import DeviceRequest

from apps.machines.models import GPUAllocation, GPUDevice, Host, MachineType
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from tests.multihost import GPU_INVENTORY_B, wait_until
from tests.notebook_fixtures import make_notebook

pytestmark = [pytest.mark.django_db(transaction=True)]


def sessions(notebook: Any) -> Any:
    return NotebookSession.objects.for_team(notebook.team_id).filter(notebook=notebook)


UUIDS = [g["uuid"] for g in json.loads(GPU_INVENTORY_B.read_text())["gpus"]]
GPU_MODEL = "NVIDIA H100 80GB HBM3"


def test_the_second_engine_serves_gpu_device_requests(second_engine, notebook_image):
    assert second_engine.fake_nvidia_hook
    out = second_engine.client.containers.run(
        notebook_image,
        ["-c", "tr '\\0' '\\n' </proc/1/environ | grep ^NVIDIA_VISIBLE_DEVICES="],
        entrypoint="sh",
        device_requests=[DeviceRequest(device_ids=[UUIDS[1]], capabilities=[["gpu"]])],
        labels={"lattice.test": "gpu-hook"},
        remove=True,
    )
    assert out.decode().split() == [f"NVIDIA_VISIBLE_DEVICES={UUIDS[1]}"]


def _small_gpu_type(slug: str, gpus: int) -> MachineType:
    """A GPU machine type that fits this box's cores (the catalogue's H100 asks for 20)."""
    return MachineType.objects.create(
        slug=slug,
        name=slug,
        vcpus=1,
        memory_gib=1,
        disk_gib=1,
        gpu_model=GPU_MODEL,
        gpu_count=gpus,
        hourly_price=Decimal("1.00"),
    )


def _visible(container: Any) -> list[str]:
    """NVIDIA_VISIBLE_DEVICES as the container's first process has it."""
    code, out = container.exec_run(["sh", "-c", "tr '\\0' '\\n' </proc/1/environ"])
    assert code == 0, out
    return [
        line.split("=", 1)[1]
        for line in out.decode().splitlines()
        if line.startswith("NVIDIA_VISIBLE_DEVICES=")
    ]


def _device_ids(container: Any) -> list[str]:
    container.reload()
    requests = container.attrs["HostConfig"].get("DeviceRequests") or []
    return [uid for r in requests for uid in (r.get("DeviceIDs") or [])]


def test_a_gpu_notebook_on_host_b_gets_its_gpus_and_the_next_one_waits(two_hosts, acme, alice):
    b = two_hosts.b
    assert wait_until(
        lambda: (
            set(GPUDevice.objects.filter(host__name=b.name).values_list("uuid", flat=True))
            == set(UUIDS)
        ),
        30,
    ), "host B did not report the GPUs of its inventory file"
    both = make_notebook(acme, alice, "Two GPUs", machine=_small_gpu_type("gpu-test-x2", 2).slug)
    one = make_notebook(acme, alice, "One GPU", machine=_small_gpu_type("gpu-test-x1", 1).slug)

    services.notebook_start(team=acme, actor=alice, notebook=both)
    first = wait_until(lambda: sessions(both).filter(status=Status.RUNNING).first(), 240)
    assert first, sessions(both).values_list("status", flat=True)
    assert first.host.name == b.name
    held = set(
        GPUAllocation.objects.filter(placement=first.placement, active=True).values_list(
            "gpu__uuid", flat=True
        )
    )
    assert held == set(UUIDS)
    container = b.client.containers.list(filters={"label": f"lattice.notebook={both.pk}"})[0]
    assert set(_device_ids(container)) == held
    for value in _visible(container):
        assert set(value.split(",")) == held

    # No GPU left on any host (host A has none): the next GPU notebook waits, shares nothing.
    services.notebook_start(team=acme, actor=alice, notebook=one)
    time.sleep(3 * 1.0 + 2)  # a few of the agents' reports and the scheduler's passes
    second = sessions(one).get()
    assert second.status == Status.QUEUED, second.status
    assert not GPUAllocation.objects.filter(active=True).exclude(placement=first.placement)
    assert Host.objects.get(name=b.name).cpu_count >= 2  # it waits for a GPU, not a core

    services.notebook_stop(team=acme, actor=alice, notebook=both)
    running = wait_until(lambda: sessions(one).filter(status=Status.RUNNING).first(), 240)
    assert running, sessions(one).values_list("status", flat=True)
    assert running.host.name == b.name
    mine = list(
        GPUAllocation.objects.filter(placement=running.placement, active=True).values_list(
            "gpu__uuid", flat=True
        )
    )
    assert len(mine) == 1
    assert mine[0] in UUIDS
    container = b.client.containers.list(filters={"label": f"lattice.notebook={one.pk}"})[0]
    assert _device_ids(container) == mine
    assert _visible(container)
    assert set(_visible(container)) == {mine[0]}
