"""What a session's host is asked to run: its workload's spec (apps.runtimes.base.Spec).

JupyterLab in the session's image, on the machine type's CPUs, memory and the GPUs its
placement holds (by UUID), with the notebook's volume at /notebooks, the team's at /storage
and its dataset mounts (apps.notebooks.mounts) at /datasets; the team secrets it names as
environment variables (apps.teams.secrets); labelled so the reconciler can tell whose it is.
A notebook with a Git repository starts through a script that clones it into
/notebooks/<repo> when that folder is missing (apps.notebooks.gitsource), the token or
deploy key from the team secret it names. It gets ``LATTICE_URL``, ``LATTICE_TOKEN`` and
``LATTICE_TEAM`` for the SDK: a workload token (apps.accounts.workload) that acts as the
person who started it, in its team only, until the session ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from apps.accounts.workload import (
    START_ALLOWANCE,
    workload_env,
    workload_lifetime,
    workload_tokens_expire,
)
from apps.machines.scheduler import spec_limits
from apps.notebooks.entitlements import run_limit
from apps.notebooks.gitsource import notebook_clone_command, notebook_git_env
from apps.notebooks.models import TeamNotebookSettings
from apps.notebooks.mounts import mounts_for_spec
from apps.runtimes.base import Spec
from apps.teams.secrets import secrets_resolve

if TYPE_CHECKING:
    from datetime import datetime

    from apps.notebooks.models import NotebookSession


def team_notebook_settings_made(team_id: int) -> TeamNotebookSettings:
    """The team's notebook settings row, made with the installation's defaults the first time
    it is needed: a notebook made, a setting changed, or a session's spec (the ``/storage``
    volume's id must stay the same from then on)."""
    row, _ = TeamNotebookSettings.objects.for_team(team_id).get_or_create(
        team_id=team_id,
        defaults={"idle_timeout_minutes": settings.LATTICE_DEFAULT_IDLE_MINUTES},
    )
    return row


def jupyter_command(session: NotebookSession) -> list[str]:
    """JupyterLab's command line for ``session`` (the runtime fills in {ip}, {port} and
    {mount:...}); it reads only the session's ``base_path``."""
    return [
        "jupyter",
        "lab",
        "--ip={ip}",
        "--port={port}",
        "--no-browser",
        "--ServerApp.root_dir={mount:/notebooks}",
        f"--ServerApp.base_url={session.base_path}",
        # The proxy is the only way in; it sends the token, the browser never sees it.
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.terminals_enabled=True",
        # Containers run as uid 1000; a local process runs as the agent's user, root on a
        # single-machine install (the process runtime is not an isolation boundary anyway).
        "--ServerApp.allow_root=True",
    ]


def session_token_deadline(session: NotebookSession, started: datetime) -> datetime:
    """When the workload token of ``session`` started at ``started`` expires: the plan's
    session cap (apps.notebooks.entitlements.run_limit) from then, or the longest a
    workload token lives (it is revoked when the session ends in any case)."""
    return started + workload_lifetime(run_limit(session.team_id))


def session_token_started(session: NotebookSession) -> None:
    """The session has started: its token expires at its deadline, counted from now."""
    if session.started_at is not None:
        at = session_token_deadline(session, session.started_at)
        workload_tokens_expire(workloads=[session.workload], at=at)


def session_api_env(session: NotebookSession) -> dict[str, str]:
    """``LATTICE_URL``, ``LATTICE_TOKEN`` and ``LATTICE_TEAM`` for the session, with a new
    workload token that acts as the person who started it (apps.accounts.workload). Each
    dispatch makes one (a host asked again keeps the container it started, with the
    first's): all of them are revoked when the session ends."""
    notebook = session.notebook
    return workload_env(
        user=session.started_by,
        team=notebook.team,
        workload=session.workload,
        name=f"Notebook {notebook.name}, session {session.pk}",
        expires_at=session_token_deadline(session, timezone.now() + START_ALLOWANCE),
    )


def session_spec(session: NotebookSession) -> Spec:
    """The session's workload. The team secrets the notebook names are resolved now, at each
    start (audited as a use): a secret deleted since is a SecretError, and the start fails.
    Its workload token is made now too (``session_api_env``)."""
    notebook = session.notebook
    secret_env = secrets_resolve(
        notebook.team,
        notebook.secrets or [],
        used_by=f"notebook {notebook.name}",
        actor=session.started_by,
    )
    team_settings = team_notebook_settings_made(session.team_id)
    machine = session.machine_type
    assert session.placement is not None  # noqa: S101 - dispatched only once placed
    return Spec(
        name=session.workload,
        image=session.image,
        command=notebook_clone_command(notebook, jupyter_command(session)),
        env={
            **secret_env,
            **session_api_env(session),
            "JUPYTER_TOKEN": session.jupyter_token,
            "LATTICE_NOTEBOOK": str(notebook.pk),
            **notebook_git_env(notebook),
        },
        **spec_limits(machine, session.placement),
        volumes={notebook.volume: "/notebooks", team_settings.storage_volume: "/storage"},
        # The team's /storage is written by its notebooks on every host at once: served
        # from one place (LATTICE_SHARED_STORAGE), never moved with a notebook.
        shared_volumes=[team_settings.storage_volume],
        datasets=mounts_for_spec(session),
        # A new workload token at each dispatch: a start sent again (its first one's message
        # lost with an agent that died) keeps the container the first one started.
        volatile_env=["LATTICE_TOKEN"],
        labels={
            "installation": settings.LATTICE_INSTALLATION,
            "kind": "notebook",
            "team": str(session.team_id),
            "notebook": str(notebook.pk),
            "session": str(session.pk),
            "stream": notebook.stream,
        },
    )
