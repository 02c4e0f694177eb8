"""What the gateway counts (owned by the gateway helper; this is the contract only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.deployments.models import Deployment

LATENCY_BUCKETS_MS: tuple[float, ...] = ()


def in_flight(deployment_id: int) -> dict[int, int]:
    """Revision id -> requests in flight now, over every web process."""
    raise NotImplementedError


def series(deployment: Deployment, *, seconds: int = 900, step: int = 5) -> dict[str, Any]:
    """Per step: requests per second by revision, status classes, p50/p95/p99, in flight."""
    raise NotImplementedError


def recent_requests(deployment: Deployment) -> list[dict[str, Any]]:
    """The last requests' lines (method, path, status, ms, revision, time)."""
    raise NotImplementedError
