"""What a run leaves: /outputs as a dataset or model version, or kept files (owner: outputs).

CONTRACT:

- ``outputs_collect(run, attempt) -> bool``: after a succeeded attempt (exit 0), save what it
  left (after a notebook's failed one, ``result_only``: its executed notebook alone): the
  executed notebook (entrypoint "notebook", as a RunFile of kind "result") and
  /outputs as the job's ``output`` says (a new version of the dataset or model named
  ``output_name``, made when missing, with lineage: source "job", the run's pk, its input
  dataset versions; or RunFiles of kind "artifact" kept ``keep_files_days``). The host's
  agent reads the exited container's folders and sends them with single-use tickets
  (apps.models.services.saves, apps.machines.savefolder). Returns False when there is
  nothing to save (the run ends at once); else ``outputs_finished`` is called once, later.
- ``outputs_finished``: a Hook the app registers (apps.jobs.apps) to runs.run_outputs_done.

How: one save ticket per folder (target dataset, model or files; root /outputs, or the
workspace's .lattice-run for the executed notebook), each sent to the attempt's host as
``agent.save_folder`` once the transaction commits. Each ticket's end is told here
(``ticket_ended``, registered on apps.models.hooks.save_ended); the last one records on
the run what was made (its dataset or model version, or why not) and calls
``outputs_finished``. Kept files (``files_keep``, on apps.models.hooks.files_saved) are
RunFile rows over the blob store, held (``files_held``) until ``files_expire`` (the
"jobs.upkeep" beat) deletes them; their blobs are then left to the datasets' upkeep.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.core.hooks import Hook
from apps.datasets.models import Dataset, DatasetVersion
from apps.datasets.selectors import version_usable_by
from apps.datasets.services.datasets import dataset_create
from apps.jobs.errors import JobError
from apps.jobs.models import Job, Run, RunFile
from apps.jobs.spec import OUTPUTS_PATH, RESULT_DIR, WORKSPACE_PATH
from apps.machines.agent import agent_save_folder
from apps.models.models import Model, ModelVersion, SaveTicket
from apps.models.services.registry import model_create
from apps.models.services.saves import save_begin, save_begin_to, ticket_url
from apps.teams.permissions import member_may
from apps.teams.selectors import first_owner

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from apps.accounts.models import User
    from apps.datasets.models import Blob
    from apps.jobs.models import Attempt
    from apps.teams.models import Team

# The executed notebook papermill writes (apps.jobs.sources), in RESULT_DIR.
EXECUTED_NOTEBOOK = "executed.ipynb"
JOB = ModelVersion.Source.JOB


def _nothing(run_id: int, *, ok: bool, message: str = "") -> None:
    return None


outputs_finished: Hook[..., None] = Hook("job outputs finished", default=_nothing)


def run_label(run: Run) -> str:
    """A run in words, for the lineage of what it made (outlives the run)."""
    return f"job {run.job.name} run {run.number}"[:200]


def _actor(run: Run) -> User | None:
    """Who the saves speak for: who started the run, else the job's author (whoever last
    changed what it does, ``Job.changed_by``, else who made it). A scheduled run (nobody
    started it) speaks for that author while they may still save, else for the team's
    longest-standing owner: the job is the team's, and its schedule goes on after its author
    leaves the team."""
    job = run.job
    author = job.changed_by if job.changed_by_id is not None else job.created_by
    if run.trigger != Run.Trigger.SCHEDULE or run.triggered_by is not None:
        return run.triggered_by or author
    if author is not None and all(member_may(run.team, author, p) for p in _SAVE_PERMISSIONS):
        return author
    return first_owner(run.team_id)


_SAVE_PERMISSIONS = ("datasets.manage", "models.manage")


def _input_versions(team: Team, definition: dict[str, Any]) -> list[int]:
    """The dataset versions the run read (its inputs) that the team may still read."""
    found = []
    for entry in definition.get("inputs") or []:
        pk = entry.get("version") if isinstance(entry, dict) else None
        version = version_usable_by(team=team, pk=pk) if isinstance(pk, int) else None
        if version is not None and version.status == DatasetVersion.Status.READY:
            found.append(version.pk)
    return found


def _dataset(team: Team, actor: User, name: str) -> Dataset:
    found = Dataset.objects.for_team(team).filter(name__iexact=name).first()
    return found or dataset_create(team=team, actor=actor, name=name)


def _model(team: Team, actor: User, name: str) -> Model:
    found = Model.objects.for_team(team).filter(name__iexact=name).first()
    return found or model_create(team=team, actor=actor, name=name)


def _tickets(
    run: Run, actor: User, *, result_only: bool = False
) -> list[tuple[SaveTicket, str, str]]:
    """The saves the run's definition asks for: (ticket, token, folder under its root);
    ``result_only``: the executed notebook's only."""
    team, definition = run.team, run.definition
    common: dict[str, Any] = {
        "team": team,
        "actor": actor,
        "source": JOB,
        "source_id": run.pk,
        "source_label": run_label(run),
    }
    outputs: dict[str, Any] = {"folder": OUTPUTS_PATH, "root": OUTPUTS_PATH, **common}
    made: list[tuple[SaveTicket, str, str]] = []
    if definition.get("entrypoint") == Job.Entrypoint.NOTEBOOK:
        workspace: dict[str, Any] = {
            "folder": f"{WORKSPACE_PATH}/{RESULT_DIR}",
            "root": WORKSPACE_PATH,
        }
        made.append((*save_begin_to(**workspace, **common), RESULT_DIR))
    if result_only:
        return made
    output, name = definition.get("output"), str(definition.get("output_name") or "")
    if output == Job.Output.DATASET:
        made.append((*save_begin_to(dataset=_dataset(team, actor, name), **outputs), ""))
    elif output == Job.Output.MODEL:
        ticket, token = save_begin(
            model=_model(team, actor, name),
            message=run_label(run),
            dataset_versions=_input_versions(team, definition),
            **outputs,
        )
        made.append((ticket, token, ""))
    elif output == Job.Output.ARTIFACTS:
        made.append((*save_begin_to(**outputs), ""))
    return made


