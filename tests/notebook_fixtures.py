"""Fixtures for notebook tests: a local host with the fake runtime (Jupyter stand-in), and
notebooks made as a person makes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from apps.core import stream
from apps.machines.inventory import collect
from apps.machines.models import Host, MachineType
from apps.machines.services import host_ensure_local
from apps.notebooks import services
from apps.runtimes import select
from apps.runtimes.fake import FakeRuntime
from tests.factories import GPUDeviceFactory, HostFactory

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from apps.notebooks.models import Notebook


@pytest.fixture
def fake_runtime(settings: Any) -> Iterator[None]:
    settings.LATTICE_RUNTIME = "fake"
    select._runtime.cache_clear()
    FakeRuntime.reset()
    stream.reset_for_tests()
    yield
    FakeRuntime.reset()
    select._runtime.cache_clear()
    stream.reset_for_tests()


def make_host(*, cpus: int = 16, memory_gib: int = 64, name: str = "local") -> Host:
    inventory = {**collect(), "cpu_count": cpus, "memory_bytes": memory_gib * 1024**3, "gpus": []}
    return host_ensure_local(name=name, inventory=inventory, runtime="fake")


def host_for_every_type(name: str = "everything") -> Host:
    """A ready host big enough for every catalogue type, with a GPU of each model (so no start
    is refused as "no host here offers this type"); nothing placed on it."""
    host = HostFactory.create(name=name, cpu_count=256, memory_bytes=4096 * 1024**3)
    models = MachineType.objects.exclude(gpu_model="").values_list("gpu_model", "gpu_count")
    count = max((n for _, n in models), default=0)
    for model in {m for m, _ in models}:
        for _ in range(count):
            GPUDeviceFactory.create(host=host, name=model)
    return host


@pytest.fixture
def host(fake_runtime: None, catalogue: dict[str, Any]) -> Host:
    return make_host()


def make_notebook(
    team: Any, actor: Any, name: str, *, machine: str = "cpu-small", **fields: Any
) -> Notebook:
    """A notebook of the scipy template on the seeded machine type ``machine`` (the
    ``catalogue`` fixture loads them), made by the service as a person makes one."""
    return services.notebook_create(
        team=team,
        actor=actor,
        name=name,
        template="scipy",
        machine_type=MachineType.objects.get(slug=machine),
        **fields,
    )


@pytest.fixture
def notebook(acme: Any, alice: Any, catalogue: dict[str, Any]) -> Notebook:
    return make_notebook(acme, alice, "Churn model")


def _ours() -> str:
    from django.conf import settings

    return f"lattice.installation={settings.LATTICE_INSTALLATION}"


def remove_installation_workloads(
    docker_client: Any, *, notebook_ids: Iterable[int] | None = None
) -> None:
    """Remove this test run's Docker containers (only those of ``notebook_ids`` when given)
    and, without ``notebook_ids``, its volumes: everything carrying this installation's label.
    A dev server or another test run on the same engine labels its own differently, so its
    notebooks (even one with the same notebook id) and their files stay."""
    import contextlib

    from docker.errors import APIError

    filters = [[_ours(), f"lattice.notebook={pk}"] for pk in notebook_ids or ()]
    for labels in filters or [[_ours()]]:
        for container in docker_client.containers.list(
            all=True, sparse=True, filters={"label": labels}
        ):
            with contextlib.suppress(APIError):
                container.remove(force=True)
    if notebook_ids is None:
        for volume in docker_client.volumes.list(filters={"label": _ours()}):
            with contextlib.suppress(APIError):
                volume.remove(force=True)


def remove_installation_volumes(docker_client: Any, names: Iterable[str]) -> None:
    """Remove the named volumes that carry this test run's installation label; a volume of
    the same name that another installation made is not ours to remove."""
    import contextlib

    from docker.errors import APIError

    ours = _ours().split("=", 1)[1]
    for name in names:
        with contextlib.suppress(APIError):
            volume = docker_client.volumes.get(name)
            if (volume.attrs.get("Labels") or {}).get("lattice.installation") == ours:
                volume.remove(force=True)
