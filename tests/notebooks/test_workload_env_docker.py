"""On real Docker, in the notebook image: a session's container has LATTICE_URL,
LATTICE_TOKEN and LATTICE_TEAM in its environment, `import lattice; lattice.Client()` picks
them up there, and the token (read from the container, as its host could) authenticates
against the server until the session stops.

The container does not call the test server itself (it listens on loopback, which the
workload network refuses: docs/permissions.md, "Workload tokens"); the test process sends
what the container holds."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core import stream
from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from apps.runtimes import select
from apps.runtimes.docker import DockerRuntime
from tests.helpers import bearer
from tests.notebook_fixtures import (
    make_notebook,
    remove_installation_volumes,
    remove_installation_workloads,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

URL = "http://lattice.test:8000"


@pytest.fixture
def docker_notebook(settings, docker_client, notebook_image, catalogue, acme, alice):
    settings.LATTICE_RUNTIME = "docker"
    settings.LATTICE_WORKLOAD_API_URL = URL
    # The notebook image itself (it has the client): no template image to build for this.
    settings.LATTICE_LOCAL_IMAGES = False
    settings.LATTICE_TEMPLATE_IMAGES = {**settings.LATTICE_TEMPLATE_IMAGES, "scipy": notebook_image}
    select._runtime.cache_clear()
    stream.reset_for_tests()
    host_ensure_local(name="local", inventory=collect(), runtime="docker")
    notebook = make_notebook(acme, alice, "SDK inside")
    yield notebook
    remove_installation_workloads(docker_client, notebook_ids=[notebook.pk])
    remove_installation_volumes(docker_client, [notebook.volume])
    select._runtime.cache_clear()


def container_env(docker_client: Any, session: NotebookSession) -> dict[str, str]:
    container = docker_client.containers.get(DockerRuntime.container_name(session.workload))
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def test_the_container_has_the_sdks_environment_and_its_token_works_until_the_stop(
    acme, alice, docker_client, docker_notebook
):
    started = services.notebook_start(team=acme, actor=alice, notebook=docker_notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=started.pk)
    assert session.status == Status.RUNNING, session.status_message

    env = container_env(docker_client, session)
    assert env["LATTICE_URL"] == URL
    assert env["LATTICE_TEAM"] == "acme"
    container = docker_client.containers.get(DockerRuntime.container_name(session.workload))
    code, output = container.exec_run(
        ["python", "-c", "import lattice; c = lattice.Client(); print(c.url, c.team)"]
    )
    assert code == 0, output.decode()
    assert output.decode().split() == [URL, "acme"]

    api = bearer(env["LATTICE_TOKEN"])
    assert api.get("/api/v1/me").json()["email"] == alice.email
    assert api.get("/api/v1/teams/acme/notebooks/").status_code == 200

    services.notebook_stop(team=acme, actor=alice, notebook=docker_notebook)

    assert api.get("/api/v1/me").status_code == 401
