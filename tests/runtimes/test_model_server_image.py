"""The built-in model server's image and command (apps.runtimes.images): its name (a setting,
else the local build's), the command each runtime runs, and its local build on Docker."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from docker.errors import ImageNotFound, NotFound

from apps.runtimes.base import Spec, expand_command
from apps.runtimes.images import (
    is_local_image,
    local_model_server_image,
    local_template_image,
    model_server_command,
    model_server_image,
)
from tests.deployment_fixtures import SERVE
from tests.helpers import copy_client_beside

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "models" / "iris"
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 7.2, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3}


def test_the_image_is_the_setting_else_the_local_build(settings):
    settings.LATTICE_MODEL_SERVER_IMAGE = "ghcr.io/lattice-ml/model-server:2026.1"
    assert model_server_image() == "ghcr.io/lattice-ml/model-server:2026.1"

    settings.LATTICE_MODEL_SERVER_IMAGE = ""
    local = model_server_image()
    assert local == local_model_server_image()
    assert local.startswith("lattice/model-server-local:")
    assert len(local.rsplit(":", 1)[1]) == 16
    # Built here, never pulled: on Docker Hub the name is anyone's.
    assert is_local_image(local)
    assert is_local_image("docker.io/lattice/model-server-local:latest")
    assert not is_local_image("lattice/model-server:1")


def test_the_local_name_follows_its_base_and_its_inputs(settings, tmp_path, monkeypatch):
    from apps.runtimes import images

    first = local_model_server_image()
    monkeypatch.setattr(
        images, "local_template_image", lambda template: local_template_image(template) + "x"
    )
    assert local_model_server_image() != first  # another scipy image: another build

    monkeypatch.undo()
    folder = tmp_path / "model-server"
    folder.mkdir()
    (folder / "serve.py").write_text("one")
    monkeypatch.setattr(images, "MODEL_SERVER_DIR", folder)
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path)
    monkeypatch.setattr(images, "local_template_image", lambda _template: "base")
    one = local_model_server_image()
    (folder / "serve.py").write_text("two")
    assert local_model_server_image() != one
    (folder / "serve.py").write_text("one")
    (folder / "Dockerfile").write_text("production only")
    (folder / ".serve.py.swp").write_text("an editor's")
    assert local_model_server_image() == one


def test_a_container_runs_the_images_serve_py_on_the_model_mount(settings):
    settings.LATTICE_MODEL_SERVER_CONCURRENCY = 3
    command = model_server_command("docker")
    everywhere = "0.0.0.0"  # noqa: S104 - inside a container, as the Docker runtime fills it

    assert expand_command(command, port=8080, ip=everywhere, mounts={"/model": "/model"}) == [
        "python3",
        "/opt/lattice/serve.py",
        "--host",
        everywhere,
        "--port",
        "8080",
        "--model",
        "/model",
        "--concurrency",
        "3",
    ]


def test_a_process_runs_this_python_and_the_repositorys_serve_py(settings):
    settings.LATTICE_MODEL_SERVER_CONCURRENCY = 8
    command = model_server_command("process")

    expanded = expand_command(
        command, port=41000, ip="127.0.0.1", mounts={"/model": "/work/dp-1/model"}
    )
    assert expanded == [
        sys.executable,
        str(SERVE),
        "--host",
        "127.0.0.1",
        "--port",
        "41000",
        "--model",
        "/work/dp-1/model",
        "--concurrency",
        "8",
    ]
    assert SERVE.is_file()


def test_python_and_the_build_script_name_the_image_alike():
    named = subprocess.run(
        ["bash", str(REPO / "images" / "model-server" / "build-local.sh"), "--print-name"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert named.stdout.strip() == local_model_server_image()


# --- on a real Docker engine ----------------------------------------------------------


def train_iris(image: str, docker_client: Any, folder: Path) -> Path:
    """The iris example's model folder, trained by its train.py in ``image`` (the scikit-learn
    that loads it is the one that wrote it, as in a notebook of the scipy template)."""
    folder.mkdir()
    folder.chmod(0o777)  # the image's user (uid 1000) writes it
    docker_client.containers.run(
        image,
        ["python3", "/example/train.py", "--out", "/out/iris-model"],
        volumes={
            str(EXAMPLE): {"bind": "/example", "mode": "ro"},
            str(folder): {"bind": "/out", "mode": "rw"},
        },
        working_dir="/out",
        network_mode="none",
        remove=True,
    )
    return folder / "iris-model"


def wait_ready(endpoint_of: Callable[[], str | None], seconds: float = 60) -> tuple[str, list[str]]:
    """(endpoint, the statuses seen in order) once the health route says READY."""
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    while time.monotonic() < deadline:
        endpoint = endpoint_of()
        with contextlib.suppress(httpx.HTTPError):
            if endpoint is not None:
                status = httpx.get(f"{endpoint}/health-check", timeout=2).json()["status"]
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status == "READY":
                    return endpoint, seen
        time.sleep(0.1)
    raise AssertionError(f"not READY after {seconds} s: {seen}")


@pytest.mark.docker
def test_a_replica_of_the_image_serves_the_iris_example_from_model(
    model_server_image, docker_client, tmp_path
):
    from apps.runtimes.docker import DockerRuntime

    model = train_iris(model_server_image, docker_client, tmp_path / "trained")
    runtime = DockerRuntime(docker_client)
    name = f"dp-{uuid.uuid4().hex[:8]}"
    spec = Spec(
        name=name,
        image=model_server_image,
        command=model_server_command(runtime.kind),
        port=8080,
        vcpus=1,
        memory_bytes=512 * 1024**2,
        labels={"kind": "deployment"},
        datasets=[{"name": "model", "key": "k", "source": str(model), "path": "/model"}],
    )
    try:
        state = runtime.start(spec)
        endpoint, seen = wait_ready(lambda: runtime.endpoint(state))

        assert seen[-1] == "READY"
        setosa = httpx.post(f"{endpoint}/predict", json=SETOSA, timeout=10)
        assert setosa.status_code == 200
        assert setosa.json()["output"]["species"] == "setosa"
        cog = httpx.post(f"{endpoint}/predictions", json={"input": VIRGINICA}, timeout=10)
        assert cog.json()["output"]["species"] == "virginica"
        refused = httpx.post(f"{endpoint}/predict", json={"sepal_length": 1}, timeout=10)
        assert refused.status_code == 422
        assert "missing" in refused.json()["error"]
        container = docker_client.containers.get(state["container_id"])
        written = container.exec_run(["touch", "/model/new.txt"])
        assert "Read-only file system" in written.output.decode()
        logs = "\n".join(runtime.logs(state))
        assert "setup: ready in" in logs
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)


@pytest.mark.docker
def test_the_images_own_command_serves_a_folder_bound_at_model(
    model_server_image, docker_client, tmp_path
):
    # What production runs (`docker run -v <folder>:/model:ro IMAGE`), without our command.
    model = train_iris(model_server_image, docker_client, tmp_path / "trained")
    container = docker_client.containers.run(
        model_server_image,
        detach=True,
        volumes={str(model): {"bind": "/model", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels={"lattice.test": "model-server"},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        endpoint, _ = wait_ready(lambda: f"http://127.0.0.1:{port}")
        with httpx.Client(base_url=endpoint, timeout=10) as client:
            first = client.post("/predict", json=SETOSA)
            again = client.post("/predict", json=VIRGINICA)  # the same connection, kept alive
        assert first.json()["output"]["species"] == "setosa"
        assert again.json()["output"]["species"] == "virginica"
        assert container.attrs["Config"]["User"] == "1000:1000"
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_the_docker_runtime_builds_a_missing_model_server_image_saying_its_steps(
    scipy_image, docker_client, tmp_path, monkeypatch
):
    from apps.runtimes import images
    from apps.runtimes.docker import DockerRuntime

    # A copy of images/ whose model server differs by one line: an image no host has yet.
    copy = tmp_path / "images"
    shutil.copytree(REPO / "images", copy, symlinks=True)
    copy_client_beside(copy)
    with (copy / "model-server" / "README.md").open("a") as readme:
        readme.write(f"\n{uuid.uuid4().hex}\n")
    monkeypatch.setattr(images, "IMAGES_DIR", copy)
    monkeypatch.setattr(images, "TEMPLATE_SCRIPT", copy / "build-template.sh")
    monkeypatch.setattr(images, "MODEL_SERVER_DIR", copy / "model-server")
    monkeypatch.setattr(images, "MODEL_SERVER_SCRIPT", copy / "model-server" / "build-local.sh")
    image = model_server_image()
    assert image.startswith("lattice/model-server-local:")
    with contextlib.suppress(NotFound, ImageNotFound):
        docker_client.images.get(image)
        pytest.fail(f"{image} is already built")
    runtime = DockerRuntime(docker_client)
    name = f"dp-{uuid.uuid4().hex[:8]}"
    spec = Spec(name=name, image=image, command=["sleep", "60"])
    said: list[str] = []
    started: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: started.update(runtime.start(spec)))
    try:
        thread.start()
        while thread.is_alive():
            progress = runtime.pulling(name)
            if progress is not None and (not said or said[-1] != progress.message):
                said.append(progress.message)
            time.sleep(0.05)
        thread.join()
        assert started.get("container_id"), "the workload did not start"
        assert docker_client.images.get(image).labels["lattice.image"] == "model-server"
        assert "Building the model server image: step 2 of 3 (installing packages)..." in said
        assert "Building the model server image: step 3 of 3 (checking that it imports)..." in said
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
        with contextlib.suppress(ImageNotFound):
            docker_client.images.remove(image)
