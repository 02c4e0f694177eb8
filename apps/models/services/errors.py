"""The models services' refusals: ServiceErrors whose message is shown as it is."""

from __future__ import annotations

from apps.core.errors import ConflictError, PermissionDeniedError, ServiceError


class ModelError(ServiceError):
    """A request refused; the message is shown as it is."""


class ModelConflictError(ConflictError, ModelError):
    """Not possible in the current state (409)."""


class ModelPermissionError(PermissionDeniedError, ModelError):
    """The actor's role does not allow this (403)."""
