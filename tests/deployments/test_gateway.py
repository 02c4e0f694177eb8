"""The deployments' gateway (apps.deployments.gateway), run the way it is deployed: the real
ASGI app (config.asgi) under uvicorn, in front of real model servers
(images/model-server/serve.py in subprocesses, on a temporary predict.py), with Replica
rows that point at them.

``controller.deployment_wake`` is the control helper's: where a test holds a request it is
replaced here by a recorder (monkeypatched), and the lead rewires it at the merge.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from django.utils import timezone

from apps.accounts.models import INVOKE_SCOPE
from apps.accounts.tokens import token_revoke, token_revoke_all
from apps.deployments import controller, metrics
from apps.deployments.models import Deployment, DeploymentKey, MetricWindow, Replica, Revision
from apps.teams.models import Membership, Role
from apps.teams.services import member_remove
from tests.asgi_server import serving, session_cookie
from tests.factories import MachineTypeFactory, PersonalAccessTokenFactory, add_member

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.accounts.models import User
    from apps.teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

SERVE = Path(__file__).resolve().parents[2] / "images" / "model-server" / "serve.py"
PREDICT = """
import time


def predict(text="", sleep=0.0, stream=0):
    if stream:
        def events():
            for i in range(stream):
                time.sleep(sleep)
                yield {"i": i}
        return events()
    time.sleep(sleep)
    return {"echo": text}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def model_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two built-in model servers on free ports, READY; their base URLs."""
    folder = tmp_path_factory.mktemp("model")
    (folder / "predict.py").write_text(PREDICT)
    processes, urls = [], []
    for _ in range(2):
        port = _free_port()
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(SERVE),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--model",
                    str(folder),
                    "--concurrency",
                    "16",
                ],
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    for url in urls:
        while True:
            try:
                if httpx.get(f"{url}/health-check").json()["status"] == "READY":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the model server did not become READY"
            time.sleep(0.1)
    yield urls
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def _deploy(
    team: Team,
    *,
    auth_mode: str = "protected",
    endpoints: tuple[str, ...] | list[str] = (),
    **fields: Any,
) -> Deployment:
    deployment = Deployment.objects.create(
        team=team, name="Chat", slug="chat", auth_mode=auth_mode, **fields
    )
    revision = Revision.objects.create(
        team=team, deployment=deployment, number=1, machine_type=MachineTypeFactory.create()
    )
    for endpoint in endpoints:
        _replica(revision, endpoint)
    deployment.traffic = {str(revision.pk): 100}
    deployment.save(update_fields=["traffic"])
    return deployment


def _replica(revision: Revision, endpoint: str) -> Replica:
    return Replica.objects.create(
        team_id=revision.team_id,
        deployment_id=revision.deployment_id,
        revision=revision,
        machine_type_id=revision.machine_type_id,
        status=Replica.Status.READY,
        endpoint=endpoint,
        ready_at=timezone.now(),
    )


def _token(user: User, *, scopes: list[str] | None = None, team: Team | None = None) -> str:
    token = PersonalAccessTokenFactory.create(user=user, scopes=scopes or [INVOKE_SCOPE], team=team)
    return str(token.plaintext)


def _host_call(
    server: str,
    *,
    token: str = "",
    body: Any = None,
    host: str = "chat--acme.localhost",
    path: str = "/predict",
    **kwargs: Any,
) -> httpx.Response:
    headers = {"host": host, **kwargs.pop("headers", {})}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(f"{server}{path}", headers=headers, json=body or {"text": "hi"}, **kwargs)


def _api_call(server: str, method: str = "POST", **kwargs: Any) -> httpx.Response:
    url = f"{server}/api/v1/teams/acme/deployments/chat/invoke/predict"
    return httpx.request(method, url, json={"text": "hi"}, **kwargs)


def test_public_deployment_answers_on_its_host_and_the_api_path_sandboxed_there(
    acme: Team, model_servers: list[str], asgi_live_server: str
) -> None:
    _deploy(acme, auth_mode="public", endpoints=model_servers[:1])

    on_host = _host_call(asgi_live_server)
    assert on_host.status_code == 200
    assert on_host.json() == {"output": {"echo": "hi"}}
    assert "content-security-policy" not in on_host.headers

    on_api = _api_call(asgi_live_server)
    assert on_api.status_code == 200
    assert on_api.json() == {"output": {"echo": "hi"}}
    assert on_api.headers["content-security-policy"] == "sandbox"
    assert on_api.headers["x-content-type-options"] == "nosniff"
    # The gateway's own answers there are sandboxed too.
    missing = httpx.post(
        f"{asgi_live_server}/api/v1/teams/acme/deployments/nope/invoke/predict", json={}
    )
    assert missing.status_code == 404
    assert missing.headers["content-security-policy"] == "sandbox"
    # A notebook's page may not call it as the person who opened it (Lattice's origin).
    from_notebook = _api_call(asgi_live_server, headers={"origin": "http://nb-7.localhost"})
    assert from_notebook.status_code == 403


def test_protected_deployment_takes_an_invoke_token_of_a_member_or_a_key_and_nothing_else(
    acme: Team,
    globex: Team,
    bob: User,
    charlie: User,
    model_servers: list[str],
    asgi_live_server: str,
) -> None:
    deployment = _deploy(acme, endpoints=model_servers[:1])
    key = "ldk_" + "k" * 40
    DeploymentKey.objects.create(
        team=acme, deployment=deployment, name="ci", key_hash=_sha(key), display_prefix=key[:8]
    )
    add_member(globex, bob, Role.MEMBER)
    server = asgi_live_server

    assert _host_call(server).status_code == 401
    assert _host_call(server).headers["www-authenticate"].startswith("Bearer")
    assert _host_call(server, token=_token(bob)).status_code == 200
    assert _host_call(server, token=_token(bob, team=acme)).status_code == 200
    assert _api_call(server, headers={"authorization": f"Bearer {_token(bob)}"}).status_code == 200
    # Reading deployments is not calling them.
    no_scope = _token(bob, scopes=["deployments:read", "deployments:write"])
    assert _host_call(server, token=no_scope).status_code == 403
    # Another team's member, with the right scope.
    assert _host_call(server, token=_token(charlie)).status_code == 403
    # A member's token limited to another team.
    assert _host_call(server, token=_token(bob, team=globex)).status_code == 403
    assert _host_call(server, token=key).status_code == 200
    assert _host_call(server, token="ldk_" + "x" * 40).status_code == 401
    assert _host_call(server, token="lat_" + "x" * 40).status_code == 401


def test_a_revoked_token_or_key_is_refused_at_once(
    acme: Team, bob: User, model_servers: list[str], asgi_live_server: str
) -> None:
    deployment = _deploy(acme, endpoints=model_servers[:1])
    plaintext = _token(bob)
    key = "ldk_" + "r" * 40
    row = DeploymentKey.objects.create(
        team=acme, deployment=deployment, name="ci", key_hash=_sha(key), display_prefix=key[:8]
    )
    assert _host_call(asgi_live_server, token=plaintext).status_code == 200
    assert _host_call(asgi_live_server, token=key).status_code == 200

    token = bob.api_tokens.get()
    token_revoke(user=bob, token=token)
    row.revoked_at = timezone.now()
    row.save(update_fields=["revoked_at"])

    assert _host_call(asgi_live_server, token=plaintext).status_code == 401
    assert _host_call(asgi_live_server, token=key).status_code == 401


def test_revoking_all_of_a_persons_tokens_is_refused_at_once(
    acme: Team, bob: User, model_servers: list[str], asgi_live_server: str
) -> None:
    """token_revoke_all writes with one UPDATE (no per-row signal): the gateway must still
    forget its cached decisions for those tokens at once, not when its cache ages out."""
    _deploy(acme, endpoints=model_servers[:1])
    first, second = _token(bob), _token(bob)
    assert _host_call(asgi_live_server, token=first).status_code == 200
    assert _host_call(asgi_live_server, token=second).status_code == 200

    assert token_revoke_all(user=bob) == 2

    assert _host_call(asgi_live_server, token=first).status_code == 401
    assert _host_call(asgi_live_server, token=second).status_code == 401


def test_a_removed_member_is_refused_at_once(
    acme: Team, alice: User, bob: User, model_servers: list[str], asgi_live_server: str
) -> None:
    _deploy(acme, endpoints=model_servers[:1])
    plaintext = _token(bob)
    assert _host_call(asgi_live_server, token=plaintext).status_code == 200

    member_remove(team=acme, actor=alice, member=Membership.objects.for_team(acme).get(user=bob))

    assert _host_call(asgi_live_server, token=plaintext).status_code == 403


def test_private_deployment_takes_a_members_session_on_the_api_path(
    acme: Team, bob: User, charlie: User, model_servers: list[str], asgi_live_server: str
) -> None:
    from django.conf import settings

    _deploy(acme, auth_mode="private", endpoints=model_servers[:1])
    member = {settings.SESSION_COOKIE_NAME: session_cookie(bob)}
    stranger = {settings.SESSION_COOKIE_NAME: session_cookie(charlie)}
    server = asgi_live_server
    own_origin = {"origin": server}

    assert (
        httpx.get(
            f"{server}/api/v1/teams/acme/deployments/chat/invoke/", cookies=member
        ).status_code
        == 200
    )
    assert _api_call(server, cookies=member, headers=own_origin).status_code == 200
    # A write signed in by a session must come from Lattice's own pages.
    assert _api_call(server, cookies=member).status_code == 403
    assert (
        _api_call(server, cookies=member, headers={"origin": "https://evil.example"}).status_code
        == 403
    )
    assert _api_call(server, cookies=stranger, headers=own_origin).status_code == 403
    assert _api_call(server, headers=own_origin).status_code == 401
    # A key does not open a private deployment; a member's token does.
    assert _host_call(server, token="ldk_" + "k" * 40).status_code == 403
    assert _host_call(server, token=_token(bob)).status_code == 200
    # On the deployment's own host a session is no credential.
    assert _host_call(server, cookies=member).status_code == 401


def test_a_caller_over_the_rate_limit_gets_429_with_retry_after(
    acme: Team, bob: User, charlie: User, model_servers: list[str], asgi_live_server: str
) -> None:
    deployment = _deploy(
        acme, auth_mode="public", endpoints=model_servers[:1], rate_limit_per_minute=3
    )
    # Counts are per minute: start well inside one, so the test cannot straddle two.
    if time.time() % 60 > 50:
        time.sleep(60.2 - time.time() % 60)
    # A public deployment checks no credential: a bearer sent there is no caller of its
    # own, the client's address is (review R2).
    answers = [_host_call(asgi_live_server, token=f"caller-{n}") for n in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
    # Per caller: an accepted credential is counted as itself, not by the address.
    deployment.auth_mode = "protected"
    deployment.save(update_fields=["auth_mode"])
    plaintext = _token(bob)
    answers = [_host_call(asgi_live_server, token=plaintext) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    # A refused credential opens nothing and uses nobody's count.
    assert _host_call(asgi_live_server, token="lat_" + "x" * 40).status_code == 401


def test_a_request_without_a_ready_replica_wakes_the_deployment_is_held_then_503(
    acme: Team, asgi_live_server: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.LATTICE_DEPLOYMENT_COLD_WAIT = 1.0
    woken: list[int] = []
    monkeypatch.setattr(controller, "deployment_wake", woken.append)
    deployment = _deploy(acme, auth_mode="public")

    began = time.monotonic()
    answer = _host_call(asgi_live_server, timeout=10)

    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) > 0
    assert time.monotonic() - began >= 1.0
    assert woken == [deployment.pk]


def test_a_held_request_answered_503_is_counted_as_a_5xx(
    acme: Team, asgi_live_server: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No replica took it, but its caller saw a 503: the charts' 5xx and the request lines
    say so, under the revision it was meant for (by traffic, else the newest)."""
    settings.LATTICE_DEPLOYMENT_COLD_WAIT = 0.5
    monkeypatch.setattr(controller, "deployment_wake", lambda _id: None)  # no replica comes
    deployment = _deploy(acme, auth_mode="public")
    serving = Revision.objects.for_team(acme).get(deployment=deployment)
    assert _host_call(asgi_live_server, timeout=10).status_code == 503
    # A first revision still starting has no share of the traffic: its newest counts it.
    starting = Revision.objects.create(
        team=acme, deployment=deployment, number=2, machine_type=serving.machine_type
    )
    deployment.traffic = {}
    deployment.save(update_fields=["traffic"])
    assert _host_call(asgi_live_server, timeout=10).status_code == 503

    deadline = time.monotonic() + 5
    counted: dict[int, tuple[int, int]] = {}
    while time.monotonic() < deadline and len(counted) < 2:
        time.sleep(0.2)
        counted = {
            w.revision_id: (w.requests, w.status_5xx)
            for w in MetricWindow.objects.for_team(acme).filter(deployment=deployment)
        }
    assert counted == {serving.pk: (1, 1), starting.pk: (1, 1)}
    assert sum(p["status"]["5xx"] for p in metrics.series(deployment)["points"]) == 2
    lines = metrics.recent_requests(deployment)
    assert [(line["status"], line["revision_number"]) for line in lines] == [(503, 2), (503, 1)]
    assert metrics.in_flight(deployment.pk) in ({}, {serving.pk: 0, starting.pk: 0})


