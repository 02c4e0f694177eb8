"""What people do to notebooks. Each is one transaction with an audit entry; work is
queued on commit and carried out by apps.notebooks.lifecycle.

Every step is idempotent: starting a notebook that is already starting or
running returns its open session (one container, however many clicks);
stopping a stopped notebook does nothing.

``notebook_start`` is offered here with the others but defined in
apps.notebooks.lifecycle.start: the end of a session calls it too (a restart), and the
lifecycle imports nothing from this module. Refusals are apps.notebooks.errors'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.core.audit import audit_record
from apps.core.errors import ServiceError
from apps.core.tenancy import team_scope
from apps.notebooks import lifecycle
from apps.notebooks.errors import NotebookConflictError, NotebookError, NotebookPermissionError
from apps.notebooks.gitsource import git_source_problem
from apps.notebooks.lifecycle import notebook_start
from apps.notebooks.lifecycle.spec import team_notebook_settings_made
from apps.notebooks.locks import lock_session, notebook_locked, notebook_to_change
from apps.notebooks.models import Notebook, NotebookSession, Status, TeamNotebookSettings
from apps.notebooks.names import notebook_like
from apps.notebooks.names import notebook_name_clean as _clean_name
from apps.notebooks.selectors import open_session
from apps.notebooks.snapshots import snapshots_forget
from apps.notebooks.templates import CUSTOM, TEMPLATES, TemplateError, image_for
from apps.teams.permissions import require_permission
from apps.teams.secrets import check_names

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.machines.models import Host, MachineType
    from apps.teams.models import Team

MAX_IDLE_MINUTES = 7 * 24 * 60


def _clean_idle(minutes: int | None) -> int | None:
    if minutes is None:
        return None
    if not 0 <= minutes <= MAX_IDLE_MINUTES:
        raise NotebookError(
            f"Idle shutdown is 0 (never) to {MAX_IDLE_MINUTES} minutes.",
            field="idle_timeout_minutes",
        )
    return minutes


def _clean_git(team: Team, url: str, ref: str, secret: str) -> tuple[str, str, str]:
    """The repository cloned into /notebooks/<repo> on a start that does not find it: its
    URL, branch/tag/commit and the team secret with its token or deploy key, checked."""
    url, ref, secret = url.strip(), ref.strip(), secret.strip()
    if not url:
        if ref or secret:
            raise NotebookError("Give the repository's URL too.", field="git_url")
        return "", "", ""
    problem = git_source_problem(url, "")
    if problem:
        raise NotebookError(problem, field="git_url")
    problem = git_source_problem(url, ref)
    if problem:
        raise NotebookError(problem, field="git_ref")
    if secret:
        try:
            check_names(team, [secret])
        except ServiceError as exc:
            raise NotebookError(str(exc), field="git_secret") from exc
    return url, ref, secret


def _machine(machine_type: MachineType | None) -> MachineType:
    if machine_type is None or not machine_type.active:
        raise NotebookError("Choose a machine type that is offered.", field="machine_type")
    return machine_type


@transaction.atomic
def notebook_create(
    *,
    team: Team,
    actor: User,
    name: str,
    template: str,
    machine_type: MachineType | None,
    custom_image: str = "",
    idle_timeout_minutes: int | None = None,
    secrets: list[str] | None = None,
    git_url: str = "",
    git_ref: str = "",
    git_secret: str = "",
) -> Notebook:
    """Make a stopped notebook (its storage is made on first start); audit it. ``secrets``:
    names of the team's secrets it gets as environment variables at each start. With a Git
    repository, its first start clones it into /notebooks/<repo>."""
    require_permission(team, actor, "notebooks.manage", error=NotebookPermissionError)
    name = _clean_name(team, name)
    if template not in TEMPLATES:
        raise NotebookError("Choose one of the templates offered.", field="template")
    try:
        custom_image = image_for(template, custom_image) if template == CUSTOM else ""
    except TemplateError as exc:
        raise NotebookError(str(exc), field="custom_image") from exc
    git_url, git_ref, git_secret = _clean_git(team, git_url, git_ref, git_secret)
    notebook = Notebook.objects.for_team(team).create(
        team=team,
        name=name,
        template=template,
        custom_image=custom_image,
        machine_type=_machine(machine_type),
        idle_timeout_minutes=_clean_idle(idle_timeout_minutes),
        secrets=check_names(team, secrets or []),
        git_url=git_url,
        git_ref=git_ref,
        git_secret=git_secret,
        created_by=actor,
    )
    team_notebook_settings_made(team.pk)
    audit_record(team=team, actor=actor, action="notebook.created", target=name)
    return notebook


@transaction.atomic
def notebook_update(
    *,
    team: Team,
    actor: User,
    notebook: Notebook,
    name: str | None = None,
    machine_type: MachineType | None = None,
    idle_timeout_minutes: int | None = None,
    clear_idle_timeout: bool = False,
    secrets: list[str] | None = None,
    git_url: str | None = None,
    git_ref: str | None = None,
    git_secret: str | None = None,
) -> Notebook:
    """Rename, change the machine type (only while stopped; storage kept), the idle policy,
    the team secrets it gets (from its next start), or the Git repository (None: unchanged;
    cloned on the next start that does not find its folder, an earlier clone left as it is)."""
    notebook = notebook_to_change(team, actor, notebook)
    changed = []
    if name is not None and name != notebook.name:
        notebook.name = _clean_name(team, name, exclude=notebook.pk)
        changed.append("name")
    if machine_type is not None and machine_type.pk != notebook.machine_type_id:
        if open_session(notebook) is not None:
            raise NotebookConflictError(
                "Stop the notebook before changing its machine; its files stay.",
                field="machine_type",
            )
        notebook.machine_type = _machine(machine_type)
        changed.append("machine_type")
    if clear_idle_timeout or idle_timeout_minutes is not None:
        notebook.idle_timeout_minutes = (
            None if clear_idle_timeout else _clean_idle(idle_timeout_minutes)
        )
        changed.append("idle_timeout_minutes")
    if secrets is not None:
        names = check_names(team, secrets)
        if names != notebook.secrets:
            notebook.secrets = names
            changed.append("secrets")
    changed += _change_git(team, notebook, git_url, git_ref, git_secret)
    if changed:
        notebook.save(update_fields=[*changed, "updated_at"])
        audit_record(
            team=team,
            actor=actor,
            action="notebook.updated",
            target=notebook.name,
            fields=changed,
        )
    return notebook


def _change_git(
    team: Team, notebook: Notebook, url: str | None, ref: str | None, secret: str | None
) -> list[str]:
    """Set the Git repository's fields given (None: unchanged), checked together; the
    fields that changed."""
    if url is None and ref is None and secret is None:
        return []
    git = _clean_git(
        team,
        notebook.git_url if url is None else url,
        notebook.git_ref if ref is None else ref,
        notebook.git_secret if secret is None else secret,
    )
    changed = []
    for field, value in zip(("git_url", "git_ref", "git_secret"), git, strict=True):
        if getattr(notebook, field) != value:
            setattr(notebook, field, value)
            changed.append(field)
    return changed


@transaction.atomic
def notebook_stop(
    *,
    team: Team,
    actor: User | None,
    notebook: Notebook,
    reason: str = NotebookSession.ExitReason.STOPPED,
) -> NotebookSession | None:
    """Want it stopped: stop its container gracefully (storage kept). Nothing to stop is fine."""
    if actor is not None:
        require_permission(team, actor, "notebooks.manage", error=NotebookPermissionError)
    notebook = notebook_locked(team, notebook)
    notebook.desired_state = Notebook.Desired.STOPPED
    notebook.save(update_fields=["desired_state", "updated_at"])
    session = open_session(notebook)
    if session is None:
        return None
    lifecycle.session_stop(session, reason=reason)
    audit_record(
        team=team,
        actor=actor,
        action="notebook.stopped",
        target=notebook.name,
        reason=reason,
    )
    return session


@transaction.atomic
def notebook_restart(*, team: Team, actor: User, notebook: Notebook) -> None:
    """Stop the running session and start a new one once it has stopped (storage kept)."""
    notebook = notebook_to_change(team, actor, notebook)
    session = open_session(notebook)
    if session is None:
        notebook_start(team=team, actor=actor, notebook=notebook)
        return
    notebook.desired_state = Notebook.Desired.RUNNING
    notebook.save(update_fields=["desired_state", "updated_at"])
    if session.status != Status.STOPPING:
        lifecycle.session_stop(session, reason=NotebookSession.ExitReason.RESTARTED)
    audit_record(team=team, actor=actor, action="notebook.restarted", target=notebook.name)


def notebooks_move_off(host: Host) -> int:
    """An admin's "Move notebooks now" on a draining ``host``: each notebook running (or
    starting) there stops with a restart wanted, as a Restart does; its stop takes a
    snapshot, and its next session is placed on another host (this one takes nothing while
    it drains) and restores it. How many were asked to move."""
    moved = 0
    for session_id, team_id in (
        NotebookSession.objects.unscoped()
        .filter(host=host, ended_at__isnull=True)
        .exclude(status=Status.STOPPING)
        .values_list("pk", "team_id")
    ):
        with team_scope(team_id), transaction.atomic():
            session = lock_session(session_id, "placement", "host")
            if session is None or session.ended_at is not None:
                continue
            if session.status == Status.STOPPING:
                continue
            notebook = session.notebook
            notebook.desired_state = Notebook.Desired.RUNNING
            notebook.save(update_fields=["desired_state", "updated_at"])
            lifecycle.session_stop(session, reason=NotebookSession.ExitReason.RESTARTED)
            audit_record(
                team=notebook.team,
                actor=None,
                action="notebook.moved",
                target=notebook.name,
                host=host.name,
            )
            moved += 1
    return moved


@transaction.atomic
def notebook_duplicate(*, team: Team, actor: User, notebook: Notebook, name: str) -> Notebook:
    """A new stopped notebook with the same template, machine and idle policy, and a copy
    of its files (made on the host where they are; a file being written meanwhile may be
    copied half-written, as with any copy of a live folder)."""
    source = notebook_to_change(team, actor, notebook)
    copy = notebook_like(source, team=team, actor=actor, name=name)
    lifecycle.on_commit_copy_storage(source, copy)
    audit_record(
        team=team,
        actor=actor,
        action="notebook.duplicated",
        target=copy.name,
        source=source.name,
    )
    return copy


@transaction.atomic
def notebook_delete(*, team: Team, actor: User, notebook: Notebook, confirmation: str) -> None:
    """Delete after the name is typed: stop it, hide it, remove its storage once stopped,
    and forget its snapshots (their blobs left to the datasets' upkeep)."""
    notebook = notebook_to_change(team, actor, notebook)
    if confirmation.strip() != notebook.name:
        raise NotebookError(
            f"Type the notebook's name, {notebook.name}, to delete it.",
            field="confirmation",
        )
    notebook.deleted_at = timezone.now()
    notebook.desired_state = Notebook.Desired.STOPPED
    notebook.save(update_fields=["deleted_at", "desired_state", "updated_at"])
    snapshots_forget(notebook)
    session = open_session(notebook)
    if session is not None:
        lifecycle.session_stop(session, reason=NotebookSession.ExitReason.DELETED)
    else:
        lifecycle.on_commit_remove_storage(notebook)
    audit_record(team=team, actor=actor, action="notebook.deleted", target=notebook.name)


@transaction.atomic
def notebook_extend(*, team: Team, actor: User, notebook: Notebook) -> NotebookSession | None:
    """Count now as activity: the idle countdown starts again and its warning goes away."""
    session = open_session(notebook_to_change(team, actor, notebook))
    if session is None or session.status != Status.RUNNING:
        return None
    session.activity_at = timezone.now()
    session.idle_warned_at = None
    session.save(update_fields=["activity_at", "idle_warned_at"])
    lifecycle.publish_status(session.notebook, session)
    return session


@transaction.atomic
def team_notebook_settings_update(
    *,
    team: Team,
    actor: User,
    idle_timeout_minutes: int,
) -> TeamNotebookSettings:
    """Change the team's default idle shutdown; audit it."""
    require_permission(team, actor, "notebooks.settings", error=NotebookPermissionError)
    row = team_notebook_settings_made(team.pk)
    row.idle_timeout_minutes = _clean_idle(idle_timeout_minutes) or 0
    row.save(update_fields=["idle_timeout_minutes"])
    audit_record(
        team=team,
        actor=actor,
        action="notebook.settings_changed",
        target=team.name,
        idle_timeout_minutes=row.idle_timeout_minutes,
    )
    return row
