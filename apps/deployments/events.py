"""What happened to a deployment, kept and told: ``deployment_event`` saves a
DeploymentEvent row (the history its page lists) and publishes it to the deployment's live
stream once the transaction commits; ``replica_published`` tells the viewers a replica's
new status (``{"type": "replica", ...}``) the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from apps.core.stream import stream_publish
from apps.deployments.models import DeploymentEvent

if TYPE_CHECKING:
    from apps.deployments.models import Deployment, Replica, Revision


def _publish(stream: str, body: dict[str, Any]) -> None:
    transaction.on_commit(lambda: stream_publish(stream, body))


def deployment_event(
    deployment: Deployment,
    kind: str,
    message: str,
    *,
    revision: Revision | None = None,
    replica: Replica | None = None,
) -> DeploymentEvent:
    """Keep what happened (``kind``: "rolled_out", "replica_lost", "scaled_up", ...) in
    words, and tell the deployment's viewers once the transaction commits."""
    event = DeploymentEvent.objects.for_team(deployment.team_id).create(
        team_id=deployment.team_id,
        deployment=deployment,
        revision=revision,
        replica=replica,
        kind=kind,
        message=message[:1000],
    )
    _publish(
        deployment.stream,
        {
            "type": "event",
            "deployment": deployment.pk,
            "kind": kind,
            "message": event.message,
            "revision": revision.number if revision is not None else None,
            "replica": replica.pk if replica is not None else None,
            "at": event.created_at.isoformat(),
        },
    )
    return event


def replica_published(replica: Replica) -> None:
    """Tell the deployment's viewers the replica's status, once the transaction commits."""
    _publish(
        f"deployment-{replica.deployment_id}",
        {
            "type": "replica",
            "deployment": replica.deployment_id,
            "replica": replica.pk,
            "revision": replica.revision_id,
            "status": replica.status,
            "message": replica.status_message,
            "host": replica.host.name if replica.host is not None else None,
            "ended_at": replica.ended_at.isoformat() if replica.ended_at else None,
            "at": timezone.now().isoformat(),
        },
    )