def outputs_collect(run: Run, attempt: Attempt, *, result_only: bool = False) -> bool:
    """Ask the attempt's host to save what the run left (see the module docstring) and mark
    the run's outputs "saving". False: nothing to save; True: ``outputs_finished`` comes
    later. Called again for a run whose saves are under way: True, nothing new asked.
    Raises a ServiceError (JobError; a refusal of the dataset, model or permission) when
    the saves cannot be asked for: the run's outputs fail with it. ``result_only``: the
    executed notebook alone, not /outputs (a notebook that failed: its error is in it)."""
    if run.outputs_state == Run.Outputs.SAVING:
        return True
    if run.outputs_state:
        return False
    host, actor = attempt.host, _actor(run)
    if host is None:
        raise JobError("The run's host is gone: its outputs cannot be read.")
    if actor is None:
        raise JobError(
            "No one is left to save the outputs as: the member who started the run and "
            "the job's author are gone."
        )
    with transaction.atomic():
        made = _tickets(run, actor, result_only=result_only)
        if not made:
            return False
        Run.objects.for_team(run.team_id).filter(pk=run.pk).update(
            outputs_state=Run.Outputs.SAVING, outputs_message=""
        )
        run.outputs_state = Run.Outputs.SAVING
        state = dict(attempt.runtime_state)
        for ticket, token, folder in made:
            args = (host.name, state, folder, ticket_url(ticket), token)
            transaction.on_commit(
                partial(
                    agent_save_folder.apply_async,
                    args=args,
                    kwargs={"root": ticket.root},
                    queue=host.queue,
                )
            )
    return True


def ticket_ended(ticket_id: int) -> None:
    """A save ended (apps.models.hooks.save_ended): when it was a run's last, the run
    records what was made, or why not, and ``outputs_finished`` is told once."""
    ticket = SaveTicket.objects.unscoped().filter(pk=ticket_id).first()  # by its own id
    if ticket is None or ticket.source != JOB or ticket.source_id is None:
        return
    with transaction.atomic():
        run = (
            Run.objects.for_team(ticket.team_id)
            .select_for_update()
            .filter(pk=ticket.source_id)
            .first()
        )
        if run is None or run.outputs_state != Run.Outputs.SAVING:
            return
        tickets = list(
            SaveTicket.objects.for_team(ticket.team_id)
            .filter(source=JOB, source_id=run.pk)
            .order_by("pk")
        )
        if any(t.finished_at is None for t in tickets):
            return
        failures = [f"{t.folder}: {t.failure}" for t in tickets if t.result == "failed"]
        for made in tickets:
            if made.result == SaveTicket.Result.FAILED:
                continue
            if made.target == SaveTicket.Target.DATASET and made.dataset_version_id:
                run.dataset_version_id = made.dataset_version_id
            if made.target == SaveTicket.Target.MODEL and made.version_id:
                run.model_version_id = made.version_id
        run.outputs_state = Run.Outputs.FAILED if failures else Run.Outputs.SAVED
        run.outputs_message = "; ".join(failures)[:1000]
        run.save(
            update_fields=["outputs_state", "outputs_message", "dataset_version", "model_version"]
        )
        ok, message, run_id = not failures, run.outputs_message, run.pk
        transaction.on_commit(lambda: outputs_finished(run_id, ok=ok, message=message))


