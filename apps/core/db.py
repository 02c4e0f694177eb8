"""Database connections of long-lived work, given back between its reads.

PostgreSQL connections come from a pool per process (config/settings/base.py): one that a
thread keeps while it waits (a streamed response between two polls, a thread that lives as
long as a workload) is one fewer for every other request of the process, any team's.
Django gives a request's connection back only when its response ends, and a Celery task's
when the task ends; work that outlives those gives it back itself, with this.
"""

from __future__ import annotations

from django.db import connections


def release_connections() -> None:
    """Give this thread's open database connections back (to the pool, or closed without
    one), except one inside a transaction (``atomic``): that one is its owner's to end."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
