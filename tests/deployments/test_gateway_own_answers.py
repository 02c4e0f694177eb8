"""The gateway marks the answers it makes itself (X-Lattice-Error), never a replica's."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from django.utils import timezone

from apps.deployments.models import Deployment, Replica, Revision
from tests.factories import MachineTypeFactory

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)


class _NotFoundReplica(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def replica_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundReplica)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_its_own_404_is_marked_and_a_replicas_404_is_not(
    acme: Team, asgi_live_server: str, replica_url: str
) -> None:
    deployment = Deployment.objects.for_team(acme).create(
        team=acme, name="Chat", slug="chat", auth_mode="public"
    )
    revision = Revision.objects.for_team(acme).create(
        team=acme, deployment=deployment, number=1, machine_type=MachineTypeFactory.create()
    )
    Replica.objects.for_team(acme).create(
        team_id=acme.pk,
        deployment=deployment,
        revision=revision,
        machine_type_id=revision.machine_type_id,
        status=Replica.Status.READY,
        endpoint=replica_url,
        ready_at=timezone.now(),
    )
    deployment.traffic = {str(revision.pk): 100}
    deployment.save(update_fields=["traffic"])
    base = f"{asgi_live_server}/api/v1/teams/acme/deployments"

    missing = httpx.post(f"{base}/nope/invoke/predict", json={})
    replicas = httpx.post(f"{base}/chat/invoke/predict", json={})

    assert missing.status_code == 404
    assert missing.headers["x-lattice-error"] == "not_found"
    assert missing.text == "No such deployment."
    assert replicas.status_code == 404
    assert "x-lattice-error" not in replicas.headers
    assert replicas.json() == {}
