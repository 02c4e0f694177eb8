"""Reads about a team's billing that several places share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.billing import services
from apps.billing.entitlements import (
    billing_enabled,
    current_plan,
    current_subscription,
    grace_ends,
)
from apps.billing.usage import current_period, usage_cost

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from apps.billing.models import BillingAccount, Plan, Subscription
    from apps.teams.models import Team


@dataclass(frozen=True)
class BillingOverview:
    """The team's plan, subscription, this period's cost and spend cap: what the billing
    page and ``GET /api/v1/teams/<slug>/billing/`` show."""

    enabled: bool
    plan: Plan | None
    subscription: Subscription | None
    grace_ends: datetime | None
    # None with billing off: a private Lattice keeps no billing account.
    account: BillingAccount | None
    period_start: datetime
    period_end: datetime
    period_cost: Decimal

    @property
    def spend_cap(self) -> Decimal | None:
        return self.account.spend_cap if self.account else None

    @property
    def stop_at_cap(self) -> bool:
        return self.account.stop_at_cap if self.account else False

    @property
    def cap_percent(self) -> int | None:
        """How much of the spend cap this period has used, at most 100; None without a cap."""
        if self.spend_cap:
            return min(int(self.period_cost * 100 / self.spend_cap), 100)
        return None


def billing_overview(team: Team) -> BillingOverview:
    """The team's billing overview, read now (its account is made on first read)."""
    enabled = billing_enabled()
    subscription = current_subscription(team)
    start, end = current_period(team)
    return BillingOverview(
        enabled=enabled,
        plan=current_plan(team),
        subscription=subscription,
        grace_ends=grace_ends(subscription) if subscription else None,
        account=services.account_for(team) if enabled else None,
        period_start=start,
        period_end=end,
        period_cost=usage_cost(team, start, end),
    )
