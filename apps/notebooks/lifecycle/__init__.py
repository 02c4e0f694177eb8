"""A notebook session's way from queued to running to ended.

The steps, each idempotent and each a small transaction:

1. ``notebook_start`` opens a session; ``session_place`` asks the machine queue for room:
   placed -> scheduled, and the host's agent is asked to start the workload
   (``session_dispatch``, with the spec ``session_spec`` builds); otherwise it stays queued,
   with its position (start.py, spec.py).
2. The agent reports events (``on_workload_event``, registered as the workload kind "nb" in
   apps.notebooks.apps): pulling (percent), started (the container is up: billing starts),
   waiting for Jupyter, ready (Jupyter answered /api/status with the session's token),
   failed, stopped (events.py).
3. ``session_stop`` and ``session_end`` close the session once, with a reason and a time,
   free its placement, and act on what the notebook wants next (a restart starts a new
   session; a deleted notebook's storage is removed) (ending.py, storage.py).

Each status change is saved as a NotebookEvent and published to the notebook's live stream
after the transaction commits (status.py). apps.notebooks.upkeep (beat) repairs what a lost
task or a dead worker left half done, and stops notebooks nobody uses.

The modules import one another one way: status < spec < start < storage < ending < events.
Below the package are the models, errors, selectors, locks, entitlements, templates and
mounts; above it, importing it and never imported by it, are the services, upkeep, tasks,
pages, API and consumers (pyproject.toml's "notebooks-acyclic" contract checks it, imports
inside functions included). Two things live here rather than above for that reason:
``notebook_start``, which the end of a session calls for a restart, and the Celery task that
places a session, which a start, an end and the reconciler all queue (start.py says more).
"""

from __future__ import annotations

from apps.notebooks.lifecycle.ending import session_end, session_stop, stop_on_host
from apps.notebooks.lifecycle.events import on_workload_event, workload_stream
from apps.notebooks.lifecycle.spec import session_spec
from apps.notebooks.lifecycle.start import (
    no_host_message,
    notebook_start,
    on_commit_place,
    on_workload_placed,
    session_dispatch,
    session_place,
    session_place_task,
)
from apps.notebooks.lifecycle.status import (
    idle_capped,
    idle_timeout,
    publish_status,
    status_message,
)
from apps.notebooks.lifecycle.storage import on_commit_copy_storage, on_commit_remove_storage

__all__ = [
    "idle_capped",
    "idle_timeout",
    "no_host_message",
    "notebook_start",
    "on_commit_copy_storage",
    "on_commit_place",
    "on_commit_remove_storage",
    "on_workload_event",
    "on_workload_placed",
    "publish_status",
    "session_dispatch",
    "session_end",
    "session_place",
    "session_place_task",
    "session_spec",
    "session_stop",
    "status_message",
    "stop_on_host",
    "workload_stream",
]
