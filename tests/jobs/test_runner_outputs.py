"""The runner tells a job where its outputs go, on either runtime: a command that writes to
``$LATTICE_OUTPUTS`` fills the run's outputs volume (/outputs in a container; a folder on the
local-process runtime, which has no /outputs). Found running `make dev` with
LATTICE_RUNTIME=process: a job writing /outputs failed "Directory nonexistent"."""

from __future__ import annotations

import json
import uuid

from apps.jobs.sources import runner_command, runner_env
from apps.runtimes.base import Spec, expand_command
from apps.runtimes.process import LocalProcessRuntime
from tests.helpers import wait_for


def test_a_command_writing_lattice_outputs_fills_the_outputs_folder_on_local_processes(
    tmp_path,
):
    definition = {
        "source": "none",
        "entrypoint": "command",
        "command": 'echo hello > "$LATTICE_OUTPUTS/hello.txt"; echo "ws=$LATTICE_WORKSPACE"',
    }
    runtime = LocalProcessRuntime(root=tmp_path / "runtime")
    state = runtime.start(
        Spec(
            name=f"t-out-{uuid.uuid4().hex[:8]}",
            image="",
            command=runner_command(definition, run_id=21),
            env=runner_env(definition),
            volumes={"ws": "/workspace", "out": "/outputs"},
            labels={"until": "exit"},
        )
    )
    assert wait_for(lambda: runtime.poll(state) is not None, timeout=30)
    lines = list(runtime.logs(state))
    volumes = tmp_path / "runtime" / "volumes"
    assert (volumes / "out" / "hello.txt").read_text() == "hello\n", lines
    assert f"ws={volumes / 'ws'}" in lines


def test_in_a_container_the_variables_name_the_mounted_paths():
    # The Docker runtime expands {mount:<path>} to the path itself (apps/runtimes/docker.py).
    command = runner_command({"source": "none", "command": "true"}, run_id=1)
    paths = {"/workspace": "/workspace", "/outputs": "/outputs"}
    script = expand_command(command, port=8888, ip="0.0.0.0", mounts=paths)[2]  # noqa: S104
    assert 'export LATTICE_WORKSPACE="/workspace" LATTICE_OUTPUTS="/outputs"' in script


def test_a_notebook_job_runs_with_its_parameter_on_local_processes(tmp_path):
    # Found running `make dev` with LATTICE_RUNTIME=process: papermill was neither installed
    # with Lattice nor on the workload's PATH (.venv/bin is not activated), so every notebook
    # job failed "papermill is not installed".
    runtime = LocalProcessRuntime(root=tmp_path / "runtime")
    workspace = tmp_path / "runtime" / "volumes" / "ws"
    (workspace / "nb").mkdir(parents=True)
    cells = [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "greeting = 'x'"},
        {"cell_type": "code", "metadata": {}, "source": "print('PARAM', greeting)"},
    ]
    notebook = {
        "cells": [
            {**cell, "id": f"c{n}", "outputs": [], "execution_count": None}
            for n, cell in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (workspace / "nb" / "demo.ipynb").write_text(json.dumps(notebook))
    definition = {
        "source": "notebook",
        "entrypoint": "notebook",
        "notebook_path": "nb/demo.ipynb",
        "parameters": {"greeting": "hi-there"},
    }
    state = runtime.start(
        Spec(
            name=f"t-nb-{uuid.uuid4().hex[:8]}",
            image="",
            command=runner_command(definition, run_id=22),
            env=runner_env(definition),
            volumes={"ws": "/workspace", "out": "/outputs"},
            labels={"until": "exit"},
        )
    )
    assert wait_for(lambda: runtime.poll(state) is not None, timeout=120)
    lines = list(runtime.logs(state))
    assert "PARAM hi-there" in lines, lines[-12:]
    executed = json.loads((workspace / ".lattice-run" / "executed.ipynb").read_text())
    printed = "".join(
        "".join(output.get("text", ""))
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
    )
    assert "PARAM hi-there" in printed
