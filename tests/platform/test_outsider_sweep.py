"""The outsider sweep: every route of the project, tried by charlie and by a visitor.

Every URL pattern (HTML and, later, API) and every websocket route must be
classified below. A route nobody classified fails the sweep, so each new
route is covered from the day it is added:

- TEAM: inside a team (/t/<slug>/...). Charlie, a member of another team,
  gets 404 (not 403: ids and slugs cannot be probed) for GET and POST;
  a visitor is sent to log in. Every route of a namespace in TEAM_NAMESPACES
  is a team route, whatever its name.
- ACCOUNT: the signed-in person's own account. A visitor is sent to log in;
  charlie sees only his own account (no team's data is on these pages).
- PUBLIC: the ways in (login, signup, reset, confirmation, invitation links)
  and health probes.
  Nothing there may fail with a 5xx for a visitor.
- ADMIN: Django's admin, staff only: never 200 for charlie or a visitor.
- API_TEAM: /api/v1/teams/<slug>/...: charlie gets 404 for every method,
  with his session or his token; a visitor gets 401.
- API_ACCOUNT: the caller's own things (/me, tokens, the team list): a
  visitor gets 401; charlie never sees alice's.
- WEBSOCKET: every websocket route ("team": charlie and a visitor are refused
  at the handshake).
"""

from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver

from apps.core.models import AuditEntry
from apps.notebooks.models import NotebookSnapshot
from apps.teams.models import Membership, Role, Team
from config.routing import notebook_websocket_urlpatterns, websocket_urlpatterns
from tests.asgi_server import session_cookie
from tests.helpers import reauthenticate
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db

