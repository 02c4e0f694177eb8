"""Snapshots of a notebook's /notebooks files in the team's blob store (issue 20, ARCHITECTURE
decision 11): taken by the host that holds the volume, restored by the host a start lands on.

The contract (BRIEF20.md); the "snapserver" work fills it in:

- ``snapshot_take(notebook=, reason=, session=, actor=)``: asks ``notebook.volume_host``'s agent
  (``agent.snapshot``, on commit) to read the volume and save it through a save ticket of
  target "files" (apps.models.services.saves): incremental over the blob store. Returns the
  snapshot being taken (a new SAVING row, or the one already SAVING), or None when there is
  nothing to read (no volume host, or it is offline).
- ``snapshot_latest(notebook)``: the newest READY snapshot, or None.
- ``snapshot_restore_plan(snapshot, volume=, lifetime=)``: what ``agent.start`` gets as its
  ``restore`` option: {"snapshot": id, "volume": name, "total": bytes, "files": [{"path",
  "size", "sha256", "mode", "url"}]}, each url a per-object read link
  (apps.datasets.blob_urls) that lives ``lifetime``.
- ``snapshot_ended``: a Hook told (on commit) when a snapshot ends, READY or FAILED
  (apps.notebooks.volumes registers what moves on: a start waiting for it).
- ``snapshot_copy(team=, actor=, snapshot=, name=)``: a new notebook whose files are that
  snapshot's (its first start restores them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook
from apps.notebooks.models import NotebookSnapshot

if TYPE_CHECKING:
    from datetime import timedelta
    from typing import Any

    from apps.accounts.models import User
    from apps.notebooks.models import Notebook, NotebookSession
    from apps.teams.models import Team


def _nothing_waits(snapshot: NotebookSnapshot) -> None:
    return None


snapshot_ended: Hook[[NotebookSnapshot], None] = Hook("snapshot ended", default=_nothing_waits)


def snapshot_take(
    *,
    notebook: Notebook,
    reason: str,
    session: NotebookSession | None = None,
    actor: User | None = None,
) -> NotebookSnapshot | None:
    raise NotImplementedError("snapshot_take: not built yet")


def snapshot_latest(notebook: Notebook) -> NotebookSnapshot | None:
    return (
        NotebookSnapshot.objects.for_team(notebook.team_id)
        .filter(notebook=notebook, state=NotebookSnapshot.State.READY)
        .order_by("-created_at", "-pk")
        .first()
    )


def snapshot_restore_plan(
    snapshot: NotebookSnapshot, *, volume: str, lifetime: timedelta
) -> dict[str, Any]:
    raise NotImplementedError("snapshot_restore_plan: not built yet")


def snapshot_copy(*, team: Team, actor: User, snapshot: NotebookSnapshot, name: str) -> Notebook:
    raise NotImplementedError("snapshot_copy: not built yet")
