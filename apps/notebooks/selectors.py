"""Reads about notebooks that several places share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Case, Count, Q, When
from django.urls import reverse

from apps.notebooks.entitlements import session_costs
from apps.notebooks.models import Notebook, NotebookSession, Status, TeamNotebookSettings
from apps.teams.hooks import Overview, OverviewItem

if TYPE_CHECKING:
    from collections.abc import Iterable
    from decimal import Decimal

    from apps.teams.models import Team


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


def running_costs(team: Team, sessions: Iterable[NotebookSession]) -> dict[int, Decimal] | None:
    """What each running session has cost so far, by session id (the billing hook,
    apps.notebooks.entitlements.session_costs); None where nothing is charged."""
    running = [s for s in sessions if s.status == Status.RUNNING and s.started_at is not None]
    return session_costs(team, running)


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
    costs = running_costs(team, sessions.values()) if sessions else None
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
