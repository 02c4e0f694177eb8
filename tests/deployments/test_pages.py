"""The deployment pages, their websocket and their live charts' snapshots.

alice owns Acme, bob is a member, erin a viewer, charlie an outsider (Globex). The
gateway's apps.deployments.metrics (series, recent_requests) is another helper's module:
it is replaced here with what it answers (tests/deployments/pages_fixtures.series_of, its
shape as the gateway computes it); the lead rewires this at merge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from apps.accounts.models import INVOKE_SCOPE, PersonalAccessToken
from apps.core import stream
from apps.core.tenancy import team_scope
from apps.deployments import live, metrics
from apps.deployments.models import Deployment, DeploymentKey, Revision
from config.routing import websocket_urlpatterns
from tests.deployments.conftest import everywhere_type
from tests.deployments.pages_fixtures import make_deployment, series_of
from tests.helpers import reauthenticate

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)

REQUEST_LINES = [
    {
        "method": "POST",
        "path": "/predict",
        "status": 200,
        "ms": 12.5,
        "revision": 2,
        "revision_number": 2,
        "time": "2026-12-06T12:00:01+00:00",
    },
    {
        "method": "POST",
        "path": "/predict",
        "status": 422,
        "ms": 3.1,
        "revision": 2,
        "revision_number": 2,
        "time": "2026-12-06T12:00:00+00:00",
    },
]


@pytest.fixture(autouse=True)
def gateway_figures(monkeypatch: Any) -> Iterator[dict[str, Any]]:
    """The gateway's answers (another helper's module; see the docstring)."""
    answers: dict[str, Any] = {"requests": [], "since_steps_ago": 6}

    def series(deployment: Deployment, *, seconds: int = 900, step: int = 5) -> dict[str, Any]:
        return series_of(deployment, since_steps_ago=answers["since_steps_ago"])

    monkeypatch.setattr(metrics, "series", series)
    monkeypatch.setattr(metrics, "recent_requests", lambda _deployment: answers["requests"])
    stream.reset_for_tests()
    yield answers
    stream.reset_for_tests()


@pytest.fixture
def deployment(acme: Any, alice: Any, catalogue: dict[str, Any]) -> Deployment:
    return make_deployment(acme, alice, catalogue["cpu-small"])


def url(name: str, deployment: Deployment | None = None, team: Any = None, **kw: Any) -> str:
    kwargs: dict[str, Any] = {"team_slug": (team or deployment.team).slug, **kw}  # type: ignore[union-attr]
    if deployment is not None:
        kwargs["deployment_id"] = deployment.pk
    return reverse(f"deployments:{name}", kwargs=kwargs)


def text(response: Any) -> str:
    return response.content.decode()


def revision(deployment: Deployment, number: int) -> Revision:
    with team_scope(deployment.team):
        return Revision.objects.get(deployment=deployment, number=number)


def pages(deployment: Deployment) -> dict[str, str]:
    return {
        "list": url("list", team=deployment.team),
        "create": url("create", team=deployment.team),
        "detail": url("detail", deployment),
        "change": url("change", deployment),
        "keys": url("keys", deployment),
        "settings": url("settings", deployment),
    }


def posts(deployment: Deployment) -> dict[str, str]:
    with team_scope(deployment.team):
        key = DeploymentKey.objects.create(
            team=deployment.team,
            deployment=deployment,
            name="ci",
            key_hash="0" * 64,
            display_prefix="ldk_abcd",
        )
    return {
        "create": url("create", team=deployment.team),
        "change": url("change", deployment),
        "rollback": url("rollback", deployment, revision_id=revision(deployment, 1).pk),
        "traffic": url("traffic", deployment),
        "key_create": url("key_create", deployment),
        "key_revoke": url("key_revoke", deployment, key_id=key.pk),
        "settings": url("settings", deployment),
        "delete": url("delete", deployment),
    }


# --- every page, every kind of person -------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_every_page_renders_for_a_member(client, deployment, who, request):
    client.force_login(request.getfixturevalue(who))
    for name, path in pages(deployment).items():
        response = client.get(path)
        assert response.status_code == 200, name
        assert 'aria-current="page">Deployments' in text(response), name


def test_the_list_shows_what_each_serves_its_ready_replicas_and_no_requests_yet(
    client, deployment, erin
):
    client.force_login(erin)
    body = text(client.get(url("list", team=deployment.team)))
    row = body.split(f'data-testid="deployment-row-{deployment.pk}"')[1].split("</tr>")[0]
    assert "Churn API" in row
    assert "Churn v1 · r3" in row
    assert "<td>1</td>" in row  # one replica ready, one still loading its model
    assert "no requests yet" in row
    assert 'data-testid="new-deployment"' not in body  # a viewer deploys nothing


def test_a_viewer_sees_but_cannot_change(client, deployment, erin):
    client.force_login(erin)
    shown = pages(deployment)
    for name in ("list", "detail", "keys"):
        assert client.get(shown[name]).status_code == 200, name
    for name in ("create", "change", "settings"):
        assert client.get(shown[name]).status_code == 403, name
    body = text(client.get(shown["detail"]))
    assert 'data-testid="rollback-1"' not in body
    assert 'data-testid="traffic-form"' not in body
    for name, path in posts(deployment).items():
        assert client.post(path, {"name": "x"}).status_code == 403, name
    with team_scope(deployment.team):
        assert Revision.objects.filter(deployment=deployment).count() == 3
        assert DeploymentKey.objects.filter(revoked_at__isnull=True).count() == 1


def test_an_outsider_gets_404_everywhere_and_changes_nothing(client, deployment, charlie, globex):
    client.force_login(charlie)
    for name, path in pages(deployment).items():
        assert client.get(path).status_code == 404, name
    for name, path in posts(deployment).items():
        assert client.post(path, {"name": "x", "confirm": "Churn API"}).status_code == 404, name
    # Under his own team's address, Acme's deployment is not there either.
    assert client.get(url("detail", deployment, team=globex)).status_code == 404
    with team_scope(deployment.team):
        fresh = Deployment.objects.get(pk=deployment.pk)
        assert fresh.deleted_at is None
        assert Revision.objects.filter(deployment=deployment).count() == 3
        assert DeploymentKey.objects.filter(revoked_at__isnull=True).count() == 1


def test_a_visitor_is_sent_to_log_in(client, deployment):
    for name, path in {**pages(deployment), **posts(deployment)}.items():
        response = client.post(path) if name in {"rollback", "traffic"} else client.get(path)
        assert response.status_code == 302, name
        assert "/accounts/login/" in response.url, name


# --- the deployment page ------------------------------------------------------------------


def test_the_page_shows_endpoints_a_curl_with_a_placeholder_and_revisions(client, deployment, bob):
    client.force_login(bob)
    body = text(client.get(url("detail", deployment)))
    assert "http://churn-api--acme." in body
    assert "/api/v1/teams/acme/deployments/churn-api/invoke/" in body
    assert "curl -X POST http://churn-api--acme." in body
    assert "predict" in body
    assert "Authorization: Bearer $LATTICE_TOKEN" in body
    assert "lat_" not in body.split('data-testid="curl"')[1].split("</pre>")[0]
    # Revisions with their reason, status and message; a rollback on the older ones.
    assert "more memory" in body
    assert "SETUP_FAILED: ModuleNotFoundError: No module named &#x27;torch&#x27;" in body
    assert 'data-testid="rollback-1"' in body
    assert 'data-testid="rollback-3"' not in body  # the newest: nothing to roll back to
    assert 'data-testid="rollback-2"' not in body  # serving now: nothing would change
    assert "r2 100%" in body
    assert 'data-testid="traffic-form"' in body
    # Replicas with their state.
    assert "Loading the model" in body
    assert ">Ready<" in body
    # Honest: never a request yet, and no request lines.
    assert "No requests yet" in body
    assert 'data-testid="no-requests"' in body
    assert f'data-ws-path="/ws/teams/acme/deployments/{deployment.pk}/"' in body


def test_the_page_lists_recent_request_lines(client, deployment, bob, gateway_figures):
    gateway_figures["requests"] = REQUEST_LINES
    client.force_login(bob)
    body = text(client.get(url("detail", deployment)))
    assert body.count('data-testid="request-line"') == 2
    assert "POST /predict 422 3.1 ms r2" in body


def test_a_public_deployments_curl_has_no_authorization(client, deployment, bob):
    with team_scope(deployment.team):
        Deployment.objects.filter(pk=deployment.pk).update(auth_mode=Deployment.Auth.PUBLIC)
    client.force_login(bob)
    body = text(client.get(url("detail", deployment)))
    assert "Authorization" not in body.split('data-testid="curl"')[1].split("</pre>")[0]


def test_a_deleted_deployment_is_gone(client, deployment, bob):
    with team_scope(deployment.team):
        Deployment.objects.filter(pk=deployment.pk).update(deleted_at=deployment.created_at)
    client.force_login(bob)
    assert client.get(url("detail", deployment)).status_code == 404
    assert "Churn API" not in text(client.get(url("list", team=deployment.team)))


# --- forms: what they refuse, in words ----------------------------------------------------


def test_delete_asks_for_the_name_and_says_so(client, deployment, bob):
    client.force_login(bob)
    response = client.post(url("delete", deployment), {"confirm": "churn"})
    assert response.status_code == 400
    assert "Type Churn API to delete it." in text(response)
    with team_scope(deployment.team):
        assert Deployment.objects.get(pk=deployment.pk).deleted_at is None


def test_a_bad_environment_line_is_refused_with_the_reason(client, deployment, bob, catalogue):
    client.force_login(bob)
    response = client.post(
        url("change", deployment),
        {
            "model_version": revision(deployment, 2).model_version_id,
            "serving": "builtin",
            "port": 8080,
            "machine_type": catalogue["cpu-small"].pk,
            "min_replicas": 1,
            "max_replicas": 2,
            "target_in_flight": 4,
            "startup_timeout": 600,
            "canary_percent": 0,
            "env": "GOOD=1\nno equals sign",
        },
    )
    assert response.status_code == 400
    assert "Line 2 of the environment is not NAME=value." in text(response)
    with team_scope(deployment.team):
        assert Revision.objects.filter(deployment=deployment).count() == 3


def test_the_change_form_starts_from_the_newest_revision_without_its_secrets(
    client, deployment, bob
):
    with team_scope(deployment.team):
        Revision.objects.filter(deployment=deployment, number=3).update(
            env={"MODE": "fast"}, secret_names=["API_SECRET"], secret_env=b"sealed"
        )
    client.force_login(bob)
    body = text(client.get(url("change", deployment)))
    assert "MODE=fast" in body
    assert "API_SECRET" in body  # named, as kept
    assert "sealed" not in body


# --- the model version page and the token page --------------------------------------------


def test_deploy_on_the_version_page_opens_the_form_with_the_version(client, deployment, bob, erin):
    version = revision(deployment, 2).model_version
    assert version is not None
    page = reverse(
        "models:version",
        kwargs={"team_slug": "acme", "model_slug": version.model.slug, "number": version.number},
    )
    client.force_login(bob)
    body = text(client.get(page))
    create = f"{url('create', team=deployment.team)}?version={version.pk}"
    assert f'href="{create}"' in body
    assert "Churn API (r2)" in body  # served by
    form = text(client.get(create))
    assert f'<option value="{version.pk}" selected>' in form
    assert 'value="Churn"' in form
    client.force_login(erin)
    assert 'data-testid="version-action"' not in text(client.get(page))


def test_the_token_page_gives_the_invoke_scope(client, alice):
    client.force_login(alice)
    reauthenticate(client)
    page = text(client.get(reverse("accounts:tokens")))
    assert 'name="invoke"' in page
    response = client.post(
        reverse("accounts:tokens"), {"name": "caller", "invoke": "on", "expires_in_days": "30"}
    )
    assert response.status_code == 200
    token = PersonalAccessToken.objects.get(user=alice, name="caller")
    assert token.scopes == [INVOKE_SCOPE]


# --- the charts' snapshots and the websocket ----------------------------------------------


def test_a_snapshot_says_unknown_before_the_gateway_counted_and_counts_ready_replicas(deployment):
    with team_scope(deployment.team):
        shot = live.snapshot(deployment)
    assert shot["type"] == "metrics"
    points = shot["points"]
    counted = [p for p in points if p["requests"] is not None]
    unknown = [p for p in points if p["requests"] is None]
    assert len(counted) == 7  # since 6 steps ago, and the step now
    assert unknown
    assert all(p["p50"] is None and p["in_flight"] is None for p in unknown)
    assert all(p["p99"] == 95.0 for p in counted)
    # One replica ready now; the r1 one ended four minutes ago, before this window.
    assert shot["replicas"][-1] == 1
    assert shot["last_request_at"] is None
    # The legend names revisions by number ("r2"), not by their ids.
    assert shot["revision_numbers"] == {str(revision(deployment, 2).pk): 2}


def test_with_no_counting_ever_every_step_is_unknown(deployment, gateway_figures):
    gateway_figures["since_steps_ago"] = None
    with team_scope(deployment.team):
        shot = live.snapshot(deployment)
    assert all(p["requests"] is None and p["p50"] is None for p in shot["points"])


def path(deployment: Deployment) -> str:
    return f"/ws/teams/{deployment.team.slug}/deployments/{deployment.pk}/"


async def receive_all(communicator: WebsocketCommunicator, timeout: float = 0.5) -> list[dict]:
    out = []
    while not await communicator.receive_nothing(timeout=timeout):
        received = await communicator.receive_json_from()
        # Live messages may come several in one websocket message (a JSON array).
        out.extend(received if isinstance(received, list) else [received])
    return out


def test_a_member_gets_hello_charts_backlog_and_live_snapshots(deployment, bob):
    stream.stream_publish(deployment.stream, {"type": "logs", "lines": ["loading model"]})

    async def run() -> list[dict]:
        communicator = WebsocketCommunicator(application, path(deployment))
        communicator.scope["user"] = bob
        assert (await communicator.connect())[0]
        first = await receive_all(communicator)
        from asgiref.sync import sync_to_async

        sent = await sync_to_async(live.publish_metrics)()
        later = await receive_all(communicator)
        await communicator.disconnect()
        return [*first, {"sent": sent}, *later]

    messages = async_to_sync(run)()
    kinds = [m.get("type", "sent") for m in messages]
    assert kinds[:3] == ["hello", "metrics", "logs"]
    assert messages[0]["status"]["status"] == "ready"
    assert messages[2]["lines"] == ["loading model"]
    assert messages[3] == {"sent": 1}  # active: its replicas run
    assert kinds[4:] == ["metrics"]
    assert "seq" not in messages[4]  # a snapshot is not numbered, nor kept
    assert len(messages[4]["points"]) == 13


def test_an_outsider_or_a_visitor_gets_no_socket(deployment, charlie, globex):
    async def run(user: Any, where: str) -> bool:
        communicator = WebsocketCommunicator(application, where)
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(run)(charlie, path(deployment)) is False
    assert async_to_sync(run)(AnonymousUser(), path(deployment)) is False
    # Acme's deployment under Globex's address: no such deployment there.
    other = f"/ws/teams/globex/deployments/{deployment.pk}/"

    async def accepted_then_closed() -> Any:
        communicator = WebsocketCommunicator(application, other)
        communicator.scope["user"] = charlie
        connected, _ = await communicator.connect()
        output = await communicator.receive_output(timeout=1) if connected else None
        await communicator.disconnect()
        return connected, output

    connected, output = async_to_sync(accepted_then_closed)()
    assert not connected or output == {"type": "websocket.close", "code": 4404}


def test_only_active_deployments_get_snapshots(deployment, acme, alice, catalogue):
    with team_scope(acme):
        idle = Deployment.objects.create(team=acme, name="Idle", slug="idle")
    found = {d.pk for d in live.active_deployments()}
    assert deployment.pk in found
    assert idle.pk not in found


# --- through the services (apps.deployments.services), with what they refuse ----------------


def spec_post(version: Any, machine_type: Any, **changes: Any) -> dict[str, Any]:
    return {
        "model_version": version.pk,
        "serving": "builtin",
        "port": 8080,
        "machine_type": machine_type.pk,
        "min_replicas": 1,
        "max_replicas": 2,
        "target_in_flight": 4,
        "scale_to_zero_after": "",
        "startup_timeout": 600,
        "canary_percent": 0,
        **changes,
    }


@pytest.fixture
def made(client, acme, bob, iris, everywhere, calls) -> Deployment:
    """Bob deploys iris v1 through the create form."""
    client.force_login(bob)
    response = client.post(
        url("create", team=acme),
        {
            "name": "Iris API",
            "auth_mode": "protected",
            **spec_post(iris, everywhere_type("cpu-small")),
        },
    )
    with team_scope(acme):
        deployment = Deployment.objects.get(name="Iris API")
    assert response.status_code == 302
    assert response.url == url("detail", deployment)
    assert calls["reconcile"] == [deployment.pk]
    return deployment


def test_the_create_form_deploys_and_shows_a_refusal_next_to_its_field(client, made, acme, iris):
    response = client.post(
        url("create", team=acme),
        {
            "name": "Other",
            "auth_mode": "public",
            **spec_post(iris, everywhere_type("cpu-small"), min_replicas=3, max_replicas=1),
        },
    )
    assert response.status_code == 400
    assert "max_replicas must be at least min_replicas." in text(response)
    again = client.post(
        url("create", team=acme),
        {
            "name": "Iris API",
            "auth_mode": "public",
            **spec_post(iris, everywhere_type("cpu-small")),
        },
    )
    assert again.status_code == 409
    assert "This team already has a deployment at iris-api" in text(again)
    with team_scope(acme):
        assert list(Deployment.objects.values_list("name", flat=True)) == ["Iris API"]


def test_a_change_is_a_new_revision_and_a_rollback_another(client, made, iris):
    response = client.post(
        url("change", made),
        {**spec_post(iris, everywhere_type("cpu-small"), max_replicas=3), "reason": "more"},
    )
    assert response.status_code == 302
    with team_scope(made.team):
        assert Revision.objects.get(deployment=made, number=2).reason == "more"
        first = Revision.objects.get(deployment=made, number=1)
    response = client.post(url("rollback", made, revision_id=first.pk), follow=True)
    assert "Rolling back to r1 as r3." in text(response)
    with team_scope(made.team):
        assert Revision.objects.get(deployment=made, number=3).reason == "rolled back to r1"


def test_a_traffic_split_the_service_refuses_says_why(client, made):
    with team_scope(made.team):
        Revision.objects.filter(deployment=made).update(status=Revision.Status.SERVING)
        first = Revision.objects.get(deployment=made, number=1)
    page = text(client.get(url("detail", made)))
    assert f'name="r{first.pk}"' in page
    response = client.post(url("traffic", made), {f"r{first.pk}": 60}, follow=True)
    assert response.status_code == 200
    assert "The shares add up to 60, not 100." in text(response)
    with team_scope(made.team):
        assert Deployment.objects.get(pk=made.pk).traffic == {}


def test_settings_refusals_show_and_a_good_change_is_saved(client, made):
    bad = client.post(
        url("settings", made),
        {"name": "", "description": "", "auth_mode": "public", "rate_limit_per_minute": 5},
    )
    assert bad.status_code == 400
    assert "Give the deployment a name." in text(bad)
    good = client.post(
        url("settings", made),
        {
            "name": "Iris API",
            "description": "v1",
            "auth_mode": "public",
            "rate_limit_per_minute": 5,
        },
    )
    assert good.status_code == 302
    with team_scope(made.team):
        fresh = Deployment.objects.get(pk=made.pk)
    assert (fresh.auth_mode, fresh.rate_limit_per_minute) == ("public", 5)


def test_a_key_is_shown_once(client, made):
    response = client.post(url("key_create", made), {"name": "ci"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = text(response)
    shown = body.split('data-testid="key-plaintext">')[1].split("<")[0]
    assert shown.startswith("ldk_")
    assert shown not in text(client.get(url("keys", made)))
    with team_scope(made.team):
        key = DeploymentKey.objects.get(deployment=made)
    client.post(url("key_revoke", made, key_id=key.pk))
    with team_scope(made.team):
        assert DeploymentKey.objects.get(pk=key.pk).revoked_at is not None


def test_delete_with_the_name_deletes(client, made, calls):
    response = client.post(url("delete", made), {"confirm": "Iris API"}, follow=True)
    assert "Iris API is deleted." in text(response)
    with team_scope(made.team):
        assert Deployment.objects.get(pk=made.pk).deleted_at is not None
        # controller.deployment_stop_all ran (the real one): nothing of it is wanted.
        revisions = Revision.objects.filter(deployment=made)
        assert {(r.status, r.replicas_wanted) for r in revisions} == {("retired", 0)}


def test_beat_pushes_the_snapshots_every_two_seconds(settings):
    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["deployments-metrics"]
    assert entry["task"] in app.tasks
    assert entry["schedule"] == live.PUSH_EVERY == 2.0


def test_one_failing_snapshot_does_not_stop_the_others(deployment, acme, alice, monkeypatch):
    with team_scope(acme):
        other = Deployment.objects.create(
            team=acme, name="Other", slug="other", last_request_at=deployment.created_at
        )
        Deployment.objects.filter(pk=deployment.pk).update(last_request_at=deployment.created_at)
    real = live.snapshot

    def snapshot(found: Deployment) -> dict[str, Any]:
        if found.pk == other.pk:
            raise RuntimeError("the gateway's windows are unreadable")
        return real(found)

    monkeypatch.setattr(live, "snapshot", snapshot)
    assert live.publish_metrics() == 1


def test_a_removed_member_is_cut_off_and_gets_no_more_snapshots(deployment, acme, alice, bob):
    from asgiref.sync import sync_to_async

    from apps.teams.models import Membership
    from apps.teams.services import member_remove

    def remove_bob() -> None:
        member = Membership.objects.for_team(acme).get(user=bob)
        member_remove(team=acme, actor=alice, member=member)

    async def watch(user: Any) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, path(deployment))
        communicator.scope["user"] = user
        assert (await communicator.connect())[0]
        assert (await communicator.receive_json_from())["type"] == "hello"
        assert (await communicator.receive_json_from())["type"] == "metrics"
        return communicator

    async def run() -> tuple[Any, dict, bool]:
        watching = await watch(bob)
        staying = await watch(alice)
        await sync_to_async(remove_bob)()
        closed = await watching.receive_output(timeout=1)
        await sync_to_async(live.publish_metrics)()
        to_alice = await staying.receive_json_from(timeout=2)
        bob_got_more = not await watching.receive_nothing(timeout=0.3)
        await watching.disconnect()
        await staying.disconnect()
        return closed, to_alice, bob_got_more

    closed, to_alice, bob_got_more = async_to_sync(run)()
    assert closed == {"type": "websocket.close", "code": 4404}
    assert to_alice["type"] == "metrics"
    assert not bob_got_more
