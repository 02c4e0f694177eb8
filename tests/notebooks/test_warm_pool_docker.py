"""A warm pool end to end on the real Docker runtime and the real notebook image: the
reconciler fills the admin's pool through the agent, a notebook start claims the warm
container (its Jupyter then answers the session's token at the notebook's base URL, and
refuses the pool's), and a stop removes it. Celery runs eagerly."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import httpx
import pytest
from docker.errors import NotFound

from apps.core import stream
from apps.machines.inventory import collect
from apps.machines.models import MachineType, Placement, PoolSlot, WarmPool
from apps.machines.services import host_ensure_local
from apps.machines.tasks import reconcile
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from apps.notebooks.templates import image_for
from apps.runtimes import select
from apps.runtimes.docker import DockerRuntime
from tests.conftest import service_missing
from tests.notebook_fixtures import (
    make_notebook,
    remove_installation_volumes,
    remove_installation_workloads,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


def _mounts_under(root: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(str(root)):
            points.append(point)
    return sorted(points, key=len, reverse=True)


@pytest.fixture
def pool_host(settings, docker_client, notebook_image, scipy_image, catalogue, tmp_path):
    settings.LATTICE_RUNTIME = "docker"
    settings.LATTICE_POOL_DIR = tmp_path / "pool"
    select._runtime.cache_clear()
    stream.reset_for_tests()
    if not DockerRuntime(docker_client).pool_supported():
        service_missing("this host cannot keep warm containers (needs root beside the engine)")
    host = host_ensure_local(name="local", inventory=collect(), runtime="docker")
    yield host
    runtime = DockerRuntime(docker_client)
    for managed in runtime.pool_list():
        with contextlib.suppress(Exception):
            runtime.pool_remove(managed.state)
    remove_installation_workloads(docker_client)
    for point in _mounts_under(tmp_path):
        subprocess.run(["umount", "-l", point], check=False)
    select._runtime.cache_clear()


def test_a_start_claims_the_warm_container_and_a_stop_removes_it(
    acme, alice, pool_host, docker_client
):
    notebook = make_notebook(acme, alice, "Warm")
    machine = MachineType.objects.get(slug="cpu-small")
    try:
        WarmPool.objects.create(
            host=pool_host, machine_type=machine, image=image_for("scipy", ""), size=1
        )
        reconcile()  # the agent fills it and says ready (eagerly, in this call)
        (slot,) = PoolSlot.objects.all()
        assert slot.status == PoolSlot.Status.READY, slot.state
        warm_port = slot.state["port"]

        started = services.notebook_start(team=acme, actor=alice, notebook=notebook)
        session = NotebookSession.objects.for_team(acme).get(pk=started.pk)

        assert session.status == Status.RUNNING, session.status_message
        slot.refresh_from_db()
        assert (slot.status, slot.claimed_by) == (PoolSlot.Status.CLAIMED, session.workload)
        # The same container, now the session's.
        container = docker_client.containers.get(DockerRuntime.container_name(session.workload))
        assert container.labels["lattice.pool"] == slot.name
        assert session.endpoint.endswith(f":{warm_port}")
        status = f"{session.endpoint}{session.base_path}api/status"
        answered = httpx.get(status, headers={"Authorization": f"token {session.jupyter_token}"})
        assert answered.status_code == 200
        refused = httpx.get(status, headers={"Authorization": f"token {slot.token}"})
        assert refused.status_code == 403
        assert Placement.objects.filter(active=True).count() == 1

        services.notebook_stop(team=acme, actor=alice, notebook=notebook)

        with pytest.raises(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(session.workload))
    finally:
        remove_installation_workloads(docker_client, notebook_ids=[notebook.pk])
        remove_installation_volumes(docker_client, [notebook.volume])
