"""API v1: teams, members, invitations, audit log, tokens; one error format."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import TOKEN_SCOPES, PersonalAccessToken
from apps.accounts.tokens import token_create, token_revoke
from apps.core.models import AuditEntry
from apps.teams.models import Invitation, Membership, Role
from tests.factories import PASSWORD, add_member
from tests.helpers import reauthenticate

pytestmark = pytest.mark.django_db(transaction=True)

ALL_SCOPES = list(TOKEN_SCOPES)


def client_for(plaintext: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return api


def make_token(user, scopes=None, team=None, days=30):
    token, plaintext = token_create(
        user=user, name="cli", scopes=scopes or ALL_SCOPES, team=team, expires_in_days=days
    )
    return token, plaintext


def membership(team, user):
    return Membership.objects.for_team(team).get(user=user)


class TestErrorsAndAuth:
    def test_no_credentials_get_401_in_the_error_format(self):
        response = APIClient().get("/api/v1/me")

        assert response.status_code == 401
        assert response.json() == {
            "error": {
                "code": "not_authenticated",
                "message": "Authentication credentials were not provided.",
            },
        }
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_a_malformed_header_says_how_to_send_it(self):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION="Bearer")

        response = api.get("/api/v1/me")

        assert response.status_code == 401
        assert "Authorization: Bearer lat_" in response.json()["error"]["message"]

    def test_validation_errors_name_the_fields(self, alice):
        _, plaintext = make_token(alice)

        response = client_for(plaintext).post("/api/v1/teams/", {"name": ""}, format="json")

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid"
        assert "name" in error["fields"]

    def test_malformed_json_is_a_400(self, alice):
        _, plaintext = make_token(alice)

        response = client_for(plaintext).post(
            "/api/v1/teams/", data="{not json", content_type="application/json"
        )

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "parse_error"

    def test_me_with_a_token(self, alice):
        _, plaintext = make_token(alice, scopes=["datasets:read"])

        response = client_for(plaintext).get("/api/v1/me")

        assert response.status_code == 403  # /me belongs to the teams area
        _, plaintext = make_token(alice, scopes=["teams:read"])
        body = client_for(plaintext).get("/api/v1/me").json()
        assert body["email"] == "alice@example.com"

    def test_the_browser_session_needs_csrf_for_writes(self, alice):
        api = APIClient(enforce_csrf_checks=True)
        api.force_login(alice)

        assert api.get("/api/v1/me").status_code == 200
        response = api.patch("/api/v1/me", {"name": "A"}, format="json")
        assert response.status_code == 403
        assert "CSRF" in response.json()["error"]["message"]


class TestTeams:
    def test_list_shows_only_my_teams_with_my_role_and_a_cursor(self, acme, globex, bob):
        _, plaintext = make_token(bob)

        body = client_for(plaintext).get("/api/v1/teams/").json()

        assert [(t["slug"], t["role"]) for t in body["results"]] == [("acme", "member")]
        assert set(body) == {"next", "previous", "results"}

    def test_the_cursor_pages_through(self, charlie):
        for n in range(5):
            from apps.teams.services import team_create

            team_create(actor=charlie, name=f"T{n}")
        _, plaintext = make_token(charlie)
        api = client_for(plaintext)

        first = api.get("/api/v1/teams/?page_size=2").json()
        second = api.get(first["next"]).json()

        assert len(first["results"]) == 2
        assert len(second["results"]) == 2
        assert not {t["slug"] for t in first["results"]} & {t["slug"] for t in second["results"]}

    def test_create_rename_delete(self, charlie):
        _, plaintext = make_token(charlie)
        api = client_for(plaintext)

        created = api.post("/api/v1/teams/", {"name": "Hooli"}, format="json")
        assert created.status_code == 201
        assert created.json()["role"] == "owner"
        renamed = api.patch("/api/v1/teams/hooli/", {"name": "Hooli XYZ"}, format="json")
        assert renamed.json()["name"] == "Hooli XYZ"
        refused = api.delete(
            "/api/v1/teams/hooli/", {"confirmation": "nope", "password": PASSWORD}, format="json"
        )
        assert refused.status_code == 409
        assert "hooli" in refused.json()["error"]["message"]
        deleted = api.delete(
            "/api/v1/teams/hooli/", {"confirmation": "hooli", "password": PASSWORD}, format="json"
        )
        assert deleted.status_code == 204
        assert api.get("/api/v1/teams/hooli/").status_code == 404

    def test_an_outsider_gets_404_everywhere_in_a_team(self, acme, globex, charlie, bob):
        _, plaintext = make_token(charlie)
        api = client_for(plaintext)
        bob_id = membership(acme, bob).pk

        for method, url in [
            ("get", "/api/v1/teams/acme/"),
            ("patch", "/api/v1/teams/acme/"),
            ("get", "/api/v1/teams/acme/members/"),
            ("patch", f"/api/v1/teams/acme/members/{bob_id}/"),
            ("delete", f"/api/v1/teams/acme/members/{bob_id}/"),
            ("post", "/api/v1/teams/acme/invitations/"),
            ("get", "/api/v1/teams/acme/audit/"),
        ]:
            response = getattr(api, method)(url, {"role": "owner", "name": "x"}, format="json")
            assert response.status_code == 404, (method, url)
        # Nor through his own team's URLs.
        response = api.patch(
            f"/api/v1/teams/globex/members/{bob_id}/", {"role": "viewer"}, format="json"
        )
        assert response.status_code == 404
        assert membership(acme, bob).role == Role.MEMBER


class TestMembersInvitationsAudit:
    def test_an_owner_changes_a_role_and_the_audit_log_shows_it(self, acme, alice, bob):
        _, plaintext = make_token(alice)
        api = client_for(plaintext)

        response = api.patch(
            f"/api/v1/teams/acme/members/{membership(acme, bob).pk}/",
            {"role": "viewer"},
            format="json",
        )

        assert response.status_code == 200
        assert response.json()["role"] == "viewer"
        audit = api.get("/api/v1/teams/acme/audit/").json()["results"]
        assert audit[0]["action"] == "member.role_changed"
        assert audit[0]["actor"] == "alice@example.com"

    def test_a_member_cannot_change_roles_or_read_the_audit_log(self, acme, alice, bob):
        _, plaintext = make_token(bob)
        api = client_for(plaintext)

        response = api.patch(
            f"/api/v1/teams/acme/members/{membership(acme, alice).pk}/",
            {"role": "viewer"},
            format="json",
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
        assert api.get("/api/v1/teams/acme/audit/").status_code == 403

    def test_the_last_owner_cannot_step_down(self, acme, alice):
        _, plaintext = make_token(alice)

        response = client_for(plaintext).patch(
            f"/api/v1/teams/acme/members/{membership(acme, alice).pk}/",
            {"role": "admin", "password": PASSWORD},
            format="json",
        )

        assert response.status_code == 409
        assert "needs an owner" in response.json()["error"]["message"]

    def test_invite_list_resend_and_withdraw(self, acme, alice):
        _, plaintext = make_token(alice)
        api = client_for(plaintext)

        created = api.post(
            "/api/v1/teams/acme/invitations/",
            {"email": "dana@example.com", "role": "viewer"},
            format="json",
        )
        assert created.status_code == 201
        assert mail.outbox[-1].to == ["dana@example.com"]
        invitation_id = created.json()["id"]
        listed = api.get("/api/v1/teams/acme/invitations/?status=pending").json()["results"]
        assert [i["email"] for i in listed] == ["dana@example.com"]
        too_soon = api.post(f"/api/v1/teams/acme/invitations/{invitation_id}/resend/")
        assert too_soon.status_code == 409
        assert too_soon.json()["error"]["code"] == "resend_too_soon"
        assert api.delete(f"/api/v1/teams/acme/invitations/{invitation_id}/").status_code == 204
        assert Invitation.objects.for_team(acme).get().status == "revoked"

    def test_a_bad_status_filter_is_a_400(self, acme, alice):
        _, plaintext = make_token(alice)

        response = client_for(plaintext).get("/api/v1/teams/acme/invitations/?status=nope")

        assert response.status_code == 400
        assert "status" in response.json()["error"]["fields"]


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

        response = client_for(plaintext).post(
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

        assert client_for(plaintext).get("/api/v1/me").status_code == 401
        assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at is None

    def test_a_revoked_token_is_refused_at_once(self, alice):
        token, plaintext = make_token(alice)
        api = client_for(plaintext)
        assert api.get("/api/v1/me").status_code == 200

        token_revoke(user=alice, token=token)

        response = api.get("/api/v1/me")
        assert response.status_code == 401
        assert "expired or revoked" in response.json()["error"]["message"]

    def test_a_token_may_revoke_itself(self, alice):
        token, plaintext = make_token(alice)
        api = client_for(plaintext)

        assert api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
        assert api.get("/api/v1/me").status_code == 401
        assert PersonalAccessToken.objects.get(pk=token.pk).revoked_at is not None

    def test_a_mistyped_token_is_refused(self, alice):
        token, plaintext = make_token(alice)

        assert client_for(plaintext[:-1] + "0").get("/api/v1/me").status_code == 401
        assert client_for("ghp_notours").get("/api/v1/me").status_code == 401
        assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at is None

    def test_a_token_for_one_team_sees_no_other(self, acme, globex, alice, charlie):
        from apps.teams.models import Team

        add_member(globex, alice, Role.MEMBER)
        _, plaintext = make_token(alice, team=Team.objects.get(slug="acme"))
        api = client_for(plaintext)

        assert [t["slug"] for t in api.get("/api/v1/teams/").json()["results"]] == ["acme"]
        assert api.get("/api/v1/teams/acme/members/").status_code == 200
        assert api.get("/api/v1/teams/globex/members/").status_code == 404
        assert api.post("/api/v1/teams/", {"name": "New"}, format="json").status_code == 403

    def test_a_read_token_cannot_write(self, acme, alice, bob):
        _, plaintext = make_token(alice, scopes=["teams:read"])

        response = client_for(plaintext).patch(
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
        api = client_for(plaintext)
        ok = api.post("/api/v1/teams/acme/invitations/", {"email": "a@example.com"}, format="json")
        assert ok.status_code == 201

        client_for(make_token(alice)[1]).patch(
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

        client_for(plaintext).get("/api/v1/me", REMOTE_ADDR="203.0.113.9")

        token.refresh_from_db()
        assert token.last_used_ip == "203.0.113.9"
        assert token.last_used_at is not None

    def test_each_token_is_rate_limited_with_retry_after(self, alice, settings):
        settings.LATTICE_API_RATES = {"token": "3/min", "user": "100/min"}
        _, plaintext = make_token(alice)
        _, other = make_token(alice)
        api = client_for(plaintext)

        statuses = [api.get("/api/v1/me").status_code for _ in range(4)]

        assert statuses == [200, 200, 200, 429]
        limited = api.get("/api/v1/me")
        assert int(limited["Retry-After"]) > 0
        assert limited.json()["error"]["code"] == "throttled"
        # Another token of the same user has its own allowance.
        assert client_for(other).get("/api/v1/me").status_code == 200


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
        assert client_for(plaintext).get("/api/v1/teams/acme/members/").status_code == 200
        assert plaintext not in client.get("/settings/tokens/").content.decode()

        client.post(f"/settings/tokens/{token.pk}/revoke/")
        assert client_for(plaintext).get("/api/v1/me").status_code == 401

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
