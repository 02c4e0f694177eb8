"""The deployment controller (owned by the control helper; this is the contract only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.deployments.models import Deployment


def deployment_reconcile_soon(deployment_id: int) -> None:
    """Queue the deployment's reconcile once the transaction commits."""
    raise NotImplementedError


def deployment_wake(deployment_id: int) -> None:
    """A request is held for want of a ready replica: start one (cheap, idempotent)."""
    raise NotImplementedError


def deployment_pause(deployment: Deployment, reason: str) -> None:
    """Hold the deployment at zero replicas (the spend cap), saying why."""
    raise NotImplementedError


def deployment_resume(deployment: Deployment) -> None:
    """Let a paused deployment scale again."""
    raise NotImplementedError


def deployment_stop_all(deployment: Deployment, reason: str) -> None:
    """Stop every replica of the deployment (it is deleted)."""
    raise NotImplementedError
