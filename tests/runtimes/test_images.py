"""Template images built here (images/build-template.sh): their names, their steps, one build
at a time per image, what they hold, and what JupyterLab's file browser shows in them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from docker.errors import ImageNotFound, NotFound

from apps.runtimes import images
from apps.runtimes.base import Spec, WorkloadError
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.images import (
    BuildStep,
    ImageBuildError,
    _read_step,
    build_step_message,
    build_template_image,
    local_notebook_image,
    local_template_image,
    local_template_of,
)
from tests.helpers import copy_client_beside

REPO = Path(__file__).resolve().parents[2]


def test_a_template_image_is_named_by_its_inputs_and_the_notebook_image(settings, tmp_path):
    settings.LATTICE_LOCAL_TEMPLATES = ["scipy", "pytorch"]
    scipy = local_template_image("scipy")
    assert scipy.startswith("lattice/notebook-scipy-local:")
    assert scipy != local_template_image("pytorch")
    assert local_template_of(scipy) == "scipy"
    assert local_template_of(local_notebook_image()) is None
    assert local_template_of("ghcr.io/lattice-ml/notebook-scipy:2026.1") is None

    # A copy of images/ names the same images; a changed requirement, or a changed notebook
    # image under it, names another.
    copy = tmp_path / "images"
    shutil.copytree(REPO / "images", copy)
    copy_client_beside(copy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "IMAGES_DIR", copy)
        patch.setattr(images, "IMAGE_DIR", copy / "notebook")
        assert local_template_image("scipy") == scipy
        with (copy / "scipy" / "requirements.txt").open("a") as requirements:
            requirements.write("seaborn\n")
        changed = local_template_image("scipy")
        assert changed != scipy
        with (copy / "notebook" / "requirements.txt").open("a") as requirements:
            requirements.write("ipywidgets\n")
        assert local_template_image("scipy") not in (scipy, changed)
        # The production Dockerfile is not an input of the local build.
        pytorch = local_template_image("pytorch")
        (copy / "pytorch" / "Dockerfile").write_text("FROM elsewhere\n")
        assert local_template_image("pytorch") == pytorch


def test_python_and_the_build_script_name_a_template_image_by_the_same_files(
    settings, tmp_path, monkeypatch
):
    # An editor's swap file and a stray folder in a template's folder: neither is an input,
    # on either side (before, Python hashed the dotfile and the script tried to cat the folder).
    copy = tmp_path / "images"
    shutil.copytree(REPO / "images", copy)
    copy_client_beside(copy)
    monkeypatch.setattr(images, "IMAGES_DIR", copy)
    monkeypatch.setattr(images, "IMAGE_DIR", copy / "notebook")
    settings.LATTICE_LOCAL_TEMPLATES = ["scipy"]
    clean = local_template_image("scipy")
    (copy / "scipy" / ".check.py.swp").write_bytes(b"b0VIM 9.0\x00 half a file")
    (copy / "scipy" / "notes").mkdir()
    (copy / "scipy" / "notes" / "todo.txt").write_text("try polars\n")

    def scripts_name() -> str:
        result = subprocess.run(
            ["/bin/bash", str(copy / "build-template.sh"), "--print-name", "scipy"],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    assert local_template_image("scipy") == clean
    assert scripts_name() == clean
    # A new plain file is an input on both sides.
    (copy / "scipy" / "extra.txt").write_text("seaborn\n")
    assert local_template_image("scipy") == scripts_name() != clean


def _steps(lines: list[str]) -> list[BuildStep]:
    step, seen = BuildStep(), []
    for line in lines:
        step = _read_step(line, step)
        seen.append(step)
    return seen


def test_the_build_scripts_steps_are_numbers_with_dockers_own_percent_only():
    # The legacy builder's "Step N/M" and BuildKit's "#N [i/M]" (as `docker build` prints
    # them, captured): the percent is Docker's count of finished instructions, nothing made up.
    legacy = [
        "[lattice] step 1 of 3: the base image",
        "[lattice] step 2 of 3: installing packages",
        "Step 1/8 : ARG BASE",
        "Collecting numpy",
        "Step 6/8 : RUN set -e; pip install torch",
        "[lattice] step 3 of 3: checking the image",
    ]
    buildkit = [
        "[lattice] step 2 of 3: installing packages",
        '#0 building with "default" instance using docker driver',
        "#5 [1/4] FROM docker.io/lattice/notebook-local:0123456789abcdef",
        "#5 DONE 0.0s",
        "#7 [3/4] RUN pip install --no-cache-dir -r /tmp/requirements.txt",
        "#7 2.315 Collecting numpy",
        "#9 [build 2/2] COPY check.py /opt/lattice/",
    ]
    seen = _steps(legacy)

    assert seen[0] == BuildStep("base", 1, 3, None)
    assert seen[1] == BuildStep("packages", 2, 3, None)
    assert seen[3] == seen[2] == BuildStep("packages", 2, 3, 0)  # pip's own lines move nothing
    assert seen[4] == BuildStep("packages", 2, 3, 62)
    assert seen[5] == BuildStep("check", 3, 3, None)
    assert [s.percent for s in _steps(buildkit)] == [None, None, 0, 0, 50, 50, 50]
    assert build_step_message("PyTorch", seen[1]) == (
        "Building the PyTorch image: step 2 of 3 (installing packages)..."
    )
    assert build_step_message("PyTorch", seen[5]).endswith(
        "step 3 of 3 (checking that it imports)..."
    )
    waiting = _read_step("[lattice] waiting: this image is being built", seen[1])
    assert build_step_message("R", waiting) == (
        "Waiting for the R image, which is being built for another notebook..."
    )


def test_a_failed_build_says_why(settings, tmp_path, monkeypatch):
    script = tmp_path / "build-template.sh"
    script.write_text(
        'echo "[lattice] step 2 of 3: installing packages" >&2\n'
        'echo "ERROR: No matching distribution found for torch" >&2\nexit 1\n'
    )
    monkeypatch.setattr(images, "TEMPLATE_SCRIPT", script)
    heard: list[BuildStep] = []

    with pytest.raises(ImageBuildError, match="No matching distribution found for torch"):
        build_template_image("pytorch", heard.append)
    assert heard[-1] == BuildStep("packages", 2, 3)


def _locktest_images(tmp_path: Path) -> Path:
    """A copy of images/ with a template "locktest" whose build takes a few seconds (its
    notebook image is the real one: same inputs, same name)."""
    copy = tmp_path / "images"
    shutil.copytree(
        REPO / "images", copy, ignore=shutil.ignore_patterns("scipy", "pytorch", "r", "tensorflow")
    )
    copy_client_beside(copy)
    template = copy / "locktest"
    template.mkdir()
    (template / "Dockerfile.local").write_text(
        f"# {secrets.token_hex(8)}: a new image each run\nARG BASE\nFROM ${{BASE}}\nRUN sleep 4\n"
    )
    (template / "check.py").write_text('import sys\nsys.stdout.write("ok\\n")\n')
    return copy


def test_a_held_build_lock_fails_the_build_saying_so_and_lives_in_a_private_directory(
    tmp_path,
):
    # A notebook image no host has (its inputs changed here): the build reaches its lock.
    copy = tmp_path / "images"
    shutil.copytree(
        REPO / "images", copy, ignore=shutil.ignore_patterns("scipy", "pytorch", "r", "tensorflow")
    )
    copy_client_beside(copy)
    with (copy / "notebook" / "requirements.txt").open("a") as requirements:
        requirements.write(f"# {secrets.token_hex(8)}\n")
    script = copy / "notebook" / "build-local.sh"

    def build(lock_dir: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LATTICE_LOCK_DIR": str(lock_dir), "LATTICE_BUILD_LOCK_WAIT": "1"}
        return subprocess.run(
            ["/bin/bash", str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    image = subprocess.run(
        ["/bin/bash", str(script), "--print-name"], capture_output=True, text=True, check=True
    ).stdout.strip()
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    # Another build holds it (for longer than this one waits): this one fails, saying so.
    with (locks / f"image-notebook-{image.split(':')[1]}.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = build(locks)
    assert result.returncode == 75, result.stderr
    assert f"gave up after 1s waiting for another build of {image}" in result.stderr

    # Made private where missing; a directory others may write to, or a link, is refused.
    made = tmp_path / "made" / "locks"
    said = subprocess.run(
        ["/bin/bash", "-c", f". {copy / 'lib.sh'} && lattice_lock_dir"],
        env={**os.environ, "LATTICE_LOCK_DIR": str(made)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert said.stdout.strip() == str(made)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    link = tmp_path / "link"
    link.symlink_to(locks)
    for refused in (shared, link):
        result = build(refused)
        assert result.returncode == 77, result.stderr
        assert f"the lock directory {refused} is not private" in result.stderr
    assert list(shared.iterdir()) == []


def test_two_starts_of_a_missing_image_build_it_once(notebook_image, docker_client, tmp_path):
    copy = _locktest_images(tmp_path)
    script = copy / "build-template.sh"
    builds = [
        subprocess.Popen(
            ["bash", str(script), "locktest"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [build.communicate(timeout=300) for build in builds]
    finally:
        for build in builds:
            if build.poll() is None:
                build.kill()
    names = {out.strip().splitlines()[-1] for out, _ in outputs}
    try:
        assert [build.returncode for build in builds] == [0, 0], [err for _, err in outputs]
        assert len(names) == 1
        (name,) = names
        assert name.startswith("lattice/notebook-locktest-local:")
        errors = [err for _, err in outputs]
        assert sum(err.count("step 2 of 3: installing packages") for err in errors) == 1, errors
        assert sum("[lattice] waiting" in err for err in errors) == 1, errors
    finally:
        for name in names:
            with contextlib.suppress(ImageNotFound):
                docker_client.images.remove(name)


def test_the_scipy_image_holds_the_scientific_stack(scipy_image, docker_client):
    assert scipy_image == local_template_image("scipy")
    out = docker_client.containers.run(
        scipy_image,
        [
            "python",
            "-c",
            (
                "import numpy, pandas, scipy, sklearn, matplotlib; "
                "print(sklearn.__version__, scipy.__version__)"
            ),
        ],
        entrypoint=[],
        network_disabled=True,
        remove=True,
    )
    versions = out.decode().split()
    assert len(versions) == 2, versions
    assert all(v[0].isdigit() for v in versions), versions


def test_the_pytorch_image_runs_cpu_torch(pytorch_image, docker_client):
    assert pytorch_image == local_template_image("pytorch")
    out = docker_client.containers.run(
        pytorch_image,
        ["python", "-c", "import torch; print(torch.__version__, torch.version.cuda)"],
        entrypoint=[],
        network_disabled=True,
        remove=True,
    ).decode()
    version, cuda = out.split()
    assert version.startswith("2."), out
    assert cuda == "None", out  # the CPU build, never PyPI's CUDA one


def _get(endpoint: str, path: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - a loopback http URL we made
        f"{endpoint}{path}", headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        result: dict[str, Any] = json.load(response)
    return result


def test_jupyterlab_shows_datasets_and_storage_in_its_root(docker_client, scipy_image, tmp_path):
    runtime = DockerRuntime(docker_client)
    token = secrets.token_hex(16)
    name = f"nb-{uuid.uuid4().hex[:8]}"
    dataset = tmp_path / "flowers"
    dataset.mkdir()
    (dataset / "labels.csv").write_text("rose,1\n")
    dataset.chmod(0o755)
    tmp_path.chmod(0o755)
    (dataset / "labels.csv").chmod(0o644)
    volumes = {f"lattice-test-{name}": "/notebooks", f"lattice-test-{name}-storage": "/storage"}
    spec = Spec(
        name=name,
        image=scipy_image,
        command=[
            "jupyter",
            "server",
            "--ip=0.0.0.0",
            "--port={port}",
            "--no-browser",
            "--ServerApp.root_dir=/notebooks",
        ],
        env={"JUPYTER_TOKEN": token},
        volumes=volumes,
        datasets=[{"name": "flowers", "source": str(dataset)}],
    )
    try:
        state = runtime.start(spec)
        deadline = time.monotonic() + 90
        root: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                root = _get(f"http://127.0.0.1:{state['port']}", "/api/contents/", token)
                break
            except OSError:
                time.sleep(0.3)
        endpoint = f"http://127.0.0.1:{state['port']}"
        listed = {item["name"]: item["type"] for item in root.get("content", [])}
        assert listed == {
            "datasets": "directory",
            "storage": "directory",
            "README-lattice.md": "file",
        }, (listed, list(runtime.logs(state))[-20:])
        # Jupyter Server follows the links: the dataset's files, /storage, the note.
        flowers = _get(endpoint, "/api/contents/datasets/flowers", token)
        assert [item["name"] for item in flowers["content"]] == ["labels.csv"]
        labels = _get(endpoint, "/api/contents/datasets/flowers/labels.csv?content=1", token)
        assert labels["content"] == "rose,1\n"
        assert _get(endpoint, "/api/contents/storage", token)["type"] == "directory"
        note = _get(endpoint, "/api/contents/README-lattice.md?content=1", token)
        assert "team's shared volume" in note["content"]
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
        for volume in volumes:
            with contextlib.suppress(NotFound):
                docker_client.volumes.get(volume).remove(force=True)


def test_the_docker_runtime_builds_a_missing_template_image_and_says_its_steps(
    notebook_image, docker_client, tmp_path, settings, monkeypatch
):
    copy = _locktest_images(tmp_path)
    monkeypatch.setattr(images, "IMAGES_DIR", copy)
    monkeypatch.setattr(images, "TEMPLATE_SCRIPT", copy / "build-template.sh")
    monkeypatch.setitem(images.IMAGE_TITLES, "locktest", "Lock test")
    settings.LATTICE_LOCAL_TEMPLATES = ["locktest"]
    image = local_template_image("locktest")
    runtime = DockerRuntime(docker_client)
    name = f"nb-{uuid.uuid4().hex[:8]}"
    spec = Spec(name=name, image=image, command=["sleep", "60"])
    said: list[str] = []
    started: dict[str, Any] = {}

    def start() -> None:
        started.update(runtime.start(spec))

    thread = threading.Thread(target=start)
    try:
        thread.start()
        while thread.is_alive():
            progress = runtime.pulling(name)
            if progress is not None and (not said or said[-1] != progress.message):
                assert progress.phase == "building"
                said.append(progress.message)
            time.sleep(0.05)
        thread.join()
        assert started.get("container_id"), "the workload did not start"
        assert docker_client.images.get(image)
        assert "Building the Lock test image: step 2 of 3 (installing packages)..." in said, said
        assert runtime.pulling(name) is None
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
        with contextlib.suppress(ImageNotFound):
            docker_client.images.remove(image)


@pytest.mark.parametrize("name", ["notebook-scipy-local", "notebook-local"])
def test_a_locally_built_image_missing_here_is_never_pulled(
    name, settings, docker_client, monkeypatch
):
    # A template's image this installation does not build here (or the notebook image), at a
    # tag no host has: its name on Docker Hub is anyone's, so the runtime refuses to pull it.
    settings.LATTICE_LOCAL_TEMPLATES = []
    image = f"lattice/{name}:{secrets.token_hex(8)}"
    pulled: list[str] = []

    def pull(reference: str, **_: Any) -> list[Any]:
        pulled.append(reference)
        return []

    monkeypatch.setattr(docker_client.api, "pull", pull)
    runtime = DockerRuntime(docker_client)
    spec = Spec(name=f"nb-{uuid.uuid4().hex[:8]}", image=image, command=["sleep", "1"])

    with pytest.raises(WorkloadError, match="not built on this host"):
        runtime.start(spec)
    assert pulled == []
