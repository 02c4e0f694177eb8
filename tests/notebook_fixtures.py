"""Fixtures for notebook tests: a local host with the fake runtime (Jupyter stand-in)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from apps.core import stream
from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.notebooks import services
from apps.runtimes import select
from apps.runtimes.fake import FakeRuntime

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.machines.models import Host
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


@pytest.fixture
def host(fake_runtime: None, catalogue: dict[str, Any]) -> Host:
    return make_host()


@pytest.fixture
def notebook(acme: Any, alice: Any, catalogue: dict[str, Any]) -> Notebook:
    return services.notebook_create(
        team=acme,
        actor=alice,
        name="Churn model",
        template="scipy",
        machine_type=catalogue["cpu-small"],
    )
