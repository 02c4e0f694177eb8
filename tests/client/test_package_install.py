"""The client package builds as a wheel and installs into a clean virtual environment that
has none of the server's dependencies (no Django): it imports, its ``lattice`` command
runs there, and it talks to a live server from there.

The wheel is built from a copy of clients/python (the build writes into its source folder)
and installed with pip into a venv made by ``python -m venv`` (no system site packages);
httpx, rich and click come from the package index, once per test session.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.client.conftest import Lattice
from tests.conftest import ROOT, service_missing

if TYPE_CHECKING:
    from pathlib import Path

VERSION_FILE = ROOT / "clients" / "python" / "src" / "lattice" / "__init__.py"


def _run(*command: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _index_reachable() -> bool:
    try:
        return httpx.get("https://pypi.org/simple/httpx/", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the client's wheel (and only its dependencies) installed; its
    folder."""
    root = tmp_path_factory.mktemp("client-install")
    source = root / "source"
    shutil.copytree(
        ROOT / "clients" / "python",
        source,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
    )
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", source, "-w", root / "dist")
    if built.returncode != 0 and not _index_reachable():
        service_missing(f"building the wheel needs setuptools from PyPI: {built.stderr[-1000:]}")
    assert built.returncode == 0, built.stderr
    wheels = list((root / "dist").glob("lattice_client-*.whl"))
    assert len(wheels) == 1, wheels

    venv = root / "venv"
    made = _run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    installed = _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheels[0])
    if installed.returncode != 0 and not _index_reachable():
        service_missing(f"installing needs PyPI (httpx, rich, click): {installed.stderr[-1000:]}")
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_clean_venv_has_the_client_and_not_the_server(clean_venv: Path) -> None:
    python = clean_venv / "bin" / "python"

    django = _run(python, "-c", "import django")
    assert django.returncode != 0
    assert "No module named 'django'" in django.stderr

    client = _run(python, "-c", "import lattice, sys; print(lattice.__file__); print(sys.prefix)")
    assert client.returncode == 0, client.stderr
    where, prefix = client.stdout.split()
    # The wheel's copy, in the venv: not the repository's source through a path entry.
    assert where.startswith(prefix), where
    assert str(ROOT / "clients") not in where

    requirements = _run(
        python,
        "-c",
        "import json, importlib.metadata as m; print(json.dumps(m.requires('lattice-client')))",
    )
    names = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0] for r in json.loads(requirements.stdout)}
    assert names == {"httpx", "rich", "click"}


def test_the_installed_command_prints_its_version(clean_venv: Path) -> None:
    from lattice import __version__

    ran = _run(clean_venv / "bin" / "lattice", "--version")

    assert ran.returncode == 0, ran.stderr
    assert __version__ in ran.stdout
    assert f'__version__ = "{__version__}"' in VERSION_FILE.read_text()


@pytest.mark.usefixtures("acme")
def test_the_installed_command_names_the_tokens_owner(
    clean_venv: Path, lattice: Lattice, alice: object
) -> None:
    installed = Lattice(
        env=lattice.env, cwd=lattice.cwd, command=[str(clean_venv / "bin" / "lattice")]
    )

    ran = installed("whoami")

    assert ran.code == 0, ran
    assert "alice@example.com" in ran.out, ran
