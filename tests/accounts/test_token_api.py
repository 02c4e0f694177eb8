"""Personal access tokens through the API and the settings page: shown once, stored only as
a hash, limited to their scopes and team, refused once expired or revoked, rate limited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import PersonalAccessToken
from apps.accounts.tokens import token_revoke
from apps.core.models import AuditEntry
from apps.teams.models import Invitation, Membership, Role
from tests.factories import PASSWORD, add_member
from tests.helpers import bearer, make_token, reauthenticate

pytestmark = pytest.mark.django_db(transaction=True)


def membership(team, user):
    return Membership.objects.for_team(team).get(user=user)


class TestTokens:
    def test_made_while_signed_in_shown_once_and_stored_only_as_a_hash(self, alice, acme):
        api = APIClient()
        api.force_login(alice)

        created = api.post(
            "/api/v1/tokens/",
            {
                "name": "laptop",
                "scopes": ["teams:read"],
                "team": "acme",
                "expires_in_days": 7,
                "password": PASSWORD,
            },
            format="json",
        )

        assert created.status_code == 201
        plaintext = created.json()["token"]
        assert plaintext.startswith("lat_")
        assert len(plaintext) == 44
        assert created.json()["team"] == "acme"
        listed = api.get("/api/v1/tokens/").json()["results"]
        assert "token" not in listed[0]
        assert plaintext not in str(listed)
        assert_nowhere_in_database(plaintext)
        assert AuditEntry.objects.for_team(acme).filter(action="token.created").exists()

    def test_a_token_cannot_make_tokens(self, alice):
        _, plaintext = make_token(alice)

        response = bearer(plaintext).post(
            "/api/v1/tokens/", {"name": "x", "scopes": ["teams:read"]}, format="json"
        )

        assert response.status_code == 403
        assert list(
            PersonalAccessToken.objects.filter(user=alice).values_list("name", flat=True)
        ) == ["cli"]

    def test_unknown_scopes_are_refused(self, alice):
        api = APIClient()
        api.force_login(alice)

        response = api.post("/api/v1/tokens/", {"name": "x", "scopes": ["root"]}, format="json")

        assert response.status_code == 400
        assert "scopes" in response.json()["error"]["fields"]

    def test_an_expired_token_is_refused(self, alice):
        token, plaintext = make_token(alice)
        PersonalAccessToken.objects.filter(pk=token.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )

        assert bearer(plaintext).get("/api/v1/me").status_code == 401
        assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at is None

    def test_a_revoked_token_is_refused_at_once(self, alice):
        token, plaintext = make_token(alice)
        api = bearer(plaintext)
        assert api.get("/api/v1/me").status_code == 200

        token_revoke(user=alice, token=token)

        response = api.get("/api/v1/me")
        assert response.status_code == 401
        assert "expired or revoked" in response.json()["error"]["message"]

    def test_a_token_may_revoke_itself(self, alice):
        token, plaintext = make_token(alice)
        api = bearer(plaintext)

        assert api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
        assert api.get("/api/v1/me").status_code == 401
        assert PersonalAccessToken.objects.get(pk=token.pk).revoked_at is not None

    def test_a_mistyped_token_is_refused(self, alice):
        token, plaintext = make_token(alice)
        # One character changed (never to itself: a token ending in "0" stays itself).
        mistyped = plaintext[:-1] + ("1" if plaintext.endswith("0") else "0")

        assert bearer(mistyped).get("/api/v1/me").status_code == 401
        assert bearer("ghp_notours").get("/api/v1/me").status_code == 401
        assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at is None

    def test_a_token_for_one_team_sees_no_other(self, acme, globex, alice, charlie):
        from apps.teams.models import Team

        add_member(globex, alice, Role.MEMBER)
        _, plaintext = make_token(alice, team=Team.objects.get(slug="acme"))
        api = bearer(plaintext)

        assert [t["slug"] for t in api.get("/api/v1/teams/").json()["results"]] == ["acme"]
        assert api.get("/api/v1/teams/acme/members/").status_code == 200
        assert api.get("/api/v1/teams/globex/members/").status_code == 404
        assert api.post("/api/v1/teams/", {"name": "New"}, format="json").status_code == 403

    def test_a_read_token_cannot_write(self, acme, alice, bob):
        _, plaintext = make_token(alice, scopes=["teams:read"])

        response = bearer(plaintext).patch(
            f"/api/v1/teams/acme/members/{membership(acme, bob).pk}/",
            {"role": "viewer"},
            format="json",
        )

        assert response.status_code == 403
        assert response.json()["error"]["message"] == "This token lacks the teams:write scope."
        assert membership(acme, bob).role == Role.MEMBER

    def test_a_demoted_users_token_loses_the_rights_at_once(self, acme, alice, bob):
        Membership.objects.for_team(acme).filter(user=bob).update(role=Role.ADMIN)
        _, plaintext = make_token(bob)
        api = bearer(plaintext)
        ok = api.post("/api/v1/teams/acme/invitations/", {"email": "a@example.com"}, format="json")
        assert ok.status_code == 201

        bearer(make_token(alice)[1]).patch(
            f"/api/v1/teams/acme/members/{membership(acme, bob).pk}/",
            {"role": "viewer"},
            format="json",
        )

        refused = api.post(
            "/api/v1/teams/acme/invitations/", {"email": "b@example.com"}, format="json"
        )
        assert refused.status_code == 403
        assert api.get("/api/v1/teams/acme/invitations/").status_code == 403
        invited = Invitation.objects.for_team(acme).values_list("email", flat=True)
        assert list(invited) == ["a@example.com"]

    def test_last_use_is_recorded(self, alice):
        token, plaintext = make_token(alice)

        bearer(plaintext).get("/api/v1/me", REMOTE_ADDR="203.0.113.9")

        token.refresh_from_db()
        assert token.last_used_ip == "203.0.113.9"
        assert token.last_used_at is not None

    def test_each_token_is_rate_limited_with_retry_after(self, alice, settings):
        settings.LATTICE_API_RATES = {"token": "3/min", "user": "100/min"}
        _, plaintext = make_token(alice)
        _, other = make_token(alice)
        api = bearer(plaintext)

        statuses = [api.get("/api/v1/me").status_code for _ in range(4)]

        assert statuses == [200, 200, 200, 429]
        limited = api.get("/api/v1/me")
        assert int(limited["Retry-After"]) > 0
        assert limited.json()["error"]["code"] == "throttled"
        # Another token of the same user has its own allowance.
        assert bearer(other).get("/api/v1/me").status_code == 200


def assert_nowhere_in_database(secret: str) -> None:
    """Read every row of every table as text and look for ``secret``."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                assert secret not in repr(row), f"{table} holds the token"


