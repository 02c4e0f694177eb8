"""Sensitive account actions ask again: the password, or a two-factor code.

Pages send the person to allauth's reauthenticate page and replay the request
after it; the API wants the proof in the request (``password`` or ``code``)
unless the browser session confirmed it within the last few minutes. Each test
plays a session or a token that was not asked again and checks the server's
state afterwards.
"""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core import mail
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.models import PersonalAccessToken
from apps.teams.models import Invitation, Membership, Role, Team
from tests.factories import PASSWORD, add_member
from tests.helpers import bearer, make_token, reauthenticate, totp

# Mail (the added-address notice) is queued on commit, so these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)

REAUTH = reverse("account_reauthenticate")


def role_of(team, user):
    return Membership.objects.for_team(team).get(user=user).role


def membership_id(team, user):
    return Membership.objects.for_team(team).get(user=user).pk


def token_client(user) -> APIClient:
    return bearer(make_token(user)[1])


def session_client(user) -> APIClient:
    api = APIClient()
    api.force_login(user)
    return api


def assert_asked_again(response):
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "reauthentication_required"
    assert '"password"' in error["message"]


class TestPages:
    def test_an_old_session_cannot_add_an_email_address_without_the_password(self, client, alice):
        # The attack from issue 12: a session someone else holds adds their address.
        client.post(reverse("account_login"), {"login": alice.email, "password": PASSWORD})

        response = client.post(
            reverse("account_email"), {"email": "mallory@evil.example", "action_add": ""}
        )

        assert response.status_code == 302
        assert response["Location"].startswith(REAUTH)
        assert not EmailAddress.objects.filter(email="mallory@evil.example").exists()

        # Alice, asked for her password, gives it: the address is added after all.
        done = client.post(response["Location"], {"password": PASSWORD})

        assert done.status_code == 302
        added = EmailAddress.objects.get(email="mallory@evil.example")
        assert (added.user, added.verified) == (alice, False)

    def test_a_wrong_password_adds_nothing(self, client, alice):
        client.force_login(alice)
        asked = client.post(
            reverse("account_email"), {"email": "mallory@evil.example", "action_add": ""}
        )

        client.post(asked["Location"], {"password": "not her password"})

        assert not EmailAddress.objects.filter(email="mallory@evil.example").exists()

    def test_making_a_token_asks_again_then_shows_it_once(self, client, alice):
        client.force_login(alice)

        response = client.post(
            reverse("accounts:tokens"), {"name": "laptop", "scope_teams": "read"}
        )

        assert response["Location"].startswith(REAUTH)
        assert not PersonalAccessToken.objects.exists()
        shown = client.post(response["Location"], {"password": PASSWORD})
        assert shown.status_code == 200
        assert shown["Cache-Control"] == "no-store"
        token = PersonalAccessToken.objects.get(user=alice)
        assert token.display_prefix in shown.content.decode()

    @pytest.mark.parametrize("role", ["admin", "owner"])
    def test_making_someone_admin_or_owner_asks_again(self, client, acme, alice, bob, role):
        client.force_login(alice)
        url = reverse("teams:member_role", args=["acme", membership_id(acme, bob)])

        response = client.post(url, {"role": role})

        assert response["Location"].startswith(REAUTH)
        assert role_of(acme, bob) == Role.MEMBER
        client.post(response["Location"], {"password": PASSWORD})
        assert role_of(acme, bob) == role

    def test_lowering_a_role_does_not_ask(self, client, acme, alice, bob):
        client.force_login(alice)

        response = client.post(
            reverse("teams:member_role", args=["acme", membership_id(acme, bob)]),
            {"role": "viewer"},
        )

        assert response["Location"] == reverse("teams:members", args=["acme"])
        assert role_of(acme, bob) == Role.VIEWER

    def test_transferring_ownership_asks_again(self, client, acme, alice, bob):
        client.force_login(alice)

        response = client.post(
            reverse("teams:transfer", args=["acme"]), {"member_id": membership_id(acme, bob)}
        )

        assert response["Location"].startswith(REAUTH)
        assert (role_of(acme, alice), role_of(acme, bob)) == (Role.OWNER, Role.MEMBER)
        client.post(response["Location"], {"password": PASSWORD})
        assert (role_of(acme, alice), role_of(acme, bob)) == (Role.ADMIN, Role.OWNER)

    def test_deleting_a_team_asks_again(self, client, acme, alice):
        client.force_login(alice)

        response = client.post(reverse("teams:delete", args=["acme"]), {"confirmation": "acme"})

        assert response["Location"].startswith(REAUTH)
        assert Team.objects.filter(slug="acme").exists()
        client.post(response["Location"], {"password": PASSWORD})
        assert not Team.objects.filter(slug="acme").exists()

    def test_inviting_an_admin_asks_again(self, client, acme, alice):
        client.force_login(alice)

        response = client.post(
            reverse("teams:invitation_create", args=["acme"]),
            {"email": "dana@example.com", "role": "admin"},
        )

        assert response["Location"].startswith(REAUTH)
        assert not Invitation.objects.for_team(acme).exists()

    def test_once_confirmed_the_session_is_not_asked_again_for_a_while(
        self, client, acme, alice, bob
    ):
        client.force_login(alice)
        reauthenticate(client)

        client.post(reverse("accounts:tokens"), {"name": "laptop", "scope_teams": "read"})
        client.post(
            reverse("teams:member_role", args=["acme", membership_id(acme, bob)]),
            {"role": "admin"},
        )

        assert PersonalAccessToken.objects.filter(user=alice).count() == 1
        assert role_of(acme, bob) == Role.ADMIN

    def test_a_confirmation_older_than_the_timeout_asks_again(self, client, alice, settings):
        client.force_login(alice)
        reauthenticate(client)
        settings.ACCOUNT_REAUTHENTICATION_TIMEOUT = 0

        response = client.post(
            reverse("accounts:tokens"), {"name": "laptop", "scope_teams": "read"}
        )

        assert response["Location"].startswith(REAUTH)
        assert not PersonalAccessToken.objects.exists()


