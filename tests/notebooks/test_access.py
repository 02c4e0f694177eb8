"""Who gets into a notebook, over HTTP: the launch on Lattice's origin (/nb/<id>/...), its
single-use ticket, and the notebook's own origin (nb-<id>.localhost) behind it.

Requests go through the real ASGI application (config.asgi) to the fake runtime's
stand-in Jupyter, which answers any page with "fake jupyter: <path> token=yes|no".
``Browser`` keeps cookies per host, as a browser keeps host-only cookies: Lattice's
session cookie is sent to Lattice's host (testserver) only.
"""

from __future__ import annotations

import json
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.test import Client

from apps.accounts.models import PersonalAccessToken
from apps.notebooks import origin, services
from apps.notebooks.models import NotebookSession
from apps.notebooks.proxy.access import NOT_LET_IN
from apps.notebooks.proxy.asgi import forwarded_cookies as _forwarded_cookies
from apps.notebooks.proxy.http import _response_headers
from apps.teams.models import Membership, Role
from apps.teams.services import member_remove
from tests.asgi_server import asgi_request, session_cookie
from tests.factories import UserFactory, add_member
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db(transaction=True)

LATTICE = "testserver"


def request(
    url: str,
    *,
    method: str = "GET",
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: object = None,
) -> httpx.Response:
    """One request to the ASGI application; ``url``'s host is the Host header."""
    if url.startswith("/"):
        url = f"http://{LATTICE}{url}"
    sent = dict(headers or {})
    if cookies:
        sent["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return asgi_request(method, url, sent, body)


def fetch(path: str, user=None) -> httpx.Response:
    """GET ``path`` on Lattice's origin as ``user`` (a visitor without one)."""
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(user)} if user else None
    return request(path, cookies=cookies)


class Browser:
    """Follows redirects across hosts and keeps each host's cookies to that host."""

    def __init__(self, user=None) -> None:
        self.jar: dict[str, dict[str, str]] = {}
        self.set_cookies: list[tuple[str, str]] = []  # (host, Set-Cookie header)
        self.hops: list[httpx.Response] = []
        if user is not None:
            self.jar[LATTICE] = {settings.SESSION_COOKIE_NAME: session_cookie(user)}

    def get(self, url: str, *, method: str = "GET", body: object = None) -> httpx.Response:
        if url.startswith("/"):
            url = f"http://{LATTICE}{url}"
        for _ in range(5):
            host = urlsplit(url).netloc
            response = request(url, method=method, cookies=self.jar.get(host), body=body)
            self.hops.append(response)
            for header in response.headers.get_list("set-cookie"):
                self.set_cookies.append((host, header))
                for name, morsel in SimpleCookie(header).items():
                    self.jar.setdefault(host, {})[name] = morsel.value
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                return response
            url = location if "://" in location else f"http://{host}{location}"
        raise AssertionError("too many redirects")

    def notebook_cookie(self, notebook) -> str:
        return self.jar[nb_host(notebook)][origin.COOKIE_NAME]


def nb_host(notebook) -> str:
    return f"nb-{notebook.pk}.localhost"


def nb_url(notebook, path: str = "lab") -> str:
    return f"http://{nb_host(notebook)}/nb/{notebook.pk}/{path}"


def start(team, actor, notebook) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=notebook)
    session = NotebookSession.objects.for_team(team).get(pk=session.pk)
    assert session.endpoint
    return session


@pytest.fixture
def running(acme, alice, host, notebook):
    return start(acme, alice, notebook)


@pytest.fixture
def other_running(acme, alice, host, catalogue, running):
    """A second running notebook of Acme's."""
    other = make_notebook(acme, alice, "Other")
    start(acme, alice, other)
    return other


def assert_no_token(response: httpx.Response, token: str) -> None:
    assert token not in response.text
    for name, value in response.headers.items():
        assert token not in value, name
    assert token not in response.headers.get("location", "")


def launch_ticket(notebook, user) -> str:
    """The ticket the launch hands ``user`` for ``notebook``'s lab."""
    launched = fetch(f"/nb/{notebook.pk}/lab", user)
    assert launched.status_code == 302, launched.text
    return parse_qs(urlsplit(launched.headers["location"]).query)["ticket"][0]


