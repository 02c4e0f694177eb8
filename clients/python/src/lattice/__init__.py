"""The Python SDK for Lattice: ``lattice.Client()`` and the same operations the ``lattice``
command runs. It speaks to a server only through its public API (``/api/v1/``)."""

from __future__ import annotations

__version__ = "0.1.0"

from lattice.client import Client
from lattice.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    ConnectionFailed,
    LatticeError,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    ServerError,
)

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "LatticeError",
    "NotFound",
    "PaymentRequired",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "__version__",
]
