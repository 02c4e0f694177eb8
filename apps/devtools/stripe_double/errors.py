"""The one exception the double raises, shaped like a Stripe API error.

The HTTP layer turns it into Stripe's ``{"error": {...}}`` body with its status, so
stripe-python raises the same ``InvalidRequestError``/``IdempotencyError`` it would
against Stripe; Python callers of the scenario steps get it directly.
"""

from __future__ import annotations

from typing import Any


class StripeDoubleError(Exception):
    """A Stripe error: ``status`` is the HTTP status, the rest is the error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",  # noqa: A002 - Stripe's own field name
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def no_such(object_name: str, object_id: str, *, param: str = "id") -> StripeDoubleError:
    """Stripe's answer for an id it does not know: 404 in the URL, 400 in a parameter."""
    return StripeDoubleError(
        f"No such {object_name}: '{object_id}'",
        status=404 if param == "id" else 400,
        code="resource_missing",
        param=param,
    )


def missing_param(param: str) -> StripeDoubleError:
    return StripeDoubleError(
        f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def invalid(
    message: str, *, param: str | None = None, code: str | None = None
) -> StripeDoubleError:
    return StripeDoubleError(message, code=code, param=param)
