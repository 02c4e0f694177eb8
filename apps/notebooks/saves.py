"""Saving a folder of a running notebook as a model version, from its page and the API.

``notebook_save_model`` starts it: the folder (under /notebooks) of the notebook's running
session becomes a new version of a model (an existing one, or a new one named here), with
its lineage: the session (source "notebook"), the dataset versions mounted in it, an
optional parent version. The notebook keeps running: the host's agent reads the folder
through its runtime and sends it with a single-use ticket (apps.models.services.saves,
apps.machines.savefolder). ``notebook_saves`` is what the page shows of it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.machines.agent import agent_save_folder
from apps.models.models import Model, ModelVersion, SaveTicket
from apps.models.services.registry import model_create
from apps.models.services.saves import STOPPED_ANSWERING, save_begin, ticket_url
from apps.notebooks.errors import NotebookConflictError, NotebookError
from apps.notebooks.models import NotebookMount, NotebookSession, Status
from apps.notebooks.mounts import mount_available
from apps.notebooks.selectors import open_session
from apps.runtimes.base import NOTEBOOKS_PATH, FolderError, folder_path
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.notebooks.models import Notebook
    from apps.teams.models import Team


def _mounted_versions(session: NotebookSession) -> list[int]:
    """The dataset versions the session runs with: its notebook's mounts made before it
    started (one added since waits for a restart), that the team may still read."""
    mounts = (
        NotebookMount.objects.for_team(session.team_id)
        .filter(notebook_id=session.notebook_id, created_at__lte=session.requested_at)
        .select_related("version")
    )
    return [mount.version_id for mount in mounts if mount_available(mount)]


def notebook_save_model(
    *,
    team: Team,
    actor: User,
    notebook: Notebook,
    folder: str,
    model: str = "",
    model_name: str = "",
    message: str = "",
    parent: int | None = None,
    format: str = ModelVersion.Format.OTHER,  # noqa: A002 - the field's name
) -> SaveTicket:
    """Save ``folder`` of the notebook's running session as a new version of the team's
    model whose slug is ``model`` (or of a new model called ``model_name``; not both); the
    host's agent is asked on commit. ``folder`` is required ("." for all of /notebooks).
    Audited (model.save_started)."""
    require_permission(team, actor, "notebooks.manage")
    if format not in ModelVersion.Format.values:
        raise NotebookError("Choose one of the formats listed.", field="format")
    if not folder.strip():
        raise NotebookError(
            f"Give the folder to save: '.' saves all of {NOTEBOOKS_PATH}.", field="folder"
        )
    try:
        relative = folder_path(folder.strip())
    except FolderError as exc:
        raise NotebookError(str(exc), field="folder") from exc
    with transaction.atomic():
        session = open_session(notebook)
        if session is None or session.status != Status.RUNNING or session.host is None:
            raise NotebookConflictError(
                "Only a running notebook's folder can be saved: start it first."
            )
        target = _model(team, actor, model, model_name)
        shown = f"{NOTEBOOKS_PATH}/{relative}".rstrip("/")
        ticket, token = save_begin(
            team=team,
            actor=actor,
            model=target,
            folder=shown,
            message=message,
            source=ModelVersion.Source.NOTEBOOK,
            source_id=session.pk,
            source_label=f"{notebook.name}, session {session.pk}: {shown}",
            dataset_versions=_mounted_versions(session),
            parent=parent,
            format=format,
        )
        host = session.host
        args = (host.name, session.runtime_state, relative, ticket_url(ticket), token)
        transaction.on_commit(lambda: agent_save_folder.apply_async(args=args, queue=host.queue))
    return ticket


def _model(team: Team, actor: User, slug: str, name: str) -> Model:
    if slug and name.strip():
        raise NotebookError(
            "Choose an existing model or name a new one, not both: a new model's name is "
            'only for "A new model".',
            field="model_name",
        )
    if slug:
        found = Model.objects.for_team(team).filter(slug=slug).first()
        if found is None:
            raise NotebookError("This team has no such model.", field="model")
        return found
    if not name.strip():
        raise NotebookError("Choose a model, or name a new one.", field="model")
    return model_create(team=team, actor=actor, name=name)


def notebook_saves(notebook: Notebook, *, limit: int = 5) -> list[dict[str, Any]]:
    """The notebook's latest saves, newest first, as its page shows them: where each is
    (waiting, reading, sending, done, failed), how far, and the version it made or found."""
    sessions = NotebookSession.objects.for_team(notebook.team_id).filter(notebook=notebook)
    tickets = (
        SaveTicket.objects.for_team(notebook.team_id)
        .filter(source=ModelVersion.Source.NOTEBOOK, source_id__in=sessions.values("pk"))
        .select_related("team", "model", "version")[:limit]
    )
    return [save_described(ticket) for ticket in tickets]


def save_described(ticket: SaveTicket) -> dict[str, Any]:
    """One save as its page and the API show it."""
    version = ticket.version
    progress = (version.progress if version is not None else None) or {}
    state = ticket.result or progress.get("phase") or "waiting"
    failure = ticket.failure or (version.failure if version is not None else "")
    if version is not None and version.status == ModelVersion.Status.FAILED:
        state = "failed"
    elif ticket.finished_at is None and ticket.expires_at <= timezone.now():
        # Its host went quiet (stopped, lost): the ticket is dead, whoever notices first.
        state, failure = "failed", STOPPED_ANSWERING
    made = version if ticket.result in ("ready", "existing") else None
    link = ""
    if made is not None:
        # The model pages may not be installed (the API alone): then no link.
        with contextlib.suppress(NoReverseMatch):
            link = reverse(
                "models:version", args=[ticket.team.slug, ticket.saved_model.slug, made.number]
            )
    return {
        "id": ticket.pk,
        "ticket": ticket,
        "model": ticket.saved_model.slug,
        "folder": ticket.folder,
        "state": state,
        "running": ticket.finished_at is None and state != "failed",
        "done": int(progress.get("done") or 0),
        "total": int(progress.get("total") or 0),
        "made": made,
        "version": made.number if made is not None else None,
        "link": link,
        "failure": failure,
    }


def saves_context(notebook: Notebook) -> dict[str, Any]:
    """What templates/notebooks/_saves.html shows: the saves, and whether to ask again."""
    saves = notebook_saves(notebook)
    return {
        "saves": saves,
        "saves_running": any(save["running"] for save in saves),
    }


def version_source(team: Team, version: ModelVersion) -> tuple[str, str] | None:
    """The notebook a version was saved from, as (text, its page's URL), while it exists
    (apps.models.hooks.source_link)."""
    if version.source != ModelVersion.Source.NOTEBOOK or version.source_id is None:
        return None
    session = (
        NotebookSession.objects.for_team(team)
        .filter(pk=version.source_id, notebook__deleted_at__isnull=True)
        .select_related("notebook")
        .first()
    )
    if session is None:
        return None
    return (
        f"{session.notebook.name}, session {session.pk}",
        reverse("notebooks:detail", args=[team.slug, session.notebook_id]),
    )
