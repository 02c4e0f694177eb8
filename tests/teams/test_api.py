"""API v1 for teams: the team list, members and roles, invitations, the audit log."""

from __future__ import annotations

import pytest
from django.core import mail

from apps.teams.models import Invitation, Membership, Role
from tests.factories import PASSWORD
from tests.helpers import bearer, make_token

pytestmark = pytest.mark.django_db(transaction=True)


def membership(team, user):
    return Membership.objects.for_team(team).get(user=user)


class TestTeams:
    def test_list_shows_only_my_teams_with_my_role_and_a_cursor(self, acme, globex, bob):
        _, plaintext = make_token(bob)

        body = bearer(plaintext).get("/api/v1/teams/").json()

        assert [(t["slug"], t["role"]) for t in body["results"]] == [("acme", "member")]
        assert set(body) == {"next", "previous", "results"}

    def test_the_cursor_pages_through(self, charlie):
        for n in range(5):
            from apps.teams.services import team_create

            team_create(actor=charlie, name=f"T{n}")
        _, plaintext = make_token(charlie)
        api = bearer(plaintext)

        first = api.get("/api/v1/teams/?page_size=2").json()
        second = api.get(first["next"]).json()

        assert len(first["results"]) == 2
        assert len(second["results"]) == 2
        assert not {t["slug"] for t in first["results"]} & {t["slug"] for t in second["results"]}

    def test_create_rename_delete(self, charlie):
        _, plaintext = make_token(charlie)
        api = bearer(plaintext)

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
        api = bearer(plaintext)
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
        api = bearer(plaintext)

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
        api = bearer(plaintext)

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

        response = bearer(plaintext).patch(
            f"/api/v1/teams/acme/members/{membership(acme, alice).pk}/",
            {"role": "admin", "password": PASSWORD},
            format="json",
        )

        assert response.status_code == 409
        assert "needs an owner" in response.json()["error"]["message"]

    def test_invite_list_resend_and_withdraw(self, acme, alice):
        _, plaintext = make_token(alice)
        api = bearer(plaintext)

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

        response = bearer(plaintext).get("/api/v1/teams/acme/invitations/?status=nope")

        assert response.status_code == 400
        assert "status" in response.json()["error"]["fields"]
