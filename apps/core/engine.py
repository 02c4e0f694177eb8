"""Is there a container engine on this machine?

The embedded default runs notebooks in Docker when a daemon answers and as
local processes otherwise (the runtimes issue builds both); this is the probe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    kind: str
    version: str
    api_version: str


def docker_engine(timeout: float = 2.0) -> EngineInfo | None:
    """The local Docker engine's version, or None when no daemon answers."""
    # Imported here, not at the top: the web process imports this module (the runtime
    # registry) but never probes, and the Docker SDK (requests, paramiko) is ~7 MiB of RSS.
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
            info = client.version()
        finally:
            client.close()
    except (DockerException, OSError) as exc:
        logger.debug("no Docker engine: %s", exc)
        return None
    return EngineInfo(
        kind="docker",
        version=str(info.get("Version", "unknown")),
        api_version=str(info.get("ApiVersion", "unknown")),
    )
