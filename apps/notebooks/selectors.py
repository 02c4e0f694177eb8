"""Reads about notebooks that several places share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Case, Count, Q, When
from django.urls import reverse

from apps.notebooks.entitlements import session_costs
from apps.notebooks.models import (
    Notebook,
    NotebookSession,
    NotebookSnapshot,
    Status,
    TeamNotebookSettings,
)
from apps.teams.hooks import Overview, OverviewItem, Running

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from decimal import Decimal

    from django.db.models import QuerySet

    from apps.teams.models import Team


def open_session_ids(**filters: Any) -> list[tuple[int, int]]:
    """(pk, team id) of every team's sessions not ended that match ``filters``, oldest
    first: for background work that spans tenants and handles each in its own scope."""
    return list(
        NotebookSession.objects.unscoped()
        .filter(ended_at__isnull=True, **filters)
        .order_by("pk")
        .values_list("pk", "team_id"),
    )


def open_session(notebook: Notebook) -> NotebookSession | None:
    """The notebook's session that has not ended (queued, starting, running or stopping)."""
    return (
        NotebookSession.objects.for_team(notebook.team_id)
        .filter(notebook=notebook, ended_at__isnull=True)
        .first()
    )


def team_notebook_settings(team: Team | int) -> TeamNotebookSettings:
    """The team's notebook settings (its default idle shutdown, its ``/storage`` volume): the
    one way they are read. A team that has none yet gets the installation's defaults, unsaved
    (a read writes nothing; ``lifecycle.spec.team_notebook_settings_made`` makes the row)."""
    team_id = team if isinstance(team, int) else team.pk
    row = TeamNotebookSettings.objects.for_team(team_id).filter(team_id=team_id).first()
    return row or TeamNotebookSettings(
        team_id=team_id, idle_timeout_minutes=settings.LATTICE_DEFAULT_IDLE_MINUTES
    )


def volume_host_id(team: Team | int, notebook_id: int) -> int | None:
    """The host holding notebook ``notebook_id``'s volume (its files): its ``volume_host``
    (apps.notebooks.volumes), or, for one that last ran before that was kept, where its
    latest session ran; None if it never ran anywhere."""
    held = (
        Notebook.objects.for_team(team)
        .filter(pk=notebook_id)
        .values_list("volume_host_id", flat=True)
        .first()
    )
    if held is not None:
        return held
    return (
        NotebookSession.objects.for_team(team)
        .filter(notebook_id=notebook_id, host__isnull=False)
        .order_by("-pk")
        .values_list("host_id", flat=True)
        .first()
    )


def open_session_count(team: Team) -> int:
    """How many of the team's sessions have not ended: each holds (or waits for) a machine."""
    return NotebookSession.objects.for_team(team).filter(ended_at__isnull=True).count()


def open_sessions(team: Team, notebooks: Iterable[Notebook]) -> dict[int, NotebookSession]:
    """The open session of each of ``notebooks`` that has one, by notebook id: one query
    however many are listed (with what pricing them reads)."""
    sessions = NotebookSession.objects.for_team(team).filter(
        notebook__in=[nb.pk for nb in notebooks], ended_at__isnull=True
    )
    return {
        s.notebook_id: s for s in sessions.select_related("notebook", "machine_type", "started_by")
    }


def running_costs(sessions: Iterable[NotebookSession]) -> dict[int, Decimal] | None:
    """What each running session has cost so far, by session id (the billing hook,
    apps.notebooks.entitlements.session_costs); None where nothing is charged."""
    running = [s for s in sessions if s.status == Status.RUNNING and s.started_at is not None]
    return session_costs(running)


def overview_notebooks(team: Team, *, limit: int) -> Overview:
    """The team's notebooks for its overview page (apps.teams.hooks.overview_notebooks): the
    first ``limit`` that are not deleted, running ones first, then the most recently changed,
    with the running ones' uptime and cost so far, and the counts of all of them (a few
    queries, whatever the team holds)."""
    notebooks = Notebook.objects.for_team(team).filter(deleted_at__isnull=True)
    counts = notebooks.aggregate(
        total=Count("pk"), running=Count("pk", filter=Q(status=Status.RUNNING))
    )
    first = list(
        notebooks.order_by(
            Case(When(status=Status.RUNNING, then=0), default=1),
            "-updated_at",
        )[:limit]
    )
    running = [nb for nb in first if nb.status == Status.RUNNING]
    sessions = open_sessions(team, running) if running else {}
    costs = running_costs(sessions.values()) if sessions else None
    items = []
    for nb in first:
        session = sessions.get(nb.pk)
        started = session.started_at if session and session.status == Status.RUNNING else None
        items.append(
            OverviewItem(
                name=nb.name,
                url=reverse("notebooks:detail", args=[team.slug, nb.pk]),
                status=nb.status,
                status_label=nb.get_status_display(),
                started_at=started,
                cost=costs.get(session.pk) if costs is not None and session else None,
            )
        )
    return Overview(
        items=items,
        total=counts["total"],
        running=counts["running"],
        costed=costs is not None,
    )


def running_notebooks(teams: Sequence[Team], *, limit: int) -> Running:
    """The notebooks running in ``teams`` (apps.teams.hooks.running_notebooks): the first
    ``limit`` of each team, most recently changed first, with uptime and cost so far, and
    how many run in each. One query for the sessions and one read of their prices, however
    many teams."""
    if not teams:
        return Running(items={}, counts={})
    slugs = {team.pk: team.slug for team in teams}
    # Across teams by design: the caller passes the teams the person is a member of.
    sessions = (
        NotebookSession.objects.unscoped()
        .filter(
            team_id__in=list(slugs),
            ended_at__isnull=True,
            status=Status.RUNNING,
            started_at__isnull=False,
            notebook__deleted_at__isnull=True,
        )
        .select_related("notebook", "machine_type", "started_by")
        .order_by("-notebook__updated_at", "pk")
    )
    counts: dict[int, int] = {}
    listed: list[NotebookSession] = []
    for session in sessions:
        counts[session.team_id] = counts.get(session.team_id, 0) + 1
        if counts[session.team_id] <= limit:
            listed.append(session)
    costs = running_costs(listed)
    items: dict[int, list[OverviewItem]] = {}
    for session in listed:
        nb = session.notebook
        items.setdefault(session.team_id, []).append(
            OverviewItem(
                name=nb.name,
                url=reverse("notebooks:detail", args=[slugs[session.team_id], nb.pk]),
                status=nb.status,
                status_label=nb.get_status_display(),
                started_at=session.started_at,
                cost=costs.get(session.pk) if costs is not None else None,
            )
        )
    return Running(items=items, counts=counts, costed=costs is not None)


def notebook_snapshots(notebook: Notebook) -> QuerySet[NotebookSnapshot]:
    """The notebook's kept snapshots, newest first (its snapshots page and API)."""
    return (
        NotebookSnapshot.objects.for_team(notebook.team_id)
        .filter(notebook=notebook)
        .order_by("-created_at", "-pk")
    )


def notebook_snapshot(notebook: Notebook, snapshot_id: object) -> NotebookSnapshot | None:
    """One of the notebook's snapshots by its id (None for another notebook's, or none)."""
    if not isinstance(snapshot_id, int):
        return None
    return notebook_snapshots(notebook).filter(pk=snapshot_id).first()


def files_last_saved(notebook: Notebook) -> NotebookSnapshot | None:
    """The newest READY snapshot: when the notebook's files were last saved."""
    return notebook_snapshots(notebook).filter(state=NotebookSnapshot.State.READY).first()
