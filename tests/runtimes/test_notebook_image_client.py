"""The notebook image installs the `lattice` client from clients/python: its source is an
input of the image's name, on the build script's side and Python's alike, so a changed
client means a new image (and `import lattice` in a notebook runs the code of this tree)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from apps.runtimes import images
from apps.runtimes.images import local_notebook_image

REPO = Path(__file__).resolve().parents[2]


def test_the_clients_source_names_the_notebook_image_on_both_sides(tmp_path, monkeypatch):
    shutil.copytree(REPO / "images", tmp_path / "images")
    shutil.copytree(
        REPO / "clients" / "python",
        tmp_path / "clients" / "python",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    monkeypatch.setattr(images, "IMAGE_DIR", tmp_path / "images" / "notebook")

    def scripts_name() -> str:
        script = tmp_path / "images" / "notebook" / "build-local.sh"
        result = subprocess.run(
            ["/bin/bash", str(script), "--print-name"], capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    before = local_notebook_image()
    assert scripts_name() == before
    # A cache beside the source is not an input.
    cache = tmp_path / "clients" / "python" / "src" / "lattice" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "client.cpython-311.pyc").write_bytes(b"\x00cached")
    assert local_notebook_image() == scripts_name() == before
    # A change to the client's code is.
    with (tmp_path / "clients" / "python" / "src" / "lattice" / "client.py").open("a") as f:
        f.write("\n# changed\n")
    after = local_notebook_image()
    assert after != before
    assert scripts_name() == after
