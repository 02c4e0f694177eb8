"""On real Docker: under `manage.py dev` a container on the workload network reaches the dev
server (served on loopback) at the bridge's gateway, through the relay and the one allowance
`workload_reach` adds, and gets the live server's answer; every other port of the host stays
refused, and closing takes the relay and the allowance away (apps.devtools.workload_reach)."""

from __future__ import annotations

import subprocess
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from apps.devtools.workload_reach import workload_reach
from apps.runtimes.docker import NETWORK, DockerRuntime
from tests.client.sdk_fixtures import token_of
from tests.runtimes.test_docker import host_service

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


@pytest.fixture
def workload(docker_client, busybox_image):
    """A busybox container on the workload network (this test's own)."""
    container = docker_client.containers.run(
        busybox_image,
        ["/bin/busybox", "sleep", "120"],
        detach=True,
        network=DockerRuntime(docker_client).network().name,
        labels={"lattice.test": "dev-workload-reach"},
        name=f"lattice-test-reach-{uuid.uuid4().hex[:8]}",
    )
    yield container
    container.remove(force=True)


def http_get(container, host: str, port: int, path: str, token: str = "") -> str:
    """What the container gets for GET ``path`` at host:port. Busybox nc stops at the end of
    its input, answered or not: the input stays open for five seconds."""
    auth = f"Authorization: Bearer {token}\\r\\n" if token else ""
    request = f"GET {path} HTTP/1.0\\r\\nHost: {host}:{port}\\r\\n{auth}\\r\\n"
    command = f"(printf '{request}'; sleep 5) | /bin/busybox nc -w 5 {host} {port}"
    return container.exec_run(["/bin/busybox", "sh", "-c", command]).output.decode(errors="replace")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def iptables_has(rule: list[str]) -> bool:
    found = subprocess.run(["iptables", "-C", *rule], capture_output=True, check=False)
    return found.returncode == 0


def test_a_workload_reaches_the_dev_server_on_the_gateway_and_no_other_host_port(
    settings, docker_client, workload, asgi_live_server, alice, acme
):
    settings.LATTICE_WORKLOAD_ALLOW = []
    server_port = urlsplit(asgi_live_server).port
    assert server_port
    runtime = DockerRuntime(docker_client)
    gateway = next(
        c["Gateway"] for c in docker_client.networks.get(NETWORK).attrs["IPAM"]["Config"]
    )
    token = token_of(alice)
    assert httpx.get(f"{asgi_live_server}/api/v1/me", headers=bearer(token)).status_code == 200

    reach = workload_reach(runtime, "127.0.0.1", server_port)
    try:
        assert reach.isolated, "needs root and iptables, as the agent's isolation does"
        assert reach.url == f"http://{gateway}:{server_port}"  # the dev server's own port
        assert reach.url == settings.LATTICE_WORKLOAD_API_URL
        assert reach.rules
        assert all(iptables_has(rule) for rule in reach.rules)

        health = http_get(workload, gateway, server_port, "/healthz")
        me = http_get(workload, gateway, server_port, "/api/v1/me", token)
        with host_service() as other_port:
            other = http_get(workload, gateway, other_port, "/")
        # The server itself is on loopback only: a workload cannot aim there.
        loopback = http_get(workload, "127.0.0.1", server_port, "/healthz")
    finally:
        reach.close()

    assert health.startswith("HTTP/1.1 200"), health
    assert me.startswith("HTTP/1.1 200"), me
    assert alice.email in me
    assert "host service" not in other
    assert "HTTP/" not in loopback
    # Closed: the allowance is gone and nothing answers on the gateway's port.
    assert not any(iptables_has(rule) for rule in reach.rules)
    assert "HTTP/" not in http_get(workload, gateway, server_port, "/healthz")


def test_the_sdk_in_the_notebook_image_answers_whoami_through_the_relay(
    settings, docker_client, notebook_image, asgi_live_server, alice, acme
):
    settings.LATTICE_WORKLOAD_ALLOW = []
    server_port = urlsplit(asgi_live_server).port
    assert server_port
    runtime = DockerRuntime(docker_client)
    token = token_of(alice)
    assert httpx.get(f"{asgi_live_server}/api/v1/me", headers=bearer(token)).status_code == 200

    reach = workload_reach(runtime, "127.0.0.1", server_port)
    container = None
    try:
        container = docker_client.containers.run(
            notebook_image,
            ["python", "-c", "import lattice; c = lattice.Client(); print(c.whoami().email)"],
            detach=True,
            network=NETWORK,
            environment={"LATTICE_URL": reach.url, "LATTICE_TOKEN": token, "LATTICE_TEAM": "acme"},
            labels={"lattice.test": "dev-workload-reach"},
            name=f"lattice-test-reach-{uuid.uuid4().hex[:8]}",
        )
        status = container.wait(timeout=60)
        output = container.logs().decode(errors="replace")
    finally:
        if container is not None:
            container.remove(force=True)
        reach.close()

    assert status["StatusCode"] == 0, output
    assert output.split() == [alice.email]
