"""The errors the SDK raises: each carries the server's error code, message and HTTP status.

The server answers every refusal as ``{"error": {"code", "message", "fields"?}}``
(apps/core/api/exceptions.py on the server); ``LatticeError.from_response`` turns that into
the subclass for its status, so a script catches ``NotFound`` or ``PaymentRequired`` and the
CLI prints ``str(error)``: one line a person can act on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class LatticeError(Exception):
    """A refusal or failure, with what the server said about it.

    ``status``: the HTTP status (0 when no answer came); ``code``: the server's error code
    ("not_found", "plan_limit", "throttled", ...; "connection" when no answer came);
    ``message``: the server's words; ``fields``: per-field messages of a validation error.
    """

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        if status is not None:
            self.status = status
        self.fields = fields or {}

    def __str__(self) -> str:
        if not self.fields or set(self.fields) == {"non_field_errors"}:
            return self.message
        details = "; ".join(
            f"{name}: {' '.join(str(m) for m in (msgs if isinstance(msgs, list) else [msgs]))}"
            for name, msgs in self.fields.items()
        )
        return f"{self.message} {details}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> LatticeError:
        """The error a non-2xx ``response`` stands for (its subclass by status)."""
        code, message, fields = "error", "", None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            code = str(error.get("code") or code)
            message = str(error.get("message") or "")
            fields = error.get("fields") if isinstance(error.get("fields"), dict) else None
        elif isinstance(body, dict) and "detail" in body:
            message = str(body["detail"])
        elif response.headers.get("X-Lattice-Error"):
            # A deployment gateway's own answer: its code in the header, its words as text.
            code = response.headers["X-Lattice-Error"]
            message = response.text.strip()[:500]
        if not message:
            message = f"The server answered {response.status_code} {response.reason_phrase}."
        kind = _BY_STATUS.get(response.status_code, cls)
        error = kind(message, code=code, status=response.status_code, fields=fields)
        if isinstance(error, RateLimited):
            error.retry_after = _seconds(response.headers.get("Retry-After"))
        return error


class ConnectionFailed(LatticeError):
    """No answer: the server could not be reached, or the connection dropped."""


class BadRequest(LatticeError):
    status = 400


class AuthenticationFailed(LatticeError):
    """401: no token, or a token that is mistyped, expired or revoked."""

    status = 401


class PaymentRequired(LatticeError):
    """402: the team's plan does not allow it (a limit, a machine type, storage)."""

    status = 402


class PermissionDenied(LatticeError):
    status = 403


class NotFound(LatticeError):
    """404: it does not exist, or this token may not see it (an outsider's team)."""

    status = 404


class Conflict(LatticeError):
    status = 409


class RateLimited(LatticeError):
    """429: too many requests; ``retry_after`` is the server's advice in seconds, if given."""

    status = 429
    retry_after: float | None = None


class ServerError(LatticeError):
    status = 500


_BY_STATUS: dict[int, type[LatticeError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
