"""A real Jupyter Server in a container, through the Docker backend."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.request
import uuid

from docker.errors import NotFound

from apps.runtimes.base import Spec
from apps.runtimes.docker import DockerRuntime


def test_jupyter_starts_answers_logs_and_stops(docker_client, notebook_image):
    runtime = DockerRuntime(docker_client)
    token = secrets.token_hex(16)
    name = f"nb-{uuid.uuid4().hex[:8]}"
    spec = Spec(
        name=name,
        image=notebook_image,
        command=[
            "jupyter",
            "server",
            "--ip=0.0.0.0",
            "--port={port}",
            "--no-browser",
            "--ServerApp.root_dir=/notebooks",
        ],
        env={"JUPYTER_TOKEN": token},
        vcpus=1,
        memory_bytes=1024**3,
        volumes={f"lattice-test-{name}": "/notebooks"},
    )
    try:
        state = runtime.start(spec)
        deadline = time.monotonic() + 60
        while runtime.endpoint(state) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        endpoint = runtime.endpoint(state)
        assert endpoint is not None, list(runtime.logs(state))

        request = urllib.request.Request(  # noqa: S310 - a loopback http URL we made
            f"{endpoint}/api/status", headers={"Authorization": f"token {token}"}
        )
        status = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                    status = json.load(response)
                break
            except OSError:
                time.sleep(0.2)
        assert "started" in status
        assert any("Jupyter Server" in line for line in runtime.logs(state))

        # The notebook folder is the named volume, writable by the server's user.
        contents = urllib.request.Request(  # noqa: S310 - a loopback http URL we made
            f"{endpoint}/api/contents/hello.txt",
            data=json.dumps({"type": "file", "format": "text", "content": "hi"}).encode(),
            method="PUT",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(contents, timeout=10) as response:  # noqa: S310
            assert response.status == 201

        runtime.stop(state, timeout=10)
        assert runtime.poll(state) == 0
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(f"lattice-test-{name}").remove(force=True)
