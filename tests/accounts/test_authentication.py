"""Accounts: sign up with email, verify, log in and out, passwords, two-factor."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core import mail
from django.db import IntegrityError, transaction
from django.urls import reverse

from apps.accounts.models import User
from tests.factories import PASSWORD
from tests.helpers import last_mail_link, totp

# Mail is queued with transaction.on_commit, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a much longer passphrase 42"


def sign_up(client, email="dana@example.com", name="Dana Scully"):
    return client.post(
        reverse("account_signup"),
        {"email": email, "name": name, "password1": NEW_PASSWORD},
    )


def log_in(client, email, password):
    return client.post(reverse("account_login"), {"login": email, "password": password})


class TestSignup:
    def test_it_creates_an_unverified_user_with_a_name_and_mails_a_link(self, client):
        response = sign_up(client)

        assert response.status_code == 302
        assert response["Location"] == reverse("account_email_verification_sent")
        user = User.objects.get(email="dana@example.com")
        assert user.name == "Dana Scully"
        assert user.check_password(NEW_PASSWORD)
        assert not EmailAddress.objects.get(user=user).verified
        assert len(mail.outbox) == 1
        assert mail.outbox[0].to == ["dana@example.com"]
        assert "/accounts/confirm-email/" in mail.outbox[0].body

    def test_the_verification_mail_reads_like_a_person_wrote_it(self, client, settings):
        settings.LATTICE_SITE_NAME = "Lattice Research"

        sign_up(client)

        (message,) = mail.outbox
        assert message.subject == "[Lattice] Confirm your email address for Lattice Research"
        body = message.body
        assert body.startswith("Hello Dana Scully,")
        assert "Confirm that dana@example.com is your email address on Lattice Research" in body
        assert "/accounts/confirm-email/" in body
        assert "The Lattice Research team" in body
        # The host and port appear only inside the link, never as the site's name; and the
        # address is not called a "user".
        lines_naming_the_host = [line for line in body.splitlines() if "testserver" in line]
        assert lines_naming_the_host == [last_mail_link("/accounts/confirm-email/")]
        assert "Hello from" not in body
        assert "for user" not in body
        assert "user dana@example.com" not in body

    def test_it_refuses_login_until_the_email_is_verified(self, client):
        sign_up(client)
        client.logout()

        response = log_in(client, "dana@example.com", NEW_PASSWORD)

        assert response["Location"] == reverse("account_email_verification_sent")
        assert "_auth_user_id" not in client.session

    def test_the_mailed_link_verifies_and_then_login_works(self, client):
        sign_up(client)
        link = last_mail_link("/accounts/confirm-email/")
        client.logout()

        confirm_page = client.get(link)
        assert confirm_page.status_code == 200
        client.post(link)

        assert EmailAddress.objects.get(email="dana@example.com").verified
        response = log_in(client, "dana@example.com", NEW_PASSWORD)
        assert response["Location"] == "/"
        assert client.get("/").status_code == 200

    def test_an_address_differing_only_in_case_is_taken(self, client, alice):
        response = sign_up(client, email="ALICE@Example.com")

        assert User.objects.filter(email__iexact="alice@example.com").count() == 1
        # allauth does not reveal that the address exists (prevent enumeration):
        # it mails the owner instead of creating a second account.
        assert response.status_code == 302
        assert [m.to for m in mail.outbox] == [["alice@example.com"]]
        assert "/accounts/confirm-email/" not in mail.outbox[0].body

    def test_the_database_refuses_two_users_differing_in_case(self, alice):
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.create_user("Alice@EXAMPLE.com", "x" * 12)

    def test_a_weak_password_gets_a_clear_message(self, client):
        response = client.post(
            reverse("account_signup"),
            {"email": "eve@example.com", "password1": "12345678"},
        )

        assert response.status_code == 200
        assert "too short" in response.content.decode() or "too common" in response.content.decode()
        assert not User.objects.filter(email="eve@example.com").exists()


class TestLogin:
    def test_it_logs_in_with_email_and_logs_out(self, client, alice, password):
        response = log_in(client, "alice@example.com", password)
        assert response.status_code == 302
        assert client.get("/").status_code == 200

        client.post(reverse("account_logout"))

        assert client.get("/")["Location"].startswith(reverse("account_login"))

    def test_email_is_matched_without_case(self, client, alice, password):
        response = log_in(client, "Alice@Example.COM", password)

        assert response.status_code == 302
        assert response["Location"] == "/"

    def test_a_wrong_password_says_so_without_naming_which_part(self, client, alice):
        response = log_in(client, "alice@example.com", "wrong password here")

        assert response.status_code == 200
        assert "not correct" in response.content.decode()

    def test_failed_logins_are_rate_limited_even_with_the_right_password(
        self, client, alice, password
    ):
        pages = [log_in(client, "alice@example.com", f"wrong {i}") for i in range(5)]
        assert all("Too many" not in p.content.decode() for p in pages)

        # allauth's login_failed limit: 5 per 5 minutes for one account.
        blocked = log_in(client, "alice@example.com", password)

        assert blocked.status_code == 200
        assert "Too many failed login attempts" in blocked.content.decode()
        assert "_auth_user_id" not in client.session


class TestPasswords:
    def test_change_password(self, client, alice, password):
        client.force_login(alice)

        response = client.post(
            reverse("account_change_password"),
            {"oldpassword": password, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )

        assert response.status_code == 302
        alice.refresh_from_db()
        assert alice.check_password(NEW_PASSWORD)

    def test_reset_password_through_the_mailed_link(self, client, alice):
        client.post(reverse("account_reset_password"), {"email": "alice@example.com"})
        link = last_mail_link("/accounts/password/reset/key/")

        form_page = client.get(link, follow=True)
        action = form_page.redirect_chain[-1][0] if form_page.redirect_chain else link
        response = client.post(action, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

        assert response.status_code == 302
        alice.refresh_from_db()
        assert alice.check_password(NEW_PASSWORD)

    def test_reset_for_an_unknown_address_reveals_nothing(self, client):
        response = client.post(reverse("account_reset_password"), {"email": "nobody@example.com"})

        assert response.status_code == 302
        # A message goes to the address saying no account exists, as allauth does.
        assert [m.to for m in mail.outbox] == [["nobody@example.com"]]
        assert "/accounts/password/reset/key/" not in mail.outbox[0].body


class TestTwoFactor:
    def activate_totp(self, client) -> str:
        # Changing sign-in methods asks for the password again first.
        client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
        page = client.get(reverse("mfa_activate_totp"))
        secret = page.context["form"].secret
        response = client.post(reverse("mfa_activate_totp"), {"code": totp(secret)})
        assert response.status_code == 302
        return secret

    def test_activating_totp_needs_a_valid_code(self, client, alice, password):
        log_in(client, "alice@example.com", password)
        client.post(reverse("account_reauthenticate"), {"password": password})
        client.get(reverse("mfa_activate_totp"))

        response = client.post(reverse("mfa_activate_totp"), {"code": "000000"})

        assert response.status_code == 200
        assert not Authenticator.objects.filter(user=alice).exists()

    def test_activating_totp_asks_for_the_password_again(self, client, alice, password):
        log_in(client, "alice@example.com", password)

        response = client.get(reverse("mfa_activate_totp"))

        assert response["Location"].startswith(reverse("account_reauthenticate"))

    def test_with_totp_login_asks_for_a_code(self, client, alice, password):
        log_in(client, "alice@example.com", password)
        secret = self.activate_totp(client)
        assert Authenticator.objects.filter(user=alice, type=Authenticator.Type.TOTP).exists()
        client.logout()

        response = log_in(client, "alice@example.com", password)
        assert response["Location"] == reverse("mfa_authenticate")
        assert "_auth_user_id" not in client.session

        wrong = client.post(reverse("mfa_authenticate"), {"code": "123456"})
        assert wrong.status_code == 200
        assert "_auth_user_id" not in client.session

        right = client.post(reverse("mfa_authenticate"), {"code": totp(secret)})
        assert right["Location"] == "/"
        assert client.session["_auth_user_id"] == str(alice.pk)

    def test_a_recovery_code_works_once(self, client, alice, password):
        log_in(client, "alice@example.com", password)
        self.activate_totp(client)
        codes_page = client.get(reverse("mfa_view_recovery_codes"))
        codes = codes_page.context["unused_codes"]
        assert len(codes) == 10
        client.logout()

        log_in(client, "alice@example.com", password)
        assert client.post(reverse("mfa_authenticate"), {"code": codes[0]})["Location"] == "/"
        client.logout()

        log_in(client, "alice@example.com", password)
        reused = client.post(reverse("mfa_authenticate"), {"code": codes[0]})
        assert reused.status_code == 200
        assert "_auth_user_id" not in client.session


class TestProfile:
    def test_it_saves_the_name(self, client, alice):
        client.force_login(alice)

        response = client.post(reverse("accounts:profile"), {"name": "  Alice Q. Smith "})

        assert response.status_code == 302
        alice.refresh_from_db()
        assert alice.name == "Alice Q. Smith"

    def test_htmx_gets_the_form_back_with_a_saved_note(self, client, alice):
        client.force_login(alice)

        response = client.post(
            reverse("accounts:profile"),
            {"name": "Alice"},
            headers={"HX-Request": "true"},
        )

        body = response.content.decode()
        assert response.status_code == 200
        assert body.lstrip().startswith("<form")
        assert "Saved" in body

    def test_a_name_too_long_is_refused_with_a_message(self, client, alice):
        client.force_login(alice)

        response = client.post(reverse("accounts:profile"), {"name": "x" * 151})

        assert response.status_code == 200
        assert "at most 150 characters" in response.content.decode()
        alice.refresh_from_db()
        assert alice.name == "Alice Smith"

    def test_it_needs_login(self, client):
        response = client.get(reverse("accounts:profile"))

        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))
