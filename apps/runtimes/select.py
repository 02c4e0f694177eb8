"""Which runtime this host uses: LATTICE_RUNTIME = auto | docker | process | fake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from apps.core.engine import docker_engine

if TYPE_CHECKING:
    from apps.runtimes.base import Runtime


def host_runtime() -> Runtime:
    choice = settings.LATTICE_RUNTIME
    if choice == "fake":
        from apps.runtimes.fake import FakeRuntime

        return FakeRuntime()
    if choice == "docker" or (choice == "auto" and docker_engine() is not None):
        from apps.runtimes.docker import DockerRuntime

        return DockerRuntime()
    from apps.runtimes.process import LocalProcessRuntime

    return LocalProcessRuntime()
