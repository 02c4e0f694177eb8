"""Which notebook image a host runs, and building it where no registry is reachable.

Production names its image in LATTICE_NOTEBOOK_IMAGE (built from
images/notebook/Dockerfile and pushed to a registry). Without one, the local
image is built by images/notebook/build-local.sh and tagged with the hash of
that script and requirements.txt, computed here the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

IMAGE_DIR = Path(settings.BASE_DIR) / "images" / "notebook"
BUILD_SCRIPT = IMAGE_DIR / "build-local.sh"


def local_notebook_image() -> str:
    digest = hashlib.sha256(
        BUILD_SCRIPT.read_bytes() + (IMAGE_DIR / "requirements.txt").read_bytes()
    )
    return f"lattice/notebook-local:{digest.hexdigest()[:16]}"


def notebook_image() -> str:
    return settings.LATTICE_NOTEBOOK_IMAGE or local_notebook_image()


def can_build_locally() -> bool:
    """The local build needs root (debootstrap, chroot)."""
    return os.geteuid() == 0


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
