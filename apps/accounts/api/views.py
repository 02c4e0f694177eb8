"""API v1: the signed-in person, and their personal access tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, mixins, status
from rest_framework.response import Response

from apps.accounts.api import serializers as s
from apps.accounts.api.reauthentication import require_reauthentication
from apps.accounts.hooks import user_teams
from apps.accounts.models import PersonalAccessToken
from apps.accounts.services import user_update_profile
from apps.accounts.tokens import token_create, token_revoke, token_revoke_all
from apps.core.api.pagination import Cursor

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.accounts.models import User


def _user(request: Request) -> User:
    return cast("User", request.user)


def _own_tokens(request: Request) -> QuerySet[PersonalAccessToken]:
    """The tokens this request may see and revoke: all the user's, or, for a token
    limited to one team, only itself (docs/permissions.md). A workload token is listed
    while it works: ended sessions' tokens are not kept in view (apps.accounts.workload)."""
    tokens = (
        PersonalAccessToken.objects.filter(user=_user(request))
        .exclude(~Q(workload=""), ~Q(revoked_at=None) | Q(expires_at__lte=timezone.now()))
        .select_related("team")
    )
    token = request.auth
    if isinstance(token, PersonalAccessToken) and token.team_id:
        tokens = tokens.filter(pk=token.pk)
    return tokens


class MeView(generics.GenericAPIView):
    """Who this request acts as. Any valid token may read it; changing it needs teams:write."""

    token_area = "teams"
    serializer_class = s.MeSerializer

    def get(self, request: Request) -> Response:
        return Response(self.get_serializer(request.user).data)

    def patch(self, request: Request) -> Response:
        data = self.get_serializer(request.user, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = user_update_profile(
            user=_user(request),
            name=data.validated_data.get("name", _user(request).name).strip(),
        )
        return Response(self.get_serializer(user).data)


class TokenListView(mixins.ListModelMixin, generics.GenericAPIView):
    """Your API tokens (a token limited to one team sees only itself); make one: signed in
    only (a token cannot make tokens), with your password or a two-factor code unless
    you confirmed it in the last few minutes."""

    token_area = "teams"
    serializer_class = s.TokenSerializer
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[PersonalAccessToken]:
        return _own_tokens(self.request)

    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(request=s.TokenCreateSerializer, responses={201: s.TokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, PersonalAccessToken):
            raise exceptions.PermissionDenied("Tokens are made while signed in, not with a token.")
        data = s.TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        require_reauthentication(request, data.validated_data)
        team = None
        if data.validated_data.get("team"):
            slug = data.validated_data["team"]
            team = next((t for t in user_teams(_user(request)) if t.slug == slug), None)
            if team is None:
                raise exceptions.ValidationError(
                    {"team": ["You are not in a team with that slug."]}
                )
        # A refusal (TokenError) is a 400 whose message is the whole form's.
        token, plaintext = token_create(
            user=_user(request),
            name=data.validated_data["name"],
            scopes=data.validated_data["scopes"],
            team=team,
            expires_in_days=data.validated_data.get("expires_in_days"),
        )
        body = s.TokenCreatedSerializer(token).data
        body["token"] = plaintext
        # The body holds the token in plain text: keep it out of every cache.
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class TokenDetailView(generics.GenericAPIView):
    """One of your tokens; revoke it (a token may revoke itself, e.g. on CLI logout)."""

    token_area = "teams"
    serializer_class = s.TokenSerializer

    def _token(self, token_id: int) -> PersonalAccessToken:
        token = _own_tokens(self.request).filter(pk=token_id).first()
        if token is None:
            raise exceptions.NotFound("No such token.")
        return token

    def get(self, request: Request, token_id: int) -> Response:
        return Response(self.get_serializer(self._token(token_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        token_revoke(user=_user(request), token=self._token(token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenRevokeAllView(generics.GenericAPIView):
    """Revoke all your tokens at once, this one too (not with a token limited to one team)."""

    token_area = "teams"
    serializer_class = s.TokensRevokedSerializer

    @extend_schema(request=None, responses={200: s.TokensRevokedSerializer})
    def post(self, request: Request) -> Response:
        token = request.auth
        if isinstance(token, PersonalAccessToken) and token.team_id:
            raise exceptions.PermissionDenied(
                "A token limited to one team can revoke only itself; sign in to revoke all."
            )
        return Response({"revoked": token_revoke_all(user=_user(request))})