TEAM = {
    "teams:home",
    "teams:members",
    "teams:member_role",
    "teams:member_remove",
    "teams:settings",
    "teams:leave",
    "teams:transfer",
    "teams:delete",
    "teams:audit",
    "teams:invitation_create",
    "teams:invitation_revoke",
    "teams:invitation_resend",
    "teams:secrets",
    "teams:secret_delete",
    "billing:overview",
    "billing:checkout",
    "billing:portal",
    "billing:cap",
    "billing:usage",
}
# Namespaces whose every route is a team route (the notebook, dataset and model pages).
TEAM_NAMESPACES = {"notebooks", "datasets", "models", "deployments", "jobs", "job_files"}
ACCOUNT = {
    "core:dashboard",
    "teams:create",
    "accounts:profile",
    "accounts:tokens",
    "accounts:token_revoke",
    "accounts:tokens_revoke_all",
    "account_email",
    "account_change_password",
    "account_set_password",
    "account_reauthenticate",
    "account_request_reauthentication_code",
    "account_confirm_reauthentication_code",
    "mfa_index",
    "mfa_reauthenticate",
    "mfa_activate_totp",
    "mfa_deactivate_totp",
    "mfa_view_recovery_codes",
    "mfa_generate_recovery_codes",
    "mfa_download_recovery_codes",
    "usersessions_list",
    # The public dataset catalogue: signed in only, in no team, and it shows no team's
    # private data (a private dataset is 404 there; tests/datasets/test_catalogue.py).
    "catalogue:index",
    "catalogue:detail",
}
PUBLIC = {
    "healthz",
    "readyz",
    "account_login",
    "account_logout",
    "account_inactive",
    "account_signup",
    "account_email_verification_sent",
    "account_confirm_email",
    "account_confirm_login_code",
    "account_reset_password",
    "account_reset_password_done",
    "account_reset_password_from_key",
    "account_reset_password_from_key_done",
    "mfa_authenticate",
    # The mailed link: the signed token is the key, there is no team in the URL.
    "invitation",
    # Stripe's deliveries: the signature is the key (tests/billing/test_webhooks.py).
    "billing:stripe_webhook",
    # Hosts reading a mounted blob: the signed link is the key, 403 without it
    # (tests/datasets/test_blob_urls.py).
    "blob_read",
    # Hosts saving a notebook folder as a model version: the single-use ticket is the key,
    # 403 without it (tests/models/test_save_tickets.py).
    "hostsave_progress",
    "hostsave_manifest",
    "hostsave_complete",
    "hostsave_fail",
    "hostsave_chunk_target",
    "hostsave_chunk",
}
API_TEAM = {
    "api:team",
    "api:members",
    "api:member",
    "api:invitations",
    "api:invitation",
    "api:invitation_resend",
    "api:audit",
    "api:secrets",
    "api:secret",
    "api:notebooks",
    "api:notebook",
    "api:notebook_start",
    "api:notebook_stop",
    "api:notebook_restart",
    "api:notebook_duplicate",
    "api:notebook_extend",
    "api:notebook_save_model",
    "api:notebook_events",
    "api:notebook_logs",
    "api:machine_types",
    "api:billing",
    "api:billing_usage",
    "api:billing_invoices",
    "api:billing_checkout",
    "api:billing_portal",
    "api:datasets",
    "api:dataset",
    "api:dataset_files",
    "api:dataset_file",
    "api:dataset_archive",
    "api:dataset_uploads",
    "api:upload",
    "api:upload_chunk",
    "api:upload_chunk_target",
    "api:notebook_datasets",
    "api:notebook_dataset",
    "api:notebook_snapshots",
    "api:notebook_snapshot",
    "api:notebook_snapshot_copy",
    "api:upload_complete",
    "api:models",
    "api:model",
    "api:model_versions",
    "api:model_version",
    "api:model_files",
    "api:model_file",
    "api:model_archive",
    "api:model_diff",
    "api:model_alias",
    "api:model_upload",
    "api:model_upload_chunk",
    "api:model_upload_chunk_target",
    "api:model_upload_complete",
    "api:deployments",
    "api:deployment",
    "api:deployment_revisions",
    "api:deployment_revision",
    "api:deployment_rollback",
    "api:deployment_traffic",
    "api:deployment_keys",
    "api:deployment_key",
    "api:deployment_events",
    "api:deployment_metrics",
    "api:deployment_requests",
    "api:deployment_logs",
    "api:jobs",
    "api:job",
    "api:job_start",
    "api:job_runs",
    "api:job_run",
    "api:job_run_cancel",
    "api:job_run_rerun",
    "api:job_run_logs",
}
# api:plans is the same for everyone signed in: no team's data.
API_ACCOUNT = {
    "api:me",
    "api:tokens",
    "api:token",
    "api:tokens_revoke_all",
    "api:teams",
    "api:plans",
}
# The public dataset catalogue: every team's public datasets to anyone signed in, never a
# private one (404, like a missing one: tests/datasets/test_catalogue.py).
API_ACCOUNT |= {
    "api:catalogue",
    "api:catalogue_dataset",
    "api:catalogue_files",
    "api:catalogue_file",
    "api:catalogue_archive",
}
PUBLIC |= {"api:schema", "api:docs"}  # the API's description; no data
ADMIN_NAMESPACE = "admin"
WEBSOCKET: dict[str, str] = {  # route pattern -> kind
    r"^ws/teams/(?P<team_slug>[-a-zA-Z0-9_]+)/notebooks/(?P<notebook_id>[0-9]+)/$": "team",
    r"^ws/teams/(?P<team_slug>[-a-zA-Z0-9_]+)/deployments/(?P<deployment_id>[0-9]+)/$": "team",
    r"^ws/teams/(?P<team_slug>[-a-zA-Z0-9_]+)/jobs/runs/(?P<run_id>[0-9]+)/$": "team",
    # On the notebook's own origin (nb-<id>.localhost), where only its cookie lets one in.
    r"^nb/(?P<notebook_id>[0-9]+)/": "team",
}


def is_team(name: str) -> bool:
    return name in TEAM or name.split(":", 1)[0] in TEAM_NAMESPACES


def all_routes() -> list[tuple[str, str]]:
    """(name, concrete path pattern) for every URL pattern, admin's included."""
    found: list[tuple[str, str]] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = ":".join(filter(None, [namespace, p.namespace or ""]))
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                name = ":".join(filter(None, [namespace, p.name or "<unnamed>"]))
                found.append((name, prefix + str(p.pattern)))

    walk(get_resolver().url_patterns, "/", "")
    return found


def concrete(path: str, samples: dict[str, str]) -> str:
    """Fill a route's parameters (path converters or regex groups) with sample values."""
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: samples.get(m.group(1), "1"), path)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: samples.get(m.group(1), "1"), path)
    return path.replace("^", "").replace("$", "").replace("\\", "")


