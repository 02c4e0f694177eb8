"""Where a notebook's files are, and what a start must do to have them (issue 20, ARCHITECTURE
decision 11: storage follows its notebook).

The contract (BRIEF20.md); the "move" work fills it in:

- ``Notebook.volume_host``: the host whose volume holds the newest copy of /notebooks;
  ``Notebook.volume_saved``: that copy is exactly the newest READY snapshot.
- ``preferred_host(notebook)``: the host placement tries first (its volume host), or None.
- ``files_step(session)``: decided at dispatch, once the session is placed on
  ``session.host``: None (its files are there, or it has none yet), {"restore": plan} (the
  agent restores ``snapshot_restore_plan`` before the start), or WAIT (a snapshot of the
  volume host's copy must end first: the session waits, and ``snapshot_ended`` dispatches it
  again), or raises NotebookError with what a person can do (its files are only on a host
  that is offline and no snapshot exists).
- ``files_arrived(session)``: the session's workload started on its host: that host holds
  its files now (``volume_host``), not saved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.machines.models import Host
    from apps.notebooks.models import Notebook, NotebookSession, NotebookSnapshot

# files_step's answer when the session must wait for a snapshot to end.
WAIT = "wait"


def preferred_host(notebook: Notebook) -> Host | None:
    return notebook.volume_host


def files_step(session: NotebookSession) -> dict[str, Any] | str | None:
    raise NotImplementedError("files_step: not built yet")


def files_arrived(session: NotebookSession) -> None:
    raise NotImplementedError("files_arrived: not built yet")


def on_snapshot_ended(snapshot: NotebookSnapshot) -> None:
    raise NotImplementedError("on_snapshot_ended: not built yet")
