"""The SDK's tests' pieces: alice's real ``lat_`` token and a ``lattice.Client`` of hers
talking to uvicorn serving the project (tests.asgi_server), in Acme."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import lattice
from apps.accounts.tokens import TOKEN_SCOPES, token_create

if TYPE_CHECKING:
    from collections.abc import Iterator


def token_of(user: Any, scopes: list[str] | None = None) -> str:
    """A token of ``user``'s (every scope unless told), made as a person makes one."""
    return token_create(
        user=user, name="sdk", scopes=scopes or list(TOKEN_SCOPES), expires_in_days=30
    )[1]


@pytest.fixture
def alice_token(alice: Any) -> str:
    return token_of(alice)


@pytest.fixture
def sdk(asgi_live_server: str, acme: Any, alice_token: str) -> Iterator[lattice.Client]:
    """alice's client, acting in Acme by default."""
    with lattice.Client(url=asgi_live_server, token=alice_token, team="acme") as client:
        yield client