def sweep_deployment(team, actor, version, monkeypatch):
    from apps.deployments import controller
    from apps.deployments.services import RevisionSpec, deployment_create, key_create
    from apps.machines.models import MachineType
    from tests.notebook_fixtures import host_for_every_type

    # Only the reconcile is left out: a real pass would place a replica and send its start
    # to the host's agent (Celery runs tasks eagerly in tests), and this host is a row with
    # no agent behind it. Routing and metrics are the real ones (nothing counted: empty).
    monkeypatch.setattr(controller, "deployment_reconcile_soon", lambda *_: None)
    host_for_every_type()
    deployment = deployment_create(
        team=team,
        actor=actor,
        name="Sweep",
        auth_mode="protected",
        spec=RevisionSpec(
            machine_type=MachineType.objects.get(slug="cpu-small"), model_version=version
        ),
    )
    key_create(team=team, actor=actor, deployment=deployment, name="sweep")
    return deployment


def sweep_job(team, actor):
    from apps.jobs.models import Run
    from apps.jobs.runs import job_definition
    from apps.jobs.services import job_create

    job = job_create(
        team=team,
        actor=actor,
        name="Sweep",
        command="echo sweep",
        machine_type="cpu-small",
        template="scipy",
    )
    run = Run.objects.for_team(team).create(
        team=team, job=job, number=1, definition=job_definition(job), triggered_by=actor
    )
    return job, run


def sweep_run_file(team, run):
    """The run's executed notebook kept, so its routes answer alice."""
    from apps.jobs.models import RunFile
    from tests.job_fixtures import executed_notebook, keep_file

    return keep_file(run, "executed.ipynb", executed_notebook(""), kind=RunFile.Kind.RESULT)


@pytest.fixture
def samples(acme, alice, bob, catalogue, media, monkeypatch):
    from apps.datasets.services import dataset_create
    from apps.models.services.registry import model_create
    from tests.model_fixtures import make_model_version

    bob_membership = Membership.objects.for_team(acme).get(user=bob)
    notebook = make_notebook(acme, alice, "Sweep")
    dataset = dataset_create(team=acme, actor=alice, name="Sweep")
    # A model of the same slug, so the models' routes answer alice (tests/models/test_api.py
    # walks them with a version, an alias and an upload behind them).
    model_create(team=acme, actor=alice, name="Sweep")
    # Version 1 of a model, so that alice's GET of its pages (number 1, a file) is a 200.
    model_version = make_model_version(acme, alice, "Sweep model", {"model.pkl": b"sweep"})
    # A deployment at the same slug, serving it, so its API routes answer alice (revision 1,
    # key 1); its metrics and request lines are the gateway's real reads (nothing counted).
    deployment = sweep_deployment(acme, alice, model_version, monkeypatch)
    # A job with run 1, so its pages and API routes answer alice. The run row is written as
    # the engine would leave it queued: nothing is started (no agent behind this host).
    job, run = sweep_job(acme, alice)
    run_file = sweep_run_file(acme, run)
    # A ready snapshot of the notebook (no files), so its snapshot routes answer alice.
    snapshot = NotebookSnapshot.objects.for_team(acme).create(
        team=acme, notebook=notebook, reason="manual", state="ready"
    )
    return {
        "snapshot_id": str(snapshot.pk),
        "job_id": str(job.pk),
        "run_id": str(run.pk),
        "deployment_id": str(deployment.pk),
        "model_slug": model_version.model.slug,
        "path": "model.pkl",
        "notebook_id": str(notebook.pk),
        "slug": dataset.slug,
        "team_slug": acme.slug,
        "member_id": str(bob_membership.pk),
        "key": "not-a-real-key",
        "uidb36": "1",
        "app_label": "accounts",
        "object_id": "1",
        "content_type_id": "1",
        "url": "anything",
        "token": "not-a-signed-token",
        "invitation_id": "1",
        "token_id": "1",
        "sha256": "0" * 64,
        # A job run's executed notebook, kept (apps.jobs.files_urls).
        "file_id": str(run_file.pk),
    }


def test_every_route_is_classified():
    names = {name for name, _ in all_routes()}
    classified = TEAM | ACCOUNT | PUBLIC | API_TEAM | API_ACCOUNT
    unclassified = {
        n for n in names - classified if not n.startswith(f"{ADMIN_NAMESPACE}:") and not is_team(n)
    }

    assert unclassified == set(), f"classify these routes in {__file__}"
    assert classified - names == set(), "classified routes that no longer exist"
    ws_routes = {str(p.pattern) for p in [*websocket_urlpatterns, *notebook_websocket_urlpatterns]}
    assert ws_routes == set(WEBSOCKET), "classify every websocket route"


