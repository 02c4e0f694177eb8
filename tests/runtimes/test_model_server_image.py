"""The built-in model server's image and command (apps.runtimes.images): its name (a setting,
else the local build's), the command each runtime runs, and its local build on Docker."""

from __future__ import annotations

import sys

from apps.runtimes.base import expand_command
from apps.runtimes.images import (
    is_local_image,
    local_model_server_image,
    local_template_image,
    model_server_command,
    model_server_image,
)
from tests.deployment_fixtures import SERVE


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
