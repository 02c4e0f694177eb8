"""API authentication by personal access token: ``Authorization: Bearer lat_...``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from apps.accounts.tokens import token_authenticate

if TYPE_CHECKING:
    from rest_framework.request import Request


class PersonalAccessTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        if len(header) != 2:  # noqa: PLR2004
            raise exceptions.AuthenticationFailed(
                "Send the token as: Authorization: Bearer lat_...",
            )
        plaintext = header[1].decode(errors="replace")
        token = token_authenticate(plaintext, ip=request.META.get("REMOTE_ADDR"))
        if token is None:
            raise exceptions.AuthenticationFailed(
                "This token is not valid: it may be mistyped, expired or revoked.",
            )
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class PersonalAccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.api.authentication.PersonalAccessTokenAuthentication"
    name = "personalAccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token (lat_...) made under Settings, API tokens.",
        }
