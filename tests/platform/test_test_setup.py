"""The test run's own setup: a .venv behind pyproject.toml (or the client's) stops the run
before collection, and the example's test imports no dev-only package at collection."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path, *, stamp_age: float, pyproject_age: float) -> Path:
    venv = tmp_path / ".venv"
    venv.mkdir(parents=True)
    stamp = venv / ".dev-installed"
    stamp.touch()
    (tmp_path / "pyproject.toml").touch()
    now = stamp.stat().st_mtime
    os.utime(stamp, (now - stamp_age, now - stamp_age))
    os.utime(tmp_path / "pyproject.toml", (now - pyproject_age, now - pyproject_age))
    return venv


def test_a_venv_older_than_pyproject_stops_the_run(tmp_path, monkeypatch):
    venv = _project(tmp_path, stamp_age=60, pyproject_age=0)
    monkeypatch.setattr(conftest, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "prefix", str(venv))

    with pytest.raises(pytest.exit.Exception, match=r"make \.venv/\.dev-installed"):
        conftest.pytest_sessionstart(None)  # type: ignore[arg-type]


def test_a_venv_older_than_the_clients_pyproject_stops_the_run(tmp_path, monkeypatch):
    venv = _project(tmp_path, stamp_age=60, pyproject_age=120)
    client = tmp_path / "clients" / "python" / "pyproject.toml"
    client.parent.mkdir(parents=True)
    client.touch()  # newer than the stamp: the client's dependencies changed
    monkeypatch.setattr(conftest, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "prefix", str(venv))

    with pytest.raises(pytest.exit.Exception, match=r"clients/python/pyproject\.toml changed"):
        conftest.pytest_sessionstart(None)  # type: ignore[arg-type]


def test_an_installed_venv_or_another_environment_runs(tmp_path, monkeypatch):
    venv = _project(tmp_path, stamp_age=0, pyproject_age=60)
    monkeypatch.setattr(conftest, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "prefix", str(venv))
    conftest.pytest_sessionstart(None)  # type: ignore[arg-type]

    _project(tmp_path / "other", stamp_age=60, pyproject_age=0)
    monkeypatch.setattr(conftest, "ROOT", tmp_path / "other")
    conftest.pytest_sessionstart(None)  # type: ignore[arg-type]  # not its .venv


def test_the_examples_test_imports_sklearn_only_when_it_runs():
    tree = ast.parse((ROOT / "tests" / "models" / "test_example.py").read_text())
    at_import = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in at_import if name.split(".")[0] in {"sklearn", "joblib"}}
