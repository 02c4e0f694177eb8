"""``lattice deployments invoke NAME --data JSON`` against a live server: a deployment of a
model version on the built-in model server's image on real Docker, made with the
deployments' service as the API makes one, rolled out by the embedded worker's controller
and agent; once it is ready, the command's call goes through the server's gateway
(``/api/v1/teams/acme/deployments/<slug>/invoke/predict``, alice's token) to the replica,
and the replica's answer is printed, exit 0."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from apps.core.tenancy import team_scope
from tests.model_fixtures import make_model_version

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team
    from tests.client.conftest import Lattice

pytestmark = pytest.mark.docker

DOUBLER = b"""
def setup():
    pass

def predict(x=1):
    return {"doubled": 2 * x}
"""
READY_SECONDS = 180


@pytest.fixture
def model_server(settings: Any, model_server_image: str, docker_host: Any) -> str:
    settings.LATTICE_MODEL_SERVER_IMAGE = model_server_image
    return model_server_image


def said(deployment: Any) -> str:
    from apps.deployments.models import DeploymentEvent, Replica

    with team_scope(deployment.team_id):
        deployment.refresh_from_db()
        replicas = [
            f"{r.workload} {r.status}: {r.status_message}"
            for r in Replica.objects.filter(deployment=deployment)
        ]
        events = [
            f"{e.kind}: {e.message}"
            for e in DeploymentEvent.objects.filter(deployment=deployment).order_by("pk")
        ]
    return f"{deployment.status} {deployment.status_message!r}; {replicas}; {events}"


@pytest.mark.usefixtures("model_server")
def test_invoke_prints_the_replicas_answer(
    lattice: Lattice, acme: Team, alice: User, catalogue: dict[str, Any]
) -> None:
    from apps.deployments.models import Deployment
    from apps.deployments.services import RevisionSpec, deployment_create

    version = make_model_version(acme, alice, "Doubler", {"predict.py": DOUBLER})
    with team_scope(acme):
        deployment = deployment_create(
            team=acme,
            actor=alice,
            name="Doubler",
            auth_mode="protected",
            spec=RevisionSpec(
                machine_type=catalogue["cpu-small"],
                model_version=version,
                startup_timeout=120,
                scale_to_zero_after=None,
            ),
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        with team_scope(acme):
            deployment.refresh_from_db()
        if deployment.status in (Deployment.Status.READY, Deployment.Status.FAILED):
            break
        time.sleep(0.5)
    assert deployment.status == Deployment.Status.READY, said(deployment)

    ran = lattice("deployments", "invoke", "doubler", "--path", "predict", "--data", '{"x": 21}')

    assert ran.code == 0, ran
    assert json.loads(ran.out) == {"output": {"doubled": 42}}, ran
