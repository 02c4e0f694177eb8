"""What a team's plan allows its notebooks: hooks (apps.core.hooks) this app calls and the app
that sells plans (billing) registers from its ``AppConfig.ready()``.

The defaults are what a Lattice without plans does (and billing does with LATTICE_BILLING
off): every start is allowed, idle shutdown has no cap, no machine type carries a note, and
nothing is charged, so no session has a cost to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta
    from decimal import Decimal

    from apps.machines.models import MachineType
    from apps.notebooks.models import NotebookSession
    from apps.teams.models import Team


def _start_allowed(team: Team, machine_type: MachineType) -> None:
    return None


def _no_idle_limit(team: Team | int) -> int | None:
    return None


def _no_run_limit(team: Team | int) -> timedelta | None:
    return None


def _no_notes(team: Team) -> dict[int, str]:
    return {}


def _not_charged(sessions: Sequence[NotebookSession]) -> dict[int, Decimal] | None:
    return None


# Refuse (raise a ServiceError, a 402) a start on ``machine_type`` the plan or the spend cap
# does not allow. Called inside the start's transaction, before its session is made.
check_start = Hook("notebook start check", default=_start_allowed)

# The longest idle shutdown the plan allows, in minutes (None: any, including never).
idle_limit = Hook("notebook idle limit", default=_no_idle_limit)

# The longest the plan lets one workload run (its session cap), None for no limit: a job
# run's deadline is never later (apps.jobs.runs).
run_limit = Hook("workload run limit", default=_no_run_limit)

# For the machine picker: a note ("needs Pro") by machine type id, for those the plan lacks.
machine_notes = Hook("machine type notes", default=_no_notes)

# What each of ``sessions`` (of one team or several) has cost so far, by session id, at the
# prices billed; None where nothing is charged (no plans), so pages show no cost rather than
# a made-up one.
session_costs = Hook("notebook session costs", default=_not_charged)