def redeem(notebook, ticket: str) -> httpx.Response:
    return request(f"http://{nb_host(notebook)}{origin.TICKET_PATH}?ticket={ticket}")


def remove(team, actor, user) -> None:
    """Take ``user`` out of ``team`` (the teams service tells their open connections)."""
    with transaction.atomic():
        member_remove(
            team=team, actor=actor, member=Membership.objects.for_team(team).get(user=user)
        )


# --- the launch on Lattice's origin -------------------------------------------------------


def test_a_visitor_is_sent_to_log_in_and_gets_nothing(notebook, running):
    response = fetch(f"/nb/{notebook.pk}/lab")

    assert response.status_code == 302
    assert response.headers["location"] == f"/accounts/login/?next=/nb/{notebook.pk}/lab"
    assert "fake jupyter" not in response.text
    assert_no_token(response, running.jupyter_token)


def test_charlie_gets_404(notebook, running, charlie, globex):
    response = fetch(f"/nb/{notebook.pk}/lab", charlie)

    assert response.status_code == 404
    assert "fake jupyter" not in response.text
    assert "location" not in response.headers


def test_a_member_gets_jupyter_on_the_notebooks_own_origin_and_never_the_token(
    notebook, running, bob
):
    browser = Browser(bob)

    response = browser.get(f"/nb/{notebook.pk}/lab?reset")

    assert response.status_code == 200
    assert response.text == f"fake jupyter: /nb/{notebook.pk}/lab?reset token=yes"
    launch, enter, _ = browser.hops
    to = urlsplit(launch.headers["location"])
    assert (to.scheme, to.netloc, to.path) == ("http", nb_host(notebook), origin.TICKET_PATH)
    assert enter.headers["location"] == f"/nb/{notebook.pk}/lab?reset"
    assert str(response.url) == f"{nb_url(notebook)}?reset"
    for hop in browser.hops:
        assert_no_token(hop, running.jupyter_token)


def test_the_notebook_origins_cookie_is_host_only_httponly_and_lax(notebook, running, bob):
    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")

    [(host, header)] = browser.set_cookies
    assert host == nb_host(notebook)
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert attributes == {"path", "httponly", "samesite"}  # no Domain: host-only
    assert "SameSite=Lax" in header
    assert "Path=/;" in header
    # Lattice's session cookie stays with Lattice's host.
    assert set(browser.jar[nb_host(notebook)]) == {origin.COOKIE_NAME}


def test_the_cookie_is_secure_over_https(notebook, running, bob, settings):
    settings.SESSION_COOKIE_SECURE = True  # as in production, TLS ending at the proxy

    launched = fetch(f"/nb/{notebook.pk}/lab", bob)

    assert launched.headers["location"].startswith(f"https://{nb_host(notebook)}/")
    entered = redeem(notebook, launch_ticket(notebook, bob))
    assert "; Secure" in entered.headers["set-cookie"]
    # The __Host- prefix: browsers take it only Secure, host-only and for Path=/, so a page
    # on another notebook's host cannot plant it for this one.
    assert entered.headers["set-cookie"].startswith(f"{origin.SECURE_COOKIE_NAME}=")
    value = SimpleCookie(entered.headers["set-cookie"])[origin.SECURE_COOKIE_NAME].value
    https = {"x-forwarded-proto": "https"}
    lab = nb_url(notebook)
    assert (
        request(lab, cookies={origin.SECURE_COOKIE_NAME: value}, headers=https).status_code == 200
    )
    # The unprefixed name, which any host under the domain could set, is not read over HTTPS.
    plain = request(lab, cookies={origin.COOKIE_NAME: value}, headers=https)
    assert plain.status_code == 403


def test_a_viewer_gets_403(acme, notebook, running):
    viewer = UserFactory.create()
    add_member(acme, viewer, Role.VIEWER)

    response = fetch(f"/nb/{notebook.pk}/lab", viewer)

    assert response.status_code == 403
    assert "fake jupyter" not in response.text
    assert "location" not in response.headers


