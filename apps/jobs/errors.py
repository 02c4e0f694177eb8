"""The refusals jobs raise (apps.core.errors)."""

from __future__ import annotations

from apps.core.errors import ConflictError, NotFoundError, ServiceError


class JobError(ServiceError):
    """A job or run refused as asked: the message says what to change."""

    code = "job_invalid"


class JobConflictError(ConflictError):
    code = "job_conflict"


class JobNotFoundError(NotFoundError):
    code = "job_not_found"
