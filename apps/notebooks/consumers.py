"""Live status and logs of one notebook: ``/ws/teams/<slug>/notebooks/<id>/?after=<seq>``.

The hello, the backlog after ``after`` (and ``epoch``), gaps, restarts and live
messages are apps.teams.consumers.TeamStreamConsumer's. Outsiders and visitors are
refused at the handshake. A member removed from the team, or lowered to a role
without ``notebooks.view``, is cut off at once: the teams app signals the
change and TeamConsumer closes the socket (ARCHITECTURE decision 12).
"""

from __future__ import annotations

from typing import Any

from apps.notebooks.lifecycle import status_message
from apps.notebooks.models import Notebook
from apps.notebooks.selectors import open_session
from apps.teams.consumers import TeamStreamConsumer


class NotebookStreamConsumer(TeamStreamConsumer):
    permission = "notebooks.view"
    object_kwarg = "notebook_id"

    def stream_snapshot(self, object_id: int) -> tuple[str, dict[str, Any]] | None:
        notebook = Notebook.objects.filter(pk=object_id, deleted_at__isnull=True).first()
        if notebook is None:
            return None
        return notebook.stream, status_message(notebook, open_session(notebook))
