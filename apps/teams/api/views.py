"""API v1: teams, members, invitations, the audit log and the team's secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, mixins, status
from rest_framework.response import Response

from apps.accounts.api.reauthentication import require_reauthentication
from apps.accounts.models import PersonalAccessToken
from apps.accounts.reauthentication import SENSITIVE_ROLES
from apps.core.api.pagination import Cursor
from apps.core.models import AuditEntry
from apps.teams import invitations, secrets, services
from apps.teams.api import serializers as s
from apps.teams.api.base import TeamAPIView
from apps.teams.models import Invitation, Membership, Team, TeamSecret
from apps.teams.selectors import memberships_of

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.accounts.models import User


def _user(request: Request) -> User:
    return cast("User", request.user)


def _link_base(request: Request) -> str:
    return request.build_absolute_uri("/")


class TeamListView(mixins.ListModelMixin, generics.GenericAPIView):
    """Your teams; create a team (you become its owner)."""

    token_area = "teams"
    serializer_class = s.TeamSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Team]:
        memberships = memberships_of(_user(self.request))
        token = self.request.auth
        if isinstance(token, PersonalAccessToken) and token.team_id:
            memberships = memberships.filter(team_id=token.team_id)
        return Team.objects.filter(pk__in=memberships.values("team_id"))

    def get_serializer_context(self) -> dict[str, Any]:
        roles = dict(memberships_of(_user(self.request)).values_list("team_id", "role"))
        return {**super().get_serializer_context(), "roles": roles}

    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(request=s.TeamCreateSerializer, responses={201: s.TeamSerializer})
    def post(self, request: Request) -> Response:
        token = request.auth
        if isinstance(token, PersonalAccessToken) and token.team_id:
            raise exceptions.PermissionDenied("A token restricted to one team cannot make teams.")
        data = s.TeamCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = services.team_create(actor=_user(request), name=data.validated_data["name"])
        body = s.TeamSerializer(team, context={"roles": {team.pk: "owner"}}).data
        return Response(body, status=status.HTTP_201_CREATED)


class TeamDetailView(TeamAPIView):
    """One team: read it, rename it (owner, admin), delete it (owner, with its slug, and
    your password or a two-factor code)."""

    team_permissions = {"PATCH": "team.rename", "DELETE": "team.delete"}
    serializer_class = s.TeamSerializer

    def get_team_queryset(self) -> QuerySet[Team]:
        return Team.objects.filter(pk=self.team.pk)

    def _body(self) -> Any:
        return s.TeamSerializer(
            self.team, context={"roles": {self.team.pk: self.membership.role}}
        ).data

    def get(self, request: Request, team_slug: str) -> Response:
        return Response(self._body())

    @extend_schema(request=s.TeamCreateSerializer)
    def patch(self, request: Request, team_slug: str) -> Response:
        data = s.TeamCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.team_rename(team=self.team, actor=_user(request), name=data.validated_data["name"])
        return Response(self._body())

    @extend_schema(
        request=s.TeamDeleteSerializer,
        responses={204: None},
        # drf-spectacular leaves DELETE bodies out of the schema; this one has fields.
        description=(
            "Delete the team (owner). JSON body: `confirmation` (the team's slug) and "
            "`password`, or `code` (a two-factor code) with two-factor authentication on; "
            "a browser session that confirmed it in the last 5 minutes may leave both out. "
            "Without them: 403 `reauthentication_required`."
        ),
    )
    def delete(self, request: Request, team_slug: str) -> Response:
        data = s.TeamDeleteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        require_reauthentication(request, data.validated_data)
        services.team_delete(
            team=self.team,
            actor=_user(request),
            confirmation=data.validated_data["confirmation"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(mixins.ListModelMixin, TeamAPIView):
    """The team's members."""

    serializer_class = s.MemberSerializer
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Membership]:
        return Membership.objects.select_related("user")

    def get(self, request: Request, team_slug: str) -> Response:
        return self.list(request)


class MemberDetailView(TeamAPIView):
    """One member: change their role (owner, admin; making an admin or owner needs your
    password or a two-factor code); remove them, or leave (yourself)."""

    team_permissions = {"PATCH": "members.change_role"}
    serializer_class = s.MemberSerializer

    def get_team_queryset(self) -> QuerySet[Membership]:
        return Membership.objects.select_related("user")

    def get(self, request: Request, team_slug: str, member_id: int) -> Response:
        member = self.get_queryset().filter(pk=member_id).first()
        if member is None:
            raise exceptions.NotFound("No such member in this team.")
        return Response(self.get_serializer(member).data)

    @extend_schema(request=s.RoleSerializer)
    def patch(self, request: Request, team_slug: str, member_id: int) -> Response:
        member = self.get_queryset().filter(pk=member_id).first()
        if member is None:
            raise exceptions.NotFound("No such member in this team.")
        data = s.RoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["role"] in SENSITIVE_ROLES:
            require_reauthentication(request, data.validated_data)
        services.member_change_role(
            team=self.team,
            actor=_user(request),
            member=member,
            role=data.validated_data["role"],
        )
        return Response(self.get_serializer(member).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_slug: str, member_id: int) -> Response:
        member = self.get_queryset().filter(pk=member_id).first()
        if member is None:
            raise exceptions.NotFound("No such member in this team.")
        services.member_remove(team=self.team, actor=_user(request), member=member)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(mixins.ListModelMixin, TeamAPIView):
    """Pending and past invitations (owner, admin); invite an email address (as an admin
    or owner: with your password or a two-factor code)."""

    team_permissions = {"GET": "members.invite", "POST": "members.invite"}
    serializer_class = s.InvitationSerializer
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Invitation]:
        queryset = Invitation.objects.select_related("invited_by")
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in Invitation.Status.values:
                raise exceptions.ValidationError(
                    {"status": [f"Use one of: {', '.join(Invitation.Status.values)}."]},
                )
            queryset = queryset.filter(status=wanted)
        return queryset

    def get(self, request: Request, team_slug: str) -> Response:
        return self.list(request)

    @extend_schema(request=s.InvitationCreateSerializer, responses={201: s.InvitationSerializer})
    def post(self, request: Request, team_slug: str) -> Response:
        data = s.InvitationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["role"] in SENSITIVE_ROLES:
            require_reauthentication(request, data.validated_data)
        invitation = invitations.invitation_create(
            team=self.team,
            actor=_user(request),
            email=data.validated_data["email"],
            role=data.validated_data["role"],
            link_base=_link_base(request),
        )
        return Response(self.get_serializer(invitation).data, status=status.HTTP_201_CREATED)