# POST-only form routes whose GET (a reload after a refusal) redirects to the page.
GET_REDIRECTS = {
    "models:edit",
    "models:delete",
    "models:alias_set",
    "models:alias_remove",
    "job_files:notebook",  # on to the results origin, with a ticket
}


def test_charlie_gets_404_on_every_team_route(client, alice, charlie, globex, samples):
    routes = [(n, concrete(p, samples)) for n, p in all_routes() if is_team(n)]
    assert {n for n, _ in routes} >= TEAM
    assert any(n.startswith("notebooks:") for n, _ in routes)
    # The same addresses work for alice, so charlie's 404s are not just bad URLs.
    client.force_login(alice)
    for name, path in routes:
        expected = {302} if name in GET_REDIRECTS else {200, 405}
        assert client.get(path).status_code in expected, f"alice: GET {path} ({name})"

    client.force_login(charlie)
    for name, path in routes:
        assert client.get(path).status_code == 404, f"GET {path} ({name})"
        assert client.post(path, {"role": "owner", "name": "x"}).status_code == 404, path


def test_charlie_cannot_reach_a_member_of_acme_through_his_own_team(
    client, acme, bob, charlie, globex, samples
):
    client.force_login(charlie)
    # Transferring asks charlie for his password again; he has it.
    reauthenticate(client)
    bob_membership = samples["member_id"]

    for url in (
        f"/t/globex/members/{bob_membership}/role/",
        f"/t/globex/members/{bob_membership}/remove/",
    ):
        assert client.post(url, {"role": "viewer"}).status_code == 404, url
    assert client.post("/t/globex/transfer/", {"member_id": bob_membership}).status_code == 404
    # Bob is still a member of acme and nothing of globex's.
    assert Membership.objects.for_team(acme).get(pk=bob_membership).role == Role.MEMBER
    assert list(Membership.objects.for_team(globex).values_list("user", "role")) == [
        (charlie.pk, Role.OWNER)
    ]


def test_a_visitor_is_sent_to_log_in_from_team_and_account_routes(client, samples):
    routes = [(n, concrete(p, samples)) for n, p in all_routes() if is_team(n) or n in ACCOUNT]

    for name, path in routes:
        response = client.get(path)
        if response.status_code == 404:
            # allauth answers 404 for flows that are switched off (login by code).
            assert name.startswith("account_"), f"{path} ({name})"
            assert "code" in name, f"{path} ({name})"
            continue
        assert response.status_code == 302, f"GET {path} ({name})"
        assert response["Location"].startswith("/accounts/login/"), f"{path} ({name})"


def test_charlie_sees_only_his_own_account_pages(client, charlie, globex, acme, samples):
    client.force_login(charlie)
    routes = [(n, concrete(p, samples)) for n, p in all_routes() if n in ACCOUNT]

    for name, path in routes:
        response = client.get(path)
        assert response.status_code < 500, f"GET {path} ({name})"
        body = response.content.decode() if response.status_code == 200 else ""
        assert "Acme" not in body, f"{path} shows another team"
        assert "alice@example.com" not in body, f"{path} shows another team's member"


def test_public_routes_never_fail_for_a_visitor(client, samples):
    routes = [(n, concrete(p, samples)) for n, p in all_routes() if n in PUBLIC]

    assert len(routes) == len(PUBLIC)
    for name, path in routes:
        assert client.get(path).status_code < 500, f"GET {path} ({name})"


def test_the_admin_is_closed_to_charlie_and_visitors(client, charlie, samples):
    routes = [concrete(p, samples) for n, p in all_routes() if n.startswith(f"{ADMIN_NAMESPACE}:")]
    assert routes

    for path in routes:
        assert client.get(path).status_code != 200, f"visitor: GET {path}"
    client.force_login(charlie)
    for path in routes:
        assert client.get(path).status_code != 200, f"charlie: GET {path}"


