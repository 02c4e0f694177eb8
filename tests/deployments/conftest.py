"""Fixtures of the deployments' tests: a team's ready model version, a host that offers
every machine type, and the controller's and gateway's entry points recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import cache

from apps.deployments import controller, routing
from apps.deployments.services import RevisionSpec, deployment_create
from tests.model_fixtures import make_model_version
from tests.notebook_fixtures import host_for_every_type

if TYPE_CHECKING:
    from apps.deployments.models import Deployment
    from apps.models.models import ModelVersion


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """The reconciles the services queued, recorded instead of run: a real pass would place
    replicas and send their starts to the host's agent (Celery runs tasks eagerly in tests),
    and these tests' host is a row with no agent behind it. Everything else the services
    call is the real thing (``controller.deployment_stop_all``, ``routing.routes_changed``:
    see ``route_generation``); the controller's own tests run the reconcile."""
    seen: dict[str, list[Any]] = {"reconcile": []}
    monkeypatch.setattr(controller, "deployment_reconcile_soon", seen["reconcile"].append)
    return seen


def route_generation(deployment_id: int) -> Any:
    """The deployment's route generation in the cache: a new one says the gateway's cached
    routes of it are stale (``routing.routes_changed`` sets it on commit)."""
    return cache.get(routing.deployment_generation(deployment_id))


@pytest.fixture
def everywhere(catalogue: dict[str, Any]) -> Any:
    """A ready host that could run every machine type of the catalogue."""
    return host_for_every_type()


@pytest.fixture
def iris(acme: Any, alice: Any, media: Any) -> ModelVersion:
    """Version 1 of acme's model "Iris"."""
    return make_model_version(acme, alice, "Iris", {"predict.py": b"def predict(x): return x\n"})


@pytest.fixture
def deployment(
    acme: Any, alice: Any, iris: ModelVersion, everywhere: Any, calls: Any
) -> Deployment:
    """acme's "Iris API", serving iris v1 on cpu-small, protected."""
    return deployment_create(
        team=acme,
        actor=alice,
        name="Iris API",
        auth_mode="protected",
        spec=RevisionSpec(machine_type=everywhere_type("cpu-small"), model_version=iris),
    )


def everywhere_type(slug: str) -> Any:
    from apps.machines.models import MachineType

    return MachineType.objects.get(slug=slug)