def test_a_stopped_notebook_gives_503(acme, alice, bob, notebook, running):
    browser = Browser(bob)
    assert browser.get(f"/nb/{notebook.pk}/lab").status_code == 200
    services.notebook_stop(team=acme, actor=alice, notebook=notebook)

    launched = fetch(f"/nb/{notebook.pk}/lab", bob)
    there = browser.get(nb_url(notebook))

    for response in (launched, there):
        assert response.status_code == 503
        assert "not running" in response.text


def test_a_deleted_or_missing_notebook_is_404(acme, alice, bob, notebook, running):
    services.notebook_delete(team=acme, actor=alice, notebook=notebook, confirmation=notebook.name)

    for path in (f"/nb/{notebook.pk}/lab", "/nb/999999/lab"):
        response = fetch(path, bob)
        assert response.status_code == 404
        assert "fake jupyter" not in response.text


def test_the_launch_serves_no_jupyter_to_other_methods(notebook, running, bob):
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(bob)}

    response = request(f"/nb/{notebook.pk}/api/contents/x.txt", method="PUT", cookies=cookies)

    assert response.status_code == 405
    assert "fake jupyter" not in response.text


# --- the ticket ------------------------------------------------------------------------------


def test_a_ticket_works_once(notebook, running, bob):
    ticket = launch_ticket(notebook, bob)

    first = redeem(notebook, ticket)
    again = redeem(notebook, ticket)

    assert first.status_code == 302
    assert origin.COOKIE_NAME in first.headers["set-cookie"]
    assert again.status_code == 403
    assert "set-cookie" not in again.headers
    assert "expired or was used already" in again.text


def test_a_ticket_expires_after_a_minute(notebook, running, bob, monkeypatch):
    now = time.time()
    late, in_time = launch_ticket(notebook, bob), launch_ticket(notebook, bob)

    monkeypatch.setattr(time, "time", lambda: now + origin.TICKET_SECONDS + 2)
    refused = redeem(notebook, late)
    monkeypatch.setattr(time, "time", lambda: now + origin.TICKET_SECONDS - 5)
    accepted = redeem(notebook, in_time)

    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers
    assert accepted.status_code == 302


def test_a_ticket_is_bound_to_its_notebook(notebook, running, other_running, bob):
    ticket = launch_ticket(notebook, bob)

    elsewhere = redeem(other_running, ticket)
    home = redeem(notebook, ticket)

    assert elsewhere.status_code == 403
    assert "set-cookie" not in elsewhere.headers
    assert home.status_code == 302  # the misdirected try did not spend it


def test_a_ticket_is_bound_to_its_person(notebook, running, alice, bob):
    ticket = launch_ticket(notebook, bob)
    payload, _, signature = ticket.partition(":")
    claims = json.loads(signing.b64_decode(payload.encode()))
    claims["u"] = alice.pk
    forged = signing.b64_encode(json.dumps(claims, separators=(",", ":")).encode()).decode()

    forged_redeemed = redeem(notebook, f"{forged}:{signature}")
    assert forged_redeemed.status_code == 403

    bob.set_password("a new password for bob")
    bob.save()
    redeemed = redeem(notebook, ticket)
    assert redeemed.status_code == 403  # his password changed since
    for response in (forged_redeemed, redeemed):
        assert origin.COOKIE_NAME not in response.cookies  # no way in was handed out


def test_a_made_up_ticket_is_refused(notebook, running):
    for ticket in ("", "nonsense", "a:b:c"):
        response = redeem(notebook, ticket)
        assert response.status_code == 403
        assert "set-cookie" not in response.headers


# --- the notebook's origin ---------------------------------------------------------------------


def test_the_notebook_origin_refuses_a_request_without_its_cookie(notebook, running, bob):
    # Lattice's session cookie would never come here; sent anyway, it opens nothing.
    response = request(
        nb_url(notebook), cookies={settings.SESSION_COOKIE_NAME: session_cookie(bob)}
    )

    assert response.status_code == 403
    assert response.text == NOT_LET_IN
    assert "fake jupyter" not in response.text


