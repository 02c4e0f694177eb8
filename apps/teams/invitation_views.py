"""Invitation pages: sending and managing them (team admins), and the link itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from allauth.account.adapter import get_adapter
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from apps.accounts.adapter import SIGNUP_JOINING_KEY
from apps.teams import invitations
from apps.teams.forms import InviteForm
from apps.teams.models import Invitation
from apps.teams.permissions import membership_of
from apps.teams.views import TeamAction, asks_again_for_sensitive_roles

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User

# The signup receiver reads this to accept the invitation the person came from.
SESSION_KEY = "lattice.invitation"

_STATUS_FOR = {"invalid": 404, "expired": 410, "revoked": 410, "used": 410, "wrong_account": 403}


def link_base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


class InvitationCreateView(TeamAction):
    permission = "members.invite"

    @asks_again_for_sensitive_roles
    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = InviteForm(request.POST)
        if not form.is_valid():
            errors = " ".join(str(e) for field in form.errors.values() for e in field)
            return self.back(request, error=errors)

        def send() -> str:
            invitation = invitations.invitation_create(
                team=self.team,
                actor=cast("User", request.user),
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                link_base=link_base(request),
            )
            return f"Invitation sent to {invitation.email}."

        return self.attempt(request, send)


class InvitationRevokeView(TeamAction):
    permission = "members.invite"

    def post(self, request: HttpRequest, team_slug: str, invitation_id: int) -> HttpResponse:
        invitation = get_object_or_404(Invitation, pk=invitation_id)

        def revoke() -> str:
            invitations.invitation_revoke(
                team=self.team,
                actor=cast("User", request.user),
                invitation=invitation,
            )
            return f"The invitation to {invitation.email} was withdrawn."

        return self.attempt(request, revoke)


class InvitationResendView(TeamAction):
    permission = "members.invite"

    def post(self, request: HttpRequest, team_slug: str, invitation_id: int) -> HttpResponse:
        invitation = get_object_or_404(Invitation, pk=invitation_id)

        def resend() -> str:
            invitations.invitation_resend(
                team=self.team,
                actor=cast("User", request.user),
                invitation=invitation,
                link_base=link_base(request),
            )
            return f"Invitation sent to {invitation.email} again."

        return self.attempt(request, resend)


class InvitationLinkView(View):
    """/invitations/<token>/: what the mailed link opens. Anyone holding the link may look."""

    template_name = "teams/invitation.html"

    def _problem(self, request: HttpRequest, exc: invitations.InvitationError) -> HttpResponse:
        # An accepted invitation leads on to the team it joined, for its members only:
        # whoever else holds the link learns nothing of where it led.
        joined = exc.joined
        if joined is not None and not (
            request.user.is_authenticated
            and membership_of(joined, cast("User", request.user)) is not None
        ):
            joined = None
        return render(
            request,
            self.template_name,
            {"problem": str(exc), "code": exc.code, "joined": joined},
            status=_STATUS_FOR.get(exc.code, 400),
        )

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            invitation = invitations.invitation_from_token(token)
        except invitations.InvitationError as exc:
            return self._problem(request, exc)
        return render(request, self.template_name, {"invitation": invitation, "token": token})

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            invitation = invitations.invitation_from_token(token)
            handler = {
                "accept": self._accept,
                "decline": self._decline,
                "signup": self._signup,
            }.get(request.POST.get("action", ""))
            if handler is None:
                messages.error(request, "Choose to accept or decline the invitation.")
                return redirect(reverse("invitation", args=[token]))
            return handler(request, invitation, token)
        except invitations.InvitationError as exc:
            return self._problem(request, exc)

    def _accept(self, request: HttpRequest, invitation: Invitation, token: str) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.path)
        invitations.invitation_accept(invitation=invitation, user=cast("User", request.user))
        messages.success(request, f"Welcome to {invitation.team.name}.")
        return redirect("teams:home", team_slug=invitation.team.slug)

    def _decline(self, request: HttpRequest, invitation: Invitation, token: str) -> HttpResponse:
        user = request.user if request.user.is_authenticated else None
        invitations.invitation_decline(invitation=invitation, user=cast("User | None", user))
        messages.info(request, f"You declined the invitation to {invitation.team.name}.")
        return redirect("core:dashboard" if user else "account_login")

    def _signup(self, request: HttpRequest, invitation: Invitation, token: str) -> HttpResponse:
        # The link proves the address: allauth treats it as verified at sign-up.
        get_adapter(request).stash_verified_email(request, invitation.email)
        request.session[SESSION_KEY] = token
        request.session[SIGNUP_JOINING_KEY] = invitation.team.name
        return redirect("account_signup")
