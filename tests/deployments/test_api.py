"""The deployments API (/api/v1/teams/<team>/deployments/...): deploy, change, roll back,
split traffic, keys, settings, delete; the detail's endpoint addresses and curl; events,
metrics, request log and replica logs; every refusal; tenancy (another team's deployment,
model, version, alias, revision or key cannot be named); token scopes; secrets never
echoed; the schema."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.tokens import token_create
from apps.core import stream
from apps.core.crypto import open_json
from apps.core.errors import PaymentRequiredError
from apps.deployments import entitlements, metrics
from apps.deployments.models import DeploymentEvent, DeploymentKey, Revision
from apps.deployments.services import key_hash
from apps.models.services.aliases import alias_set
from tests.model_fixtures import make_model_version

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret"


def base(team: Any) -> str:
    return f"/api/v1/teams/{team.slug}/deployments/"


def client_of(user: Any) -> APIClient:
    api = APIClient()
    api.force_login(user)
    return api


def by_token(user: Any, scopes: list[str], team: Any = None) -> APIClient:
    _, plaintext = token_create(user=user, name="t", scopes=scopes, team=team)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return api


@pytest.fixture
def api(alice: Any) -> APIClient:
    return client_of(alice)


@pytest.fixture
def made(api: APIClient, acme: Any, iris: Any, everywhere: Any, calls: Any) -> dict[str, Any]:
    response = api.post(
        base(acme),
        {
            "name": "Iris API",
            "model": "iris",
            "version": 1,
            "machine_type": "cpu-small",
            "max_replicas": 2,
            "env": {"MODE": "fast"},
            "secrets": {"API_SECRET": SECRET},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


# --- deploy ---------------------------------------------------------------------------


def test_deploy_answers_the_detail_with_endpoints_and_a_curl(made, acme):
    assert (made["name"], made["slug"], made["auth_mode"], made["status"]) == (
        "Iris API",
        "iris-api",
        "protected",
        "deploying",
    )
    [revision] = made["revisions"]
    assert (revision["number"], revision["model"], revision["version"]) == (1, "iris", 1)
    assert (revision["machine_type"], revision["max_replicas"]) == ("cpu-small", 2)
    assert revision["env"] == {"MODE": "fast"}
    assert revision["secret_names"] == ["API_SECRET"]
    assert made["rollout"] == 1
    assert made["endpoints"] == {
        "origin": "http://iris-api--acme.localhost/",
        "api": "http://testserver/api/v1/teams/acme/deployments/iris-api/invoke/",
        "origin_note": "",
    }
    assert made["curl"] == (
        "curl -X POST http://iris-api--acme.localhost/predict "
        '-H "Authorization: Bearer $LATTICE_TOKEN" '
        "-H 'Content-Type: application/json' -d '{}'"
    )


def test_the_endpoint_keeps_the_port_and_a_private_curl_uses_the_api_path(api, acme, made, calls):
    api.patch(f"{base(acme)}iris-api/", {"auth_mode": "private"}, format="json")
    body = api.get(f"{base(acme)}iris-api/", HTTP_HOST="localhost:8000").json()
    assert body["endpoints"]["origin"] == "http://iris-api--acme.localhost:8000/"
    assert body["curl"].startswith(
        "curl -X POST http://localhost:8000/api/v1/teams/acme/deployments/iris-api/invoke/predict"
    )
    api.patch(f"{base(acme)}iris-api/", {"auth_mode": "public"}, format="json")
    assert "Authorization" not in api.get(f"{base(acme)}iris-api/").json()["curl"]


def test_secrets_are_never_echoed_by_any_route(api, acme, made, calls):
    routes = [
        "",
        "iris-api/",
        "iris-api/revisions/",
        "iris-api/revisions/1/",
        "iris-api/events/",
        "iris-api/keys/",
    ]
    changed = api.post(f"{base(acme)}iris-api/revisions/", {"max_replicas": 3}, format="json")
    assert changed.status_code == 201
    for route in routes:
        response = api.get(f"{base(acme)}{route}")
        assert response.status_code == 200, route
        assert SECRET not in response.content.decode(), route
        assert "secret_env" not in response.content.decode(), route
    assert SECRET not in changed.content.decode()
    # Kept sealed, and carried to the new revision (secrets left out: kept).
    revision = Revision.objects.for_team(acme).get(deployment__slug="iris-api", number=2)
    assert open_json(bytes(revision.secret_env)) == {"API_SECRET": SECRET}


def test_a_deploy_refused_names_the_field(api, acme, iris, everywhere, calls):
    cases = [
        ({"machine_type": "cpu-small", "model": "iris", "version": 1}, "name"),
        ({"name": "X", "model": "iris", "version": 1}, "machine_type"),
        ({"name": "X", "machine_type": "nope", "model": "iris", "version": 1}, "machine_type"),
        ({"name": "X", "machine_type": "cpu-small"}, "model"),
        ({"name": "X", "machine_type": "cpu-small", "model": "nope", "version": 1}, "model"),
        ({"name": "X", "machine_type": "cpu-small", "model": "iris"}, "version"),
        ({"name": "X", "machine_type": "cpu-small", "model": "iris", "version": 9}, "version"),
        (
            {
                "name": "X",
                "machine_type": "cpu-small",
                "model": "iris",
                "version": 1,
                "min_replicas": 3,
                "max_replicas": 1,
            },
            "max_replicas",
        ),
        (
            {
                "name": "X",
                "machine_type": "cpu-small",
                "model": "iris",
                "version": 1,
                "env": {"PORT": "1"},
            },
            "env",
        ),
        (
            {
                "name": "X",
                "machine_type": "cpu-small",
                "model": "iris",
                "version": 1,
                "auth_mode": "everyone",
            },
            "auth_mode",
        ),
        (
            {"name": "X", "machine_type": "cpu-small", "model": "iris", "follows_alias": "prod"},
            "follows_alias",
        ),
        (
            {
                "name": "X",
                "machine_type": "cpu-small",
                "serving": "custom",
                "image": "Not An Image",
            },
            "image",
        ),
    ]
    for body, field in cases:
        response = api.post(base(acme), body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in error(response)["fields"], (body, response.content)
    assert api.get(base(acme)).json()["results"] == []


def test_a_type_no_host_offers_is_409(api, acme, iris, catalogue, calls):
    # No host at all: nothing could run any type.
    response = api.post(
        base(acme),
        {"name": "G", "machine_type": "h100-80gb", "model": "iris", "version": 1},
        format="json",
    )
    assert response.status_code == 409
    assert error(response)["code"] == "no_host_offers_type"


def test_the_plan_refusal_is_a_402_with_where_to_lift_it(api, acme, iris, everywhere, calls):
    def refuse(team, machine_type, replicas):
        raise PaymentRequiredError("Your plan runs 1 replica.", upgrade_url="/t/acme/billing/")

    with entitlements.check_replicas.override(refuse):
        response = api.post(
            base(acme),
            {"name": "P", "machine_type": "cpu-small", "model": "iris", "version": 1},
            format="json",
        )
    assert response.status_code == 402
    assert error(response)["code"] == "plan_limit"
    assert error(response)["upgrade_url"].endswith("/t/acme/billing/")


def test_following_an_alias(api, acme, alice, iris, everywhere, calls):
    alias_set(team=acme, actor=alice, model=iris.model, name="prod", version=iris)
    response = api.post(
        base(acme),
        {"name": "F", "machine_type": "cpu-small", "model": "iris", "follows_alias": "prod"},
        format="json",
    )
    assert response.status_code == 201, response.content
    [revision] = response.json()["revisions"]
    assert (revision["follows_alias"], revision["version"]) == ("prod", 1)


# --- tenancy ---------------------------------------------------------------------------


def test_another_teams_model_version_and_alias_cannot_be_named(
    api, acme, globex, charlie, iris, everywhere, calls
):
    theirs = make_model_version(globex, charlie, "Secret", {"m.pkl": b"theirs"})
    alias_set(team=globex, actor=charlie, model=theirs.model, name="prod", version=theirs)
    for body, field in (
        ({"model": "secret", "version": 1}, "model"),
        ({"model": "secret", "follows_alias": "prod"}, "model"),
    ):
        response = api.post(
            base(acme), {"name": "T", "machine_type": "cpu-small", **body}, format="json"
        )
        assert response.status_code == 400
        assert field in error(response)["fields"]


def test_charlie_cannot_reach_acmes_deployment_by_its_slug_or_through_globex(
    acme, globex, charlie, made, calls
):
    key_id = (
        DeploymentKey.objects.for_team(acme)
        .create(
            team=acme,
            deployment_id=made["id"],
            name="k",
            key_hash=key_hash("ldk_x"),
            display_prefix="ldk_x",
        )
        .pk
    )
    charlie_api = client_of(charlie)
    for team in (acme, globex):
        for route in (
            "iris-api/",
            "iris-api/revisions/",
            "iris-api/revisions/1/",
            "iris-api/revisions/1/rollback/",
            "iris-api/traffic/",
            f"iris-api/keys/{key_id}/",
            "iris-api/events/",
            "iris-api/logs/",
        ):
            for method in ("get", "post", "put", "patch", "delete"):
                response = getattr(charlie_api, method)(f"{base(team)}{route}", {}, format="json")
                assert response.status_code in (404, 405), (team.slug, route, method)
                assert response.status_code != 405 or team == globex
    assert Revision.objects.for_team(acme).count() == 1


def test_another_deployments_revision_or_key_cannot_be_named(api, acme, made, iris, calls):
    other = api.post(
        base(acme),
        {"name": "Other", "machine_type": "cpu-small", "model": "iris", "version": 1},
        format="json",
    ).json()
    api.post(f"{base(acme)}other/revisions/", {"max_replicas": 2}, format="json")
    key = api.post(f"{base(acme)}other/keys/", {"name": "k"}, format="json").json()
    # iris-api has only revision 1; "2" is other's number, never reachable from iris-api.
    assert api.post(f"{base(acme)}iris-api/revisions/2/rollback/").status_code == 404
    assert api.delete(f"{base(acme)}iris-api/keys/{key['id']}/").status_code == 404
    assert DeploymentKey.objects.for_team(acme).get(pk=key["id"]).revoked_at is None
    assert other["slug"] == "other"


# --- roles and scopes -------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_change(acme, erin, made, calls):
    viewer = client_of(erin)
    assert viewer.get(f"{base(acme)}iris-api/").status_code == 200
    assert viewer.patch(f"{base(acme)}iris-api/", {"name": "X"}, format="json").status_code == 403
    assert (
        viewer.post(f"{base(acme)}iris-api/keys/", {"name": "x"}, format="json").status_code == 403
    )
    assert viewer.delete(f"{base(acme)}iris-api/").status_code == 403


def test_token_scopes_read_and_write(acme, alice, made, calls):
    reader = by_token(alice, ["deployments:read"])
    assert reader.get(f"{base(acme)}iris-api/").status_code == 200
    assert (
        reader.post(f"{base(acme)}iris-api/keys/", {"name": "x"}, format="json").status_code == 403
    )
    writer = by_token(alice, ["deployments:read", "deployments:write"])
    assert (
        writer.post(f"{base(acme)}iris-api/keys/", {"name": "x"}, format="json").status_code == 201
    )
    # Another area's scope, or only invoke, reads nothing here.
    for scopes in (["models:read", "models:write"], ["deployments:invoke"]):
        assert by_token(alice, scopes).get(base(acme)).status_code == 403


def test_a_token_limited_to_another_team_gets_404(acme, alice, globex, charlie, made, calls):
    from tests.factories import add_member

    add_member(globex, alice, "member")
    limited = by_token(alice, ["deployments:read"], team=globex)
    assert limited.get(f"{base(acme)}iris-api/").status_code == 404


# --- change, rollback, traffic -----------------------------------------------------------


def test_a_change_keeps_what_it_leaves_out(api, acme, alice, made, calls):
    make_model_version(acme, alice, "Iris", {"predict.py": b"def predict(x): return 2\n"})
    response = api.post(
        f"{base(acme)}iris-api/revisions/",
        {"version": 2, "reason": "v2", "env": {"MODE": "slow"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    revision = response.json()
    assert (revision["number"], revision["reason"], revision["model"], revision["version"]) == (
        2,
        "v2",
        "iris",
        2,
    )
    assert (revision["max_replicas"], revision["machine_type"], revision["env"]) == (
        2,
        "cpu-small",
        {"MODE": "slow"},
    )
    assert revision["secret_names"] == ["API_SECRET"]
    numbers = [r["number"] for r in api.get(f"{base(acme)}iris-api/revisions/").json()["results"]]
    assert numbers == [2, 1]
    # secrets {} clears them.
    cleared = api.post(f"{base(acme)}iris-api/revisions/", {"secrets": {}}, format="json").json()
    assert cleared["secret_names"] == []


def test_a_refused_change_is_a_400_and_makes_nothing(api, acme, made, calls):
    response = api.post(f"{base(acme)}iris-api/revisions/", {"target_in_flight": 0}, format="json")
    assert response.status_code == 400
    assert "target_in_flight" in error(response)["fields"]
    assert len(api.get(f"{base(acme)}iris-api/").json()["revisions"]) == 1


def test_rollback_makes_a_new_revision(api, acme, made, calls):
    api.post(f"{base(acme)}iris-api/revisions/", {"max_replicas": 5}, format="json")
    response = api.post(f"{base(acme)}iris-api/revisions/1/rollback/")
    assert response.status_code == 201, response.content
    assert (response.json()["number"], response.json()["reason"]) == (3, "rolled back to r1")
    assert response.json()["max_replicas"] == 2
    # The newest is no rollback target.
    assert api.post(f"{base(acme)}iris-api/revisions/3/rollback/").status_code == 409
    assert api.post(f"{base(acme)}iris-api/revisions/9/rollback/").status_code == 404


def test_traffic_split_by_revision_number(api, acme, made, calls):
    api.post(f"{base(acme)}iris-api/revisions/", {"max_replicas": 1}, format="json")
    Revision.objects.for_team(acme).filter(deployment_id=made["id"]).update(
        status=Revision.Status.SERVING
    )
    response = api.put(
        f"{base(acme)}iris-api/traffic/", {"split": {"1": 80, "2": 20}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert [(t["revision"], t["percent"]) for t in response.json()["traffic"]] == [
        (1, 80),
        (2, 20),
    ]
    bad = api.put(f"{base(acme)}iris-api/traffic/", {"split": {"1": 50}}, format="json")
    assert bad.status_code == 400
    assert "traffic" in error(bad)["fields"]
    assert (
        api.put(f"{base(acme)}iris-api/traffic/", {"split": {"7": 100}}, format="json").status_code
        == 404
    )
    assert (
        api.put(f"{base(acme)}iris-api/traffic/", {"split": {"x": 100}}, format="json").status_code
        == 400
    )


def test_traffic_to_a_revision_not_serving_is_409(api, acme, made, calls):
    response = api.put(f"{base(acme)}iris-api/traffic/", {"split": {"1": 100}}, format="json")
    assert response.status_code == 409


# --- settings, delete, keys -----------------------------------------------------------------


def test_patch_changes_settings_and_keeps_the_slug(api, acme, made, calls):
    response = api.patch(
        f"{base(acme)}iris-api/",
        {"name": "Flowers", "rate_limit_per_minute": 60, "auth_mode": "public"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["slug"], body["rate_limit_per_minute"], body["auth_mode"]) == (
        "Flowers",
        "iris-api",
        60,
        "public",
    )
    bad = api.patch(f"{base(acme)}iris-api/", {"rate_limit_per_minute": -5}, format="json")
    assert bad.status_code == 400
    assert "rate_limit_per_minute" in error(bad)["fields"]


def test_delete_stops_and_hides_it(api, acme, made, calls):
    assert api.delete(f"{base(acme)}iris-api/").status_code == 204
    # controller.deployment_stop_all ran (the real one): its revision retired, said so.
    revision = Revision.objects.for_team(acme).get(deployment_id=made["id"])
    assert (revision.status, revision.replicas_wanted) == (Revision.Status.RETIRED, 0)
    events = DeploymentEvent.objects.for_team(acme).filter(deployment_id=made["id"])
    assert "Every replica stops: deleted" in events.values_list("message", flat=True)
    assert api.get(f"{base(acme)}iris-api/").status_code == 404
    assert api.get(base(acme)).json()["results"] == []


def test_a_key_is_shown_once(api, acme, made, calls):
    created = api.post(f"{base(acme)}iris-api/keys/", {"name": "CI"}, format="json")
    assert created.status_code == 201
    plaintext = created.json()["key"]
    assert plaintext.startswith("ldk_")
    assert len(plaintext) == 44
    listed = api.get(f"{base(acme)}iris-api/keys/")
    assert plaintext not in listed.content.decode()
    [row] = listed.json()["results"]
    assert (row["name"], row["prefix"], row["revoked_at"]) == ("CI", plaintext[:12], None)
    one = api.get(f"{base(acme)}iris-api/keys/{row['id']}/")
    assert plaintext not in one.content.decode()

    assert api.delete(f"{base(acme)}iris-api/keys/{row['id']}/").status_code == 204
    assert api.get(f"{base(acme)}iris-api/keys/").json()["results"][0]["revoked_at"] is not None
    assert api.post(f"{base(acme)}iris-api/keys/", {"name": ""}, format="json").status_code == 400


# --- events, metrics, request log, replica logs -----------------------------------------------


def test_events_newest_first(api, acme, made, calls):
    revision = Revision.objects.for_team(acme).get(deployment_id=made["id"])
    for kind in ("revision_made", "ready"):
        DeploymentEvent.objects.for_team(acme).create(
            team=acme, deployment_id=made["id"], revision=revision, kind=kind, message=kind
        )
    events = api.get(f"{base(acme)}iris-api/events/").json()["results"]
    assert [(e["kind"], e["revision"]) for e in events] == [("ready", 1), ("revision_made", 1)]


def test_metrics_and_request_log_come_from_the_gateways_counts(api, acme, made):
    # The gateway's real counts: one request counted and flushed as its process does.
    revision = Revision.objects.for_team(acme).get(deployment_id=made["id"])
    counts = metrics.counts
    counts.started(revision_id=revision.pk, deployment_id=made["id"], team_id=acme.pk)
    counts.finished(revision_id=revision.pk, status=200, ms=3.5, method="POST", path="/predict")
    metrics.flush(before=int(time.time()) + 1)

    response = api.get(f"{base(acme)}iris-api/metrics/?seconds=60&step=2")
    figures = response.json()
    assert (figures["step"], figures["seconds"]) == (2, 60)
    assert figures["revisions"] == [revision.pk]
    assert sum(p["requests"] for p in figures["points"]) == 1
    assert sum(p["status"]["2xx"] for p in figures["points"]) == 1
    assert api.get(f"{base(acme)}iris-api/metrics/?step=0").status_code == 400
    lines = api.get(f"{base(acme)}iris-api/requests/").json()
    assert [(line["path"], line["status"], line["revision_number"]) for line in lines] == [
        ("/predict", 200, 1)
    ]


def test_replica_logs_are_the_streams_log_frames(api, acme, made, fake_runtime):
    name = f"deployment-{made['id']}"
    stream.stream_publish(name, {"type": "logs", "lines": ["loading model"]})
    stream.stream_publish(name, {"type": "replica", "status": "ready"})
    stream.stream_publish(name, {"type": "logs", "lines": ["ready"]})
    page = api.get(f"{base(acme)}iris-api/logs/").json()
    assert [m["lines"] for m in page["messages"]] == [["loading model"], ["ready"]]
    assert page["last"] == 3
    later = api.get(f"{base(acme)}iris-api/logs/?after=2&epoch={page['epoch']}").json()
    assert [m["lines"] for m in later["messages"]] == [["ready"]]


# --- the schema -------------------------------------------------------------------------------


def test_the_schema_lists_the_routes_and_never_a_secret_in_an_answer(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    paths = schema["paths"]
    for route in (
        "deployments/",
        "deployments/{slug}/",
        "deployments/{slug}/revisions/",
        "deployments/{slug}/revisions/{number}/rollback/",
        "deployments/{slug}/traffic/",
        "deployments/{slug}/keys/",
        "deployments/{slug}/keys/{key_id}/",
        "deployments/{slug}/events/",
        "deployments/{slug}/metrics/",
        "deployments/{slug}/requests/",
        "deployments/{slug}/logs/",
    ):
        assert f"/api/v1/teams/{{team_slug}}/{route}" in paths, route
    components = schema["components"]["schemas"]
    assert "secrets" in components["DeploymentCreateRequest"]["properties"]
    for name, component in components.items():
        if not name.endswith("Request"):
            assert "secrets" not in component.get("properties", {}), name
            assert "secret_env" not in component.get("properties", {}), name
    assert "key" in components["KeyCreated"]["properties"]
