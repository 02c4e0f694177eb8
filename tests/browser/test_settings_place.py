"""One place for settings (issue 14): from the sidebar an admin reaches the team's Settings,
its billing and its audit log, which says what happened in words; "Your account" is apart."""

from __future__ import annotations

import pytest

from apps.teams import invitations
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sidebar_leads_to_settings_billing_and_an_audit_log_in_words(
    page, live_server, acme, alice, password
):
    invitation = invitations.invitation_create(
        team=acme, actor=alice, email="dan@example.com", role="member", link_base="http://x"
    )
    invitations.invitation_revoke(team=acme, actor=alice, invitation=invitation)
    log_in(page, alice.email, password)
    page.goto("/t/acme/")
    sidebar = page.get_by_role("navigation", name="Main")

    assert sidebar.get_by_role("link", name="Team settings").count() == 0
    sidebar.get_by_role("link", name="Audit log").click()
    page.wait_for_url("**/t/acme/audit/")
    assert page.get_by_text("Alice Smith withdrew the invitation for dan@example.com").is_visible()
    assert page.get_by_text("invitation.revoked").count() == 0

    sidebar.get_by_role("link", name="Billing").click()
    page.wait_for_url("**/t/acme/billing/")
    sections = page.get_by_role("navigation", name="Team settings")
    assert sections.get_by_role("link", name="Billing").get_attribute("aria-current") == "page"

    sidebar.get_by_role("link", name="Settings", exact=True).click()
    page.wait_for_url("**/t/acme/settings/")
    sections.get_by_role("link", name="Notebook defaults").click()
    page.wait_for_url("**/t/acme/notebooks/settings/")

    sidebar.get_by_role("link", name="Your account").click()
    page.get_by_role("heading", name="Your account").wait_for()
