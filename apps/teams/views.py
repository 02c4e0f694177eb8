"""Team pages under /t/<team_slug>/, and creating a team."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View

from apps.accounts.reauthentication import SENSITIVE_ROLES, reauthentication_required
from apps.core.audit import audit_describe
from apps.core.errors import ServiceError
from apps.core.models import AuditEntry
from apps.core.pages import page_action, refusal_on_form
from apps.teams import secrets, services
from apps.teams.forms import (
    DeleteTeamForm,
    InviteForm,
    MemberChoiceForm,
    RoleForm,
    SecretForm,
    TeamNameForm,
)
from apps.teams.hooks import overview_notebooks, period_spend
from apps.teams.models import Invitation, Membership, Role, TeamSecret
from apps.teams.permissions import PERMISSIONS, role_allows
from apps.teams.scope import TeamViewMixin
from apps.teams.selectors import member_count

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User


def _user(request: HttpRequest) -> User:
    return cast("User", request.user)


def grants_sensitive_role(request: HttpRequest) -> bool:
    """The POST would make someone an admin or owner: that asks for the password again."""
    return request.POST.get("role") in SENSITIVE_ROLES


# allauth's: unless the session confirmed it within ACCOUNT_REAUTHENTICATION_TIMEOUT, the
# person is sent to confirm their password (or a two-factor code), then the POST is replayed.
asks_again = method_decorator(reauthentication_required)
asks_again_for_sensitive_roles = method_decorator(
    reauthentication_required(enabled=grants_sensitive_role)
)


class TeamPage(TeamViewMixin, View):
    template_name = ""

    def page(self, request: HttpRequest, **context: Any) -> HttpResponse:
        # Templates read can.members_invite for "members.invite".
        allowed = {p.replace(".", "_"): role_allows(self.membership.role, p) for p in PERMISSIONS}
        return render(
            request,
            self.template_name,
            {"team": self.team, "membership": self.membership, "can": allowed, **context},
        )


class TeamAction(TeamPage):
    """A POST that calls one service, then returns to a team page saying what happened."""

    http_method_names = ["post"]
    back_to = "teams:members"

    def back(self, request: HttpRequest, *, error: str = "") -> HttpResponse:
        if error:
            messages.error(request, error)
        return redirect(self.back_to, team_slug=self.team.slug)

    def attempt(
        self,
        request: HttpRequest,
        action: Callable[[], str],
        *,
        then: str = "",
    ) -> HttpResponse:
        """Run ``action`` (a service call returning the success message); report its refusal
        (apps.core.pages.page_action). On success go to ``then`` (a URL name without
        arguments) if given, else back."""
        back = reverse(self.back_to, kwargs={"team_slug": self.team.slug})
        return page_action(request, action, back=back, then=then)


class TeamCreateView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "teams/create.html", {"form": TeamNameForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = TeamNameForm(request.POST)
        if not form.is_valid():
            return render(request, "teams/create.html", {"form": form}, status=400)
        try:
            team = services.team_create(actor=_user(request), name=form.cleaned_data["name"])
        except ServiceError as refusal:
            status = refusal_on_form(request, form, refusal)
            return render(request, "teams/create.html", {"form": form}, status=status)
        messages.success(request, f"{team.name} is ready. Invite your teammates from Members.")
        return redirect("teams:home", team_slug=team.slug)


class TeamHomeView(TeamPage):
    template_name = "teams/home.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self.page(
            request,
            member_count=member_count(self.team),
            notebooks=overview_notebooks(self.team, limit=8),
            # The bill is for those who may see it (billing.view), as on the billing page.
            spend=(
                period_spend(self.team)
                if role_allows(self.membership.role, "billing.view")
                else None
            ),
            section="home",
        )


class MembersView(TeamPage):
    template_name = "teams/members.html"
    permission = "members.view"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        members = Membership.objects.select_related("user").order_by("user__email")
        pending = Invitation.objects.filter(status=Invitation.Status.PENDING).select_related(
            "invited_by",
        )
        return self.page(
            request,
            members=members,
            pending=pending,
            roles=Role.choices,
            invite_form=InviteForm(),
            section="members",
        )


class MemberRoleView(TeamAction):
    permission = "members.change_role"

    @asks_again_for_sensitive_roles
    def post(self, request: HttpRequest, team_slug: str, member_id: int) -> HttpResponse:
        member = get_object_or_404(Membership, pk=member_id)
        form = RoleForm(request.POST)
        if not form.is_valid():
            return self.back(request, error="Choose one of the roles offered.")

        def change() -> str:
            services.member_change_role(
                team=self.team,
                actor=_user(request),
                member=member,
                role=form.cleaned_data["role"],
            )
            return f"{member.user.email} is now {member.get_role_display()}."

        return self.attempt(request, change)


class MemberRemoveView(TeamAction):
    permission = "members.remove"

    def post(self, request: HttpRequest, team_slug: str, member_id: int) -> HttpResponse:
        member = get_object_or_404(Membership, pk=member_id)

        def remove() -> str:
            services.member_remove(team=self.team, actor=_user(request), member=member)
            return f"{member.user.email} is no longer in {self.team.name}."

        return self.attempt(request, remove)


class TeamSettingsView(TeamPage):
    template_name = "teams/settings.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self._render(request, TeamNameForm(initial={"name": self.team.name}))

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = TeamNameForm(request.POST)
        if form.is_valid():
            try:
                services.team_rename(
                    team=self.team,
                    actor=_user(request),
                    name=form.cleaned_data["name"],
                )
            except ServiceError as refusal:
                return self._render(request, form, status=refusal_on_form(request, form, refusal))
            messages.success(request, "The team's name is saved.")
            return redirect("teams:settings", team_slug=self.team.slug)
        return self._render(request, form, status=400)

    def _render(self, request: HttpRequest, form: TeamNameForm, status: int = 200) -> HttpResponse:
        others = (
            Membership.objects.exclude(pk=self.membership.pk)
            .select_related("user")
            .order_by("user__email")
        )
        response = self.page(
            request,
            form=form,
            others=others,
            delete_form=DeleteTeamForm(),
            section="settings",
        )
        response.status_code = status
        return response


class TeamLeaveView(TeamAction):
    back_to = "teams:settings"

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        def leave() -> str:
            services.member_remove(team=self.team, actor=_user(request), member=self.membership)
            return f"You left {self.team.name}."

        return self.attempt(request, leave, then="core:dashboard")


class TeamTransferView(TeamAction):
    permission = "team.transfer"
    back_to = "teams:settings"

    @asks_again
    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = MemberChoiceForm(request.POST)
        if not form.is_valid():
            return self.back(request, error="Choose a member of this team.")
        member = get_object_or_404(Membership, pk=form.cleaned_data["member_id"])

        def transfer() -> str:
            services.team_transfer_ownership(team=self.team, actor=_user(request), member=member)
            return f"{member.user.email} now owns {self.team.name}."

        return self.attempt(request, transfer)


class TeamDeleteView(TeamAction):
    permission = "team.delete"
    back_to = "teams:settings"

    @asks_again
    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        def delete() -> str:
            services.team_delete(
                team=self.team,
                actor=_user(request),
                confirmation=request.POST.get("confirmation", ""),
            )
            return f"{self.team.name} was deleted."

        return self.attempt(request, delete, then="core:dashboard")


class AuditLogView(TeamPage):
    template_name = "teams/audit.html"
    permission = "audit.view"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        entries = list(AuditEntry.objects.select_related("actor")[:200])
        for entry in entries:
            entry.description = audit_describe(entry)
        return self.page(request, entries=entries, section="audit")


class SecretsView(TeamPage):
    """The team's secrets: their names (members), and a write-only form to set one (admins,
    owners). No value is ever on this page."""

    template_name = "teams/secrets.html"
    permission = "secrets.view"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self._render(request, SecretForm())

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = SecretForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                secrets.secret_set(
                    team=self.team,
                    actor=_user(request),
                    name=form.cleaned_data["name"],
                    value=form.cleaned_data["value"],
                    description=form.cleaned_data["description"],
                )
            except ServiceError as refusal:
                status = refusal_on_form(request, form, refusal)
            else:
                messages.success(request, f"The secret {form.cleaned_data['name']} is saved.")
                return redirect("teams:secrets", team_slug=self.team.slug)
        # Shown again for the name or description to be fixed: never with the value.
        shown = request.POST.copy()
        shown["value"] = ""
        form.data = shown
        return self._render(request, form, status=status)

    def _render(self, request: HttpRequest, form: SecretForm, status: int = 200) -> HttpResponse:
        rows = TeamSecret.objects.select_related("created_by", "updated_by").order_by("name")
        response = self.page(request, form=form, secrets=rows, section="settings")
        response.status_code = status
        return response


class SecretDeleteView(TeamAction):
    permission = "secrets.manage"
    back_to = "teams:secrets"

    def post(self, request: HttpRequest, team_slug: str, name: str) -> HttpResponse:
        def delete() -> str:
            secrets.secret_delete(team=self.team, actor=_user(request), name=name)
            return f"The secret {name} was deleted."

        return self.attempt(request, delete)
