"""Who gets into a notebook through the JupyterLab proxy (/nb/<id>/...), over HTTP.

Requests go through the real ASGI application (config.asgi), signed in with
a Lattice session cookie, to the fake runtime's stand-in Jupyter, which
answers any page with "fake jupyter: <path> token=yes|no".
"""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client

from apps.notebooks import services
from apps.notebooks.models import NotebookSession
from apps.notebooks.proxy import _forwarded_cookies, _response_headers
from apps.teams.models import Role
from tests.factories import UserFactory, add_member

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def fetch(path: str, user=None, cookies: dict[str, str] | None = None) -> httpx.Response:
    """GET ``path`` from the ASGI application as ``user`` (a visitor without one)."""
    from config.asgi import application

    jar = dict(cookies or {})
    if user is not None:
        jar[settings.SESSION_COOKIE_NAME] = session_cookie(user)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            cookies=jar,
        ) as client:
            response = await client.get(path)
            await response.aread()
            return response

    return async_to_sync(run)()


@pytest.fixture
def running(acme, alice, host, notebook):
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    assert session.endpoint
    return session


def assert_no_token(response: httpx.Response, token: str) -> None:
    assert token not in response.text
    for name, value in response.headers.items():
        assert token not in value, name
    assert token not in response.headers.get("location", "")


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


def test_a_member_gets_jupyter_and_never_the_token(notebook, running, bob):
    response = fetch(f"/nb/{notebook.pk}/lab?reset", bob)

    assert response.status_code == 200
    assert response.text == f"fake jupyter: /nb/{notebook.pk}/lab?reset token=yes"
    assert_no_token(response, running.jupyter_token)


def test_a_viewer_gets_403(acme, notebook, running):
    viewer = UserFactory.create()
    add_member(acme, viewer, Role.VIEWER)

    response = fetch(f"/nb/{notebook.pk}/lab", viewer)

    assert response.status_code == 403
    assert "fake jupyter" not in response.text


def test_a_stopped_notebook_gives_503(acme, alice, bob, notebook, running):
    services.notebook_stop(team=acme, actor=alice, notebook=notebook)

    response = fetch(f"/nb/{notebook.pk}/lab", bob)

    assert response.status_code == 503
    assert "not running" in response.text


def test_a_deleted_or_missing_notebook_is_404(acme, alice, bob, notebook, running):
    services.notebook_delete(team=acme, actor=alice, notebook=notebook, confirmation=notebook.name)

    assert fetch(f"/nb/{notebook.pk}/lab", bob).status_code == 404
    assert fetch("/nb/999999/lab", bob).status_code == 404


def test_lattices_cookies_are_not_forwarded():
    header = (
        f"{settings.SESSION_COOKIE_NAME}=abc; _xsrf=j1; {settings.CSRF_COOKIE_NAME}=c; messages=m"
    )

    assert _forwarded_cookies(header) == "_xsrf=j1"
    assert _forwarded_cookies(f"{settings.SESSION_COOKIE_NAME}=abc") == ""


def test_a_notebook_cannot_set_lattices_cookies():
    upstream = httpx.Response(
        200,
        headers=[
            ("Set-Cookie", f"{settings.SESSION_COOKIE_NAME}=stolen; Path=/"),
            ("Set-Cookie", f"{settings.CSRF_COOKIE_NAME}=stolen; Path=/"),
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