def test_a_held_request_is_served_once_a_replica_is_ready(
    acme: Team,
    model_servers: list[str],
    asgi_live_server: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.LATTICE_DEPLOYMENT_COLD_WAIT = 15.0
    deployment = _deploy(acme, auth_mode="public")
    revision = Revision.objects.for_team(acme).get(deployment=deployment)

    def wake(deployment_id: int) -> None:
        # The controller's part, played here: a replica becomes ready a moment later.
        threading.Timer(0.6, _replica, (revision, model_servers[0])).start()

    monkeypatch.setattr(controller, "deployment_wake", wake)
    began = time.monotonic()
    answer = _host_call(asgi_live_server, timeout=15)

    assert answer.status_code == 200
    assert 0.6 <= time.monotonic() - began < 5


def test_a_replica_that_refuses_connections_is_passed_over(
    acme: Team, model_servers: list[str], asgi_live_server: str
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    _deploy(acme, auth_mode="public", endpoints=[dead, model_servers[0]])

    answers = [_host_call(asgi_live_server).status_code for _ in range(10)]

    assert answers == [200] * 10


def test_server_sent_events_arrive_as_they_are_sent(
    acme: Team, model_servers: list[str], asgi_live_server: str
) -> None:
    _deploy(acme, auth_mode="public", endpoints=model_servers[:1])
    arrivals = []
    began = time.monotonic()
    with httpx.stream(
        "POST",
        f"{asgi_live_server}/predict",
        headers={"host": "chat--acme.localhost"},
        json={"stream": 3, "sleep": 0.5},
        timeout=10,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith('data: {"i"'):
                arrivals.append(time.monotonic() - began)

    assert len(arrivals) == 3
    # The first event came long before the last was sent (about 1 s later).
    assert arrivals[0] < 0.9
    assert arrivals[2] - arrivals[0] > 0.7


def test_a_deployment_host_never_serves_lattice_pages(
    acme: Team, model_servers: list[str], asgi_live_server: str
) -> None:
    _deploy(acme, auth_mode="public", endpoints=model_servers[:1])

    unknown = httpx.get(
        f"{asgi_live_server}/accounts/login/", headers={"host": "nope--acme.localhost"}
    )
    assert unknown.status_code == 404
    assert unknown.text == "No such deployment."
    # On a deployment's host Lattice's paths are the replica's (its own 404 here).
    known = httpx.get(
        f"{asgi_live_server}/accounts/login/", headers={"host": "chat--acme.localhost"}
    )
    assert known.status_code == 404
    assert known.json() == {"error": "Not found: POST /predict, GET /health-check."}
    api = httpx.get(f"{asgi_live_server}/api/v1/teams/", headers={"host": "chat--acme.localhost"})
    assert api.status_code == 404
    assert "csrftoken" not in api.headers.get("set-cookie", "")


def test_requests_are_counted_per_revision_into_metric_windows(
    acme: Team, model_servers: list[str], asgi_live_server: str
) -> None:
    deployment = _deploy(acme, auth_mode="public", endpoints=model_servers[:1])
    revision = Revision.objects.for_team(acme).get(deployment=deployment)
    for _ in range(3):
        assert _host_call(asgi_live_server, path="/predict?secret=s3").status_code == 200
    assert _host_call(asgi_live_server, body={"nope": 1}).status_code == 422

    # A slow request is in flight while the flush runs.
    slow = threading.Thread(
        target=_host_call, args=(asgi_live_server,), kwargs={"body": {"sleep": 2.5}, "timeout": 10}
    )
    slow.start()
    deadline = time.monotonic() + 5
    seen: dict[int, int] = {}
    replicas_seen: dict[int, int] = {}
    while time.monotonic() < deadline and not seen.get(revision.pk):
        time.sleep(0.2)
        seen = metrics.in_flight(deployment.pk)
        # Per replica too, in the same window (the controller's drain reads it).
        replicas_seen = metrics.in_flight_replicas(deployment.pk)
    slow.join()
    assert seen == {revision.pk: 1}
    [replica] = Replica.objects.for_team(acme).filter(revision=revision)
    assert replicas_seen == {replica.pk: 1}

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        windows = MetricWindow.objects.for_team(acme).filter(revision=revision)
        if sum(w.requests for w in windows) == 5:
            break
        time.sleep(0.2)
    assert sum(w.requests for w in windows) == 5
    assert sum(w.status_2xx for w in windows) == 4
    assert sum(w.status_4xx for w in windows) == 1
    assert max(w.in_flight_max for w in windows) >= 1
    assert sum(sum(w.latency) for w in windows) == 5
    deployment.refresh_from_db()
    assert deployment.last_request_at is not None

    series = metrics.series(deployment, seconds=60, step=5)
    assert sum(p["requests"] for p in series["points"]) == 5
    assert any(p["p50"] is not None for p in series["points"])
    lines = metrics.recent_requests(deployment)
    assert len(lines) == 5
    assert lines[0]["path"] == "/predict"
    assert {line["status"] for line in lines} == {200, 422}
    assert all("secret" not in str(line) for line in lines)


def test_request_lines_and_charts_name_the_revision_by_its_number(
    acme: Team, bob: User, model_servers: list[str], asgi_live_server: str, client: Any
) -> None:
    """The gateway counts by the revision's primary key; people read "r<number>"."""
    deployment = _deploy(acme, auth_mode="public")
    # A second revision numbered far from any primary key this test makes.
    revision = Revision.objects.create(
        team=acme, deployment=deployment, number=907, machine_type=MachineTypeFactory.create()
    )
    _replica(revision, model_servers[0])
    deployment.traffic = {str(revision.pk): 100}
    deployment.save(update_fields=["traffic"])
    assert _host_call(asgi_live_server).status_code == 200

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not metrics.recent_requests(deployment):
        time.sleep(0.2)
    [line] = metrics.recent_requests(deployment)
    assert (line["revision"], line["revision_number"]) == (revision.pk, 907)
    while time.monotonic() < deadline and not metrics.series(deployment)["revisions"]:
        time.sleep(0.2)
    assert metrics.series(deployment)["revision_numbers"] == {str(revision.pk): 907}

    client.force_login(bob)
    page = client.get(f"/t/acme/deployments/{deployment.pk}/").content.decode()
    [shown] = re.findall(r'data-testid="request-line">([^<]*)<', page)
    assert shown.endswith("ms r907")


def _sha(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()


async def _echo_headers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A replica that answers with the headers it got, in two chunks (chunked framing)."""
    seen = {name.decode(): value.decode() for name, value in scope["headers"]}
    body = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body[:5], "more_body": True})
    await send({"type": "http.response.body", "body": body[5:]})


def test_a_replica_never_sees_the_callers_credentials_and_chunked_answers_pass(
    acme: Team, bob: User, asgi_live_server: str
) -> None:
    with serving(_echo_headers, name="echo-replica") as replica:
        _deploy(acme, endpoints=[replica])
        answer = _host_call(
            asgi_live_server,
            token=_token(bob),
            headers={"cookie": "sessionid=abc", "x-model-option": "7"},
        )
    assert answer.status_code == 200
    seen = answer.json()
    assert "authorization" not in seen
    assert "cookie" not in seen
    assert seen["x-model-option"] == "7"
    assert seen["x-forwarded-for"] == "127.0.0.1"


def test_with_the_redis_cache_a_revoked_token_is_refused_at_once_and_limits_hold(
    acme: Team,
    bob: User,
    model_servers: list[str],
    asgi_live_server: str,
    settings: Any,
    redis_url: str,
) -> None:
    """Production's path: generations and rate counts in Redis, read with one pipeline."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }
    _deploy(acme, endpoints=model_servers[:1], rate_limit_per_minute=4)
    plaintext = _token(bob)
    assert _host_call(asgi_live_server, token=plaintext).status_code == 200
    assert _host_call(asgi_live_server, token=plaintext).status_code == 200

    token_revoke(user=bob, token=bob.api_tokens.get())

    assert _host_call(asgi_live_server, token=plaintext).status_code == 401
    other = _token(bob)
    answers = [_host_call(asgi_live_server, token=other).status_code for _ in range(5)]
    assert answers == [200, 200, 200, 200, 429]


def test_concurrent_requests_share_one_pipelined_redis_connection_in_order(
    settings: Any, redis_url: str
) -> None:
    """Replies go back to the request that asked, however many are in flight at once."""
    import asyncio
    import secrets

    from apps.deployments.gateway.shared import shared_state

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }
    prefix = secrets.token_hex(4)

    async def run() -> list[tuple[dict[str, int], int]]:
        calls = [
            shared_state([f"{prefix}:gen:{i % 3}"], f"{prefix}:rate:{i % 2}", window=60)
            for i in range(60)
        ]
        return await asyncio.gather(*calls)

    answers = asyncio.run(run())

    by_key: dict[int, list[int]] = {0: [], 1: []}
    for index, (_, count) in enumerate(answers):
        by_key[index % 2].append(count)
    assert sorted(by_key[0]) == list(range(1, 31))
    assert sorted(by_key[1]) == list(range(1, 31))
    generations: dict[str, set[int]] = {}
    for index, (found, _) in enumerate(answers):
        key = f"{prefix}:gen:{index % 3}"
        assert set(found) == {key}
        generations.setdefault(key, set()).add(found[key])
    assert all(len(values) == 1 for values in generations.values())


def _named(name: str) -> Any:
    async def replica(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = name.encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return replica


def test_traffic_is_split_between_revisions_by_weight(acme: Team, asgi_live_server: str) -> None:
    with serving(_named("old"), name="old") as old, serving(_named("new"), name="new") as new:
        deployment = _deploy(acme, auth_mode="public", endpoints=[old])
        first = Revision.objects.for_team(acme).get(deployment=deployment)
        second = Revision.objects.create(
            team=acme, deployment=deployment, number=2, machine_type=first.machine_type
        )
        _replica(second, new)
        # Ready but given no share yet: it takes nothing.
        assert {_host_call(asgi_live_server).text for _ in range(20)} == {"old"}

        deployment.traffic = {str(first.pk): 75, str(second.pk): 25}
        deployment.save(update_fields=["traffic"])
        answers = [_host_call(asgi_live_server).text for _ in range(200)]

    assert 20 <= answers.count("new") <= 80
    assert answers.count("old") + answers.count("new") == 200


def _named_slow(name: str) -> Any:
    """A replica that says its name, after a second and a half on /slow."""

    async def replica(scope: dict[str, Any], receive: Any, send: Any) -> None:
        import asyncio

        if scope["path"] == "/slow":
            await asyncio.sleep(1.5)
        body = name.encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return replica


def test_a_revisions_replica_with_fewer_requests_in_flight_is_chosen(
    acme: Team, asgi_live_server: str
) -> None:
    with serving(_named_slow("a"), name="a") as a, serving(_named_slow("b"), name="b") as b:
        _deploy(acme, auth_mode="public", endpoints=[a, b])
        slow: list[str] = []
        thread = threading.Thread(
            target=lambda: slow.append(_host_call(asgi_live_server, path="/slow").text)
        )
        thread.start()
        time.sleep(0.5)  # the slow request is in flight on one replica
        fast = {_host_call(asgi_live_server).text for _ in range(10)}
        thread.join()

    assert slow
    assert slow[0] in ("a", "b")
    assert fast == {"a", "b"} - {slow[0]}


def test_a_renamed_team_moves_its_deployments_address_at_once(
    acme: Team, model_servers: list[str], asgi_live_server: str
) -> None:
    _deploy(acme, auth_mode="public", endpoints=model_servers[:1])
    assert _host_call(asgi_live_server).status_code == 200

    acme.slug = "acme-2"
    acme.save(update_fields=["slug"])

    assert _host_call(asgi_live_server).status_code == 404
    assert _host_call(asgi_live_server, host="chat--acme-2.localhost").status_code == 200
