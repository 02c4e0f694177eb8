"""Rate limits: per token for token requests, per user for browser sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.models import PersonalAccessToken

if TYPE_CHECKING:
    from rest_framework.request import Request


class _LatticeThrottle(SimpleRateThrottle):
    """A rate from LATTICE_API_RATES[scope] (or ``default_rate`` where it names none), read
    at request time so deployments (and tests) can change it."""

    default_rate: str | None = None

    def get_rate(self) -> str:
        rates, scope = settings.LATTICE_API_RATES, str(self.scope)
        return str(
            rates[scope] if self.default_rate is None else rates.get(scope, self.default_rate)
        )

    def who(self, request: Request) -> str:
        """Whom a request counts against: its token, else its user, else its address."""
        if isinstance(request.auth, PersonalAccessToken):
            return f"token:{request.auth.pk}"
        if request.user and request.user.is_authenticated:
            return f"user:{request.user.pk}"
        return f"anon:{self.get_ident(request)}"


class PerTokenThrottle(_LatticeThrottle):
    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, PersonalAccessToken):
            return f"throttle:{self.who(request)}"
        return None


class PerUserThrottle(_LatticeThrottle):
    scope = "user"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, PersonalAccessToken):
            return None
        return f"throttle:{self.who(request)}"


class UploadChunkThrottle(_LatticeThrottle):
    """Chunks of uploads, counted apart: a 200 GiB upload is 6,400 chunks of 32 MiB, which
    the general limits would cut off; the storage quota bounds what they can cost."""

    scope = "upload"
    default_rate = "40000/hour"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return f"throttle:upload:{self.who(request)}"
