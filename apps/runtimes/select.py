"""Which runtime this host uses: LATTICE_RUNTIME = auto | docker | process | fake[:mode]."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from django.conf import settings

from apps.core.engine import docker_engine

if TYPE_CHECKING:
    from apps.runtimes.base import Runtime


def host_runtime() -> Runtime:
    """This host's runtime, decided once per process (and per LATTICE_RUNTIME value).

    The agent asks for it on every report and task; probing the Docker engine
    and opening a client each time would be wasted work.
    """
    return _runtime(settings.LATTICE_RUNTIME)


@functools.cache
def _runtime(choice: str) -> Runtime:
    # Each backend is imported only when it is the one chosen: a host without Docker never
    # loads the Docker SDK, and the fake stays out of every real process.
    if choice.startswith("fake"):
        from apps.runtimes.fake import FakeRuntime

        return FakeRuntime(choice.partition(":")[2] or "ok")
    if choice == "docker" or (choice == "auto" and docker_engine() is not None):
        from apps.runtimes.docker import DockerRuntime

        return DockerRuntime()
    from apps.runtimes.process import LocalProcessRuntime

    return LocalProcessRuntime()
