"""How notebooks and jobs reach `manage.py dev` when they run in Docker containers.

The dev server listens on loopback, which inside a container is the container itself, and
the workload network refuses the host (apps.runtimes.docker.isolate_workloads). So the dev
command also listens on the workload bridge's gateway (this host's address on that bridge,
which only this machine and its containers have) with ``Forwarder``, a TCP relay to the dev
server that answers only peers on the bridge's subnet; sends workloads there
(LATTICE_WORKLOAD_API_URL); and lets exactly that address and port through the isolation
rules, as a LATTICE_WORKLOAD_ALLOW entry would. Nothing listens on 0.0.0.0 and no other
host port or private address opens to workloads (docs/hosts.md, "The embedded default").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from apps.runtimes.docker import DockerRuntime

CHUNK = 64 * 1024
WILDCARDS = ("0.0.0.0", "[::]", "::")  # noqa: S104


class Forwarder:
    """A TCP relay, in a thread of its own: connections to ``listen``:``port`` (0: any free
    port) from an address in ``peers`` (networks) are joined to ``target``; others are closed
    unanswered. Binds on construction (OSError when it cannot); ``close`` stops it."""

    def __init__(
        self, listen: str, port: int, target: tuple[str, int], *, peers: Sequence[str]
    ) -> None:
        self.target = target
        self.peers = [ipaddress.ip_network(peer, strict=False) for peer in peers]
        self._loop = asyncio.new_event_loop()
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, listen, port)
            )
        except BaseException:
            self._loop.close()
            raise
        self.address = listen
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="workload-forwarder", daemon=True
        )
        self._thread.start()

    def _allowed(self, peer: Any) -> bool:
        try:
            address = ipaddress.ip_address(peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        return any(address in network for network in self.peers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._allowed(writer.get_extra_info("peername")):
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        # A client's half close is not passed on: HTTP servers (Daphne, uvicorn) take the end
        # of a request's stream for the end of the connection and drop the answer.
        try:
            await asyncio.gather(
                _pipe(reader, upstream_writer, pass_end=False),
                _pipe(upstream_reader, writer, pass_end=True),
                return_exceptions=True,
            )
        finally:
            for each in (writer, upstream_writer):
                each.close()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            current = asyncio.current_task()
            # Connections still open: cut, and wait until they are.
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, pass_end: bool
) -> None:
    """Copy until the end; then, with ``pass_end``, pass the end on (a half close)."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if pass_end and writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


def bridge_gateway(runtime: DockerRuntime) -> tuple[str, list[str]]:
    """The workload network's gateway (IPv4, this host's side of the bridge) and subnets."""
    network = runtime.network()
    network.reload()
    config = [c for c in network.attrs["IPAM"]["Config"] or [] if "Subnet" in c]
    subnets = [str(c["Subnet"]) for c in config]
    gateways = [str(c["Gateway"]) for c in config if c.get("Gateway")]
    if not gateways:  # Docker names the gateway on creation; an old network may not say it
        gateways = [str(ipaddress.ip_network(subnets[0]).network_address + 1)]
    return gateways[0], subnets


@dataclass
class WorkloadReach:
    """What ``workload_reach`` set up: the URL workloads get, and how to take it down."""

    url: str
    isolated: bool
    forwarder: Forwarder | None = None
    rules: list[list[str]] = field(default_factory=list)

    def close(self) -> None:
        """Stop relaying and take out the allowance this made (the isolation stays)."""
        if self.forwarder:
            self.forwarder.close()
        iptables = shutil.which("iptables")
        for rule in self.rules if iptables else []:
            while (
                subprocess.run(  # noqa: S603
                    [str(iptables), "-D", *rule], capture_output=True, check=False
                ).returncode
                == 0
            ):
                pass


def workload_reach(runtime: DockerRuntime, server: str, port: int) -> WorkloadReach:
    """Make the dev server at ``server``:``port`` reachable from the workload network, and
    only it: relay from the bridge's gateway (the same port where free), point
    LATTICE_WORKLOAD_API_URL there, let the gateway name the server (ALLOWED_HOSTS), and
    allow that address and port through the isolation rules (applied now, as an agent does).
    A server on every address already listens on the gateway: no relay then."""
    from apps.runtimes.base import WorkloadError
    from apps.runtimes.docker import allow_rules, isolate_workloads

    gateway, subnets = bridge_gateway(runtime)
    forwarder = None
    served_port = port
    if server not in WILDCARDS:
        target = (server.strip("[]"), port)
        try:
            forwarder = Forwarder(gateway, port, target, peers=subnets)
        except OSError:  # that port is taken on the gateway: any other will do
            forwarder = Forwarder(gateway, 0, target, peers=subnets)
        served_port = forwarder.port
    entry = f"{gateway}:{served_port}"
    settings.LATTICE_WORKLOAD_API_URL = f"http://{entry}"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, gateway]
    ours: list[list[str]] = []
    if entry not in settings.LATTICE_WORKLOAD_ALLOW:
        ours = allow_rules(runtime, allowed=[(gateway, served_port)])
        settings.LATTICE_WORKLOAD_ALLOW = [*settings.LATTICE_WORKLOAD_ALLOW, entry]
    isolated = False
    with contextlib.suppress(WorkloadError):  # a bad LATTICE_WORKLOAD_ALLOW: the agent says so
        isolated = isolate_workloads(runtime)
    return WorkloadReach(
        url=settings.LATTICE_WORKLOAD_API_URL,
        isolated=isolated,
        forwarder=forwarder,
        rules=ours if isolated else [],
    )
