"""The deployment page's live charts: a metrics snapshot pushed to each active deployment's
stream every ``PUSH_EVERY`` seconds (beat runs ``deployments.publish_metrics``), and sent
to a viewer as it connects (apps.deployments.consumers).

A snapshot is ``{"type": "metrics", ...}``: the deployment's status now; the gateway's
per-step series (apps.deployments.metrics.series) with what was never measured as null
(steps before the gateway first counted anything); the ready replicas at each step (from
the replicas' own ready and end times); when the last request came (null: none yet). It
goes out with
``stream_broadcast``: unnumbered and not kept, since the next one replaces it, so the
stream's backlog keeps its status and log lines.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from apps.core.stream import stream_broadcast
from apps.core.tenancy import team_scope
from apps.deployments import metrics
from apps.deployments.models import ACTIVE_REPLICA_STATUSES, Deployment, Replica

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger(__name__)

# The charts' span and resolution (seconds), and how often a snapshot goes out.
SECONDS = 900
STEP = 5
PUSH_EVERY = 2.0
# A step from before the gateway first counted anything.
_UNKNOWN: dict[str, Any] = {
    "rps": {},
    "status": None,
    "requests": None,
    "p50": None,
    "p95": None,
    "p99": None,
    "in_flight": None,
}


def deployment_status(deployment: Deployment) -> dict[str, Any]:
    """The deployment's own status, in words (the hello's, and each snapshot's: the
    controller's events say what happened, this what holds now)."""
    return {
        "status": deployment.status,
        "label": deployment.get_status_display(),
        "message": deployment.status_message,
        "paused_reason": deployment.paused_reason,
        "traffic": deployment.traffic or {},
    }


def _ready_counts(deployment: Deployment, times: list[int], step: int) -> list[int]:
    """How many replicas were ready at the end of each step starting at ``times``."""
    if not times:
        return []
    start = datetime.fromtimestamp(times[0], tz=UTC)
    spans = list(
        Replica.objects.for_team(deployment.team_id)
        .filter(deployment=deployment, ready_at__isnull=False)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start))
        .values_list("ready_at", "ended_at")
    )
    counts = []
    for t in times:
        at = datetime.fromtimestamp(t + step, tz=UTC)
        counts.append(
            sum(1 for ready, ended in spans if ready <= at and (ended is None or ended > at))
        )
    return counts


def snapshot(deployment: Deployment) -> dict[str, Any]:
    """The charts' data now (see the module's docstring)."""
    series = metrics.series(deployment, seconds=SECONDS, step=STEP)
    step = int(series.get("step") or STEP)
    since = series.get("since")
    counted_from = datetime.fromisoformat(since).timestamp() if since else None
    points = [
        point
        if counted_from is not None and point["t"] + step > counted_from
        # The gateway had counted nothing yet: unknown, not zero.
        else {"t": point["t"], **_UNKNOWN}
        for point in series.get("points", [])
    ]
    times = [p["t"] for p in points]
    last = deployment.last_request_at
    return {
        "type": "metrics",
        "status": deployment_status(deployment),
        "step": step,
        "revisions": series.get("revisions", []),
        # Revision id -> its number, for the legend's "r<number>".
        "revision_numbers": series.get("revision_numbers", {}),
        "since": since,
        "points": points,
        "replicas": _ready_counts(deployment, times, step),
        "last_request_at": last.isoformat() if last else None,
    }


def active_deployments() -> Iterable[Deployment]:
    """Deployments whose charts move: a replica up (or on its way), or a request within the
    charts' span. Over every team, read-only, for the beat task below."""
    recent = timezone.now() - timedelta(seconds=SECONDS)
    busy = (
        Replica.objects.unscoped()
        .filter(status__in=ACTIVE_REPLICA_STATUSES)
        .values("deployment_id")
    )
    return (
        Deployment.objects.unscoped()
        .filter(deleted_at__isnull=True)
        .filter(Q(pk__in=busy) | Q(last_request_at__gte=recent))
        .select_related("team")
    )


def publish_metrics() -> int:
    """Push a snapshot to each active deployment's viewers; how many went out."""
    sent = 0
    for deployment in active_deployments():
        try:
            with team_scope(deployment.team):
                stream_broadcast(deployment.stream, snapshot(deployment))
        except Exception:
            # One deployment's failing read must not leave every other page's charts still.
            logger.exception("No metrics snapshot for deployment %s", deployment.pk)
            continue
        sent += 1
    return sent


@shared_task(
    name="deployments.publish_metrics", soft_time_limit=10, time_limit=15, ignore_result=True
)
def publish_metrics_task() -> int:
    """Beat, every PUSH_EVERY seconds: the charts' snapshots (a late one is simply replaced)."""
    return publish_metrics()
