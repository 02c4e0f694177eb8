"""Rate limits: per token for token requests, per user for browser sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.models import PersonalAccessToken

if TYPE_CHECKING:
    from rest_framework.request import Request


class PerTokenThrottle(SimpleRateThrottle):
    scope = "token"

    def get_rate(self) -> str:
        # Read at request time so deployments (and tests) can change it.
        return str(settings.LATTICE_API_RATES["token"])

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, PersonalAccessToken):
            return f"throttle:token:{request.auth.pk}"
        return None


class PerUserThrottle(SimpleRateThrottle):
    scope = "user"

    def get_rate(self) -> str:
        return str(settings.LATTICE_API_RATES["user"])

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, PersonalAccessToken):
            return None
        if request.user and request.user.is_authenticated:
            return f"throttle:user:{request.user.pk}"
        return f"throttle:anon:{self.get_ident(request)}"


class UploadChunkThrottle(SimpleRateThrottle):
    """Chunks of uploads, counted apart: a 200 GiB upload is 6,400 chunks of 32 MiB, which
    the general limits would cut off; the storage quota bounds what they can cost."""

    scope = "upload"

    def get_rate(self) -> str:
        return str(settings.LATTICE_API_RATES.get("upload", "40000/hour"))

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, PersonalAccessToken):
            return f"throttle:upload:token:{request.auth.pk}"
        if request.user and request.user.is_authenticated:
            return f"throttle:upload:user:{request.user.pk}"
        return f"throttle:upload:anon:{self.get_ident(request)}"
