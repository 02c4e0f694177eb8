"""Writes on jobs: one transaction each, an audit row, work queued on commit.

- ``job_create(*, team, actor, **fields) -> Job``, ``job_update(*, team, actor, job,
  **fields) -> Job``, ``job_delete(*, team, actor, job)``: validated (machine type offered,
  template known, notebook of this team, secrets of this team that exist, dataset versions
  this team may read, a cron expression django-celery-beat accepts, a Git URL of a
  supported scheme); a refusal is a JobError naming the field.
- ``job_run(*, team, actor, job, trigger="manual", changes=None) -> Run``: start a run
  (plan limits checked: apps.notebooks.entitlements.check_start); ``changes`` edit the
  definition for this run only (a re-run with an edited definition).
- ``run_rerun(*, team, actor, run, changes=None) -> Run``; ``run_cancel(*, team, actor, run)``.

Fields are given as a person names them: ``notebook`` (a Notebook or its id) and
``machine_type`` (a MachineType or its slug); a run's ``definition`` holds them as
``notebook_id`` and ``machine_type_id`` (Job.DEFINITION_FIELDS). The whole definition is
checked again at each run, so a secret deleted or a machine type retired since the job was
saved refuses the run with a message rather than failing it on a host. Starting and
cancelling are apps.jobs.runs'; jobs and runs use the notebooks' permissions (they run the
same code on the same machines).
"""

from __future__ import annotations

import json
import re
import zoneinfo
from typing import TYPE_CHECKING, Any

from celery.schedules import crontab
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django_celery_beat.validators import crontab_validator

from apps.core.audit import audit_record
from apps.datasets.models import DatasetVersion
from apps.datasets.selectors import version_usable_by
from apps.jobs import runs
from apps.jobs.errors import JobConflictError, JobError, JobNotFoundError
from apps.jobs.models import OPEN_RUN_STATUSES, Job, Run
from apps.machines.models import MachineType
from apps.notebooks.entitlements import check_start
from apps.notebooks.gitsource import git_source_problem
from apps.notebooks.models import Notebook
from apps.notebooks.templates import CUSTOM, TEMPLATES
from apps.teams.permissions import require_permission
from apps.teams.secrets import SecretError, check_names

if TYPE_CHECKING:
    from datetime import datetime

    from apps.accounts.models import User
    from apps.teams.models import Team

VIEW = "notebooks.view"
MANAGE = "notebooks.manage"

NAME_MAX = 80
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_ATTEMPTS = 10
MAX_GRACE_SECONDS = 3600
MAX_CONCURRENCY = 20
MAX_KEEP_DAYS = 365
MAX_ENV = 100
# A variable reaches the process through exec, where Linux takes at most 128 KiB per
# string and about 2 MiB for them all: well inside both, so a saved job always starts.
MAX_ENV_VALUE_CHARS = 32 * 1024
MAX_ENV_CHARS = 256 * 1024
# The parameters travel as one variable (JSON: apps.jobs.sources.runner_env).
MAX_PARAMETERS_CHARS = 64 * 1024
MAX_INPUTS = 20
# minute hour day-of-month month day-of-week
CRON_FIELDS = 5

# An environment variable's name; LATTICE_* are the platform's own (run id, job name, Git).
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RESERVED_ENV = "LATTICE_"
# Git URLs the workload may clone: https/http, ssh, git daemon, and scp-like git@host:path.
# Never file:// or ext:: (a local path or a command), never one that reads as an option.
_GIT_URL = re.compile(r"^(?:(?:https?|ssh|git)://[^\s/@]+(?:@[^\s/]+)?/\S+|[\w.-]+@[\w.-]+:\S+)$")
# A branch, tag or commit: no spaces, no option, none of the characters Git refuses.
_GIT_REF = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+@-]{1,200}$")
_PARAMETER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Defaults of a new job's definition (the model's, gathered where the checks read them).
_DEFAULTS: dict[str, Any] = {
    "source": Job.Source.NONE,
    "notebook_id": None,
    "git_url": "",
    "git_ref": "",
    "git_secret": "",
    "entrypoint": Job.Entrypoint.COMMAND,
    "command": "",
    "notebook_path": "",
    "parameters": {},
    "machine_type_id": None,
    "template": "scipy",
    "env": {},
    "secrets": [],
    "inputs": [],
    "output": Job.Output.ARTIFACTS,
    "output_name": "",
    "keep_files_days": 30,
    "timeout_seconds": 24 * 3600,
    "max_attempts": 3,
    "grace_seconds": 30,
}
# Fields of the job that are not its definition (a run never copies them).
JOB_FIELDS = (
    "name",
    "description",
    "concurrency",
    "schedule",
    "schedule_timezone",
    "schedule_paused",
)


