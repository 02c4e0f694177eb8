"""Live status, replicas, metrics and replica logs of one deployment:
``/ws/teams/<slug>/deployments/<id>/?after=<seq>&epoch=<E>``.

The hello, the backlog, gaps, restarts and live messages are
apps.teams.consumers.TeamStreamConsumer's, as for notebooks: status and replica
changes and the replicas' log frames are numbered and kept in the stream's buffer. Right
after the hello the viewer gets the charts' snapshot now (apps.deployments.live), so the
charts draw at once; later snapshots arrive every few seconds, unnumbered. Outsiders and
visitors are refused at the handshake; a member removed or lowered is cut off at once.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from apps.deployments import live
from apps.deployments.live import deployment_status
from apps.deployments.models import Deployment
from apps.teams.consumers import TeamStreamConsumer


class DeploymentStreamConsumer(TeamStreamConsumer):
    permission = "deployments.view"
    object_kwarg = "deployment_id"

    def stream_snapshot(self, object_id: int) -> tuple[str, dict[str, Any]] | None:
        deployment = Deployment.objects.filter(pk=object_id, deleted_at__isnull=True).first()
        if deployment is None:
            return None
        return deployment.stream, deployment_status(deployment)

    def _charts(self) -> dict[str, Any] | None:
        deployment = Deployment.objects.filter(pk=self.object_id).first()
        return live.snapshot(deployment) if deployment is not None else None

    async def after_hello(self) -> None:
        charts = await database_sync_to_async(self._charts)()
        if charts is not None:
            await self.send_json(charts)
