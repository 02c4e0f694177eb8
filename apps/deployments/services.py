"""Deployment services (owned by the api helper; this is the contract only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.deployments.models import Deployment, DeploymentKey, Revision
    from apps.machines.models import MachineType
    from apps.models.models import Model, ModelVersion
    from apps.teams.models import Team


@dataclass(frozen=True)
class RevisionSpec:
    """What a revision serves and how; a change of any of it is a new revision."""

    machine_type: MachineType
    model_version: ModelVersion | None = None
    # Follow an alias of ``model`` instead of a fixed version.
    model: Model | None = None
    follows_alias: str = ""
    serving: str = "builtin"
    image: str = ""
    port: int = 8080
    command: list[str] = field(default_factory=list)
    health_path: str = ""
    min_replicas: int = 1
    max_replicas: int = 1
    target_in_flight: int = 4
    scale_to_zero_after: int | None = 900
    startup_timeout: int = 600
    canary_percent: int = 0
    env: dict[str, str] = field(default_factory=dict)
    # None: keep the previous revision's secrets.
    secrets: dict[str, str] | None = None


def deployment_create(
    *, team: Team, actor: User, name: str, auth_mode: str, spec: RevisionSpec, description: str = ""
) -> Deployment:
    raise NotImplementedError


def deployment_change(
    *, team: Team, actor: User, deployment: Deployment, spec: RevisionSpec, reason: str = "changed"
) -> Revision:
    raise NotImplementedError


def deployment_rollback(
    *, team: Team, actor: User, deployment: Deployment, revision: Revision
) -> Revision:
    raise NotImplementedError


def deployment_set_traffic(
    *, team: Team, actor: User, deployment: Deployment, split: dict[int, int]
) -> None:
    raise NotImplementedError


def deployment_delete(*, team: Team, actor: User, deployment: Deployment) -> None:
    raise NotImplementedError


def key_create(
    *, team: Team, actor: User, deployment: Deployment, name: str
) -> tuple[DeploymentKey, str]:
    raise NotImplementedError


def key_revoke(*, team: Team, actor: User, deployment: Deployment, key: DeploymentKey) -> None:
    raise NotImplementedError
