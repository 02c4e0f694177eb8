"""Invitations: an admin asks an email address to join with a role.

The link in the mail is signed (django.core.signing) and names the invitation
and its nonce; it expires after INVITATION_TTL and works once. Accepting needs
an account whose verified email is the invited address: an existing account
logs in; a new one signs up from the link, which counts as verifying that
address (allauth's stashed verified email).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from allauth.account.models import EmailAddress
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from apps.core.audit import audit_record
from apps.teams.models import Invitation, Membership, Role
from apps.teams.permissions import require_permission
from apps.teams.seats import seats_free, seats_upgrade_url
from apps.teams.services import TeamError, TeamPermissionError, acting_membership

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team

INVITATION_TTL = timedelta(days=7)
RESEND_INTERVAL = timedelta(minutes=5)
MAX_SENDS = 5
_SALT = "lattice.teams.invitation"


# The API's status for each code; any other code is a conflict (409).
_STATUS_OF_CODE = {
    "invalid": 404,
    "expired": 410,
    "revoked": 410,
    "used": 410,
    "wrong_account": 403,
    "seats": 402,
}


class InvitationError(TeamError):
    """Why an invitation cannot be used; ``code`` says which case for the page and the API,
    and sets the API's status."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        upgrade_url: str | None = None,
        joined: Team | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            status_code=_STATUS_OF_CODE.get(code, 409),
            upgrade_url=upgrade_url,
        )
        # An accepted invitation's team: the link's page leads there.
        self.joined = joined


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"i": invitation.pk, "n": invitation.nonce}, salt=_SALT)


def invitation_url(invitation: Invitation, *, link_base: str) -> str:
    path = reverse("invitation", args=[invitation_token(invitation)])
    return link_base.rstrip("/") + path