def test_the_notebook_origin_refuses_another_notebooks_cookie(
    notebook, running, other_running, bob
):
    browser = Browser(bob)
    assert browser.get(f"/nb/{notebook.pk}/lab").status_code == 200
    cookie = {origin.COOKIE_NAME: browser.notebook_cookie(notebook)}

    response = request(nb_url(other_running), cookies=cookie)

    assert response.status_code == 403
    assert "fake jupyter" not in response.text
    assert request(nb_url(notebook), cookies=cookie).status_code == 200


def test_a_removed_member_is_refused_on_the_notebook_origin(acme, alice, bob, notebook, running):
    browser = Browser(bob)
    assert browser.get(f"/nb/{notebook.pk}/lab").status_code == 200

    remove(acme, alice, bob)
    response = browser.get(nb_url(notebook))

    assert response.status_code == 404
    assert "fake jupyter" not in response.text


def test_a_changed_password_ends_the_notebook_origins_cookie(notebook, running, bob):
    browser = Browser(bob)
    assert browser.get(f"/nb/{notebook.pk}/lab").status_code == 200

    bob.set_password("a new password for bob")
    bob.save()

    response = browser.get(nb_url(notebook))
    assert response.status_code == 403
    assert "fake jupyter" not in response.text


def sign_out(browser: Browser) -> None:
    """Sign the browser out of Lattice the way a person does (allauth's logout)."""
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = browser.jar[LATTICE][
        settings.SESSION_COOKIE_NAME
    ]
    assert client.post("/accounts/logout/").status_code == 302


def test_signing_out_of_lattice_ends_the_notebook_origins_cookie(notebook, running, bob):
    browser = Browser(bob)
    assert browser.get(f"/nb/{notebook.pk}/lab").status_code == 200
    stays = Browser(bob)  # another browser of bob's, signed in on its own
    assert stays.get(f"/nb/{notebook.pk}/lab").status_code == 200

    sign_out(browser)

    ended = browser.get(nb_url(notebook))
    kept = stays.get(nb_url(notebook))
    assert ended.status_code == 403
    assert kept.status_code == 200
    assert "fake jupyter" not in ended.text
    assert kept.text.startswith("fake jupyter")


def test_the_notebook_origin_refuses_changes_sent_from_another_page(
    notebook, running, other_running, bob
):
    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")
    cookies = {origin.COOKIE_NAME: browser.notebook_cookie(notebook)}
    url = nb_url(notebook, "api/contents/x.txt")

    from_other = request(
        url,
        method="PUT",
        cookies=cookies,
        headers={"origin": f"http://{nb_host(other_running)}"},
    )
    from_itself = request(
        nb_url(notebook, "api/status"),
        method="GET",
        cookies=cookies,
        headers={"origin": f"http://{nb_host(notebook)}"},
    )

    assert from_other.status_code == 403
    assert from_itself.status_code == 200
    assert "fake jupyter" not in from_other.text  # the change never reached Jupyter
    assert "last_activity" in from_itself.json()  # Jupyter's own answer


def test_other_hosts_under_the_domain_serve_nothing(notebook, running, bob):
    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")
    cookies = {origin.COOKIE_NAME: browser.notebook_cookie(notebook)}

    elsewhere = request(f"http://lattice.localhost/nb/{notebook.pk}/lab")
    assert elsewhere.status_code == 404
    # Another notebook's path on this notebook's host.
    wrong = request(f"http://{nb_host(notebook)}/nb/{notebook.pk + 1}/lab", cookies=cookies)
    assert wrong.status_code == 404
    for response in (elsewhere, wrong):
        assert "fake jupyter" not in response.text


def test_lattices_cookies_never_reach_jupyter(notebook, running, bob):
    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")
    cookies = {
        settings.SESSION_COOKIE_NAME: session_cookie(bob),
        settings.CSRF_COOKIE_NAME: "c",
        "messages": "m",
        "_xsrf": "j1",
        origin.COOKIE_NAME: browser.notebook_cookie(notebook),
    }

    response = request(nb_url(notebook, "fake/cookies"), cookies=cookies)

    assert response.status_code == 200
    assert response.text == "_xsrf=j1"


