"""A deployment as the pages show it, for the page and browser tests: a ready model
version made through the real upload path, then the deployment's rows as the services and
the controller leave them (two revisions, r2 serving, its replicas in several states).
Not a fixture module: import ``make_deployment`` and ``series_of``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.deployments.models import Deployment, DeploymentEvent, Replica, Revision
from tests.model_fixtures import make_model_version

if TYPE_CHECKING:
    from apps.machines.models import MachineType
    from apps.teams.models import Team

PREDICT = b"def setup():\n    pass\n\n\ndef predict(x=0):\n    return x * 2\n"


def make_deployment(
    team: Team, actor: Any, machine_type: MachineType, *, name: str = "Churn API"
) -> Deployment:
    with team_scope(team):
        version = make_model_version(team, actor, "Churn", {"predict.py": PREDICT})
        deployment = Deployment.objects.create(
            team=team,
            name=name,
            slug=name.lower().replace(" ", "-"),
            auth_mode=Deployment.Auth.PROTECTED,
            status=Deployment.Status.READY,
            status_message="Serving r2 on 2 replicas.",
            created_by=actor,
        )
        spec = {
            "team": team,
            "deployment": deployment,
            "model_version": version,
            "machine_type": machine_type,
            "min_replicas": 1,
            "max_replicas": 3,
            "created_by": actor,
        }
        r1 = Revision.objects.create(
            number=1,
            reason="created",
            status=Revision.Status.RETIRED,
            retired_at=timezone.now(),
            **spec,
        )
        r2 = Revision.objects.create(
            number=2,
            reason="changed",
            status=Revision.Status.SERVING,
            status_message="2 of 2 replicas ready",
            ready_at=timezone.now(),
            **spec,
        )
        Revision.objects.create(
            number=3,
            reason="more memory",
            status=Revision.Status.FAILED,
            status_message="SETUP_FAILED: ModuleNotFoundError: No module named 'torch'",
            **spec,
        )
        deployment.traffic = {str(r2.pk): 100}
        deployment.save(update_fields=["traffic"])
        now = timezone.now()
        for status in (Replica.Status.READY, Replica.Status.LOADING):
            Replica.objects.create(
                team=team,
                deployment=deployment,
                revision=r2,
                machine_type=machine_type,
                status=status,
                started_at=now - timedelta(minutes=5),
                ready_at=now - timedelta(minutes=4) if status == Replica.Status.READY else None,
            )
        Replica.objects.create(
            team=team,
            deployment=deployment,
            revision=r1,
            machine_type=machine_type,
            status=Replica.Status.STOPPED,
            exit_reason="stopped",
            started_at=now - timedelta(hours=1),
            ready_at=now - timedelta(hours=1),
            ended_at=now - timedelta(minutes=4),
        )
        DeploymentEvent.objects.create(
            team=team, deployment=deployment, revision=r2, kind="ready", message="r2 is ready."
        )
    return deployment


def series_of(deployment: Deployment, *, since_steps_ago: int | None = 6) -> dict[str, Any]:
    """What apps.deployments.metrics.series answers (the gateway's; its shape as on
    wt/gateway): 5 s steps over 60 s, the gateway counting since ``since_steps_ago`` steps
    (None: never), requests on the serving revision."""
    revision = Revision.objects.for_team(deployment.team_id).get(deployment=deployment, number=2)
    step = 5
    now = int(timezone.now().timestamp())
    end = now - now % step
    times = list(range(end - 60, end + 1, step))
    since = None if since_steps_ago is None else end - since_steps_ago * step
    points = []
    for i, t in enumerate(times):
        counted = since is not None and t >= since
        points.append(
            {
                "t": t,
                "rps": {str(revision.pk): 3.0 + i % 3} if counted else {},
                "requests": (15 + 5 * (i % 3)) if counted else 0,
                "status": {"2xx": 14, "3xx": 0, "4xx": 1, "5xx": i % 2}
                if counted
                else {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
                "p50": 12.0 if counted else None,
                "p95": 40.0 if counted else None,
                "p99": 95.0 if counted else None,
                "in_flight": 2 if counted else 0,
            }
        )
    return {
        "step": step,
        "seconds": 60,
        "revisions": [revision.pk],
        "revision_numbers": {str(revision.pk): revision.number},
        "buckets_ms": [5, 10, 25, 50, 100, 250, 500, 1000],
        "since": None if since is None else datetime.fromtimestamp(since, tz=UTC).isoformat(),
        "points": points,
    }
