"""Fixtures and helpers for the deployment controller's tests (test_replicas, test_rollout,
test_scaling): deployments made as rows (the services are another module's), the gateway's
two functions the controller calls replaced by recorders, the per-replica in-flight gauge
written as the gateway's flush writes it (``in_flight_window``), and an agent whose starts
are held so a test can say what the host reports, and when.

``routing.routes_changed`` and ``metrics.in_flight`` are the gateway's (stubs until it is
merged): monkeypatched here, and the lead rewires nothing for that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.utils import timezone

from apps.deployments import controller, metrics, replicas, routing
from apps.deployments.models import (
    Deployment,
    DeploymentEvent,
    MetricWindow,
    Replica,
    Revision,
)
from apps.machines.models import MachineType

if TYPE_CHECKING:
    from apps.machines.models import Host


@dataclass
class Gateway:
    """What the controller told the gateway, and the in-flight counts it reads."""

    routes_changed: list[int] = field(default_factory=list)
    flights: dict[int, dict[int, int]] = field(default_factory=dict)

    def in_flight(self, deployment_id: int) -> dict[int, int]:
        return dict(self.flights.get(deployment_id, {}))


@pytest.fixture
def gateway_calls(monkeypatch: pytest.MonkeyPatch) -> Gateway:
    seen = Gateway()
    monkeypatch.setattr(routing, "routes_changed", seen.routes_changed.append)
    monkeypatch.setattr(metrics, "in_flight", seen.in_flight)
    return seen


@dataclass
class HeldAgent:
    """Starts sent to hosts, not run: the test speaks for the host (``say``)."""

    starts: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    def say(self, replica: Replica, event: str, **data: Any) -> None:
        assert replica.host is not None
        controller.on_replica_event(replica.host.name, replica.workload, event, data)

    def ready(self, replica: Replica, port: int = 40001) -> None:
        assert replica.host is not None
        self.say(replica, "started", state={"name": replica.workload, "port": port})
        self.say(
            replica, "ready", endpoint=f"http://{replica.host.workload_address}:{port}", state={}
        )


@pytest.fixture
def held_agent(monkeypatch: pytest.MonkeyPatch) -> HeldAgent:
    held = HeldAgent()

    class _Start:
        @staticmethod
        def apply_async(args: tuple[Any, ...], **_: Any) -> None:
            held.starts.append(args)

    monkeypatch.setattr(replicas, "agent_start", _Start)
    return held


def make_deployment(team: Any, actor: Any, name: str = "Churn", **spec: Any) -> Deployment:
    """A deployment and its first revision (a custom image on the fake runtime unless the
    spec says otherwise), as the services make them, reconciled once."""
    deployment = Deployment.objects.for_team(team).create(
        team=team, name=name, slug=name.lower(), created_by=actor
    )
    add_revision(deployment, reason="created", **spec)
    controller.deployment_reconcile(deployment)
    deployment.refresh_from_db()
    return deployment


def add_revision(deployment: Deployment, **spec: Any) -> Revision:
    fields: dict[str, Any] = {
        "serving": Revision.Serving.CUSTOM,
        "image": "fake/server:1",
        "port": 8080,
        "health_path": "/health",
        "machine_type": MachineType.objects.get(slug="cpu-small"),
        "min_replicas": 1,
        "max_replicas": 1,
        "startup_timeout": 30,
    }
    fields.update(spec)
    last = Revision.objects.for_team(deployment.team_id).filter(deployment=deployment).count()
    return Revision.objects.for_team(deployment.team_id).create(
        team_id=deployment.team_id, deployment=deployment, number=last + 1, **fields
    )


def in_flight_window(revision: Revision, replicas: dict[int, int], process: str = "web-1") -> None:
    """What a web process's gateway flushed a second ago for ``revision``: ``replicas``
    (replica id -> requests in flight to it). The controller's drain reads these through
    the real apps.deployments.metrics.in_flight_replicas."""
    second = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
    MetricWindow.objects.for_team(revision.team_id).update_or_create(
        revision=revision,
        second=second,
        process=process,
        defaults={
            "team_id": revision.team_id,
            "deployment_id": revision.deployment_id,
            "in_flight": sum(replicas.values()),
            "in_flight_replicas": {str(k): n for k, n in replicas.items() if n},
        },
    )


def reconcile(deployment: Deployment) -> Deployment:
    controller.deployment_reconcile(deployment)
    deployment.refresh_from_db()
    return deployment


def replicas_of(
    deployment: Deployment, *statuses: str, revision: Revision | None = None
) -> list[Replica]:
    found = Replica.objects.for_team(deployment.team_id).filter(deployment=deployment)
    if statuses:
        found = found.filter(status__in=statuses)
    if revision is not None:
        found = found.filter(revision=revision)
    return list(found.select_related("host", "revision").order_by("pk"))


def traffic(deployment: Deployment) -> dict[int, int]:
    deployment.refresh_from_db()
    return {int(k): v for k, v in deployment.traffic.items()}


def kinds(deployment: Deployment) -> list[str]:
    events = DeploymentEvent.objects.for_team(deployment.team_id).filter(deployment=deployment)
    return list(events.order_by("pk").values_list("kind", flat=True))


def on_host(host: Host) -> str:
    return str(host.workload_address)
