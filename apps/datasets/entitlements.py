"""What a team's plan allows its datasets: hooks (apps.core.hooks) this app calls and the app
that sells plans (billing) registers from its ``AppConfig.ready()``.

The defaults are what a Lattice without plans does (and billing does with LATTICE_BILLING
off): no storage quota, and private datasets for every team.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.teams.models import Team


def _any_storage(team: Team, *, used_bytes: int, adding_bytes: int) -> None:
    return None


def _private_allowed(team: Team) -> None:
    return None


# Refuse (raise a ServiceError, a 402), up front, a write of ``adding_bytes`` new bytes that
# would take a team holding ``used_bytes`` past its plan's storage quota.
check_storage = Hook("dataset storage check", default=_any_storage)

# Refuse (raise a ServiceError, a 402) a private dataset on a plan whose datasets are public.
check_private_dataset = Hook("private dataset check", default=_private_allowed)
