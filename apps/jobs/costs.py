"""What runs have cost: a hook (apps.core.hooks) jobs call and the app that bills
(billing) registers from its ``AppConfig.ready()``.

The default is what a Lattice without plans does: nothing is charged, so no run has a cost
to show ("unknown" on pages, null in the API) rather than a made-up one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from collections.abc import Sequence
    from decimal import Decimal

    from apps.jobs.models import Run


def _not_charged(runs: Sequence[Run]) -> dict[int, Decimal] | None:
    return None


# What each of ``runs`` has cost so far (every attempt's seconds at the prices billed), by
# run id; None where nothing is charged.
run_costs = Hook("job run costs", default=_not_charged)
