"""The first story, in real Chromium: sign up, confirm the email from the mail,
log in, turn on an authenticator app, log out, log in again with a code."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core import mail

from tests.helpers import last_mail_link, totp

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "dana@example.com"
PASSWORD = "a much longer passphrase 42"


def log_in(page, email=EMAIL, password=PASSWORD):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()


def test_sign_up_confirm_log_in_enable_totp_log_in_with_a_code(page, browser, live_server):
    # Sign up.
    page.goto("/accounts/signup/")
    page.get_by_label("Full name").fill("Dana Scully")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.get_by_role("heading", name="Verify Your Email Address").wait_for()
    assert len(mail.outbox) == 1

    # Confirm from the mail, opened elsewhere (a mail app, another browser).
    link = last_mail_link("/accounts/confirm-email/")
    elsewhere = browser.new_context(base_url=live_server.url).new_page()
    elsewhere.goto(link)
    elsewhere.get_by_role("button", name="Confirm").click()
    elsewhere.context.close()
    assert EmailAddress.objects.get(email=EMAIL).verified

    # Log in.
    log_in(page)
    page.get_by_role("heading", name="Welcome, Dana Scully").wait_for()

    # Turn on an authenticator app: the password is asked for again first.
    page.get_by_role("link", name="Set up authenticator").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_role("heading", name="Activate Authenticator App").wait_for()
    secret = page.locator("#authenticator_secret").input_value()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    page.get_by_label("Authenticator code").fill(totp(secret))
    page.get_by_role("button", name="Activate").click()
    page.get_by_role("heading", name="Recovery Codes").wait_for()
    assert Authenticator.objects.filter(user__email=EMAIL, type=Authenticator.Type.TOTP).exists()

    # Log out from the account menu.
    page.get_by_label("Account menu for dana@example.com").click()
    page.get_by_role("menuitem", name="Sign out").click()
    page.get_by_role("heading", name="Sign In").wait_for()

    # Log in again: the password alone is not enough now.
    log_in(page)
    page.get_by_role("heading", name="Two-Factor Authentication").wait_for()
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Sign In").click()
    page.get_by_text("Incorrect code").wait_for()

    page.get_by_label("Code").fill(totp(secret))
    page.get_by_role("button", name="Sign In").click()
    page.get_by_role("heading", name="Welcome, Dana Scully").wait_for()
    assert page.url == f"{live_server.url}/"
