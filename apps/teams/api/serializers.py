from __future__ import annotations

from rest_framework import serializers

from apps.accounts.api.serializers import ReauthenticationSerializer
from apps.core.audit import audit_describe
from apps.core.models import AuditEntry
from apps.teams.models import Invitation, Membership, Role, Team, TeamSecret


class TeamSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in this team.")

    class Meta:
        model = Team
        fields = ["slug", "name", "personal", "created_at", "role"]
        read_only_fields = ["slug", "personal", "created_at", "role"]

    def get_role(self, team: Team) -> str | None:
        roles: dict[int, str] = self.context.get("roles", {})
        return roles.get(team.pk)


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80)


class TeamDeleteSerializer(ReauthenticationSerializer):
    confirmation = serializers.CharField(max_length=60, help_text="The team's slug.")


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.CharField(source="user.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]
        read_only_fields = ["id", "email", "name", "created_at"]


class RoleSerializer(ReauthenticationSerializer):
    role = serializers.ChoiceField(
        choices=Role.choices,
        help_text="Making someone an admin or owner needs password or code.",
    )


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, default=None)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "send_count",
        ]
        read_only_fields = fields


class InvitationCreateSerializer(ReauthenticationSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(
        choices=Role.choices,
        default=Role.MEMBER,
        help_text="Inviting an admin or owner needs password or code.",
    )


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.EmailField(source="actor_email", read_only=True)
    description = serializers.SerializerMethodField(
        help_text='What happened, in words ("Ana withdrew the invitation for bob@example.com").'
    )

    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "actor", "action", "description", "target", "data"]
        read_only_fields = fields

    def get_description(self, entry: AuditEntry) -> str:
        return audit_describe(entry)


class SecretSerializer(serializers.ModelSerializer):
    """A team secret as anyone sees it: its name and who changed it, never its value."""

    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)
    updated_by = serializers.EmailField(source="updated_by.email", read_only=True, default=None)

    class Meta:
        model = TeamSecret
        fields = [
            "name",
            "description",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
            "last_used_at",
        ]
        read_only_fields = fields


class SecretValueSerializer(serializers.Serializer):
    value = serializers.CharField(
        trim_whitespace=False,
        write_only=True,
        help_text="The secret's value: stored encrypted, never returned by any call.",
    )
    description = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True
    )


class SecretSetSerializer(SecretValueSerializer):
    name = serializers.CharField(
        max_length=64,
        help_text="The environment variable's name: letters, digits and underscores.",
    )


def secret_names_field(**options: object) -> serializers.ListField:
    """A list of the team's secret names, for what gets them as environment variables
    (notebooks, jobs, deployments); the service refuses a name the team does not have."""
    options.setdefault(
        "help_text",
        "Names of the team's secrets, each set as an environment variable of that name "
        "when it starts. Values are never returned.",
    )
    return serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=100,
        **options,  # type: ignore[arg-type]
    )