# --- checks ---------------------------------------------------------------------------


def _int(value: Any, field: str, low: int, high: int, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise JobError(f"{what} is a whole number.", field=field) from None
    if isinstance(value, bool) or not low <= number <= high:
        raise JobError(f"{what} is {low} to {high}.", field=field)
    return number


def _text(value: Any, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise JobError("Give text here.", field=field)
    value = value.strip()
    if len(value) > limit:
        raise JobError(f"At most {limit} characters.", field=field)
    return value


def _given_to_definition(fields: dict[str, Any], *, run: bool = False) -> dict[str, Any]:
    """Fields as a person gives them (``notebook``, ``machine_type``) in the definition's
    terms (``notebook_id``, ``machine_type_id``); unknown names are refused, and so are the
    job's own (name, schedule, concurrency) in a ``run``'s changes."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "notebook":
            out["notebook_id"] = value.pk if isinstance(value, Notebook) else value
        elif name == "machine_type":
            out["machine_type_id"] = _machine_type_id(value)
        elif name in _DEFAULTS and name not in ("notebook_id", "machine_type_id"):
            out[name] = value
        elif name not in JOB_FIELDS:
            raise JobError(f"A job has no field {name!r}.", field=name)
        elif run:
            raise JobError(
                f"A run cannot change the job's {name!r}: edit the job instead.", field=name
            )
    return out


def _machine_type_id(value: Any) -> int:
    if isinstance(value, MachineType):
        machine_type: MachineType | None = value
    elif isinstance(value, str) and value:
        machine_type = MachineType.objects.filter(slug=value).first()
    else:
        machine_type = None
    if machine_type is None or not machine_type.active:
        raise JobError("Choose a machine type that is offered.", field="machine_type")
    return machine_type.pk


def _clean_definition(team: Team, wanted: dict[str, Any]) -> dict[str, Any]:
    """The whole definition checked and normalised; a JobError names the first wrong field."""
    d = {**_DEFAULTS, **wanted}
    out = _clean_source(team, d)
    out.update(_clean_entrypoint(d, out["source"]))
    out.update(_clean_place(d))
    out["env"] = _env(d["env"])
    out["secrets"] = _secret_names(team, d["secrets"], out["env"])
    out["inputs"] = _inputs(team, d["inputs"])
    out.update(_clean_outputs(d))
    out["timeout_seconds"] = _int(
        d["timeout_seconds"], "timeout_seconds", 0, MAX_TIMEOUT_SECONDS, "The maximum run time"
    )
    out["max_attempts"] = _int(d["max_attempts"], "max_attempts", 1, MAX_ATTEMPTS, "Attempts")
    out["grace_seconds"] = _int(
        d["grace_seconds"], "grace_seconds", 0, MAX_GRACE_SECONDS, "The grace period"
    )
    return out


def _clean_source(team: Team, d: dict[str, Any]) -> dict[str, Any]:
    source = d["source"]
    if source not in Job.Source.values:
        raise JobError("Choose where the job's files come from.", field="source")
    out: dict[str, Any] = {"source": source, "notebook_id": None}
    out["git_url"] = out["git_ref"] = out["git_secret"] = ""
    if source == Job.Source.NOTEBOOK:
        out["notebook_id"] = _notebook_id(team, d["notebook_id"])
    elif source == Job.Source.GIT:
        url = _text(d["git_url"], "git_url", 500)
        if not _GIT_URL.match(url):
            raise JobError(
                "Give a Git URL that starts with https://, ssh:// or git://, or git@host:path.",
                field="git_url",
            )
        # As notebooks' Git source: no password or token in the URL (every member, viewers
        # too, reads the job and its runs' definitions).
        problem = git_source_problem(url, "")
        if problem:
            raise JobError(problem, field="git_url")
        ref = _text(d["git_ref"], "git_ref", 200)
        if ref and not _GIT_REF.match(ref):
            raise JobError("Give a branch, tag or commit (no spaces).", field="git_ref")
        secret = _text(d["git_secret"], "git_secret", 64)
        if secret:
            try:
                check_names(team, [secret])
            except SecretError as refusal:
                raise JobError(str(refusal), field="git_secret") from None
        out.update(git_url=url, git_ref=ref, git_secret=secret)
    return out


def _clean_entrypoint(d: dict[str, Any], source: str) -> dict[str, Any]:
    entrypoint = d["entrypoint"]
    if entrypoint not in Job.Entrypoint.values:
        raise JobError("Choose a command or a notebook to run.", field="entrypoint")
    command = _text(d["command"], "command", 10_000)
    path = _text(d["notebook_path"], "notebook_path", 500)
    if entrypoint == Job.Entrypoint.COMMAND and not command:
        raise JobError("Give the command to run.", field="command")
    if entrypoint == Job.Entrypoint.NOTEBOOK:
        if not path.endswith(".ipynb") or path.startswith(("/", "-")) or ".." in path.split("/"):
            raise JobError(
                "Give the notebook's path in the job's files, such as train.ipynb.",
                field="notebook_path",
            )
        if source == Job.Source.NONE:
            raise JobError("A notebook runs from the job's files: choose a source.", field="source")
    return {
        "entrypoint": entrypoint,
        "command": command,
        "notebook_path": path,
        "parameters": _parameters(d["parameters"]),
    }


def _clean_place(d: dict[str, Any]) -> dict[str, Any]:
    machine_type = None
    if d["machine_type_id"] is not None:
        machine_type = MachineType.objects.filter(pk=d["machine_type_id"], active=True).first()
    if machine_type is None:
        raise JobError("Choose a machine type that is offered.", field="machine_type")
    if d["template"] not in TEMPLATES or d["template"] == CUSTOM:
        raise JobError("Choose one of the templates offered.", field="template")
    return {"machine_type_id": machine_type.pk, "template": d["template"]}


def _clean_outputs(d: dict[str, Any]) -> dict[str, Any]:
    output = d["output"]
    if output not in Job.Output.values:
        raise JobError("Choose what the job's /outputs become.", field="output")
    name = ""
    if output in (Job.Output.DATASET, Job.Output.MODEL):
        name = _text(d["output_name"], "output_name", NAME_MAX)
        if not name:
            raise JobError(f"Name the {output} the outputs go to.", field="output_name")
    days = _int(d["keep_files_days"], "keep_files_days", 1, MAX_KEEP_DAYS, "Days to keep files")
    return {"output": output, "output_name": name, "keep_files_days": days}


def _notebook_id(team: Team, value: Any) -> int:
    try:
        pk = int(value)
    except (TypeError, ValueError):
        raise JobError("Choose one of the team's notebooks.", field="notebook") from None
    found = Notebook.objects.for_team(team).filter(pk=pk, deleted_at__isnull=True).exists()
    if not found:
        raise JobError("Choose one of the team's notebooks.", field="notebook")
    return pk


def _parameters(value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise JobError("Parameters are an object of names and values.", field="parameters")
    for name in value:
        if not isinstance(name, str) or not _PARAMETER.match(name):
            raise JobError(f"{name!r} is not a parameter name.", field="parameters")
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        raise JobError("Parameters are JSON values.", field="parameters") from None
    if size > MAX_PARAMETERS_CHARS:
        raise JobError(
            f"Parameters: at most {MAX_PARAMETERS_CHARS // 1024} KiB in all (as JSON).",
            field="parameters",
        )
    return value


def _env(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ENV:
        raise JobError(f"Environment: at most {MAX_ENV} names and values.", field="env")
    out = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise JobError(f"{name!r} is not an environment variable's name.", field="env")
        if name.startswith(_RESERVED_ENV):
            raise JobError(f"Names starting {_RESERVED_ENV} are Lattice's own.", field="env")
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            raise JobError(f"The value of {name} is text.", field="env")
        if len(str(text)) > MAX_ENV_VALUE_CHARS:
            raise JobError(
                f"The value of {name}: at most {MAX_ENV_VALUE_CHARS // 1024} KiB.", field="env"
            )
        out[name] = str(text)
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_ENV_CHARS:
        raise JobError(f"Environment: at most {MAX_ENV_CHARS // 1024} KiB in all.", field="env")
    return out


def _secret_names(team: Team, value: Any, env: dict[str, str]) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise JobError("Secrets are a list of the team's secret names.", field="secrets")
    # Looked up in this team only: a job of team A cannot name a secret only team B has.
    try:
        names = check_names(team, value)
    except SecretError as refusal:
        raise JobError(str(refusal), field="secrets") from None
    both = [n for n in names if n in env]
    if both:
        raise JobError(f"{both[0]} is both a secret and an environment variable.", field="secrets")
    return names


def _inputs(team: Team, value: Any) -> list[dict[str, Any]]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or len(value) > MAX_INPUTS:
        raise JobError(f"Inputs: a list of at most {MAX_INPUTS} dataset versions.", field="inputs")
    out: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict):
            raise JobError('Each input is {"name": ..., "version": <id>}.', field="inputs")
        try:
            pk = int(item.get("version"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise JobError("Choose a dataset version for each input.", field="inputs") from None
        # The team's own, or a public dataset's ready one; anything else reads as missing.
        version = version_usable_by(team=team, pk=pk)
        if version is None:
            raise JobError(
                "That dataset version does not exist, or your team cannot use it.",
                field="inputs",
            )
        if version.status != DatasetVersion.Status.READY:
            raise JobError("That dataset version is still uploading.", field="inputs")
        name = str(item.get("name") or version.dataset.slug)
        try:
            validate_slug(name)
        except ValidationError:
            raise JobError(
                "An input's folder name is letters, digits, hyphens and underscores.",
                field="inputs",
            ) from None
        if any(i["name"] == name for i in out):
            raise JobError(f"Two inputs are called {name}.", field="inputs")
        out.append({"name": name[:NAME_MAX], "version": version.pk})
    return out


def _clean_name(team: Team, name: Any, *, exclude: int | None = None) -> tuple[str, str]:
    name = " ".join(str(name or "").split())
    if not name:
        raise JobError("Give the job a name.", field="name")
    if len(name) > NAME_MAX:
        raise JobError(f"A name is at most {NAME_MAX} characters.", field="name")
    slug = slugify(name)[:60]
    if not slug:
        raise JobError("Give the job a name with letters or digits.", field="name")
    taken = Job.objects.for_team(team).filter(deleted_at__isnull=True, slug=slug)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise JobError(f"This team already has a job called {name}.", field="name")
    return name, slug


def schedule_crontab(schedule: str) -> crontab:
    """Celery's crontab of a five-field cron expression ("m h dom mon dow")."""
    minute, hour, day_of_month, month_of_year, day_of_week = schedule.split()
    return crontab(
        minute=minute,
        hour=hour,
        day_of_week=day_of_week,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
    )


def clean_schedule(schedule: Any, zone: Any) -> tuple[str, str]:
    """A cron expression ("m h dom mon dow") django-celery-beat accepts and a time zone."""
    schedule = " ".join(str(schedule or "").split())
    if schedule:
        try:
            crontab_validator(schedule)
            fields_ok = len(schedule.split()) == CRON_FIELDS
            if fields_ok:
                # Celery's own reading too: it refuses days that never come (31 February).
                schedule_crontab(schedule)
        except (ValidationError, ValueError, IndexError):
            fields_ok = False
        if not fields_ok:
            raise JobError(
                "Give a cron schedule of five fields, such as 0 3 * * * (03:00 every day).",
                field="schedule",
            )
    zone = str(zone or "UTC")
    if zone not in zoneinfo.available_timezones():
        raise JobError("Choose a time zone, such as Europe/Paris.", field="schedule_timezone")
    return schedule, zone


def _apply_job_fields(team: Team, job: Job, fields: dict[str, Any]) -> list[str]:
    """Set the job's own (non-definition) fields given; the names of those changed."""
    changed: list[str] = []
    if "name" in fields:
        name, slug = _clean_name(team, fields["name"], exclude=job.pk)
        if name != job.name:
            job.name, job.slug = name, slug
            changed += ["name", "slug"]
    if "description" in fields:
        description = _text(fields["description"], "description", 2000)
        if description != job.description:
            job.description = description
            changed.append("description")
    if "concurrency" in fields:
        concurrency = _int(fields["concurrency"], "concurrency", 1, MAX_CONCURRENCY, "Runs at once")
        if concurrency != job.concurrency:
            job.concurrency = concurrency
            changed.append("concurrency")
    if "schedule" in fields or "schedule_timezone" in fields:
        schedule, zone = clean_schedule(
            fields.get("schedule", job.schedule),
            fields.get("schedule_timezone", job.schedule_timezone),
        )
        if (schedule, zone) != (job.schedule, job.schedule_timezone):
            job.schedule, job.schedule_timezone = schedule, zone
            # Due times before now are not owed: a new schedule starts from here.
            job.schedule_last_at = timezone.now()
            changed += ["schedule", "schedule_timezone", "schedule_last_at"]
    if "schedule_paused" in fields:
        changed += _apply_pause(job, bool(fields["schedule_paused"]))
    return changed


def _apply_pause(job: Job, paused: bool) -> list[str]:
    """Pause or resume the job's schedule; the names of the fields changed."""
    if paused == job.schedule_paused:
        return []
    job.schedule_paused = paused
    if paused:
        return ["schedule_paused"]
    # Due times that passed while paused are not owed: the next one is after now.
    job.schedule_last_at = timezone.now()
    return ["schedule_paused", "schedule_last_at"]


def _live(team: Team, job: Job, *, lock: bool = False) -> Job:
    """The job as it is in the database (locked if asked); 404 once deleted."""
    rows = Job.objects.for_team(team).filter(pk=job.pk, deleted_at__isnull=True)
    found = (rows.select_for_update() if lock else rows).first()
    if found is None:
        raise JobNotFoundError("No such job in this team.")
    return found


# --- services -------------------------------------------------------------------------


# A change to these makes its author the one the job's scheduled runs act as.
_WHAT_RUNS_DO = {*Job.DEFINITION_FIELDS, "schedule", "schedule_timezone", "schedule_paused"}


@transaction.atomic
def job_create(*, team: Team, actor: User, **fields: Any) -> Job:
    """Save a new job definition (nothing runs yet); audit it."""
    require_permission(team, actor, MANAGE)
    fields = dict(fields)
    name, slug = _clean_name(team, fields.get("name"))
    definition = _clean_definition(team, _given_to_definition(fields))
    job = Job(team=team, name=name, slug=slug, created_by=actor, changed_by=actor, **definition)
    _apply_job_fields(team, job, {k: v for k, v in fields.items() if k != "name"})
    job.save()
    audit_record(team=team, actor=actor, action="job.created", target=job.name)
    return job


@transaction.atomic
def job_update(*, team: Team, actor: User, job: Job, **fields: Any) -> Job:
    """Change a job's definition or schedule (runs made before keep theirs); audit it."""
    require_permission(team, actor, MANAGE)
    job = _live(team, job, lock=True)
    given = _given_to_definition(fields)
    current = runs.job_definition(job)
    definition = _clean_definition(team, {**current, **given})
    changed = [f for f in Job.DEFINITION_FIELDS if definition[f] != current[f]]
    for field in changed:
        setattr(job, field, definition[field])
    changed += _apply_job_fields(team, job, fields)
    if set(changed) & _WHAT_RUNS_DO and job.changed_by_id != actor.pk:
        # Scheduled runs act as whoever last changed what they do (spec.run_actor).
        job.changed_by = actor
        changed.append("changed_by")
    if changed:
        job.save(update_fields=[*changed, "updated_at"])
        audit_record(
            team=team,
            actor=actor,
            action="job.updated",
            target=job.name,
            fields=", ".join(f.removesuffix("_id") for f in changed if f != "changed_by"),
        )
    return job


@transaction.atomic
def job_delete(*, team: Team, actor: User, job: Job) -> None:
    """Delete a job: its open runs are cancelled, its runs stay readable in the audit log
    only; its name is free again."""
    require_permission(team, actor, MANAGE)
    job = _live(team, job, lock=True)
    for run in Run.objects.for_team(team).filter(job=job, status__in=OPEN_RUN_STATUSES):
        if run.cancel_requested_at is None:
            runs.run_cancel(run, actor=actor)
    job.deleted_at = timezone.now()
    job.save(update_fields=["deleted_at", "updated_at"])
    audit_record(team=team, actor=actor, action="job.deleted", target=job.name)


def _start(
    team: Team,
    actor: User | None,
    job: Job,
    definition: dict[str, Any],
    *,
    trigger: str,
    edited: bool,
    rerun_of: Run | None = None,
    token_not_after: datetime | None = None,
) -> Run:
    machine_type = MachineType.objects.get(pk=definition["machine_type_id"])
    # The plan and the spend cap (402), as a notebook's start is checked.
    check_start(team, machine_type)
    run = runs.run_create(
        job,
        trigger=trigger,
        actor=actor,
        definition=definition if edited else None,
        rerun_of=rerun_of,
        token_not_after=token_not_after,
    )
    audit_record(
        team=team,
        actor=actor,
        action="job.run_started",
        target=job.name,
        run=run.number,
        trigger=trigger,
        **({"rerun_of": rerun_of.number} if rerun_of is not None else {}),
    )
    return run


@transaction.atomic
def job_run(
    *,
    team: Team,
    actor: User | None,
    job: Job,
    trigger: str = Run.Trigger.MANUAL,
    changes: dict[str, Any] | None = None,
    token_not_after: datetime | None = None,
) -> Run:
    """Start a run of the job (queued, then placed as its concurrency allows); audit it.
    ``changes`` edit the definition for this run only. ``actor`` None: its schedule.
    ``token_not_after``: the latest the run's workload token may expire (a run started with
    a workload token: that token's expiry)."""
    if actor is not None:
        require_permission(team, actor, MANAGE)
    if trigger not in Run.Trigger.values:
        raise JobError("Unknown trigger.", field="trigger")
    # Locked: runs of one job are numbered and counted against its concurrency one at a time.
    job = _live(team, job, lock=True)
    current = runs.job_definition(job)
    definition = _clean_definition(
        team, {**current, **_given_to_definition(changes or {}, run=True)}
    )
    return _start(
        team,
        actor,
        job,
        definition,
        trigger=trigger,
        edited=definition != current,
        token_not_after=token_not_after,
    )


@transaction.atomic
def run_rerun(
    *,
    team: Team,
    actor: User,
    run: Run,
    changes: dict[str, Any] | None = None,
    token_not_after: datetime | None = None,
) -> Run:
    """A new run with ``run``'s definition (as it was), edited by ``changes``; audit it.
    ``token_not_after`` as ``job_run``'s."""
    require_permission(team, actor, MANAGE)
    run = Run.objects.for_team(team).select_related("job").get(pk=run.pk)
    job = _live(team, run.job, lock=True)
    wanted = {**_DEFAULTS, **run.definition, **_given_to_definition(changes or {}, run=True)}
    definition = _clean_definition(team, wanted)
    return _start(
        team,
        actor,
        job,
        definition,
        trigger=Run.Trigger.RERUN,
        edited=True,
        rerun_of=run,
        token_not_after=token_not_after,
    )


@transaction.atomic
def run_cancel(*, team: Team, actor: User, run: Run) -> Run:
    """Cancel an open run (SIGTERM, the grace period, SIGKILL; a queued run ends at once);
    audit it. Cancelling one already being cancelled does nothing; an ended one is a 409."""
    require_permission(team, actor, MANAGE)
    run = Run.objects.for_team(team).select_for_update().select_related("job").get(pk=run.pk)
    if run.status not in OPEN_RUN_STATUSES:
        raise JobConflictError(f"Run {run.number} has already ended ({run.get_status_display()}).")
    if run.cancel_requested_at is not None:
        return run
    run = runs.run_cancel(run, actor=actor)
    audit_record(
        team=team, actor=actor, action="job.run_cancelled", target=run.job.name, run=run.number
    )
    return run
