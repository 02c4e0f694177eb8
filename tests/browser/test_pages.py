"""Every page of the shell loads cleanly in Chromium: no console errors (a CSP
violation is one), and nothing is fetched from any origin but Lattice's own."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]
SIGNED_IN = [
    "/",
    "/settings/",
    "/accounts/email/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/accounts/sessions/",
    "/settings/tokens/",
    "/teams/new/",
    "/t/acme/",
    "/t/acme/members/",
    "/t/acme/settings/",
    "/t/acme/audit/",
]


def test_pages_load_without_errors_or_foreign_requests(page, live_server, acme, alice, password):
    problems: list[str] = []
    requested: list[str] = []

    def on_console(message: Any) -> None:
        if message.type in {"error", "warning"}:
            problems.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
    page.on("request", lambda r: requested.append(r.url))

    for path in PUBLIC:
        assert page.goto(path).status == 200, path

    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(alice.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_server.url}/")
    for path in SIGNED_IN:
        assert page.goto(path).status == 200, path
        # htmx and the stylesheet are really there, not just referenced.
        assert page.evaluate("typeof window.htmx") == "object", path
        assert (
            page.evaluate("getComputedStyle(document.querySelector('.topbar')).position")
            == "sticky"
        )

    assert problems == []
    foreign = [url for url in requested if not url.startswith(live_server.url)]
    assert foreign == []


def test_saving_the_profile_swaps_the_form_in_place(page, live_server, alice, password):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(alice.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_server.url}/")

    page.goto("/settings/")
    page.evaluate("window.__marker = 'same page'")
    page.get_by_label("Full name").fill("Alice Liddell")
    page.get_by_role("button", name="Save profile").click()
    page.get_by_role("status").get_by_text("Saved").wait_for()

    # No navigation happened: the marker set on this document is still there.
    assert page.evaluate("window.__marker") == "same page"
    alice.refresh_from_db()
    assert alice.name == "Alice Liddell"


def test_the_layout_fits_a_phone(page, live_server, acme, alice, password):
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(alice.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_server.url}/")

    for path in SIGNED_IN:
        page.goto(path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"


def test_the_api_reference_renders_offline_without_errors(page, live_server, alice, password):
    problems: list[str] = []
    requested: list[str] = []

    def on_console(message: Any) -> None:
        if message.type in {"error", "warning"}:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("request", lambda r: requested.append(r.url))
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(alice.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_server.url}/")

    page.goto("/api/v1/docs/")
    page.get_by_text("/api/v1/teams/{team_slug}/members/").first.wait_for()

    assert problems == []
    assert [u for u in requested if not u.startswith(live_server.url)] == []