def test_charlie_gets_404_on_every_team_api_route_by_session_and_by_token(
    client, alice, charlie, globex, samples
):
    from rest_framework.test import APIClient

    from apps.accounts.models import TOKEN_SCOPES
    from apps.accounts.tokens import token_create

    routes = [(n, concrete(p, samples)) for n, p in all_routes() if n in API_TEAM]
    assert len(routes) == len(API_TEAM)
    client.force_login(alice)
    for name, path in routes:
        assert client.get(path).status_code in {200, 404, 405}, f"alice: GET {path} ({name})"
    # The team-level routes themselves answer alice (404 above is only for sample ids).
    assert client.get(f"/api/v1/teams/{samples['team_slug']}/").status_code == 200

    _, plaintext = token_create(user=charlie, name="sweep", scopes=list(TOKEN_SCOPES))
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    by_session = APIClient()
    by_session.force_login(charlie)
    for api in (by_token, by_session):
        for name, path in routes:
            for method in ("get", "post", "put", "patch", "delete"):
                response = getattr(api, method)(path, {"role": "owner"}, format="json")
                assert response.status_code == 404, f"charlie: {method.upper()} {path} ({name})"


def test_a_visitor_gets_401_from_every_api_route_but_the_description(samples):
    from rest_framework.test import APIClient

    api = APIClient()
    routes = [(n, concrete(p, samples)) for n, p in all_routes() if n in API_TEAM | API_ACCOUNT]
    before = (Team.objects.count(), AuditEntry.objects.unscoped().count())

    for name, path in routes:
        for method in ("get", "post"):
            response = getattr(api, method)(path)
            assert response.status_code == 401, f"visitor: {method.upper()} {path} ({name})"
    # No team made, nothing done that the audit log would show.
    assert (Team.objects.count(), AuditEntry.objects.unscoped().count()) == before


def test_charlie_cannot_read_or_revoke_alices_token(alice, charlie):
    from rest_framework.test import APIClient

    from apps.accounts.tokens import token_create

    token, _ = token_create(user=alice, name="alice's", scopes=["teams:read"])
    api = APIClient()
    api.force_login(charlie)

    assert api.get(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert api.get("/api/v1/tokens/").json()["results"] == []
    token.refresh_from_db()
    assert token.revoked_at is None


# --- websockets -------------------------------------------------------------------------


def ws_connect(path: str, cookie: str | None = None) -> tuple[bool, object]:
    """Open ``path`` on the real ASGI application (origin check, session auth, routing);
    whether the handshake was accepted, and the first message if it was."""
    from config.asgi import application

    notebook = re.match(r"^/nb/(\d+)/", path)
    host = f"nb-{notebook[1]}.localhost" if notebook else "testserver"
    headers = [(b"host", host.encode()), (b"origin", f"http://{host}".encode())]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))

    async def run() -> tuple[bool, object]:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect()
        if not connected:
            return False, None
        first = await communicator.receive_json_from()
        await communicator.disconnect()
        return True, first

    return async_to_sync(run)()


def ws_paths(samples) -> list[str]:
    notebook_id = samples["notebook_id"]
    paths = [
        f"/ws/teams/{samples['team_slug']}/notebooks/{notebook_id}/",
        f"/nb/{notebook_id}/api/kernels/x/channels",
        f"/ws/teams/{samples['team_slug']}/deployments/{samples['deployment_id']}/",
        f"/ws/teams/{samples['team_slug']}/jobs/runs/{samples['run_id']}/",
    ]
    # One sample path per route, so a new route cannot slip past the sweep.
    assert len(paths) == len(WEBSOCKET)
    return paths


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["charlie", "visitor"])
def test_charlie_and_a_visitor_are_refused_at_every_websocket_handshake(
    who, charlie, globex, samples
):
    cookie = session_cookie(charlie) if who == "charlie" else None

    for path in ws_paths(samples):
        connected, _ = ws_connect(path, cookie)
        assert not connected, f"{who}: {path}"


@pytest.mark.django_db(transaction=True)
def test_alice_is_let_in_to_her_notebooks_stream(alice, samples):
    path = ws_paths(samples)[0]

    connected, hello = ws_connect(path, session_cookie(alice))

    assert connected
    assert isinstance(hello, dict)
    assert hello["type"] == "hello"
    assert hello["status"]["notebook"] == int(samples["notebook_id"])


# --- the endpoint itself: the gateway (config.asgi), not Django's routes ------------------

