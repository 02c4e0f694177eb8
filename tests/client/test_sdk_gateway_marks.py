"""Only the gateway marks its own answers (X-Lattice-Error): a replica answering 401 with the
mark is returned as the replica's answer, not raised as Lattice refusing the token
(REVIEW18 R6)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

import lattice
from tests.client.sdk_fixtures import token_of

if TYPE_CHECKING:
    from collections.abc import Iterator


def lattice_client(url: str, user: Any) -> lattice.Client:
    """``user``'s client in Acme."""
    return lattice.Client(url=url, token=token_of(user), team="acme")


class _SpoofingReplica(BaseHTTPRequestHandler):
    """A deployment's replica (the team's own model code) answering as if it were Lattice
    refusing the caller's token."""

    def do_POST(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Lattice-Error", "not_authenticated")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def spoofing_replica() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SpoofingReplica)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)
def test_a_replica_cannot_pass_for_the_gateway(
    acme: Any, alice: Any, asgi_live_server: str, spoofing_replica: str
) -> None:
    from django.utils import timezone

    from apps.deployments.models import Deployment, Replica, Revision
    from tests.factories import MachineTypeFactory

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
        endpoint=spoofing_replica,
        ready_at=timezone.now(),
    )
    deployment.traffic = {str(revision.pk): 100}
    deployment.save(update_fields=["traffic"])

    with lattice_client(asgi_live_server, alice) as client:
        answer = client.deployments.invoke("chat", {"x": 1})

    # The replica's 401 is the replica's answer, returned as such; not a LatticeError
    # saying the caller's token is wrong.
    assert answer.status == 401
    assert "x-lattice-error" not in {k.lower() for k in answer.headers}
