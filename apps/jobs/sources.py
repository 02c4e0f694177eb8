"""Where a run's files come from, said as the shell runner its workload starts with
(owner: sources).

CONTRACT (the engine's spec.py calls these):

- ``runner_command(definition, *, run_id) -> list[str]``: the workload's command: ``sh -c``
  with a small POSIX script (``set -eu``) that, in /workspace, fetches the Git source at its
  ref (a branch, tag or commit: ``git init`` + ``git fetch --depth 1 origin <ref>``, or a
  whole fetch where the server refuses that, e.g. an abbreviated commit; HTTPS with the
  token in LATTICE_GIT_TOKEN, or SSH with the deploy key in LATTICE_GIT_SSH_KEY: both set
  from the job's ``git_secret`` by ``source_env``, never written to the log, unset before the
  command starts), records the commit it ran in /workspace/.lattice-run/commit (and says
  "lattice: commit <sha>" in the log), then ``exec``s the command (``sh -c``) or papermill
  (entrypoint "notebook": the notebook with its parameters, given as YAML so they keep their
  types, executed into /workspace/.lattice-run/executed.ipynb, its cells' output in the log;
  run in the notebook's folder). ``exec``: the job's process is the one SIGTERM reaches. An
  attempt after a lost one finds the commit file in the run's workspace and fetches nothing
  again (the run's files stay as they were). A fetch that fails exits 2 with "lattice: ..."
  saying why (after Git's own message). A notebook source needs nothing here: the agent
  copied the notebook's files into /workspace before the start (spec options
  ``copy_volume``).
- ``source_env(team, definition, *, used_by) -> dict[str, str]``: the variables the
  runner needs (the Git credential from the team secret named).
- ``notebook_clone_command``: a notebook's start command wrapped so that a Git repository
  it names is cloned into /notebooks/<repo> when missing. It lives in
  apps.notebooks.gitsource (notebooks are below jobs), with the credential script both use;
  named here for the contract.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from apps.notebooks.gitsource import (
    git_auth_script,
    git_credential_env,
    git_forget_script,
    git_shown,
    notebook_clone_command,
)

if TYPE_CHECKING:
    from apps.teams.models import Team

__all__ = ["notebook_clone_command", "runner_command", "runner_env", "source_env"]

# The run's working folder and where the runner leaves what it reports (spec.py's
# WORKSPACE_PATH and RESULT_DIR: the engine's module sits above this one).
WORKSPACE = "{mount:/workspace}"
RESULT_DIR = ".lattice-run"
# A fetch that failed: the runner's own exit status (the log says why).
FETCH_FAILED = 2

# Fetch $1 at $2 (empty: the default branch) into the current folder, detached at it.
_FETCH = r"""
lattice_fetch() {
  git init -q . && git remote remove origin 2>/dev/null; git remote add origin "$1" || return 1
  printf '%s\n' '/.lattice-run/' >> .git/info/exclude
  want="${2:-HEAD}"
  if git fetch -q --depth 1 origin "$want" 2>"$lattice_git_tmp/shallow"; then
    git -c advice.detachedHead=false checkout -q --detach FETCH_HEAD
    return
  fi
  echo "lattice: the server would not send $want alone; fetching the whole repository"
  if ! git fetch -q origin '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'; then
    cat "$lattice_git_tmp/shallow" >&2
    echo "lattice: could not fetch $3 (Git's message above)" >&2
    return 1
  fi
  commit="$(git rev-parse -q --verify "refs/remotes/origin/$want^{commit}" \
    || git rev-parse -q --verify "refs/tags/$want^{commit}" \
    || git rev-parse -q --verify "$want^{commit}")" || {
    echo "lattice: \"$want\" is not a branch, tag or commit of $3" >&2
    return 1
  }
  git -c advice.detachedHead=false checkout -q --detach "$commit"
}
"""


# The runner's variables (runner_env): what the person wrote reaches the script only
# through these, never as its text, so the runtime's expansion of {port}, {ip} and
# {mount:/path} in a command (apps.runtimes.base.expand_command) cannot alter it.
RUNNER_VARIABLES = (
    "LATTICE_RUN_COMMAND",
    "LATTICE_RUN_NOTEBOOK",
    "LATTICE_RUN_PARAMETERS",
    "LATTICE_RUN_GIT_URL",
    "LATTICE_RUN_GIT_REF",
    "LATTICE_RUN_SOURCE",
)


def runner_command(definition: dict[str, Any], *, run_id: int) -> list[str]:
    """The runner script: the same for every job of its kind (source Git or not, command or
    notebook), its person-written parts read from ``runner_env``'s variables."""
    lines = [
        "set -eu",
        f'cd "{WORKSPACE}"',
        f"mkdir -p {RESULT_DIR}",
        f"echo 'lattice: run {int(run_id)} starting'",
    ]
    if definition.get("source") == "git":
        lines.append(_GIT_LINES)
    lines.append(_exec_line(definition))
    return ["sh", "-c", "\n".join(lines) + "\n"]