class TestTokenPage:
    def test_make_a_token_see_it_once_then_revoke_it(self, client, alice, acme):
        client.force_login(alice)
        reauthenticate(client)

        created = client.post(
            "/settings/tokens/",
            {
                "name": "laptop CLI",
                "scope_teams": "write",
                "scope_datasets": "read",
                "team": "acme",
                "expires_in_days": "90",
            },
        )

        body = created.content.decode()
        assert created.status_code == 200
        assert created["Cache-Control"] == "no-store"
        token = PersonalAccessToken.objects.get(user=alice)
        assert token.scopes == ["datasets:read", "teams:write"]
        assert token.team == acme
        plaintext = body.split('id="new-token" class="token-value" type="text" readonly value="')[
            1
        ][:44]
        assert bearer(plaintext).get("/api/v1/teams/acme/members/").status_code == 200
        assert plaintext not in client.get("/settings/tokens/").content.decode()

        client.post(f"/settings/tokens/{token.pk}/revoke/")
        assert bearer(plaintext).get("/api/v1/me").status_code == 401

    def test_a_token_needs_some_access(self, client, alice):
        client.force_login(alice)
        reauthenticate(client)

        response = client.post("/settings/tokens/", {"name": "nothing", "expires_in_days": "7"})

        assert response.status_code == 400
        assert "at least one area" in response.content.decode()
        assert not PersonalAccessToken.objects.exists()

    def test_a_forged_team_choice_is_refused(self, client, alice, globex):
        client.force_login(alice)
        reauthenticate(client)

        response = client.post(
            "/settings/tokens/", {"name": "x", "scope_teams": "read", "team": "globex"}
        )

        assert response.status_code == 400
        assert not PersonalAccessToken.objects.exists()
