"""Reads about notebooks that several places share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Case, Count, Q, When
from django.urls import reverse

from apps.notebooks.models import Notebook, NotebookSession, Status, TeamNotebookSettings
from apps.teams.hooks import Overview, OverviewItem

if TYPE_CHECKING:
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


def overview_notebooks(team: Team, *, limit: int) -> Overview:
    """The team's notebooks for its overview page (apps.teams.hooks.overview_notebooks): the
    first ``limit`` that are not deleted, running ones first, then the most recently changed,
    and the counts of all of them (one query each, whatever the team holds)."""
    notebooks = Notebook.objects.for_team(team).filter(deleted_at__isnull=True)
    counts = notebooks.aggregate(
        total=Count("pk"), running=Count("pk", filter=Q(status=Status.RUNNING))
    )
    first = notebooks.order_by(
        Case(When(status=Status.RUNNING, then=0), default=1),
        "-updated_at",
    )[:limit]
    items = [
        OverviewItem(
            name=nb.name,
            url=reverse("notebooks:detail", args=[team.slug, nb.pk]),
            status=nb.status,
            status_label=nb.get_status_display(),
        )
        for nb in first
    ]
    return Overview(items=items, total=counts["total"], running=counts["running"])
