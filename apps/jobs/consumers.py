"""Live status and logs of one run: ``/ws/teams/<slug>/jobs/runs/<id>/?after=<seq>``.

The hello (with the run's status now), the backlog after ``after`` (and ``epoch``), gaps,
restarts and live messages are apps.teams.consumers.TeamStreamConsumer's, as for notebooks
and deployments: the engine publishes the run's status changes and its attempts' log frames
on the run's stream (``job-run-<id>``). Outsiders and visitors are refused at the
handshake; a member removed or lowered is cut off at once.
"""

from __future__ import annotations

from typing import Any

from apps.jobs.models import Run
from apps.jobs.selectors import run_status
from apps.teams.consumers import TeamStreamConsumer


class RunStreamConsumer(TeamStreamConsumer):
    permission = "notebooks.view"
    object_kwarg = "run_id"

    def stream_snapshot(self, object_id: int) -> tuple[str, dict[str, Any]] | None:
        # In the team's scope (the base class enters it): another team's run is not found.
        run = Run.objects.filter(pk=object_id, job__deleted_at__isnull=True).first()
        if run is None:
            return None
        return run.stream, run_status(run)
