"""What a team's plan allows its deployments: hooks (apps.core.hooks) this app calls and
billing registers from its ``AppConfig.ready()``.

The defaults are a Lattice without plans (or LATTICE_BILLING off): every deployment and
replica is allowed, nothing is charged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.machines.models import MachineType
    from apps.teams.models import Team


def _allowed(team: Team, machine_type: MachineType, replicas: int) -> None:
    return None


def _deployment_allowed(team: Team) -> None:
    return None


# Refuse (raise a ServiceError, a 402 PlanLimitError) a revision whose machine type or
# ``replicas`` (its max_replicas) the plan or the spend cap does not allow; also asked
# before each scale-up, with the replicas the deployment would then run in all.
check_replicas: Hook[[Team, MachineType, int], None] = Hook(
    "deployment replicas check", default=_allowed
)
# Refuse one more deployment beyond the plan's number.
check_deployment: Hook[[Team], None] = Hook("deployment count check", default=_deployment_allowed)
