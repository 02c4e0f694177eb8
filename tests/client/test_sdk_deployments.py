"""The SDK's deployments against a live server: deploy a model version, its status by slug
or name, a change rolled back, invoke through the gateway on Lattice's origin (the
replica's own 4xx returned, Lattice's refusals raised), the replicas' logs, delete.

The controller's reconcile is recorded instead of run (no agent behind the host); the
replica is a row whose endpoint is a small HTTP server in this process."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from django.utils import timezone

import lattice
from apps.core.stream import stream_publish
from apps.deployments import controller
from apps.deployments.models import Deployment, Replica, Revision
from lattice.errors import AuthenticationFailed, NotFound, PermissionDenied, RateLimited
from tests.client.sdk_fixtures import token_of
from tests.model_fixtures import make_model_version
from tests.notebook_fixtures import host_for_every_type

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.django_db(transaction=True)


class _Replica(BaseHTTPRequestHandler):
    """A model server's stand-in: echoes the JSON it is sent; ``/fail`` answers 422."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0)) or b"null")
        status, answer = (422, {"detail": "bad input"}) if self.path == "/fail" else (200, body)
        data = json.dumps({"output": answer} if status == 200 else answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def replica_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replica)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def scene(
    acme: Any, alice: Any, media: Any, catalogue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acme's ready model "Iris" (version 1), a host for every type, no controller pass."""
    monkeypatch.setattr(controller, "deployment_reconcile_soon", lambda *_: None)
    make_model_version(acme, alice, "Iris", {"predict.py": b"def predict(x): return x\n"})
    host_for_every_type()


def iris_api(team: Any) -> Deployment:
    deployment: Deployment = Deployment.objects.for_team(team).get(slug="iris-api")
    return deployment


def serve_from(deployment: Deployment, endpoint: str) -> None:
    """A ready replica of its newest revision at ``endpoint``, all traffic to it."""
    revisions = Revision.objects.for_team(deployment.team_id)
    revision = revisions.filter(deployment=deployment).order_by("-number").first()
    assert revision is not None
    Replica.objects.for_team(deployment.team_id).create(
        team_id=deployment.team_id,
        deployment=deployment,
        revision=revision,
        machine_type_id=revision.machine_type_id,
        status=Replica.Status.READY,
        endpoint=endpoint,
        ready_at=timezone.now(),
    )
    deployment.traffic = {str(revision.pk): 100}
    deployment.save(update_fields=["traffic"])


def test_a_deployment_is_made_read_by_slug_or_name_and_rolled_back(
    sdk: lattice.Client, scene: None
) -> None:
    made = sdk.deployments.create(
        "Iris API", model="iris", version=1, machine_type="cpu-small", min_replicas=1
    )

    assert made.slug == "iris-api"
    assert [(r.number, r.model, r.version) for r in made.revisions] == [(1, "iris", 1)]
    assert made.endpoints["api"].endswith("/api/v1/teams/acme/deployments/iris-api/invoke/")
    assert sdk.deployments.get("Iris API").slug == "iris-api"
    assert [d.slug for d in sdk.deployments.list()] == ["iris-api"]
    sdk.transport.json(
        "POST",
        "/teams/acme/deployments/iris-api/revisions/",
        json={"min_replicas": 2, "max_replicas": 2},
    )

    rolled = sdk.deployments.rollback("iris-api", 1)

    assert [r.number for r in rolled.revisions] == [3, 2, 1]
    assert rolled.revisions[0].reason == "rolled back to r1"
    sdk.deployments.delete("iris-api")
    with pytest.raises(NotFound):
        sdk.deployments.get("iris-api")


def test_invoke_returns_the_replicas_answer_and_raises_lattices_refusals(
    asgi_live_server: str,
    sdk: lattice.Client,
    acme: Any,
    scene: None,
    replica_url: str,
    charlie: Any,
) -> None:
    sdk.deployments.create("Iris API", model="iris", version=1, machine_type="cpu-small")
    serve_from(iris_api(acme), replica_url)

    answer = sdk.deployments.invoke("iris-api", {"x": [1, 2]}, path="predict")
    refused_by_model = sdk.deployments.invoke("Iris API", {"x": "?"}, path="/fail")

    assert answer.status == 200
    assert answer.ok
    assert answer.json() == {"output": {"x": [1, 2]}}
    assert refused_by_model.status == 422
    assert refused_by_model.json() == {"detail": "bad input"}
    with pytest.raises(NotFound) as missing:
        sdk.deployments.invoke("nope", {})
    assert missing.value.code == "not_found"
    assert str(missing.value) == "No such deployment."
    stranger = lattice.Client(url=asgi_live_server, token=token_of(charlie), team="acme")
    with pytest.raises(PermissionDenied) as outsider:
        stranger.deployments.invoke("iris-api", {})
    assert outsider.value.code == "permission_denied"
    wrong = lattice.Client(url=asgi_live_server, token="lat_notarealtoken000", team="acme")
    with pytest.raises((AuthenticationFailed, PermissionDenied)) as bad_token:
        wrong.deployments.invoke("iris-api", {})
    assert bad_token.value.status in (401, 403)


def test_an_invoke_over_the_rate_limit_raises_rate_limited_with_retry_after(
    sdk: lattice.Client, acme: Any, scene: None, replica_url: str
) -> None:
    sdk.deployments.create("Iris API", model="iris", version=1, machine_type="cpu-small")
    deployment = iris_api(acme)
    deployment.rate_limit_per_minute = 2
    deployment.save(update_fields=["rate_limit_per_minute"])
    serve_from(deployment, replica_url)

    for _ in range(2):
        assert sdk.deployments.invoke("iris-api", {"x": 1}, path="predict").status == 200
    with pytest.raises(RateLimited) as throttled:
        sdk.deployments.invoke("iris-api", {"x": 1}, path="predict")

    assert throttled.value.code == "throttled"
    assert throttled.value.retry_after is not None
    assert throttled.value.retry_after > 0


def test_the_replicas_log_lines_are_read_and_followed(
    sdk: lattice.Client, acme: Any, scene: None
) -> None:
    sdk.deployments.create("Iris API", model="iris", version=1, machine_type="cpu-small")
    stream = iris_api(acme).stream
    stream_publish(stream, {"type": "logs", "lines": ["loading model", "serving"]})

    assert [line.text for line in sdk.deployments.logs("iris-api")] == ["loading model", "serving"]
    followed = sdk.deployments.logs("iris-api", follow=True)
    assert [line.text for line in itertools.islice(followed, 2)] == ["loading model", "serving"]
    stream_publish(stream, {"type": "logs", "lines": ["request 1"]})
    assert next(followed).text == "request 1"