def runner_env(definition: dict[str, Any]) -> dict[str, str]:
    """The variables ``runner_command``'s script reads (see RUNNER_VARIABLES)."""
    env: dict[str, str] = {}
    if definition.get("source") == "git":
        url, ref = str(definition.get("git_url") or ""), str(definition.get("git_ref") or "")
        env |= {
            "LATTICE_RUN_GIT_URL": url,
            "LATTICE_RUN_GIT_REF": ref,
            "LATTICE_RUN_SOURCE": git_shown(url, ref),
        }
    if definition.get("entrypoint") == "notebook":
        # JSON is YAML: papermill reads the parameters with their types (numbers, lists...).
        env |= {
            "LATTICE_RUN_NOTEBOOK": str(definition.get("notebook_path") or ""),
            "LATTICE_RUN_PARAMETERS": json.dumps(definition.get("parameters") or {}),
        }
    else:
        env["LATTICE_RUN_COMMAND"] = str(definition.get("command") or "true")
    return env


_GIT_LINES = f"""if [ -s {RESULT_DIR}/commit ]; then
  echo "lattice: commit $(cat {RESULT_DIR}/commit) (fetched by an earlier attempt)"
else
  echo "lattice: fetching $LATTICE_RUN_SOURCE"
  {_FETCH.strip()}
  {git_auth_script().strip()}
  if ! lattice_fetch "$LATTICE_RUN_GIT_URL" "$LATTICE_RUN_GIT_REF" "$LATTICE_RUN_SOURCE"; then
    {git_forget_script().strip()}
    exit {FETCH_FAILED}
  fi
  {git_forget_script().strip()}
  git rev-parse HEAD > {RESULT_DIR}/commit
  echo "lattice: commit $(cat {RESULT_DIR}/commit)"
fi"""

# What the command sees of the runner: none of its variables, no Git credential.
_FORGET_RUNNER = "unset LATTICE_GIT_TOKEN LATTICE_GIT_SSH_KEY " + " ".join(RUNNER_VARIABLES)


def _exec_line(definition: dict[str, Any]) -> str:
    if definition.get("entrypoint") == "notebook":
        # A custom template's image (or a host running local processes) may lack it.
        return f"""command -v papermill >/dev/null || {{ echo 'lattice: papermill is not installed \
where this job runs (the notebook image has it): a notebook cannot run' >&2; exit 127; }}
lattice_notebook="$LATTICE_RUN_NOTEBOOK"
lattice_parameters="$LATTICE_RUN_PARAMETERS"
{_FORGET_RUNNER}
exec papermill --log-output --no-progress-bar --cwd "$(dirname -- "$lattice_notebook")" \
  -y "$lattice_parameters" -- "$lattice_notebook" "$PWD/{RESULT_DIR}/executed.ipynb"
"""
    return f"""lattice_command="$LATTICE_RUN_COMMAND"
{_FORGET_RUNNER}
exec sh -c "$lattice_command"
"""


def source_env(team: Team, definition: dict[str, Any], *, used_by: str) -> dict[str, str]:
    if definition.get("source") != "git":
        return {}
    return git_credential_env(
        team,
        str(definition.get("git_url") or ""),
        str(definition.get("git_secret") or ""),
        used_by=used_by,
    )