INVOKE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("auth_mode", ["protected", "private"])
def test_charlie_and_a_visitor_are_refused_at_every_endpoint_address(
    auth_mode, acme, alice, charlie, globex, samples, settings, monkeypatch
):
    """The invoke path on Lattice's origin and the endpoint's own host are the gateway's,
    outside Django's URL patterns (so the sweep above never sees them): every way charlie
    could present himself, and a visitor, is refused before the request is routed (no
    wake, no hold). alice's token gets through, so the refusals are about who calls."""
    from apps.accounts.models import INVOKE_SCOPE
    from apps.accounts.tokens import token_create
    from apps.deployments import controller
    from apps.deployments.models import Deployment
    from tests.asgi_server import asgi_request
    from tests.factories import add_member

    woken: list[int] = []
    monkeypatch.setattr(controller, "deployment_wake", woken.append)
    settings.LATTICE_DEPLOYMENT_COLD_WAIT = 0  # a request let in is answered 503 at once
    deployment = Deployment.objects.for_team(acme).get(pk=samples["deployment_id"])
    deployment.auth_mode = auth_mode
    deployment.save(update_fields=["auth_mode"])
    _, charlies = token_create(user=charlie, name="invoke", scopes=[INVOKE_SCOPE])
    _, globex_only = token_create(user=charlie, name="globex", scopes=[INVOKE_SCOPE], team=globex)
    add_member(globex, alice, Role.MEMBER)  # so that she may limit a token to globex
    _, alices_for_globex = token_create(
        user=alice, name="elsewhere", scopes=[INVOKE_SCOPE], team=globex
    )
    _, alices = token_create(user=alice, name="invoke", scopes=[INVOKE_SCOPE])
    who = {
        "visitor": {},
        "charlie's session": {"cookie": f"sessionid={session_cookie(charlie)}"},
        "charlie's token": {"authorization": f"Bearer {charlies}"},
        "charlie's token for globex": {"authorization": f"Bearer {globex_only}"},
        "alice's token for globex": {"authorization": f"Bearer {alices_for_globex}"},
        "a made-up key": {"authorization": "Bearer ldk_" + "x" * 40},
    }
    addresses = [
        f"http://testserver/api/v1/teams/{acme.slug}/deployments/{deployment.slug}/invoke/predict",
        f"http://{deployment.slug}--{acme.slug}.localhost/predict",
    ]

    for url in addresses:
        for name, headers in who.items():
            for method in INVOKE_METHODS:
                answer = asgi_request(method, url, headers=dict(headers), body={"x": 1})
                assert answer.status_code in {401, 403}, f"{name}: {method} {url}"
    assert woken == []

    for url in addresses:  # alice's own token is let in (and held: no replica is ready)
        answer = asgi_request("POST", url, headers={"authorization": f"Bearer {alices}"})
        assert answer.status_code == 503
    assert woken == [deployment.pk, deployment.pk]


@pytest.mark.django_db(transaction=True)
def test_the_endpoint_host_serves_no_lattice_page_api_or_websocket(alice, samples):
    """On a deployment's host every path is the replica's: Lattice's pages, API and
    websockets are not reachable there, even with alice's session."""
    from config.asgi import application
    from tests.asgi_server import asgi_request

    host = f"sweep--{samples['team_slug']}.localhost"
    cookie = {"cookie": f"sessionid={session_cookie(alice)}"}
    for path in (
        f"/t/{samples['team_slug']}/deployments/{samples['deployment_id']}/",
        f"/api/v1/teams/{samples['team_slug']}/deployments/sweep/",
        "/accounts/login/",
    ):
        answer = asgi_request("GET", f"http://{host}{path}", headers=cookie)
        assert answer.status_code in {401, 403}, path  # protected: the gateway's refusal
        assert "csrfmiddlewaretoken" not in answer.text

    ws = f"/ws/teams/{samples['team_slug']}/deployments/{samples['deployment_id']}/"
    headers = [
        (b"host", host.encode()),
        (b"origin", f"http://{host}".encode()),
        (b"cookie", cookie["cookie"].encode()),
    ]

    async def run() -> bool:
        communicator = WebsocketCommunicator(application, ws, headers=headers)
        connected, _ = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return bool(connected)

    assert not async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_alice_is_let_in_to_her_deployments_stream(alice, samples):
    path = ws_paths(samples)[2]

    connected, hello = ws_connect(path, session_cookie(alice))

    assert connected
    assert isinstance(hello, dict)
    assert hello["type"] == "hello"