def test_lattices_cookies_are_not_forwarded():
    header = (
        f"{settings.SESSION_COOKIE_NAME}=abc; _xsrf=j1; {settings.CSRF_COOKIE_NAME}=c; messages=m; "
        f"{origin.COOKIE_NAME}=pass"
    )

    assert _forwarded_cookies(header) == "_xsrf=j1"
    assert _forwarded_cookies(f"{settings.SESSION_COOKIE_NAME}=abc") == ""


def test_a_notebook_cannot_set_lattices_cookies():
    upstream = httpx.Response(
        200,
        headers=[
            ("Set-Cookie", f"{settings.SESSION_COOKIE_NAME}=stolen; Path=/"),
            ("Set-Cookie", f"{settings.CSRF_COOKIE_NAME}=stolen; Path=/"),
            ("Set-Cookie", f"{origin.COOKIE_NAME}=stolen; Path=/"),
            ("Set-Cookie", "_xsrf=ok; Path=/nb/1/"),
            ("Connection", "keep-alive"),
            ("Content-Type", "text/html"),
        ],
    )

    headers = _response_headers(upstream)

    assert (b"Set-Cookie", b"_xsrf=ok; Path=/nb/1/") in headers
    assert (b"Content-Type", b"text/html") in headers
    assert not any(b"stolen" in value for _, value in headers)
    assert not any(name.lower() == b"connection" for name, _ in headers)


# --- Lattice's origin does not trust the notebooks' ----------------------------------------


def test_lattice_is_never_served_under_a_notebook_host(notebook, running, bob):
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(bob)}
    host = f"http://{nb_host(notebook)}"

    me = request(f"{host}/api/v1/me", cookies=cookies)
    team = request(f"{host}/t/acme/", cookies=cookies)
    made = request(f"{host}/api/v1/tokens/", method="POST", cookies=cookies, body={"name": "x"})

    assert (me.status_code, team.status_code, made.status_code) == (404, 404, 404)
    assert bob.email not in me.text + team.text
    assert not PersonalAccessToken.objects.filter(user=bob, workload="").exists()


def test_lattice_refuses_requests_sent_from_a_notebooks_page(notebook, running, bob):
    client = Client()
    client.force_login(bob)
    client.get("/settings/tokens/")  # a page that sets the CSRF cookie
    cookies = {
        settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
        settings.CSRF_COOKIE_NAME: client.cookies[settings.CSRF_COOKIE_NAME].value,
    }
    page = {"origin": f"http://{nb_host(notebook)}"}
    csrf = {**page, "x-csrftoken": cookies[settings.CSRF_COOKIE_NAME]}

    me = request("/api/v1/me", cookies=cookies, headers=page)
    made = request(
        "/api/v1/tokens/", method="POST", cookies=cookies, headers=csrf, body={"name": "x"}
    )
    launched = request(f"/nb/{notebook.pk}/lab", cookies=cookies, headers=page)

    assert (me.status_code, made.status_code, launched.status_code) == (403, 403, 403)
    assert bob.email not in me.text
    assert not PersonalAccessToken.objects.filter(user=bob, workload="").exists()
    # The same requests from Lattice's own pages work.
    assert request("/api/v1/me", cookies=cookies).status_code == 200


def ws_connect(path: str, *, host: str, origin_header: str, cookies: dict[str, str]) -> bool:
    from config.asgi import application

    headers = [
        (b"host", host.encode()),
        (b"origin", origin_header.encode()),
        (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()),
    ]

    async def run() -> bool:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return bool(connected)

    return async_to_sync(run)()


def test_lattices_websockets_refuse_notebook_hosts_and_origins(acme, alice, notebook):
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(alice)}
    stream = f"/ws/teams/{acme.slug}/notebooks/{notebook.pk}/"
    page = f"http://{nb_host(notebook)}"

    assert ws_connect(stream, host=LATTICE, origin_header=f"http://{LATTICE}", cookies=cookies)
    assert not ws_connect(stream, host=LATTICE, origin_header=page, cookies=cookies)
    assert not ws_connect(stream, host=nb_host(notebook), origin_header=page, cookies=cookies)
    assert not ws_connect(
        stream, host=nb_host(notebook), origin_header=f"http://{LATTICE}", cookies=cookies
    )


