from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.accounts.models import TOKEN_SCOPES, PersonalAccessToken, User
from apps.accounts.tokens import EXPIRY_CHOICES_DAYS


class MeSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name", "date_joined"]
        read_only_fields = ["id", "email", "date_joined"]


class TokenSerializer(serializers.ModelSerializer):
    team: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
    )
    active = serializers.BooleanField(source="is_active", read_only=True)
    workload = serializers.CharField(
        read_only=True,
        help_text="Empty for a token you made; for one the platform made for a notebook "
        'session or a job attempt, that workload ("nb-<notebook>-s<session>", '
        '"jb-<attempt>"). It is revoked when its workload ends, and listed only until then.',
    )

    class Meta:
        model = PersonalAccessToken
        fields = [
            "id",
            "name",
            "display_prefix",
            "scopes",
            "team",
            "created_at",
            "expires_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
            "active",
            "workload",
        ]
        read_only_fields = fields


# Proof that the person is there, for a change that asks again
# (apps.accounts.reauthentication). Not a docstring: serializers that inherit
# these fields would show it in the API reference as their own description.
class ReauthenticationSerializer(serializers.Serializer):
    password = serializers.CharField(
        required=False,
        write_only=True,
        trim_whitespace=False,
        max_length=4096,
        help_text="Your password, where the change asks for it again (or send code). "
        "A browser session that confirmed it in the last 5 minutes may leave both out; "
        "a token never may.",
    )
    code = serializers.CharField(
        required=False,
        write_only=True,
        max_length=64,
        help_text="Instead of password, with two-factor authentication on: a code from "
        "your authenticator app (each is good once) or a recovery code.",
    )


class TokenCreateSerializer(ReauthenticationSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=TOKEN_SCOPES),
        min_length=1,
        max_length=len(TOKEN_SCOPES),
    )
    team = serializers.SlugField(
        max_length=60,
        required=False,
        allow_null=True,
        help_text="Restrict the token to this team (its slug).",
    )
    expires_in_days = serializers.ChoiceField(
        choices=EXPIRY_CHOICES_DAYS,
        required=False,
        allow_null=True,
        default=30,
        help_text="null: never expires.",
    )


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown this once; store it now.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class TokensRevokedSerializer(serializers.Serializer):
    revoked = serializers.IntegerField(read_only=True, help_text="How many tokens stopped working.")
