"""What an attempt runs on its host: the runtime Spec and the agent's options (owner: sources).

CONTRACT (foundation; the sources helper fills it in):

- ``attempt_spec(attempt) -> tuple[Spec, dict]``: the workload ``jb-<attempt>``: the job's
  template image, the machine type's limits and GPUs, the run's definition (never the job's
  current one), env (plain, the team secrets it names, LATTICE_* of the run), dataset inputs
  read-only at /datasets/<name> (apps.notebooks.mounts' shape, with read links), the
  workspace volume at /workspace (its files: the notebook's, copied at start, or the Git
  repository's, cloned at start), the outputs volume at /outputs, labels (installation,
  stream, ``until: exit``), and the command: a small ``sh`` runner (apps.jobs.sources) that
  fetches the source, then ``exec``s the command or papermill. The options are
  agent_start's: ``{"stream": run.stream, "until": "exit"}`` and, for a notebook source,
  ``{"copy_volume": <notebook's volume>}``.
- ``workspace_volume(run)`` / ``outputs_volume(run)``: the run's volume names (kept for
  the run's retries, removed when the run ends).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.jobs.models import Attempt, Run
    from apps.runtimes.base import Spec

WORKSPACE_PATH = "/workspace"
OUTPUTS_PATH = "/outputs"
# Where the runner writes what it reports (the executed notebook, the commit it ran).
RESULT_DIR = ".lattice-run"


def workspace_volume(run: Run) -> str:
    return f"lattice-jb-run-{run.pk}-ws"


def outputs_volume(run: Run) -> str:
    return f"lattice-jb-run-{run.pk}-out"


def attempt_spec(attempt: Attempt) -> tuple[Spec, dict[str, Any]]:
    raise NotImplementedError
