"""A Git repository fetched by a workload when it starts: a notebook's (cloned into
/notebooks/<repo> on a start that does not find it) and a job's (apps.jobs.sources: fetched
into /workspace at its branch, tag or commit).

The workload does the fetching, in a small POSIX ``sh`` script run before its real command
(which it then ``exec``s, so signals reach that command). The credential comes from a team
secret (apps.teams.secrets) as an environment variable: ``LATTICE_GIT_TOKEN`` for an
HTTPS URL (answered to Git's password prompt by a GIT_ASKPASS helper, with the user name
of the URL or ``x-access-token``; never on a command line, never printed) or
``LATTICE_GIT_SSH_KEY`` for an SSH URL (written 0600 to a private temporary folder, used
through GIT_SSH_COMMAND). Both are unset, and the temporary folder removed, before the real
command starts. Git never prompts (GIT_TERMINAL_PROMPT=0): a missing or wrong credential
is an error in the log, not a hang.

The scripts go through the runtime's command expansion (apps.runtimes.base.expand_command):
``{mount:/path}`` in them names where a volume is seen (a container's path, or the process
runtime's folder), and nothing else in them may look like ``{port}``, ``{ip}`` or
``{mount:...}``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from apps.core.errors import ServiceError
from apps.teams import secrets as team_secrets

if TYPE_CHECKING:
    from apps.notebooks.models import Notebook
    from apps.teams.models import Team

TOKEN_ENV = "LATTICE_GIT_TOKEN"  # noqa: S105 - a variable's name
SSH_KEY_ENV = "LATTICE_GIT_SSH_KEY"
# Why a notebook's credential could not be given (its secret deleted since): the start
# says so instead of cloning, and JupyterLab starts all the same.
ERROR_ENV = "LATTICE_GIT_ERROR"

# https://host/path, http:// (an internal server), ssh://[user@]host[:port]/path, git://,
# and the scp-like form user@host:path. Never a local path, file:// or a transport helper
# (ext::): the URL comes from a member.
_URL = re.compile(
    r"^(?:(?:https?|ssh|git)://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+(?:/\S*)?"
    r"|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!/)\S+)$"
)
# A branch, tag or commit: Git's ref characters, no leading "-" (not an option), no "..".
_REF = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,200}$")


def git_source_problem(url: str, ref: str) -> str | None:
    """What is wrong with a Git source a member gave (a sentence), or None."""
    if not _URL.match(url or ""):
        return (
            "Give the repository as an https:// or ssh:// URL, or as user@host:path "
            "(git@github.com:team/repo.git)."
        )
    if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", url):
        return "Keep the password or token out of the URL: put it in a team secret and name that."
    if ref and not _REF.match(ref):
        return "Give a branch, a tag or a commit (letters, digits, . _ / + -; not starting with -)."
    return None


def git_uses_ssh(url: str) -> bool:
    """SSH URLs (ssh://, user@host:path) take a deploy key; the others a token."""
    return url.startswith("ssh://") or not re.match(r"^[a-z]+://", url)


def git_credential_env(team: Team, url: str, secret: str, *, used_by: str) -> dict[str, str]:
    """The variable the fetch reads its credential from: the team secret named ``secret`` as
    a token (HTTPS) or a deploy key (SSH); nothing when no secret is named."""
    if not secret:
        return {}
    value = team_secrets.secrets_resolve(team, [secret], used_by=used_by)[secret]
    return {SSH_KEY_ENV if git_uses_ssh(url) else TOKEN_ENV: value}


def notebook_git_env(notebook: Notebook) -> dict[str, str]:
    """The variables a notebook's clone script reads: where to clone from
    (``notebook_clone_env``) and its credential, or why there is none."""
    if not notebook.git_url:
        return {}
    try:
        credential = git_credential_env(
            notebook.team,
            notebook.git_url,
            notebook.git_secret,
            used_by=f"notebook {notebook.name}",
        )
    except ServiceError as exc:
        credential = {ERROR_ENV: str(exc)}
    return notebook_clone_env(notebook) | credential


def notebook_clone_env(notebook: Notebook) -> dict[str, str]:
    """What ``notebook_clone_command``'s script clones: the member's URL and ref reach it only
    through these variables, never as its text, so the runtime's expansion of {port}, {ip}
    and {mount:/path} (apps.runtimes.base.expand_command) cannot alter them."""
    if not notebook.git_url:
        return {}
    url, ref = notebook.git_url, notebook.git_ref
    return {
        "LATTICE_CLONE_URL": url,
        "LATTICE_CLONE_REF": ref,
        "LATTICE_CLONE_FOLDER": repo_folder(url),
        "LATTICE_CLONE_SOURCE": git_shown(url, ref),
    }


def git_shown(url: str, ref: str) -> str:
    """The source as the log says it: the URL without a password in it, and its ref."""
    url = re.sub(r"^([a-z]+://[^/@:]*):[^/@]*@", r"\1:****@", url)
    return f"{url} at {ref}" if ref else url


def repo_folder(url: str) -> str:
    """The folder a repository is cloned into: the URL's last part without ``.git``."""
    name = re.split(r"[/:]", url.rstrip("/"))[-1]
    name = name.removesuffix(".git")
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip(".-")
    return name or "repository"


# The credential helpers, made in a private folder ($lattice_git_tmp; mktemp -d is 0700):
# an askpass script that answers the user name prompt (when the URL has none) and the
# password prompt from the environment, so the token is never on a command line.
_AUTH = r"""
lattice_git_tmp="$(mktemp -d)"
export GIT_TERMINAL_PROMPT=0
if [ -n "${LATTICE_GIT_TOKEN:-}" ]; then
  cat > "$lattice_git_tmp/askpass" <<'LATTICE_ASKPASS'
#!/bin/sh
case "$1" in
  Username*) printf '%s\n' x-access-token ;;
  *) printf '%s\n' "$LATTICE_GIT_TOKEN" ;;
esac
LATTICE_ASKPASS
  chmod 700 "$lattice_git_tmp/askpass"
  export GIT_ASKPASS="$lattice_git_tmp/askpass"
fi
if [ -n "${LATTICE_GIT_SSH_KEY:-}" ]; then
  (umask 077 && printf '%s\n' "$LATTICE_GIT_SSH_KEY" | tr -d '\r' > "$lattice_git_tmp/key")
  export GIT_SSH_COMMAND="ssh -i $lattice_git_tmp/key -o IdentitiesOnly=yes -o BatchMode=yes \
-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=$lattice_git_tmp/known_hosts"
fi
"""

# What the real command must not inherit.
_FORGET = (
    'rm -rf "$lattice_git_tmp"\n'
    "unset LATTICE_GIT_TOKEN LATTICE_GIT_SSH_KEY GIT_ASKPASS GIT_SSH_COMMAND lattice_git_tmp\n"
)


def git_auth_script() -> str:
    """sh lines that set Git up with the credential in the environment (see the module
    docstring); ``git_forget_script`` undoes them."""
    return _AUTH


def git_forget_script() -> str:
    return _FORGET


def notebook_clone_command(notebook: Notebook, command: list[str]) -> list[str]:
    """``command`` (JupyterLab's) started by a script that first clones the notebook's Git
    repository into /notebooks/<repo> when that folder is not there (a whole clone, at its
    ref: a branch checked out as that branch, a tag or commit detached). A clone that fails
    says so in the log and JupyterLab starts without it; a half clone is not left behind
    (the next start tries again). The script is the same for every notebook: what to clone
    comes from ``notebook_clone_env``'s variables (``notebook_git_env`` includes them)."""
    if not notebook.git_url:
        return command
    script = f"""set -u
dest="{{mount:/notebooks}}/$LATTICE_CLONE_FOLDER"
if [ -n "${{LATTICE_GIT_ERROR:-}}" ]; then
  echo "lattice: could not clone $LATTICE_CLONE_SOURCE: $LATTICE_GIT_ERROR"
elif [ ! -e "$dest" ]; then
  echo "lattice: cloning $LATTICE_CLONE_SOURCE into /notebooks/$LATTICE_CLONE_FOLDER"
  {_AUTH.strip()}
  partial="$dest.lattice-clone"
  rm -rf "$partial"
  if git clone -q -- "$LATTICE_CLONE_URL" "$partial" && {{ [ -z "$LATTICE_CLONE_REF" ] \
      || git -C "$partial" checkout -q "$LATTICE_CLONE_REF" --; }}; then
    mv "$partial" "$dest"
    echo "lattice: cloned at commit $(git -C "$dest" rev-parse HEAD)"
  else
    rm -rf "$partial"
    echo "lattice: could not clone $LATTICE_CLONE_SOURCE: JupyterLab starts without it"
  fi
  {_FORGET.strip()}
fi
unset LATTICE_GIT_TOKEN LATTICE_GIT_SSH_KEY LATTICE_GIT_ERROR LATTICE_CLONE_URL \
  LATTICE_CLONE_REF LATTICE_CLONE_FOLDER LATTICE_CLONE_SOURCE
exec "$@"
"""
    return ["sh", "-c", script, "lattice-notebook", *command]
