"""Collaborator invites, in real Chromium, with two people at two browsers."""

from __future__ import annotations

import pytest
from django.core import mail

from tests.helpers import last_mail_link

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page, email, password):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()


def test_invite_sign_up_demote_remove(browser, live_server, acme, alice, password):
    alice_page = browser.new_context(base_url=live_server.url).new_page()
    bob_page = browser.new_context(base_url=live_server.url).new_page()

    # Alice invites bob's address as an admin.
    log_in(alice_page, alice.email, password)
    alice_page.goto("/t/acme/members/")
    alice_page.get_by_label("Email address").fill("robert@example.com")
    alice_page.get_by_label("Role", exact=True).select_option("admin")
    alice_page.get_by_role("button", name="Send invitation").click()
    # Making an admin asks for her password again, then the invitation goes out.
    alice_page.get_by_role("heading", name="Confirm Access").wait_for()
    assert mail.outbox == []
    alice_page.locator("input[name=password]").fill(password)
    alice_page.get_by_role("button", name="Confirm").click()
    alice_page.get_by_text("Invitation sent to robert@example.com").wait_for()
    assert mail.outbox[-1].to == ["robert@example.com"]

    # Bob follows the link, signs up (the form names the team he joins), and lands in Acme.
    invitation_link = last_mail_link("/invitations/")
    bob_page.goto(invitation_link)
    bob_page.get_by_role("heading", name="Join Acme").wait_for()
    bob_page.get_by_role("button", name="Create an account to join").click()
    joining = bob_page.get_by_test_id("signup-joining")
    joining.wait_for()
    assert joining.inner_text().startswith("Create your account to join Acme.")
    assert bob_page.get_by_label("Email").input_value() == "robert@example.com"
    bob_page.get_by_label("Full name").fill("Robert Paulson")
    bob_page.get_by_label("Password").fill("a much longer passphrase 42")
    bob_page.get_by_role("button", name="Sign Up").click()
    bob_page.get_by_text("Welcome to Acme").wait_for()
    assert bob_page.url == f"{live_server.url}/t/acme/"

    # The used link, opened again, says so and leads to the team.
    bob_page.goto(invitation_link)
    bob_page.get_by_text("This invitation has already been used.").wait_for()
    bob_page.get_by_role("link", name="Go to Acme").click()
    bob_page.wait_for_url(f"{live_server.url}/t/acme/")

    # As an admin he may invite.
    bob_page.goto("/t/acme/members/")
    assert bob_page.get_by_role("button", name="Send invitation").count() == 1

    # Alice makes him a viewer.
    alice_page.goto("/t/acme/members/")
    alice_page.get_by_label("Role of robert@example.com").select_option("viewer")
    alice_page.get_by_role("row", name="robert@example.com").get_by_role(
        "button", name="Change role"
    ).click()
    alice_page.get_by_text("robert@example.com is now Viewer").wait_for()

    # Bob can no longer invite: the form is gone, and posting anyway is refused.
    bob_page.reload()
    assert bob_page.get_by_role("button", name="Send invitation").count() == 0
    csrf = bob_page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    refused = bob_page.request.post(
        f"{live_server.url}/t/acme/invitations/",
        form={"email": "x@example.com", "role": "member", "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{live_server.url}/t/acme/members/"},
    )
    assert refused.status == 403
    assert "do that here" in refused.text()  # the role page, not a CSRF failure

    # Alice removes him; his next request to the team is a 404.
    alice_page.get_by_role("button", name="Remove robert@example.com").click()
    alice_page.get_by_text("robert@example.com is no longer in Acme").wait_for()
    response = bob_page.goto("/t/acme/")
    assert response.status == 404
    bob_page.get_by_role("heading", name="Page not found").wait_for()

    alice_page.context.close()
    bob_page.context.close()