def test_the_notebook_websocket_is_served_on_its_origin_only(notebook, running, bob):
    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")
    own = {origin.COOKIE_NAME: browser.notebook_cookie(notebook)}
    lattice = {settings.SESSION_COOKIE_NAME: session_cookie(bob)}
    path = f"/nb/{notebook.pk}/api/kernels/x/channels"
    page = f"http://{nb_host(notebook)}"

    # Not on Lattice's origin; not without the cookie; not from another page.
    assert not ws_connect(path, host=LATTICE, origin_header=f"http://{LATTICE}", cookies=lattice)
    assert not ws_connect(path, host=nb_host(notebook), origin_header=page, cookies=lattice)
    assert not ws_connect(
        path, host=nb_host(notebook), origin_header="http://nb-1.localhost", cookies=own
    )


# --- websockets on the notebook's origin, and revocation --------------------------------------


@pytest.fixture
def echo_jupyter(acme, running):
    """Jupyter's websockets, stood in for by an echo server the running session points at."""
    import threading

    from websockets.sync.server import serve

    def echo(connection) -> None:
        for message in connection:
            connection.send(message)

    server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]
    NotebookSession.objects.for_team(acme).filter(pk=running.pk).update(
        endpoint=f"http://127.0.0.1:{port}"
    )
    yield
    server.shutdown()
    thread.join(timeout=5)


def test_a_removed_members_open_websocket_is_closed_at_once(
    acme, alice, bob, notebook, running, echo_jupyter
):
    from channels.db import database_sync_to_async

    from config.asgi import application

    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")
    headers = [
        (b"host", nb_host(notebook).encode()),
        (b"origin", f"http://{nb_host(notebook)}".encode()),
        (b"cookie", f"{origin.COOKIE_NAME}={browser.notebook_cookie(notebook)}".encode()),
    ]

    async def run() -> tuple[bool, str, dict, float]:
        communicator = WebsocketCommunicator(
            application, f"/nb/{notebook.pk}/api/kernels/k/channels", headers=headers
        )
        connected, _ = await communicator.connect(timeout=10)
        await communicator.send_to(text_data="hello")
        echoed = await communicator.receive_from(timeout=5)
        began = time.monotonic()
        await database_sync_to_async(remove)(acme, alice, bob)
        # Bob sends nothing: the proxy hears of the removal and closes on its own.
        closed = await communicator.receive_output(timeout=1)
        took = time.monotonic() - began
        await communicator.wait(timeout=1)
        return connected, echoed, closed, took

    connected, echoed, closed, took = async_to_sync(run)()

    assert connected
    assert echoed == "hello"
    assert closed["type"] == "websocket.close"
    assert took < 1.0


def test_a_member_made_viewer_loses_the_websocket_but_others_keep_theirs(
    acme, alice, bob, notebook, running, echo_jupyter
):
    from channels.db import database_sync_to_async

    from apps.teams.services import member_change_role
    from config.asgi import application

    def headers_for(user) -> list[tuple[bytes, bytes]]:
        browser = Browser(user)
        browser.get(f"/nb/{notebook.pk}/lab")
        return [
            (b"host", nb_host(notebook).encode()),
            (b"origin", f"http://{nb_host(notebook)}".encode()),
            (b"cookie", f"{origin.COOKIE_NAME}={browser.notebook_cookie(notebook)}".encode()),
        ]

    def demote() -> None:
        with transaction.atomic():
            member = Membership.objects.for_team(acme).get(user=bob)
            member_change_role(team=acme, actor=alice, member=member, role=Role.VIEWER)

    path = f"/nb/{notebook.pk}/api/kernels/k/channels"
    bobs, alices = headers_for(bob), headers_for(alice)

    async def run() -> tuple[dict, str]:
        bob_ws = WebsocketCommunicator(application, path, headers=bobs)
        alice_ws = WebsocketCommunicator(application, path, headers=alices)
        assert (await bob_ws.connect(timeout=10))[0]
        assert (await alice_ws.connect(timeout=10))[0]
        await database_sync_to_async(demote)()
        closed = await bob_ws.receive_output(timeout=1)
        await alice_ws.send_to(text_data="still here")
        echoed = await alice_ws.receive_from(timeout=5)
        await alice_ws.disconnect()
        await bob_ws.wait(timeout=1)
        return closed, echoed

    closed, echoed = async_to_sync(run)()

    assert closed["type"] == "websocket.close"
    assert echoed == "still here"


