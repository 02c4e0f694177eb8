"""Resets go only to verified addresses, and the primary address hears of changes.

The takeover from issue 12 had two steps: an old session added an address
(tests/accounts/test_reauthentication.py now refuses that without the password), and a
reset mailed to that unverified address set the account's password. Here the
second step is played with an unverified address already on the account.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.db import transaction
from django.urls import reverse

from tests.factories import PASSWORD, EmailAddressFactory, UserFactory
from tests.helpers import last_mail_link, reauthenticate

# Mail is queued with transaction.on_commit, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a much longer passphrase 42"


def request_reset(client, email):
    return client.post(reverse("account_reset_password"), {"email": email})


class TestResetsOnlyToVerifiedAddresses:
    def test_a_reset_for_an_unverified_address_sends_nothing(self, client, alice):
        EmailAddressFactory.create(user=alice, email="mallory@evil.example", verified=False)

        response = request_reset(client, "mallory@evil.example")

        # The reply is the one any address gets: it does not say what exists.
        assert response.status_code == 302
        assert response["Location"] == reverse("account_reset_password_done")
        # Nothing reaches the attacker's mailbox, so there is no link to set a password with.
        assert mail.outbox == []
        alice.refresh_from_db()
        assert alice.check_password(PASSWORD)

    def test_an_unverified_primary_address_gets_no_reset_either(self, client):
        dana = UserFactory.create(email="dana@example.com", verified=False)

        request_reset(client, "dana@example.com")

        assert mail.outbox == []
        dana.refresh_from_db()
        assert dana.check_password(PASSWORD)

    def test_a_verified_second_address_still_gets_a_working_link(self, client, alice):
        EmailAddressFactory.create(user=alice, email="alice@work.example", verified=True)

        request_reset(client, "alice@work.example")
        assert mail.outbox[-1].to == ["alice@work.example"]
        link = last_mail_link("/accounts/password/reset/key/")
        form_page = client.get(link, follow=True)
        client.post(
            form_page.redirect_chain[-1][0],
            {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )

        alice.refresh_from_db()
        assert alice.check_password(NEW_PASSWORD)

    def test_an_unknown_address_still_hears_that_no_account_exists(self, client):
        request_reset(client, "nobody@example.com")

        assert [m.to for m in mail.outbox] == [["nobody@example.com"]]
        assert "/accounts/password/reset/key/" not in mail.outbox[0].body


class TestThePrimaryAddressIsTold:
    def test_when_an_address_is_added(self, client, alice):
        client.force_login(alice)
        reauthenticate(client)

        client.post(reverse("account_email"), {"email": "alice@work.example", "action_add": ""})

        notices = [m for m in mail.outbox if m.to == ["alice@example.com"]]
        assert len(notices) == 1
        assert notices[0].subject == "[Lattice] New email address on your account"
        assert "alice@work.example" in notices[0].body
        # The new address gets its confirmation link, as before.
        assert any(m.to == ["alice@work.example"] for m in mail.outbox)

    def test_when_the_password_changes(self, client, alice):
        client.force_login(alice)

        client.post(
            reverse("account_change_password"),
            {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )

        assert [(m.to, m.subject) for m in mail.outbox] == [
            (["alice@example.com"], "[Lattice] Password Changed")
        ]

    def test_when_a_password_is_set(self, client, alice):
        # An account without a password confirms it is theirs with a mailed code first.
        alice.set_unusable_password()
        alice.save()
        client.force_login(alice)
        asked = client.post(
            reverse("account_set_password"), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
        )
        assert asked["Location"].startswith(reverse("account_request_reauthentication_code"))
        sent = client.post(asked["Location"], {"recipient": "alice@example.com"})
        code = re.search(r"^([A-Z0-9-]{6,})$", str(mail.outbox[-1].body), re.MULTILINE)
        assert code, mail.outbox[-1].body
        mail.outbox.clear()

        client.post(sent["Location"], {"code": code.group(1)})

        alice.refresh_from_db()
        assert alice.check_password(NEW_PASSWORD)
        assert [(m.to, m.subject) for m in mail.outbox] == [
            (["alice@example.com"], "[Lattice] Password Set")
        ]

    def test_the_notice_goes_through_the_queue_after_commit(self, client, alice):
        client.force_login(alice)

        with transaction.atomic():
            client.post(
                reverse("account_change_password"),
                {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
            )
            # apps.core.mail queues it for after the commit: nothing is sent yet.
            assert mail.outbox == []

        assert [m.to for m in mail.outbox] == [["alice@example.com"]]
