"""One place for settings (issue 14): the sidebar said "Team settings" and "Settings" (the
latter was your account). Now the team's Settings hold its name, members, notebook defaults,
billing and audit log, each reachable from the sidebar as the role allows; "Your account"
is your own profile, sign-in and tokens, apart. The old addresses keep working."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def part(pattern: str, page: str) -> str:
    found = re.search(pattern, page, re.S)
    assert found is not None, pattern
    return found.group(0)


def sidebar(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return part(r'<nav class="sidebar".*?</nav>', response.content.decode())


def links(html: str) -> dict[str, str]:
    """Each link's visible words (tags dropped) and where it leads."""
    found = {}
    for href, body in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', html, re.S):
        found[re.sub(r"<[^>]+>", "", body).strip()] = href
    return found


def test_an_admin_reaches_settings_billing_and_the_audit_log_from_the_sidebar(acme, alice, client):
    client.force_login(alice)

    nav = links(sidebar(client, reverse("teams:home", args=[acme.slug])))

    assert nav["Settings"] == reverse("teams:settings", args=[acme.slug])
    assert nav["Billing"] == reverse("billing:overview", args=[acme.slug])
    assert nav["Audit log"] == reverse("teams:audit", args=[acme.slug])
    assert nav["Your account"] == reverse("accounts:profile")
    assert "Team settings" not in nav


def test_a_member_sees_no_billing_or_audit_log_in_the_sidebar(acme, bob, client):
    client.force_login(bob)

    nav = links(sidebar(client, reverse("teams:home", args=[acme.slug])))

    assert "Billing" not in nav
    assert "Audit log" not in nav
    assert nav["Settings"] == reverse("teams:settings", args=[acme.slug])
    assert nav["Your account"] == reverse("accounts:profile")


@pytest.mark.parametrize(
    "name",
    ["teams:settings", "notebooks:settings", "teams:secrets", "billing:overview", "teams:audit"],
)
def test_every_team_settings_page_shows_the_same_sections(acme, alice, client, name):
    client.force_login(alice)

    response = client.get(reverse(name, args=[acme.slug]))

    assert response.status_code == 200
    page = response.content.decode()
    nav = part(r'<nav [^>]*data-testid="team-settings-nav".*?</nav>', page)
    sections = links(nav)
    assert list(sections) == [
        "Team",
        "Members",
        "Notebook defaults",
        "Secrets",
        "Billing",
        "Audit log",
    ]
    assert sections["Notebook defaults"] == reverse("notebooks:settings", args=[acme.slug])
    assert 'aria-current="page"' in nav


def test_a_member_sees_only_the_sections_their_role_opens(acme, bob, client):
    client.force_login(bob)

    page = client.get(reverse("teams:settings", args=[acme.slug])).content.decode()

    nav = part(r'<nav [^>]*data-testid="team-settings-nav".*?</nav>', page)
    assert list(links(nav)) == ["Team", "Members", "Secrets"]


def test_your_account_is_named_apart_from_the_teams_settings(alice, client):
    client.force_login(alice)

    page = client.get(reverse("accounts:profile")).content.decode()

    assert '<h1 class="page-title">Your account</h1>' in page
    assert "Account settings" not in page
