"""The web shell: who sees what, the headers every page carries, assets served locally."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def test_the_dashboard_sends_visitors_to_log_in(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next=/"


def test_the_dashboard_greets_the_member_and_shows_setup_steps(client, alice):
    client.force_login(alice)

    body = client.get("/").content.decode()

    assert "Welcome, Alice Smith" in body
    assert "Set up authenticator" in body
    assert "Your teams" in body
    assert 'id="team-switcher"' in body


def test_every_page_carries_the_security_headers(client):
    response = client.get(reverse("account_login"))

    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_templates_load_nothing_from_another_origin():
    pattern = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "templates").rglob("*.html")
        if pattern.search(path.read_text())
    ]

    assert offenders == []


def test_vendored_htmx_is_served(client):
    response = client.get("/static/vendor/htmx/htmx.min.js")

    assert response.status_code == 200
    assert b"htmx" in b"".join(response.streaming_content)[:2000]


def test_signing_out_needs_a_post(client, alice):
    client.force_login(alice)

    page = client.get(reverse("account_logout"))
    assert page.status_code == 200
    assert "_auth_user_id" in client.session

    client.post(reverse("account_logout"))
    assert "_auth_user_id" not in client.session


def test_the_admin_signs_in_through_allauth_so_two_factor_applies(client, alice):
    response = client.get("/admin/login/?next=/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))

    client.force_login(alice)  # not staff
    assert client.get("/admin/login/").status_code == 403