class TestApi:
    def test_a_session_cannot_make_a_token_without_proof(self, alice):
        api = session_client(alice)

        response = api.post(
            "/api/v1/tokens/", {"name": "x", "scopes": ["teams:write"]}, format="json"
        )

        assert_asked_again(response)
        assert not PersonalAccessToken.objects.exists()

    def test_a_wrong_password_is_refused_and_names_the_field(self, alice):
        api = session_client(alice)

        response = api.post(
            "/api/v1/tokens/",
            {"name": "x", "scopes": ["teams:write"], "password": "guess"},
            format="json",
        )

        assert response.status_code == 400
        assert "password" in response.json()["error"]["fields"]
        assert not PersonalAccessToken.objects.exists()

    def test_the_password_in_the_request_is_proof(self, alice):
        api = session_client(alice)

        response = api.post(
            "/api/v1/tokens/",
            {"name": "x", "scopes": ["teams:write"], "password": PASSWORD},
            format="json",
        )

        assert response.status_code == 201
        assert "password" not in response.json()
        assert PersonalAccessToken.objects.filter(user=alice).count() == 1

    def test_a_session_that_confirmed_recently_needs_no_proof(self, alice):
        api = session_client(alice)
        reauthenticate(api)

        response = api.post(
            "/api/v1/tokens/", {"name": "x", "scopes": ["teams:write"]}, format="json"
        )

        assert response.status_code == 201
        assert PersonalAccessToken.objects.filter(user=alice, name="x").count() == 1

    @pytest.mark.parametrize("role", ["admin", "owner"])
    def test_a_token_cannot_raise_a_role_without_proof(self, acme, alice, bob, role):
        api = token_client(alice)
        url = f"/api/v1/teams/acme/members/{membership_id(acme, bob)}/"

        assert_asked_again(api.patch(url, {"role": role}, format="json"))
        assert role_of(acme, bob) == Role.MEMBER

        response = api.patch(url, {"role": role, "password": PASSWORD}, format="json")
        assert response.status_code == 200
        assert role_of(acme, bob) == role

    def test_a_token_cannot_delete_a_team_without_proof(self, acme, alice):
        api = token_client(alice)

        asked = api.delete("/api/v1/teams/acme/", {"confirmation": "acme"}, format="json")

        assert_asked_again(asked)
        assert Team.objects.filter(slug="acme").exists()

        response = api.delete(
            "/api/v1/teams/acme/", {"confirmation": "acme", "password": PASSWORD}, format="json"
        )
        assert response.status_code == 204
        assert not Team.objects.filter(slug="acme").exists()

    def test_a_token_cannot_invite_an_owner_without_proof(self, acme, alice):
        api = token_client(alice)

        response = api.post(
            "/api/v1/teams/acme/invitations/",
            {"email": "dana@example.com", "role": "owner"},
            format="json",
        )

        assert_asked_again(response)
        assert not Invitation.objects.for_team(acme).exists()
        assert mail.outbox == []

    def test_a_totp_code_is_proof_once(self, acme, alice, bob, charlie):
        secret = generate_totp_secret()
        TOTP.activate(alice, secret)
        add_member(acme, charlie, Role.VIEWER)
        api = token_client(alice)
        code = totp(secret)

        first = api.patch(
            f"/api/v1/teams/acme/members/{membership_id(acme, bob)}/",
            {"role": "admin", "code": code},
            format="json",
        )
        replayed = api.patch(
            f"/api/v1/teams/acme/members/{membership_id(acme, charlie)}/",
            {"role": "admin", "code": code},
            format="json",
        )

        assert first.status_code == 200
        assert role_of(acme, bob) == Role.ADMIN
        assert replayed.status_code == 400
        assert "code" in replayed.json()["error"]["fields"]
        assert role_of(acme, charlie) == Role.VIEWER

    def test_a_code_without_two_factor_says_to_send_the_password(self, acme, alice, bob):
        response = token_client(alice).patch(
            f"/api/v1/teams/acme/members/{membership_id(acme, bob)}/",
            {"role": "admin", "code": "123456"},
            format="json",
        )

        assert response.status_code == 400
        assert "password" in response.json()["error"]["fields"]["code"][0]
        assert role_of(acme, bob) == Role.MEMBER

    def test_guessing_passwords_is_rate_limited(self, acme, alice, bob):
        api = token_client(alice)
        url = f"/api/v1/teams/acme/members/{membership_id(acme, bob)}/"

        for n in range(10):
            api.patch(url, {"role": "admin", "password": f"guess {n}"}, format="json")
        blocked = api.patch(url, {"role": "admin", "password": PASSWORD}, format="json")

        assert blocked.status_code == 429
        assert role_of(acme, bob) == Role.MEMBER
