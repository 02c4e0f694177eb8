"""Teams: the role matrix cell by cell, the rules services enforce, and the pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.core.models import AuditEntry
from apps.teams import services
from apps.teams.models import Membership, Role, Team
from apps.teams.permissions import PERMISSIONS, role_allows
from tests.factories import UserFactory, add_member
from tests.helpers import reauthenticate

pytestmark = pytest.mark.django_db

OWN, ADM, MEM, VIE = Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER
# The documented matrix (docs/permissions.md), written out again on purpose:
# a change to apps/teams/permissions.py must be made here too, knowingly.
MATRIX = {
    "team.view": {OWN, ADM, MEM, VIE},
    "members.view": {OWN, ADM, MEM, VIE},
    "notebooks.view": {OWN, ADM, MEM, VIE},
    "notebooks.manage": {OWN, ADM, MEM},
    "notebooks.open": {OWN, ADM, MEM},
    "notebooks.settings": {OWN, ADM},
    "datasets.view": {OWN, ADM, MEM, VIE},
    "datasets.manage": {OWN, ADM, MEM},
    "models.view": {OWN, ADM, MEM, VIE},
    "models.manage": {OWN, ADM, MEM},
    "deployments.view": {OWN, ADM, MEM, VIE},
    "deployments.manage": {OWN, ADM, MEM},
    "deployments.invoke": {OWN, ADM, MEM, VIE},
    "members.invite": {OWN, ADM},
    "members.change_role": {OWN, ADM},
    "members.remove": {OWN, ADM},
    "team.rename": {OWN, ADM},
    "secrets.view": {OWN, ADM, MEM},
    "secrets.manage": {OWN, ADM},
    "audit.view": {OWN, ADM},
    "billing.view": {OWN, ADM},
    "billing.manage": {OWN, ADM},
    "team.transfer": {OWN},
    "team.delete": {OWN},
}
CELLS = [(perm, role) for perm in MATRIX for role in Role]


def test_the_matrix_covers_every_permission():
    assert set(MATRIX) == set(PERMISSIONS)


@pytest.mark.parametrize(("permission", "role"), CELLS, ids=[f"{p}-{r}" for p, r in CELLS])
def test_role_matrix(permission, role):
    assert role_allows(role, permission) is (role in MATRIX[permission])


def test_an_unknown_permission_is_a_bug_not_a_no():
    with pytest.raises(KeyError):
        role_allows(Role.OWNER, "teams.viwe")


# machines.view and machines.start were in the matrix but nothing checked them: seeing and
# starting machines is notebooks.view and notebooks.manage. They are gone, not silently "no".
GONE = [(perm, role) for perm in ("machines.view", "machines.start") for role in Role]


@pytest.mark.parametrize(("permission", "role"), GONE, ids=[f"{p}-{r}" for p, r in GONE])
def test_the_unchecked_machine_permissions_are_gone(permission, role):
    with pytest.raises(KeyError):
        role_allows(role, permission)


@pytest.fixture
def team_of_four(acme, alice, bob):
    """Acme with an owner (alice), a member (bob), an admin (ada) and a viewer (vic)."""
    ada = UserFactory.create(email="ada@example.com")
    vic = UserFactory.create(email="vic@example.com")
    add_member(acme, ada, Role.ADMIN)
    add_member(acme, vic, Role.VIEWER)
    return {"owner": alice, "admin": ada, "member": bob, "viewer": vic}


def membership(team, user):
    return Membership.objects.for_team(team).get(user=user)


class TestServices:
    def test_team_create_makes_the_actor_owner_and_audits(self, charlie):
        team = services.team_create(actor=charlie, name="  Initech ")

        assert team.name == "Initech"
        assert team.slug == "initech"
        assert membership(team, charlie).role == Role.OWNER
        entry = AuditEntry.objects.for_team(team).get()
        assert (entry.action, entry.actor_email) == ("team.created", "charlie@example.org")

    def test_slugs_stay_unique(self, alice, charlie):
        # Two people's teams: one person's two teams may not share a name (test_team_names).
        first = services.team_create(actor=charlie, name="Initech")
        second = services.team_create(actor=alice, name="Initech")

        assert (first.slug, second.slug) == ("initech", "initech-2")

    @pytest.mark.parametrize("role", ["owner", "admin"])
    def test_owners_and_admins_change_member_roles(self, acme, team_of_four, role):
        actor = team_of_four[role]
        bob_membership = membership(acme, team_of_four["member"])

        services.member_change_role(team=acme, actor=actor, member=bob_membership, role="viewer")

        assert membership(acme, team_of_four["member"]).role == Role.VIEWER
        entry = AuditEntry.objects.for_team(acme).get(action="member.role_changed")
        assert entry.data == {"old": "member", "new": "viewer"}

    @pytest.mark.parametrize("role", ["member", "viewer"])
    def test_members_and_viewers_cannot_change_roles(self, acme, team_of_four, role):
        target = membership(acme, team_of_four["admin"])

        with pytest.raises(services.TeamPermissionError):
            services.member_change_role(
                team=acme, actor=team_of_four[role], member=target, role="viewer"
            )
        assert membership(acme, team_of_four["admin"]).role == Role.ADMIN

    def test_an_admin_cannot_make_an_owner_or_touch_one(self, acme, team_of_four):
        admin = team_of_four["admin"]
        with pytest.raises(services.TeamPermissionError):
            services.member_change_role(
                team=acme,
                actor=admin,
                member=membership(acme, team_of_four["member"]),
                role="owner",
            )
        with pytest.raises(services.TeamPermissionError):
            services.member_change_role(
                team=acme,
                actor=admin,
                member=membership(acme, team_of_four["owner"]),
                role="member",
            )
        with pytest.raises(services.TeamPermissionError):
            services.member_remove(
                team=acme, actor=admin, member=membership(acme, team_of_four["owner"])
            )

    def test_the_last_owner_cannot_step_down_or_leave(self, acme, alice):
        own = membership(acme, alice)

        with pytest.raises(services.TeamError, match="needs an owner"):
            services.member_change_role(team=acme, actor=alice, member=own, role="admin")
        with pytest.raises(services.TeamError, match="needs an owner"):
            services.member_remove(team=acme, actor=alice, member=own)
        assert membership(acme, alice).role == Role.OWNER

    def test_a_member_can_leave(self, acme, bob):
        services.member_remove(team=acme, actor=bob, member=membership(acme, bob))

        assert not Membership.objects.for_team(acme).filter(user=bob).exists()
        assert AuditEntry.objects.for_team(acme).get(action="member.left").target == bob.email

    def test_transfer_makes_the_member_owner_and_the_owner_admin(self, acme, alice, bob):
        services.team_transfer_ownership(team=acme, actor=alice, member=membership(acme, bob))

        assert membership(acme, bob).role == Role.OWNER
        assert membership(acme, alice).role == Role.ADMIN

    def test_delete_needs_the_typed_slug(self, acme, alice):
        with pytest.raises(services.TeamError, match="acme"):
            services.team_delete(team=acme, actor=alice, confirmation="Acme")
        assert Team.objects.filter(pk=acme.pk).exists()

        services.team_delete(team=acme, actor=alice, confirmation="acme")
        assert not Team.objects.filter(pk=acme.pk).exists()

    def test_a_personal_team_cannot_be_left_or_deleted(self, charlie):
        team = services.team_create_personal(user=charlie)

        with pytest.raises(services.TeamError, match="personal"):
            services.member_remove(team=team, actor=charlie, member=membership(team, charlie))
        with pytest.raises(services.TeamError, match="personal"):
            services.team_delete(team=team, actor=charlie, confirmation=team.slug)

    def test_a_membership_from_another_team_is_refused(self, acme, globex, alice, charlie):
        with pytest.raises(services.TeamError):
            services.member_change_role(
                team=acme, actor=alice, member=membership(globex, charlie), role="viewer"
            )
        assert membership(globex, charlie).role == Role.OWNER


class TestPages:
    @pytest.mark.parametrize(
        ("role", "url_name", "status"),
        [
            ("viewer", "teams:members", 200),
            ("viewer", "teams:settings", 200),
            ("viewer", "teams:audit", 403),
            ("member", "teams:audit", 403),
            ("admin", "teams:audit", 200),
            ("owner", "teams:audit", 200),
        ],
    )
    def test_pages_follow_the_matrix(self, client, acme, team_of_four, role, url_name, status):
        client.force_login(team_of_four[role])

        response = client.get(reverse(url_name, args=[acme.slug]))
        assert response.status_code == status
        # Only the members page shows the team's people; a refusal shows nothing of them.
        other = team_of_four["member" if role != "member" else "viewer"]
        shown = other.email in response.content.decode()
        assert shown == (status == 200 and url_name == "teams:members")

    @pytest.mark.parametrize(
        ("role", "allowed"),
        [("owner", True), ("admin", True), ("member", False), ("viewer", False)],
    )
    def test_changing_a_role_over_http(self, client, acme, team_of_four, role, allowed):
        client.force_login(team_of_four[role])
        target = membership(
            acme, team_of_four["viewer"] if role != "viewer" else team_of_four["member"]
        )

        before = target.role
        response = client.post(
            reverse("teams:member_role", args=[acme.slug, target.pk]), {"role": "member"}
        )

        assert response.status_code == (302 if allowed else 403)
        assert membership(acme, target.user).role == (Role.MEMBER if allowed else before)

    def test_a_bad_role_value_gets_a_message_not_a_500(self, client, acme, alice, bob):
        client.force_login(alice)

        response = client.post(
            reverse("teams:member_role", args=[acme.slug, membership(acme, bob).pk]),
            {"role": "emperor"},
            follow=True,
        )

        assert "Choose one of the roles offered" in response.content.decode()
        assert membership(acme, bob).role == Role.MEMBER

    def test_a_bad_transfer_target_gets_a_message(self, client, acme, alice):
        client.force_login(alice)
        reauthenticate(client)

        response = client.post(
            reverse("teams:transfer", args=[acme.slug]), {"member_id": "abc"}, follow=True
        )

        assert response.status_code == 200
        assert "Choose a member of this team" in response.content.decode()

    def test_creating_a_team_from_the_page(self, client, charlie):
        client.force_login(charlie)

        response = client.post(reverse("teams:create"), {"name": "Hooli"})

        assert response["Location"] == "/t/hooli/"
        assert client.get("/t/hooli/").status_code == 200

    def test_a_blank_team_name_is_refused_with_a_message(self, client, charlie):
        client.force_login(charlie)

        response = client.post(reverse("teams:create"), {"name": "   "})

        assert response.status_code == 400
        assert "This field is required" in response.content.decode()

    def test_the_switcher_lists_only_the_users_teams(self, client, acme, globex, alice):
        client.force_login(alice)

        body = client.get(reverse("teams:home", args=["acme"])).content.decode()

        assert "/t/acme/" in body
        assert "Globex" not in body

    def test_sign_up_makes_a_personal_team(self, client):
        client.post(
            reverse("account_signup"),
            {
                "email": "dana@example.com",
                "name": "Dana",
                "password1": "a much longer passphrase 42",
            },
        )

        team = Team.objects.get(personal=True)
        assert team.name == "Dana's team"
        assert membership(team, team.created_by).role == Role.OWNER