def invitation_from_token(token: str) -> Invitation:
    """The invitation a link names, or InvitationError saying why it cannot be used."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=INVITATION_TTL)
    except signing.SignatureExpired:
        raise InvitationError(
            "expired",
            "This invitation has expired. Ask whoever invited you to send a new one.",
        ) from None
    except signing.BadSignature:
        raise InvitationError(
            "invalid",
            "This invitation link is not valid. Check that you copied all of it.",
        ) from None
    invitation = (
        Invitation.objects.unscoped()  # the link, not a team scope, names the invitation
        .select_related("team", "invited_by")
        .filter(pk=data.get("i"), nonce=data.get("n"))
        .first()
    )
    if invitation is None:
        raise InvitationError("invalid", "This invitation no longer exists.")
    _check_usable(invitation)
    return invitation


def _check_usable(invitation: Invitation) -> None:
    if invitation.status == Invitation.Status.REVOKED:
        raise InvitationError("revoked", "This invitation was withdrawn by the team.")
    if invitation.status != Invitation.Status.PENDING:
        accepted = invitation.status == Invitation.Status.ACCEPTED
        raise InvitationError(
            "used",
            "This invitation has already been used.",
            joined=invitation.team if accepted else None,
        )
    if invitation.expires_at <= timezone.now():
        raise InvitationError(
            "expired",
            "This invitation has expired. Ask whoever invited you to send a new one.",
        )


def _check_seats(team: Team, *, adding: int) -> None:
    free = seats_free(team)
    if free is not None and free < adding:
        raise InvitationError(
            "seats",
            f"{team.name} has no seats left on its plan. An owner or admin can upgrade the plan.",
            upgrade_url=seats_upgrade_url(team),
        )


def _send(invitation: Invitation, *, link_base: str) -> None:
    inviter = invitation.invited_by
    context = {
        "invitation": invitation,
        "inviter": inviter.display_name if inviter else "A team admin",
        "url": invitation_url(invitation, link_base=link_base),
        "expires": invitation.expires_at,
    }
    subject = f"You're invited to join {invitation.team.name} on Lattice"
    body = render_to_string("teams/email/invitation.txt", context)
    transaction.on_commit(partial(send_mail, subject, body, None, [invitation.email]))


@transaction.atomic
def invitation_create(
    *,
    team: Team,
    actor: User,
    email: str,
    role: str,
    link_base: str,
) -> Invitation:
    """Invite ``email`` with ``role``; mail the link; audit it."""
    actor_membership = acting_membership(team, actor, "members.invite")
    role = Role(role)
    if role == Role.OWNER and actor_membership.role != Role.OWNER:
        raise TeamPermissionError("Only an owner can invite an owner.")
    email = email.strip().lower()
    if Membership.objects.for_team(team).filter(user__email__iexact=email).exists():
        raise InvitationError("already_member", f"{email} is already in {team.name}.")
    pending = Invitation.objects.for_team(team).filter(status=Invitation.Status.PENDING)
    if pending.filter(email__iexact=email).exists():
        raise InvitationError(
            "already_invited",
            f"{email} already has a pending invitation. Resend it instead.",
        )
    _check_seats(team, adding=pending.count() + 1)
    now = timezone.now()
    invitation = Invitation.objects.for_team(team).create(
        team=team,
        email=email,
        role=role,
        nonce=secrets.token_hex(16),
        invited_by=actor,
        expires_at=now + INVITATION_TTL,
        last_sent_at=now,
    )
    audit_record(team=team, actor=actor, action="invitation.created", target=email, role=role.value)
    _send(invitation, link_base=link_base)
    return invitation


@transaction.atomic
def invitation_resend(
    *,
    team: Team,
    actor: User,
    invitation: Invitation,
    link_base: str,
) -> Invitation:
    """Mail the link again and extend its expiry; at most every RESEND_INTERVAL, MAX_SENDS times."""
    require_permission(team, actor, "members.invite", error=TeamPermissionError)
    invitation = Invitation.objects.for_team(team).select_for_update().get(pk=invitation.pk)
    if invitation.status != Invitation.Status.PENDING:
        raise InvitationError("used", "Only a pending invitation can be sent again.")
    now = timezone.now()
    wait = invitation.last_sent_at + RESEND_INTERVAL - now
    if wait > timedelta(0):
        minutes = max(1, round(wait.total_seconds() / 60))
        raise InvitationError(
            "resend_too_soon",
            f"This invitation was just sent. You can send it again in {minutes} minute"
            f"{'s' if minutes != 1 else ''}.",
        )
    if invitation.send_count >= MAX_SENDS:
        raise InvitationError(
            "resend_limit",
            "This invitation has been sent too many times. Withdraw it and invite again.",
        )
    invitation.last_sent_at = now
    invitation.expires_at = now + INVITATION_TTL
    invitation.send_count += 1
    invitation.save(update_fields=["last_sent_at", "expires_at", "send_count"])
    audit_record(team=team, actor=actor, action="invitation.resent", target=invitation.email)
    _send(invitation, link_base=link_base)
    return invitation


@transaction.atomic
def invitation_revoke(*, team: Team, actor: User, invitation: Invitation) -> None:
    """Withdraw a pending invitation: its link stops working; audit it."""
    require_permission(team, actor, "members.invite", error=TeamPermissionError)
    invitation = Invitation.objects.for_team(team).select_for_update().get(pk=invitation.pk)
    if invitation.status != Invitation.Status.PENDING:
        raise InvitationError("used", "Only a pending invitation can be withdrawn.")
    invitation.status = Invitation.Status.REVOKED
    invitation.closed_at = timezone.now()
    invitation.save(update_fields=["status", "closed_at"])
    audit_record(team=team, actor=actor, action="invitation.revoked", target=invitation.email)


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """Join the team with the invited role; the invitation is used up; audit it."""
    team = invitation.team
    invitation = Invitation.objects.for_team(team).select_for_update().get(pk=invitation.pk)
    _check_usable(invitation)
    owns_address = EmailAddress.objects.filter(
        user=user,
        email__iexact=invitation.email,
        verified=True,
    ).exists()
    if not owns_address:
        raise InvitationError(
            "wrong_account",
            f"This invitation is for {invitation.email}, but you are signed in as {user.email}. "
            "Sign out and open the link again, or add and verify that address first.",
        )
    if Membership.objects.for_team(team).filter(user=user).exists():
        raise InvitationError("already_member", f"You are already in {team.name}.")
    _check_seats(team, adding=1)
    membership = Membership.objects.for_team(team).create(
        team=team,
        user=user,
        role=invitation.role,
    )
    invitation.status = Invitation.Status.ACCEPTED
    invitation.accepted_by = user
    invitation.closed_at = timezone.now()
    invitation.save(update_fields=["status", "accepted_by", "closed_at"])
    audit_record(
        team=team,
        actor=user,
        action="invitation.accepted",
        target=invitation.email,
        role=invitation.role,
    )
    return membership


@transaction.atomic
def invitation_decline(*, invitation: Invitation, user: User | None) -> None:
    """Say no: the link stops working; audit it."""
    team = invitation.team
    invitation = Invitation.objects.for_team(team).select_for_update().get(pk=invitation.pk)
    _check_usable(invitation)
    invitation.status = Invitation.Status.DECLINED
    invitation.closed_at = timezone.now()
    invitation.save(update_fields=["status", "closed_at"])
    audit_record(team=team, actor=user, action="invitation.declined", target=invitation.email)
