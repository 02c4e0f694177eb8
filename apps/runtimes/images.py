"""Which notebook images a host runs, and building them where no registry is reachable.

Production names its images in settings (LATTICE_NOTEBOOK_IMAGE, and one per
template: built from images/<template>/Dockerfile and pushed to a registry).
Without a registry (LATTICE_LOCAL_IMAGES), the hosts build them:

- the notebook image (JupyterLab only) by images/notebook/build-local.sh, tagged
  with the hash of its inputs, computed here the same way; ``make dev`` builds it
  in the background;
- each template's image (``lattice/notebook-<template>-local:<hash>``) by
  images/build-template.sh from images/<template>/Dockerfile.local on top of the
  notebook image, tagged with the hash of the notebook image's name and the
  template's local inputs. The Docker runtime builds one the first time a
  notebook needs it (``build_template_image``), reporting its steps as it goes;
- the built-in model server's image (``lattice/model-server-local:<hash>``) by
  images/model-server/build-local.sh from its Dockerfile.local on top of the scipy
  template's image, tagged with the hash of that image's name and its local inputs.
  Production names it in LATTICE_MODEL_SERVER_IMAGE (images/model-server/Dockerfile).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from apps.runtimes.base import MODEL_PATH

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

IMAGES_DIR = Path(settings.BASE_DIR) / "images"
IMAGE_DIR = IMAGES_DIR / "notebook"
BUILD_SCRIPT = IMAGE_DIR / "build-local.sh"
TEMPLATE_SCRIPT = IMAGES_DIR / "build-template.sh"
MODEL_SERVER_DIR = IMAGES_DIR / "model-server"
MODEL_SERVER_SCRIPT = MODEL_SERVER_DIR / "build-local.sh"
# The template whose local image the model server's local build starts from (numpy,
# scikit-learn, joblib: what most predict.py files need).
MODEL_SERVER_BASE_TEMPLATE = "scipy"
# Where serve.py lives in the model server's image, and where a model version is mounted.
MODEL_SERVER_SCRIPT_IN_IMAGE = "/opt/lattice/serve.py"
# The local notebook image's inputs, in the order build-local.sh hashes them.
_NOTEBOOK_INPUTS = (
    "build-local.sh",
    "requirements.txt",
    "jupyter_server_config.py",
    "README-lattice.md",
)
# What a build is called on a notebook's page ("Building the PyTorch image").
IMAGE_TITLES = {
    "scipy": "Scientific Python",
    "pytorch": "PyTorch",
    "tensorflow": "TensorFlow",
    "r": "R",
    "model-server": "model server",
}
# The model server's image goes through build_template_image like a template's (its own
# script, the same three steps), under this name.
MODEL_SERVER = "model-server"
_LOCAL_TEMPLATE_IMAGE = re.compile(r"^lattice/notebook-(?P<template>[a-z0-9]+)-local:[0-9a-f]{16}$")
# Any name a host builds itself (the notebook image, a template's), however it is written: on
# Docker Hub such a name is anyone's, so it is never downloaded.
_LOCAL_IMAGE = re.compile(
    r"^(?:(?:index\.|registry-1\.)?docker\.io/)?lattice/"
    r"(?:notebook(?:-[a-z0-9]+)?|model-server)-local(?:[:@].*)?$",
    re.IGNORECASE,
)


def _client_inputs() -> list[Path]:
    """The ``lattice`` client's files the notebook image installs, in the order build-local.sh
    hashes them after its own: pyproject.toml, README.md, then the plain files under src/
    (no caches or build metadata) by path, bytewise. None where the client's folder is
    missing beside images/ (a copy of images/ alone, in tests)."""
    client = IMAGES_DIR.parent / "clients" / "python"
    if not (client / "pyproject.toml").is_file():
        return []
    found = [
        path
        for path in (client / "src").rglob("*")
        if path.is_file()
        and not path.is_symlink()
        and path.suffix != ".pyc"
        and not any(p == "__pycache__" or p.endswith(".egg-info") for p in path.parts)
    ]
    found.sort(key=lambda path: path.relative_to(client).as_posix().encode())
    return [client / "pyproject.toml", client / "README.md", *found]


def local_notebook_image() -> str:
    files = [IMAGE_DIR / name for name in _NOTEBOOK_INPUTS] + _client_inputs()
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in files))
    return f"lattice/notebook-local:{digest.hexdigest()[:16]}"


def notebook_image() -> str:
    return settings.LATTICE_NOTEBOOK_IMAGE or local_notebook_image()


def can_build_locally() -> bool:
    """The local build needs root (debootstrap, chroot)."""
    return os.geteuid() == 0


def template_builds_here(template: str) -> bool:
    """True when this installation builds ``template``'s image locally (it has a local
    recipe and LATTICE_LOCAL_TEMPLATES names it)."""
    return (
        template in settings.LATTICE_LOCAL_TEMPLATES
        and (IMAGES_DIR / template / "Dockerfile.local").is_file()
    )


def _template_inputs(template: str) -> list[Path]:
    """The plain files of images/<template>/ (not its folders, links or dotfiles, such as
    an editor's .swp) but the production Dockerfile, by name bytewise: the rule
    build-template.sh (and model-server/build-local.sh) lists them by (``find -type f``,
    ``LC_ALL=C sort``)."""
    folder = IMAGES_DIR / template
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file()
            and not p.is_symlink()
            and not p.name.startswith(".")
            and p.name != "Dockerfile"
        ),
        key=lambda p: p.name.encode(),
    )


def local_template_image(template: str) -> str:
    """The name build-template.sh gives ``template``'s image."""
    digest = hashlib.sha256(local_notebook_image().encode() + b"\n")
    for path in _template_inputs(template):
        digest.update(path.read_bytes())
    return f"lattice/notebook-{template}-local:{digest.hexdigest()[:16]}"


def local_model_server_image() -> str:
    """The name images/model-server/build-local.sh gives the model server's image: the hash
    of its base's name (the scipy template's local image) and its own local inputs."""
    digest = hashlib.sha256(local_template_image(MODEL_SERVER_BASE_TEMPLATE).encode() + b"\n")
    for path in _template_inputs(MODEL_SERVER_DIR.name):
        digest.update(path.read_bytes())
    return f"lattice/model-server-local:{digest.hexdigest()[:16]}"


def model_server_image() -> str:
    """The built-in model server's image: LATTICE_MODEL_SERVER_IMAGE, else the local build's."""
    return settings.LATTICE_MODEL_SERVER_IMAGE or local_model_server_image()


def model_server_command(runtime_kind: str) -> list[str]:
    """The command that runs the built-in model server on a runtime of ``runtime_kind``
    (apps.runtimes.base.expand_command fills in {ip}, {port} and {mount:/model}): in a
    container, the image's serve.py under its Python; as a local process (the process
    runtime, and the fake one, which runs nothing), this Python and the repository's
    serve.py, which needs nothing beyond the standard library."""
    if runtime_kind in ("process", "fake"):
        program = [sys.executable, str(MODEL_SERVER_DIR / "serve.py")]
    else:
        program = ["python3", MODEL_SERVER_SCRIPT_IN_IMAGE]
    return [
        *program,
        "--host",
        "{ip}",
        "--port",
        "{port}",
        "--model",
        f"{{mount:{MODEL_PATH}}}",
        "--concurrency",
        str(settings.LATTICE_MODEL_SERVER_CONCURRENCY),
    ]


def is_local_image(image: str) -> bool:
    """True for a name of the images Lattice's hosts build (``lattice/notebook-local:...``,
    ``lattice/notebook-<template>-local:...``, ``lattice/model-server-local:...``): never
    pulled from a registry."""
    return _LOCAL_IMAGE.match(image.strip()) is not None


def local_template_of(image: str) -> str | None:
    """The template whose locally built image ``image`` is, if it is one this host can build
    (MODEL_SERVER for the model server's local image, where its scipy base builds here)."""
    if image.startswith("lattice/model-server-local:"):
        # Its name is a hash of the scipy template's inputs: read only where those exist.
        if not template_builds_here(MODEL_SERVER_BASE_TEMPLATE):
            return None
        return MODEL_SERVER if image == local_model_server_image() else None
    match = _LOCAL_TEMPLATE_IMAGE.match(image)
    if match is None or not template_builds_here(match["template"]):
        return None
    return match["template"]


# What each of build-template.sh's steps is called ("[lattice] step N of 3: <what>"), by the
# kind a host reports: a host sends only the kind and numbers, the words are Lattice's own.
BUILD_STEP_KINDS = {
    "base": "preparing the base image",
    "packages": "installing packages",
    "check": "checking that it imports",
}
_SCRIPT_STEPS = {
    "the base image": "base",
    "installing packages": "packages",
    "checking the image": "check",
}
# A build waiting for the same image's build by another start (build-template.sh's lock).
WAITING = "waiting"


@dataclass(frozen=True)
class BuildStep:
    """Where a template build is, in numbers: step ``step`` of ``of`` (its ``kind``, one of
    BUILD_STEP_KINDS, or WAITING; "" before the first step), ``percent`` done of the
    step where the build says so (Docker's own instruction count), else None."""

    kind: str = ""
    step: int | None = None
    of: int | None = None
    percent: int | None = None


def build_step_message(title: str, step: BuildStep) -> str:
    """What a build at ``step`` of the ``title`` image is called on a notebook's page."""
    if step.kind == WAITING:
        return f"Waiting for the {title} image, which is being built for another notebook..."
    words = BUILD_STEP_KINDS.get(step.kind)
    if words is None or step.step is None or step.of is None:
        return f"Building the {title} image..."
    return f"Building the {title} image: step {step.step} of {step.of} ({words})..."


class ImageBuildError(Exception):
    """A template image did not build; the message ends with the build's last lines."""


_STEP = re.compile(r"^\[lattice\] step (?P<n>\d+) of (?P<of>\d+): (?P<what>.+)$")
# Docker's count of the Dockerfile's instructions: the legacy builder's "Step 3/8 : RUN ..."
# and BuildKit's "#7 [3/8] RUN ..." (or "#7 [stage 3/8] RUN ..." in a multi-stage build).
_DOCKER_STEP = re.compile(
    r"^(?:Step (?P<n>\d+)/(?P<of>\d+) :|#\d+ \[(?:[\w.-]+ )?(?P<bn>\d+)/(?P<bof>\d+)\] )"
)


def _read_step(line: str, current: BuildStep) -> BuildStep:
    """``current`` moved on by one line of build-template.sh's output. The percent is only
    ever Docker's own count of the instructions it has finished; no guess in between."""
    if line.startswith("[lattice] waiting"):
        return BuildStep(WAITING, current.step, current.of, None)
    match = _STEP.match(line)
    if match:
        kind = _SCRIPT_STEPS.get(match["what"], "")
        return BuildStep(kind, int(match["n"]), int(match["of"]), None)
    docker = _DOCKER_STEP.match(line)
    if docker and current.kind == "packages":
        n = int(docker["n"] or docker["bn"])
        of = max(1, int(docker["of"] or docker["bof"]))
        done = min(100, (n - 1) * 100 // of)
        return BuildStep(current.kind, current.step, current.of, max(current.percent or 0, done))
    return current


def build_template_image(
    template: str,
    report: Callable[[BuildStep], None],
    *,
    log: Path | None = None,
) -> str:
    """Build ``template``'s image with build-template.sh (MODEL_SERVER: with
    model-server/build-local.sh), or find it built, or wait for the build another start
    runs; ``report`` hears each step, ``log`` (appended) every line.
    The image's name."""
    title = IMAGE_TITLES.get(template, template)
    step = BuildStep()
    report(step)
    tail: deque[str] = deque(maxlen=15)
    process = subprocess.Popen(  # noqa: S603 - our own script, a known template name
        ["/bin/bash", str(MODEL_SERVER_SCRIPT)]
        if template == MODEL_SERVER
        else ["/bin/bash", str(TEMPLATE_SCRIPT), template],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None  # noqa: S101 - asked for above
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("a")) if log is not None else None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if out is not None:
                out.write(raw)
            moved = _read_step(line, step)
            if moved != step:
                step = moved
                report(step)
    if process.wait() != 0:
        logger.warning("the %s image did not build:\n%s", template, "\n".join(tail))
        raise ImageBuildError(
            f"The {title} image did not build on this host: " + " | ".join(list(tail)[-3:]),
        )
    return tail[-1]


def build_local_notebook_image(log_path: Path) -> str | None:
    """Run the build script (a minute or two the first time); the image's name, or None."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        result = subprocess.run(  # noqa: S603 - our own script
            ["/bin/bash", str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        logger.warning("the notebook image did not build; see %s", log_path)
        return None
    return result.stdout.strip().splitlines()[-1]


def docker_image_exists(image: str) -> bool:
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env(timeout=5)
        try:
            client.images.get(image)
        finally:
            client.close()
    except (ImageNotFound, DockerException):
        return False
    return True
