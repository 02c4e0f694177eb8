"""The row locks every write to a notebook takes, in one order: the notebook's row first,
then its session's.

A person's stop, an agent's event and the reconciler may change the same session at once:
with one order they never deadlock. Locks are FOR NO KEY UPDATE, so the inserts that point at
these rows (events, mounts) never wait on them. ``notebook_to_change`` is the guard in front of
what people do to a notebook: their role first, then the lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Subquery

from apps.notebooks.errors import NotebookError, NotebookPermissionError
from apps.notebooks.models import Notebook, NotebookSession
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


def notebook_locked(team: Team, notebook: Notebook) -> Notebook:
    """The notebook's row, locked: every write to a notebook (or its session, or its
    mounts) takes it first. A deleted notebook is refused as if it were gone."""
    locked = (
        Notebook.objects.for_team(team)
        .select_for_update(no_key=True)
        .filter(pk=notebook.pk)
        .first()
    )
    if locked is None or locked.deleted_at is not None:
        raise NotebookError("This notebook no longer exists.")
    return locked


def notebook_to_change(team: Team, actor: User, notebook: Notebook) -> Notebook:
    """The notebook's row, locked, once ``actor`` may manage the team's notebooks
    (NotebookPermissionError, a 403, if not)."""
    require_permission(team, actor, "notebooks.manage", error=NotebookPermissionError)
    return notebook_locked(team, notebook)


def lock_session(session_id: int, *related: str) -> NotebookSession | None:
    """The session, locked after its notebook's row (inside a transaction and a team
    scope), with its notebook and ``related`` read along; None once it is gone."""
    # The notebook's row found from the session and locked in one statement.
    of_session = NotebookSession.objects.filter(pk=session_id).values("notebook_id")[:1]
    notebook_id = (
        Notebook.objects.select_for_update(no_key=True)
        .filter(pk=Subquery(of_session))
        .values_list("pk", flat=True)
        .first()
    )
    if notebook_id is None:
        return None
    return (
        NotebookSession.objects.select_for_update(no_key=True, of=("self",))
        .select_related("notebook", *related)
        .filter(pk=session_id)
        .first()
    )
