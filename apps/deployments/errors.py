"""The deployments app's refusals: one family under apps.core.errors' ServiceError."""

from __future__ import annotations

from apps.core.errors import ConflictError, NotFoundError, PermissionDeniedError, ServiceError


class DeploymentError(ServiceError):
    """A request the rules refuse (400). The message is shown to the person as it is."""


class DeploymentConflictError(ConflictError, DeploymentError):
    """Not possible in the deployment's current state (409)."""


class DeploymentPermissionError(PermissionDeniedError, DeploymentError):
    """The actor's role does not allow this (403)."""


class DeploymentNotFoundError(NotFoundError, DeploymentError):
    """No such deployment, revision or key in this team (404)."""