class _OneInvitation(TeamAPIView):
    serializer_class = s.InvitationSerializer

    def get_team_queryset(self) -> QuerySet[Invitation]:
        return Invitation.objects.select_related("invited_by")

    def _invitation(self, invitation_id: int) -> Invitation:
        invitation = self.get_queryset().filter(pk=invitation_id).first()
        if invitation is None:
            raise exceptions.NotFound("No such invitation in this team.")
        return invitation


class InvitationDetailView(_OneInvitation):
    """One invitation; withdraw it while pending (owner, admin)."""

    team_permissions = {"GET": "members.invite", "DELETE": "members.invite"}

    def get(self, request: Request, team_slug: str, invitation_id: int) -> Response:
        return Response(self.get_serializer(self._invitation(invitation_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_slug: str, invitation_id: int) -> Response:
        invitations.invitation_revoke(
            team=self.team,
            actor=_user(request),
            invitation=self._invitation(invitation_id),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationResendView(_OneInvitation):
    """Mail the invitation again (at most every 5 minutes, 5 times in all)."""

    team_permissions = {"POST": "members.invite"}

    @extend_schema(request=None, responses={200: s.InvitationSerializer})
    def post(self, request: Request, team_slug: str, invitation_id: int) -> Response:
        invitation = invitations.invitation_resend(
            team=self.team,
            actor=_user(request),
            invitation=self._invitation(invitation_id),
            link_base=_link_base(request),
        )
        return Response(self.get_serializer(invitation).data)


class AuditLogView(mixins.ListModelMixin, TeamAPIView):
    """What changed in the team, newest first (owner, admin)."""

    team_permissions = {"GET": "audit.view"}
    serializer_class = s.AuditEntrySerializer
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[AuditEntry]:
        return AuditEntry.objects.select_related("actor")

    def get(self, request: Request, team_slug: str) -> Response:
        return self.list(request)


class SecretListView(TeamAPIView):
    """The team's secrets, by name (members; no value is ever returned); set one (owner,
    admin): a name that exists gets the new value."""

    team_permissions = {"GET": "secrets.view", "POST": "secrets.manage"}
    serializer_class = s.SecretSerializer

    def get_team_queryset(self) -> QuerySet[TeamSecret]:
        return TeamSecret.objects.select_related("created_by", "updated_by").order_by("name")

    @extend_schema(operation_id="teams_secrets_list", responses=s.SecretSerializer(many=True))
    def get(self, request: Request, team_slug: str) -> Response:
        return Response(self.get_serializer(self.get_queryset(), many=True).data)

    @extend_schema(request=s.SecretSetSerializer, responses={200: s.SecretSerializer})
    def post(self, request: Request, team_slug: str) -> Response:
        data = s.SecretSetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        secret = secrets.secret_set(team=self.team, actor=_user(request), **data.validated_data)
        return Response(self.get_serializer(secret).data)


class SecretDetailView(TeamAPIView):
    """One secret's name and history (members); set its value (owner, admin; PUT); delete
    it (owner, admin). No call returns a value."""

    team_permissions = {"GET": "secrets.view", "PUT": "secrets.manage", "DELETE": "secrets.manage"}
    serializer_class = s.SecretSerializer
    # DRF's OPTIONS answer looks the object up for PUT (get_object): by its name.
    lookup_field = "name"

    def get_team_queryset(self) -> QuerySet[TeamSecret]:
        return TeamSecret.objects.select_related("created_by", "updated_by")

    def get(self, request: Request, team_slug: str, name: str) -> Response:
        secret = self.get_queryset().filter(name=name).first()
        if secret is None:
            raise exceptions.NotFound("No such secret in this team.")
        return Response(self.get_serializer(secret).data)

    @extend_schema(request=s.SecretValueSerializer, responses={200: s.SecretSerializer})
    def put(self, request: Request, team_slug: str, name: str) -> Response:
        data = s.SecretValueSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        secret = secrets.secret_set(
            team=self.team, actor=_user(request), name=name, **data.validated_data
        )
        return Response(self.get_serializer(secret).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_slug: str, name: str) -> Response:
        secrets.secret_delete(team=self.team, actor=_user(request), name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)