def files_keep(ticket: SaveTicket, manifest: list[dict[str, Any]], blobs: dict[str, Blob]) -> None:
    """A run's files are stored (apps.models.hooks.files_saved, in the completion's
    transaction): its executed notebook (kind "result") or /outputs (kind "artifact"), as
    RunFile rows kept the run's ``keep_files_days``."""
    if ticket.source != JOB or ticket.source_id is None:
        return
    run = Run.objects.for_team(ticket.team_id).filter(pk=ticket.source_id).first()
    if run is None:
        return
    result = ticket.root == WORKSPACE_PATH
    kind = RunFile.Kind.RESULT if result else RunFile.Kind.ARTIFACT
    days = int(run.definition.get("keep_files_days") or 0)
    expires_at = timezone.now() + timedelta(days=days)
    RunFile.objects.for_team(ticket.team_id).bulk_create(
        [
            RunFile(
                team_id=ticket.team_id,
                run=run,
                kind=kind,
                path=entry["path"],
                size=entry["size"],
                sha256=entry["sha256"],
                blob=blobs[entry["sha256"]],
                expires_at=expires_at,
            )
            for entry in manifest
            # Of the runner's folder, only the executed notebook is the run's result.
            if not result or entry["path"] == EXECUTED_NOTEBOOK
        ],
        ignore_conflicts=True,
    )


def files_held(team: Team | None) -> QuerySet[Any]:
    """The blobs the runs' kept files hold (apps.models.hooks.files_held)."""
    files = RunFile.objects.for_team(team) if team is not None else RunFile.objects.unscoped()
    return files.values("blob_id")


def files_expire(*, now: Any = None) -> int:
    """Housekeeping (beat, jobs.upkeep): delete every kept file past its ``expires_at``
    (its blob is left to the datasets' upkeep, which collects what nothing holds).
    Returns how many went."""
    now = now or timezone.now()
    expired = RunFile.objects.unscoped().filter(expires_at__lte=now)  # across every team
    count, _ = expired.delete()
    return count


def _link(name: str, *args: Any, query: str = "") -> str:
    """A page's address, or "" where its app's pages are not installed (the API alone)."""
    try:
        return reverse(name, args=args) + query
    except NoReverseMatch:
        return ""


def outputs_described(run: Run) -> dict[str, Any]:
    """What a run left, as its page and the API show it: the outputs' state and message, the
    dataset or model version made (with a link), and the files still kept (each with its
    download link; the executed notebook's viewing link apart)."""
    slug = run.team.slug
    dataset_version = (
        DatasetVersion.objects.for_team(run.team_id)
        .filter(pk=run.dataset_version_id, status=DatasetVersion.Status.READY)
        .select_related("dataset")
        .first()
        if run.dataset_version_id
        else None
    )
    model_version = (
        ModelVersion.objects.for_team(run.team_id)
        .filter(pk=run.model_version_id, status=ModelVersion.Status.READY)
        .select_related("model")
        .first()
        if run.model_version_id
        else None
    )
    files = RunFile.objects.for_team(run.team_id).filter(run=run, expires_at__gt=timezone.now())
    return {
        "state": run.outputs_state or "none",
        "message": run.outputs_message,
        "dataset_version": dataset_version
        and {
            "dataset": dataset_version.dataset.name,
            "number": dataset_version.number,
            "url": _link(
                "datasets:detail",
                slug,
                dataset_version.dataset.slug,
                query=f"?version={dataset_version.number}",
            ),
        },
        "model_version": model_version
        and {
            "model": model_version.model.name,
            "number": model_version.number,
            "url": _link("models:version", slug, model_version.model.slug, model_version.number),
        },
        "files": [
            {
                "id": row.pk,
                "kind": row.kind,
                "path": row.path,
                "size": row.size,
                "sha256": row.sha256,
                "expires_at": row.expires_at,
                "url": _link("job_files:download", slug, run.pk, row.pk),
            }
            for row in files
        ],
        "notebook_url": _link("job_files:notebook", slug, run.pk)
        if any(row.kind == RunFile.Kind.RESULT for row in files)
        else "",
    }


def version_made_by(team: Team, version: DatasetVersion | ModelVersion) -> tuple[str, str] | None:
    """The run that made a dataset or model version (source "job"), as (text, its page's URL),
    while the run exists and is ``team``'s (apps.datasets.hooks.source_link,
    apps.models.hooks.source_links)."""
    if version.source != JOB or version.source_id is None:
        return None
    run = (
        Run.objects.for_team(team)
        .filter(pk=version.source_id, job__deleted_at__isnull=True)
        .select_related("job")
        .first()
    )
    if run is None:
        return None
    url = _link("jobs:run", team.slug, run.job_id, run.number)
    return (f"{run.job.name}, run {run.number}", url) if url else None
