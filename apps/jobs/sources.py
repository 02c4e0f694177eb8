"""Where a run's files come from, said as the shell runner its workload starts with
(owner: sources).

CONTRACT (foundation; the sources helper fills it in, the engine's spec.py calls it):

- ``runner_command(definition, *, run_id) -> list[str]``: the workload's command: ``sh -c``
  with a small script that, in /workspace, clones the Git source at its ref (HTTPS with the
  token in LATTICE_GIT_TOKEN, or SSH with the deploy key in LATTICE_GIT_SSH_KEY: both set
  from the job's ``git_secret`` by ``source_env``, never written to the log), records the
  commit it ran in /workspace/.lattice-run/commit, then ``exec``s the command (``sh -c``) or
  papermill (entrypoint "notebook": the notebook with its parameters, executed into
  /workspace/.lattice-run/executed.ipynb). A notebook source needs nothing here: the agent
  copied the notebook's files into /workspace before the start (spec options
  ``copy_volume``).
- ``source_env(team, definition, *, used_by) -> dict[str, str]``: the variables the
  runner needs (the Git credential from the team secret named).
- ``notebook_clone_command(notebook, command) -> list[str]``: a notebook's start command
  wrapped so that a Git repository it names is cloned into /notebooks/<repo> when missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.teams.models import Team


def runner_command(definition: dict[str, Any], *, run_id: int) -> list[str]:
    # Placeholder until the sources helper lands: the command alone.
    return ["sh", "-c", str(definition.get("command") or "true")]


def source_env(team: Team, definition: dict[str, Any], *, used_by: str) -> dict[str, str]:
    return {}
