"""A throttled SDK call against a live server: a read is sent again after the server's
Retry-After (capped, a few times) and then raised as RateLimited; a write is never sent
again. The waits are recorded instead of slept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import cache

from lattice import http
from lattice.errors import RateLimited

if TYPE_CHECKING:
    import lattice

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(http.time, "sleep", slept.append)
    return slept


@pytest.fixture
def two_a_minute(settings: Any) -> None:
    cache.clear()
    settings.LATTICE_API_RATES = {**settings.LATTICE_API_RATES, "token": "2/minute"}


def test_a_throttled_read_is_retried_after_retry_after_then_raised(
    sdk: lattice.Client, two_a_minute: None, waits: list[float]
) -> None:
    sdk.teams.list()
    sdk.teams.list()

    with pytest.raises(RateLimited) as throttled:
        sdk.teams.list()

    assert throttled.value.status == 429
    assert throttled.value.code == "throttled"
    assert throttled.value.retry_after is not None
    assert throttled.value.retry_after > 0
    # Sent three times in all: twice again, each after the server's advice (capped).
    assert len(waits) == sdk.transport.retries == 2
    assert all(0 < wait <= http.MAX_RETRY_WAIT for wait in waits)


def test_a_throttled_write_is_raised_at_once(
    sdk: lattice.Client, catalogue: Any, two_a_minute: None, waits: list[float]
) -> None:
    sdk.teams.list()
    sdk.teams.list()

    with pytest.raises(RateLimited):
        sdk.notebooks.create("Throttled", machine_type="cpu-small")

    assert waits == []
