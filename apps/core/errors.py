"""The one refusal family: every service refusal is a ``ServiceError``.

A refusal carries a message a person can act on, a machine-readable ``code``, an HTTP
status and optional details: ``field`` (the form field or API field to fix) and
``upgrade_url`` (where a plan limit can be lifted). Each app names its own subclasses
(``NotebookError``, ``TeamError``, ``PlanLimitError``...) and sets their status and code;
the API turns any of them into its error body in one place
(``apps.core.api.exceptions``) and a page shows the message in one place
(``apps.core.pages``). No interface module imports another app's error classes.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        upgrade_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.upgrade_url = upgrade_url
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code


class ConflictError(ServiceError):
    """The request is valid but the current state refuses it (409)."""

    status_code = 409
    code = "conflict"


class PermissionDeniedError(ServiceError):
    """The actor's role does not allow this (403)."""

    status_code = 403
    code = "permission_denied"


class NotFoundError(ServiceError):
    """The thing named does not exist, or not for this actor (404)."""

    status_code = 404
    code = "not_found"


class PaymentRequiredError(ServiceError):
    """The team's plan or spend cap refuses (402); ``upgrade_url`` says where to lift it."""

    status_code = 402
    code = "plan_limit"
