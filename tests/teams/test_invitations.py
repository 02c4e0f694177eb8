"""Invitations: sending, the signed single-use link, and every way it can go wrong."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import mail, signing
from django.urls import reverse
from django.utils import timezone

from apps.core.models import AuditEntry
from apps.teams import invitations
from apps.teams.models import Invitation, Membership, Role
from apps.teams.seats import seats_free
from tests.factories import UserFactory, add_member
from tests.helpers import last_mail_link

# Mail goes out on commit, so these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)

BASE = "http://testserver/"


def no_seats(team):
    return 0


def invite(team, actor, email="dana@example.com", role="member"):
    return invitations.invitation_create(
        team=team, actor=actor, email=email, role=role, link_base=BASE
    )


def member_roles(team):
    return {m.user.email: m.role for m in Membership.objects.for_team(team).select_related("user")}


class TestSending:
    def test_an_admin_invites_by_email_with_a_role(self, client, acme, alice):
        client.force_login(alice)

        response = client.post(
            reverse("teams:invitation_create", args=["acme"]),
            {"email": "Dana@Example.com", "role": "viewer"},
        )

        assert response.status_code == 302
        invitation = Invitation.objects.for_team(acme).get()
        assert (invitation.email, invitation.role) == ("dana@example.com", "viewer")
        assert mail.outbox[-1].to == ["dana@example.com"]
        assert "Alice Smith invited you to join Acme on Lattice as viewer" in mail.outbox[-1].body
        assert last_mail_link("/invitations/").startswith("http://testserver/invitations/")
        assert AuditEntry.objects.for_team(acme).filter(action="invitation.created").exists()

    def test_a_member_cannot_invite(self, client, acme, bob):
        client.force_login(bob)

        response = client.post(
            reverse("teams:invitation_create", args=["acme"]), {"email": "x@example.com"}
        )

        assert response.status_code == 403
        assert not Invitation.objects.for_team(acme).exists()

    def test_an_admin_cannot_invite_an_owner(self, acme, bob):
        Membership.objects.for_team(acme).filter(user=bob).update(role=Role.ADMIN)

        with pytest.raises(invitations.TeamPermissionError):
            invite(acme, bob, role="owner")

    def test_inviting_a_member_or_a_pending_address_says_why(self, acme, alice):
        with pytest.raises(invitations.InvitationError, match="already in Acme"):
            invite(acme, alice, email="BOB@example.com")
        invite(acme, alice)
        with pytest.raises(invitations.InvitationError, match="pending invitation"):
            invite(acme, alice, email="DANA@example.com")

    def test_a_bad_address_gets_a_message(self, client, acme, alice):
        client.force_login(alice)

        response = client.post(
            reverse("teams:invitation_create", args=["acme"]),
            {"email": "not an address", "role": "member"},
            follow=True,
        )

        assert "Enter a valid email address" in response.content.decode()
        assert not Invitation.objects.for_team(acme).exists()

    def test_the_seat_hook_can_refuse(self, acme, alice):
        with (
            seats_free.override(no_seats),
            pytest.raises(invitations.InvitationError, match="no seats left"),
        ):
            invite(acme, alice)

    def test_resend_is_rate_limited_and_extends_the_expiry(self, acme, alice):
        invitation = invite(acme, alice)
        with pytest.raises(invitations.InvitationError, match="again in 5 minutes"):
            invitations.invitation_resend(
                team=acme, actor=alice, invitation=invitation, link_base=BASE
            )

        for _ in range(invitations.MAX_SENDS - 1):
            Invitation.objects.for_team(acme).update(
                last_sent_at=timezone.now() - timedelta(minutes=10),
                expires_at=timezone.now() + timedelta(days=1),
            )
            invitations.invitation_resend(
                team=acme, actor=alice, invitation=invitation, link_base=BASE
            )
        invitation.refresh_from_db()
        assert invitation.send_count == invitations.MAX_SENDS
        assert invitation.expires_at > timezone.now() + timedelta(days=6)
        assert len([m for m in mail.outbox if m.to == ["dana@example.com"]]) == 5

        Invitation.objects.for_team(acme).update(
            last_sent_at=timezone.now() - timedelta(minutes=10),
        )
        with pytest.raises(invitations.InvitationError, match="too many times"):
            invitations.invitation_resend(
                team=acme, actor=alice, invitation=invitation, link_base=BASE
            )


class TestTheLink:
    def test_an_existing_account_accepts_once(self, client, acme, alice):
        dana = UserFactory.create(email="dana@example.com")
        invite(acme, alice, role="viewer")
        link = last_mail_link("/invitations/")
        client.force_login(dana)

        page = client.get(link)
        assert "Join Acme" in page.content.decode()
        response = client.post(link, {"action": "accept"})

        assert response["Location"] == "/t/acme/"
        assert member_roles(acme)["dana@example.com"] == Role.VIEWER
        again = client.post(link, {"action": "accept"})
        assert again.status_code == 410
        assert "already been used" in again.content.decode()
        # Opening the used link again leads to the team it joined.
        revisit = client.get(link).content.decode()
        assert "already been used" in revisit
        assert '<a class="btn btn-primary" href="/t/acme/">Go to Acme</a>' in revisit

    def test_a_used_link_leads_outsiders_nowhere(self, client, acme, alice):
        dana = UserFactory.create(email="dana@example.com")
        invite(acme, alice)
        link = last_mail_link("/invitations/")
        client.force_login(dana)
        client.post(link, {"action": "accept"})

        # Whoever else holds the link (signed out, or signed in as another person) is
        # told it was used, and not which team it led to.
        client.logout()
        signed_out = client.get(link).content.decode()
        client.force_login(UserFactory.create(email="eve@example.com"))
        outsider = client.get(link).content.decode()

        for page in (signed_out, outsider):
            assert "already been used" in page
            assert "/t/acme/" not in page
            assert "Acme" not in page

    def test_a_declined_invitation_links_to_no_team(self, client, acme, alice):
        invite(acme, alice)
        link = last_mail_link("/invitations/")
        client.post(link, {"action": "decline"})

        page = client.get(link).content.decode()

        assert "already been used" in page
        assert "/t/acme/" not in page

    def test_a_sign_up_page_not_reached_from_an_invitation_names_no_team(self, client, acme):
        page = client.get(reverse("account_signup")).content.decode()

        assert "Create your account to join" not in page

    def test_a_visitor_who_accepts_is_asked_to_log_in(self, client, acme, alice):
        invite(acme, alice)
        link = last_mail_link("/invitations/")

        response = client.post(link, {"action": "accept"})

        assert response["Location"].startswith(reverse("account_login"))

    def test_a_new_account_signs_up_from_the_link_and_lands_in_the_team(self, client, acme, alice):
        invite(acme, alice)
        link = last_mail_link("/invitations/")
        mail.outbox.clear()

        to_signup = client.post(link, {"action": "signup"})
        assert to_signup["Location"] == reverse("account_signup")
        form = client.get(to_signup["Location"])
        assert form.context["form"].fields["email"].initial == "dana@example.com"
        # The sign-up page says which team the new account joins.
        assert "Create your account to join <strong>Acme</strong>" in form.content.decode()
        signed_up = client.post(
            reverse("account_signup"),
            {
                "email": "dana@example.com",
                "name": "Dana",
                "password1": "a much longer passphrase 42",
            },
        )

        assert signed_up["Location"] == "/t/acme/"
        assert member_roles(acme)["dana@example.com"] == Role.MEMBER
        # The link verified the address: no confirmation mail, no second step.
        assert EmailAddress.objects.get(email="dana@example.com").verified
        assert mail.outbox == []
        assert client.get("/t/acme/").status_code == 200

    def test_the_wrong_account_is_refused_with_what_to_do(self, client, acme, alice, charlie):
        invite(acme, alice)
        link = last_mail_link("/invitations/")
        client.force_login(charlie)

        response = client.post(link, {"action": "accept"})

        body = response.content.decode()
        assert response.status_code == 403
        assert "This invitation is for dana@example.com" in body
        assert "charlie@example.org" in body
        assert "charlie@example.org" not in member_roles(acme)

    def test_an_unverified_address_is_not_enough(self, client, acme, alice):
        dana = UserFactory.create(email="dana@example.com", verified=False)
        invite(acme, alice)
        client.force_login(dana)

        response = client.post(last_mail_link("/invitations/"), {"action": "accept"})

        assert response.status_code == 403
        assert "dana@example.com" not in member_roles(acme)

    def test_already_a_member(self, client, acme, alice, bob):
        invitation = invite(acme, alice)
        EmailAddress.objects.filter(user=bob).update(email="dana@example.com")
        client.force_login(bob)

        response = client.post(
            reverse("invitation", args=[invitations.invitation_token(invitation)]),
            {"action": "accept"},
        )

        assert response.status_code == 400
        assert "already in Acme" in response.content.decode()

    def test_a_revoked_invitation_is_dead(self, client, acme, alice):
        invitation = invite(acme, alice)
        link = last_mail_link("/invitations/")

        invitations.invitation_revoke(team=acme, actor=alice, invitation=invitation)

        response = client.get(link)
        assert response.status_code == 410
        assert "withdrawn" in response.content.decode()

    def test_a_declined_invitation_is_dead(self, client, acme, alice):
        invite(acme, alice)
        link = last_mail_link("/invitations/")

        client.post(link, {"action": "decline"})

        assert Invitation.objects.for_team(acme).get().status == Invitation.Status.DECLINED
        assert client.get(link).status_code == 410

    def test_an_expired_invitation_says_so(self, client, acme, alice):
        invite(acme, alice)
        Invitation.objects.for_team(acme).update(expires_at=timezone.now() - timedelta(seconds=1))

        response = client.get(last_mail_link("/invitations/"))

        assert response.status_code == 410
        assert "expired" in response.content.decode()

    def test_a_link_older_than_seven_days_is_expired_by_its_signature(
        self, client, acme, alice, monkeypatch
    ):
        invite(acme, alice)
        link = last_mail_link("/invitations/")
        eight_days_later = time.time() + 8 * 24 * 3600
        monkeypatch.setattr("django.core.signing.time.time", lambda: eight_days_later)

        response = client.get(link)

        assert response.status_code == 410
        assert "expired" in response.content.decode()

    @pytest.mark.parametrize(
        "token",
        ["garbage", "eyJpIjoxLCJuIjoieCJ9:1abc:forged", "x" * 300, "%00"],
    )
    def test_a_forged_or_mangled_link_is_not_valid(self, client, token):
        response = client.get(f"/invitations/{token}/")

        assert response.status_code == 404
        assert 'name="action"' not in response.content.decode()  # nothing to accept

    def test_a_link_for_another_invitation_id_with_the_wrong_nonce_fails(self, client, acme, alice):
        invitation = invite(acme, alice)
        forged = signing.dumps({"i": invitation.pk, "n": "guess"}, salt="lattice.teams.invitation")

        response = client.get(f"/invitations/{forged}/")

        assert response.status_code == 404
        assert "no longer exists" in response.content.decode()

    def test_accepting_when_seats_ran_out_meanwhile_says_so(self, client, acme, alice):
        dana = UserFactory.create(email="dana@example.com")
        invite(acme, alice)
        client.force_login(dana)

        with seats_free.override(no_seats):
            response = client.post(last_mail_link("/invitations/"), {"action": "accept"})

        assert "no seats left" in response.content.decode()
        assert "dana@example.com" not in member_roles(acme)


def test_the_members_page_lists_pending_invitations_for_admins_only(client, acme, alice, bob):
    add_member(acme, UserFactory.create(email="vic@example.com"), Role.VIEWER)
    invite(acme, alice)

    client.force_login(alice)
    assert "dana@example.com" in client.get("/t/acme/members/").content.decode()
    client.force_login(bob)
    assert "dana@example.com" not in client.get("/t/acme/members/").content.decode()


def test_the_longest_valid_address_can_be_invited_and_audited(acme, alice):
    # Found by the schemathesis run on PostgreSQL: a 254-character address
    # overflowed the audit log's target column.
    email = "a@" + ".".join(["b" * 63] * 3) + "." + "c" * 60

    invitation = invite(acme, alice, email=email)

    assert len(invitation.email) == 254
    assert AuditEntry.objects.for_team(acme).get(action="invitation.created").target == email
