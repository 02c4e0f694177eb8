"""What an attempt runs on its host: the runtime Spec and the agent's options (owner: engine).

CONTRACT (foundation; the engine helper fills it in):

- ``attempt_spec(attempt) -> tuple[Spec, dict]``: the workload ``jb-<attempt>``: the job's
  template image, the machine type's limits and GPUs, the run's definition (never the job's
  current one), env (plain, the team secrets it names, LATTICE_* of the run and the SDK's
  LATTICE_URL/LATTICE_TOKEN/LATTICE_TEAM with a workload token: ``attempt_api_env``), dataset inputs
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

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from apps.accounts.workload import START_ALLOWANCE, workload_env, workload_lifetime
from apps.datasets.selectors import version_usable_by
from apps.jobs import sources
from apps.jobs.errors import JobError
from apps.machines.models import MachineType
from apps.machines.scheduler import spec_limits
from apps.notebooks import entitlements, templates
from apps.notebooks.models import Notebook
from apps.notebooks.mounts import versions_for_spec
from apps.runtimes.base import Spec
from apps.teams import secrets

if TYPE_CHECKING:
    from datetime import datetime

    from apps.accounts.models import User
    from apps.jobs.models import Attempt, Run

WORKSPACE_PATH = "/workspace"
OUTPUTS_PATH = "/outputs"
# Where the runner writes what it reports (the executed notebook, the commit it ran).
RESULT_DIR = ".lattice-run"


def workspace_volume(run: Run) -> str:
    return f"lattice-jb-run-{run.pk}-ws"


def outputs_volume(run: Run) -> str:
    return f"lattice-jb-run-{run.pk}-out"


def run_env(run: Run) -> dict[str, str]:
    """The run's environment: the job's plain variables, the team secrets it names (read now,
    audited as this run's use), the Git credential its source needs, the runner's variables
    (the command, notebook and parameters: sources.runner_env), and LATTICE_*."""
    definition = run.definition
    used_by = f"job {run.job.name} run {run.number}"
    names = [str(n) for n in definition.get("secrets") or []]
    env = {str(k): str(v) for k, v in (definition.get("env") or {}).items()}
    if names:
        env |= secrets.secrets_resolve(run.team, names, used_by=used_by, actor=run.triggered_by)
    env |= sources.source_env(run.team, definition, used_by=used_by)
    env |= sources.runner_env(definition)
    env |= {"LATTICE_RUN_ID": str(run.pk), "LATTICE_JOB": run.job.slug}
    return env


def run_actor(run: Run) -> User | None:
    """Whom the run acts as from inside (its workload token): whoever started it, or, for a
    scheduled run, whoever last changed what the job does (``Job.changed_by``; the creator
    on a job made before it was kept). Never someone else when that person cannot act: the
    run then gets no token (``workload_env``)."""
    if run.triggered_by is not None:
        return run.triggered_by
    job = run.job
    return job.changed_by if job.changed_by_id is not None else job.created_by


def run_limit(run: Run) -> timedelta | None:
    """The run's maximum run time: the job's timeout, bounded by the plan's session cap."""
    timeout = int(run.definition.get("timeout_seconds") or 0)
    limit = timedelta(seconds=timeout) if timeout else None
    cap = entitlements.run_limit(run.team_id)
    if cap is not None and (limit is None or cap < limit):
        limit = cap
    return limit


def attempt_token_deadline(attempt: Attempt) -> datetime:
    """When the attempt's workload token expires: the run's deadline once it has one (set at
    its first start), else the latest it could be (its maximum run time from a start that
    may still take START_ALLOWANCE); never later than ``run.token_not_after`` (a run started
    with a workload token expires with it)."""
    run = attempt.run
    if run.deadline_at is not None:
        deadline = run.deadline_at
    else:
        deadline = timezone.now() + START_ALLOWANCE + workload_lifetime(run_limit(run))
    if run.token_not_after is not None and run.token_not_after < deadline:
        return run.token_not_after
    return deadline


def attempt_api_env(attempt: Attempt) -> dict[str, str]:
    """``LATTICE_URL``, ``LATTICE_TOKEN`` and ``LATTICE_TEAM`` for the attempt, with a new
    workload token (apps.accounts.workload) acting as ``run_actor``: none where nobody can
    act for it. Revoked when the attempt ends (apps.jobs.runs.attempt_end)."""
    run = attempt.run
    return workload_env(
        user=run_actor(run),
        team=run.team,
        workload=attempt.workload,
        name=f"Job {run.job.name}, run {run.number}, attempt {attempt.number}",
        expires_at=attempt_token_deadline(attempt),
    )


def run_inputs(run: Run) -> list[dict[str, Any]]:
    """The run's dataset inputs as a spec's datasets (apps.notebooks.mounts' shape); a
    version this team may no longer read is a JobError naming it."""
    wanted = [(str(i["name"]), i["version"]) for i in run.definition.get("inputs") or []]
    pairs = []
    for name, version_id in wanted:
        # The team's own, or another team's public ready one (as the job's validation took).
        version = version_usable_by(team=run.team, pk=int(version_id))
        if version is None:
            raise JobError(f"The dataset version for /datasets/{name} is gone.", field="inputs")
        pairs.append((name, version))
    return versions_for_spec(run.team_id, pairs)


def attempt_spec(attempt: Attempt) -> tuple[Spec, dict[str, Any]]:
    """What attempt ``attempt`` runs on its host (see the module's docstring). Raises a
    ServiceError (a JobError, a secret's or template's refusal) when it cannot start."""
    run = attempt.run
    definition = run.definition
    machine = MachineType.objects.get(pk=definition["machine_type_id"])
    assert attempt.placement is not None  # noqa: S101 - dispatched only once placed
    try:
        image = templates.image_for(str(definition.get("template") or ""))
    except templates.TemplateError as exc:
        raise JobError(str(exc), field="template") from exc
    options: dict[str, Any] = {"stream": run.stream, "until": "exit"}
    if definition.get("source") == "notebook":
        notebook = (
            Notebook.objects.for_team(run.team_id).filter(pk=definition.get("notebook_id")).first()
        )
        if notebook is None:
            raise JobError("The job's notebook is gone.", field="notebook")
        options["copy_volume"] = notebook.volume
    spec = Spec(
        name=attempt.workload,
        image=image,
        command=sources.runner_command(definition, run_id=run.pk),
        env=run_env(run) | attempt_api_env(attempt),
        # A new token at each dispatch: a start sent again is still this workload, and its
        # host keeps the container the first start has running (Spec.fingerprint).
        volatile_env=["LATTICE_TOKEN"],
        **spec_limits(machine, attempt.placement),
        volumes={workspace_volume(run): WORKSPACE_PATH, outputs_volume(run): OUTPUTS_PATH},
        datasets=run_inputs(run),
        labels={
            "installation": settings.LATTICE_INSTALLATION,
            "kind": "job",
            "team": str(run.team_id),
            "job": str(run.job_id),
            "run": str(run.pk),
            "attempt": str(attempt.pk),
            "stream": run.stream,
            "until": "exit",
        },
    )
    return spec, options
