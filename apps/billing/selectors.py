"""Reads about a team's billing that several places share."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.utils import timezone

from apps.billing import services
from apps.billing.entitlements import (
    billing_enabled,
    billing_url,
    current_period,
    current_plan,
    current_subscription,
    current_subscriptions,
    grace_ends,
    period_of,
)
from apps.billing.models import Plan
from apps.billing.usage import (
    DEPLOYMENT,
    KIND_NAMES,
    UsageTotal,
    daily_costs,
    run_costs,
    session_costs,
    teams_usage_costs,
    totals_by,
    usage_cost,
    usage_pieces,
)
from apps.teams.hooks import Spend

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from apps.billing.models import BillingAccount, Subscription
    from apps.billing.usage import UsagePiece
    from apps.jobs.models import Run
    from apps.notebooks.models import NotebookSession
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


@dataclass(frozen=True)
class BillingUsage:
    """This period's usage, by kind (notebooks, deployments), by machine type, by member,
    by deployment and by day: what the usage page and ``GET /api/v1/teams/<slug>/billing/
    usage/`` show."""

    period_start: datetime
    period_end: datetime
    seconds: int
    cost: Decimal
    by_machine_type: list[UsageTotal]
    by_member: list[UsageTotal]
    # Notebooks and Deployments, each when it has usage.
    by_kind: list[UsageTotal]
    # Each deployment's replica-seconds, by deployment name.
    by_deployment: list[UsageTotal]
    # Every day of the period, in order, days without usage included.
    by_day: list[UsageTotal]


def billing_usage(team: Team) -> BillingUsage:
    """The team's usage in its current billing period, read now."""
    start, end = current_period(team)
    pieces = usage_pieces(team, start, end)
    return BillingUsage(
        period_start=start,
        period_end=end,
        seconds=sum(p.seconds for p in pieces),
        cost=sum((p.cost for p in pieces), start=Decimal(0)),
        by_machine_type=totals_by(pieces, "machine_type"),
        by_member=totals_by(pieces, "member"),
        by_kind=_by_kind(pieces),
        by_deployment=totals_by((p for p in pieces if p.kind == DEPLOYMENT), "label"),
        by_day=daily_costs(pieces, start, end),
    )


def _by_kind(pieces: Sequence[UsagePiece]) -> list[UsageTotal]:
    return [
        UsageTotal(KIND_NAMES[t.name], seconds=t.seconds, cost=t.cost)
        for t in totals_by(pieces, "kind")
    ]


def plan_offered(slug: str) -> Plan | None:
    """The plan named ``slug``, if it is offered (active): what a checkout may buy."""
    return Plan.objects.filter(slug=slug, active=True).first()


def running_costs(sessions: Sequence[NotebookSession]) -> dict[int, Decimal] | None:
    """What ``sessions`` have cost so far (apps.notebooks.entitlements.session_costs), at
    the prices the usage page bills; None with billing off, where nothing is charged."""
    if not billing_enabled():
        return None
    return session_costs(sessions)


def job_run_costs(runs: Sequence[Run]) -> dict[int, Decimal] | None:
    """What job ``runs`` have cost so far (apps.jobs.costs.run_costs), at the prices the
    usage page bills; None with billing off, where nothing is charged."""
    if not billing_enabled():
        return None
    return run_costs(runs)


def period_spend(team: Team) -> Spend | None:
    """The team's spend this period (apps.teams.hooks.period_spend): the billing page's
    figure; None with billing off, where nothing is charged."""
    return period_spends([team]).get(team.pk)


def period_spends(teams: Sequence[Team]) -> dict[int, Spend]:
    """Each team's spend this period, by team id (apps.teams.hooks.period_spends): the
    billing page's figure, read for all ``teams`` in four queries (subscriptions, sessions,
    replicas, prices); none with billing off, where nothing is charged."""
    if not billing_enabled() or not teams:
        return {}
    now = timezone.now()
    subscriptions = current_subscriptions(team.pk for team in teams)
    periods = {team.pk: period_of(subscriptions.get(team.pk), now=now) for team in teams}
    amounts = teams_usage_costs(periods, now=now)
    return {
        team.pk: Spend(
            amount=amounts[team.pk],
            period_start=periods[team.pk][0],
            period_end=periods[team.pk][1],
            url=billing_url(team.slug),
        )
        for team in teams
    }
