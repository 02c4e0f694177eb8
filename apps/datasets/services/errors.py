"""The datasets services' refusals: ServiceErrors whose message is shown as it is."""

from __future__ import annotations

from apps.core.errors import ConflictError, PermissionDeniedError, ServiceError


class DatasetError(ServiceError):
    """A request refused; the message is shown as it is."""


class DatasetConflictError(ConflictError, DatasetError):
    """Not possible in the current state (409)."""


class DatasetPermissionError(PermissionDeniedError, DatasetError):
    """The actor's role does not allow this (403)."""