def test_signing_out_closes_the_open_websocket_at_once(notebook, running, bob, echo_jupyter):
    from channels.db import database_sync_to_async

    from config.asgi import application

    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")
    headers = [
        (b"host", nb_host(notebook).encode()),
        (b"origin", f"http://{nb_host(notebook)}".encode()),
        (b"cookie", f"{origin.COOKIE_NAME}={browser.notebook_cookie(notebook)}".encode()),
    ]

    async def run() -> tuple[dict, float]:
        communicator = WebsocketCommunicator(
            application, f"/nb/{notebook.pk}/api/kernels/k/channels", headers=headers
        )
        assert (await communicator.connect(timeout=10))[0]
        began = time.monotonic()
        await database_sync_to_async(sign_out)(browser)
        closed = await communicator.receive_output(timeout=1)
        took = time.monotonic() - began
        await communicator.wait(timeout=1)
        return closed, took

    closed, took = async_to_sync(run)()

    assert closed["type"] == "websocket.close"
    assert took < 1.0


def test_a_browser_that_leaves_mid_upload_gets_nothing_sent_on(notebook, running, bob):
    """Its short body is not passed to Jupyter as if it were whole, and nothing breaks."""
    from apps.notebooks.proxy import NotebookHTTPProxy

    browser = Browser(bob)
    browser.get(f"/nb/{notebook.pk}/lab")
    host = nb_host(notebook).encode()
    cookie = f"{origin.COOKIE_NAME}={browser.notebook_cookie(notebook)}".encode()
    scope = {
        "type": "http",
        "method": "PUT",
        "path": f"/nb/{notebook.pk}/api/contents/big.txt",
        "raw_path": f"/nb/{notebook.pk}/api/contents/big.txt".encode(),
        "query_string": b"",
        "headers": [(b"host", host), (b"cookie", cookie), (b"content-length", b"1000")],
    }
    arriving: list[dict] = [
        {"type": "http.request", "body": b"x" * 10, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return arriving.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    async_to_sync(NotebookHTTPProxy())(scope, receive, send)

    assert sent == []


def test_a_jupyter_that_never_answers_gets_a_504_not_a_wait_for_ever(
    acme, notebook, running, bob, monkeypatch
):
    """A server that takes the connection and says nothing (a hung Jupyter) is given up on
    after the proxy's read timeout, with a 504 that says what to do. It was waited on for
    ever, holding the request and its connection."""
    import socket
    import threading

    from apps.notebooks.proxy import http as proxy_http

    browser = Browser(bob)
    assert browser.get(f"/nb/{notebook.pk}/lab").status_code == 200
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts the connection; nobody ever reads or answers it
    # Without a read timeout the test would wait for ever: closed after 15 s, the connection
    # is reset, and the proxy answers 502 instead.
    closer = threading.Timer(15, silent.close)
    closer.start()
    NotebookSession.objects.for_team(acme).filter(pk=running.pk).update(
        endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}"
    )
    monkeypatch.setattr(proxy_http, "READ_TIMEOUT", 0.5)
    proxy_http._clients.clear()
    try:
        began = time.monotonic()
        response = browser.get(f"/nb/{notebook.pk}/lab")
        took = time.monotonic() - began
    finally:
        closer.cancel()
        silent.close()
        proxy_http._clients.clear()

    assert response.status_code == 504
    assert "did not answer within 0.5 s" in response.text
    assert took < 10
