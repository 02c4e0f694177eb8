"""What billing pauses deployments for, the spend cap and the plan, and resuming them.

The controller holds a paused deployment at zero replicas (controller.deployment_pause)
and keeps the reason given in ``Deployment.paused_reason``; billing finds its own pauses
by how that reason begins (``CAP_PAUSE``, ``PLAN_PAUSE``) and resumes only those.

At the cap, the team's deployments on paid machine types are paused (held at zero
replicas by their controller) whatever "stop running machines" says: a deployment
starts replicas on its own (autoscaling, a request waking it from zero), which a
reached cap forbids. They resume once the cap allows them again: at once when an
owner or admin raises or removes it, else at the first billing sweep of a new period.

The plan: after a downgrade, the sweep pauses a deployment whose newest revision runs a
machine type the plan lacks or more replicas than it allows, and resumes it once the
plan allows it (an upgrade) or a change made a revision that it allows. A deployment the
cap paused is asked of the plan when the cap lets it go: one the plan refuses is paused
again, for the plan, instead of resumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.billing.entitlements import current_period, current_plan
from apps.billing.models import BillingAccount
from apps.billing.usage import usage_cost
from apps.core.tenancy import team_scope
from apps.deployments import controller
from apps.deployments.models import Deployment, Revision

if TYPE_CHECKING:
    from decimal import Decimal

    from apps.billing.models import Plan
    from apps.teams.models import Team

CAP_ALERTS = (50, 80, 100)
FULL = 100
# How the reasons billing gives a paused deployment begin.
CAP_PAUSE = "The team's spend cap is reached"
PLAN_PAUSE = "The team's plan does not allow this deployment"


def cap_reached(spent: Decimal, cap: Decimal) -> int:
    """The highest alert percentage ``spent`` has reached of ``cap``."""
    if cap > 0:
        return max((p for p in CAP_ALERTS if spent >= cap * p / 100), default=0)
    # A cap of $0: only free machines, and any spend is all of it.
    return FULL if spent > 0 else 0


def paid_live_deployments(team: Team) -> list[Deployment]:
    """The team's deployments that are not deleted or paused and run (or would run) a
    machine type with a price. Free machines cost nothing: the cap leaves them serving."""
    current = [Revision.Status.PENDING, Revision.Status.STARTING, Revision.Status.SERVING]
    return list(
        Deployment.objects.for_team(team)
        .filter(deleted_at__isnull=True)
        .exclude(status=Deployment.Status.PAUSED)
        .filter(revisions__status__in=current, revisions__machine_type__hourly_price__gt=0)
        .distinct()
        .order_by("name", "pk")
    )


def cap_pause(deployments: list[Deployment], *, spent: Decimal, cap: Decimal, ends: str) -> None:
    """Pause ``deployments``, saying why and until when (``ends``: the next period's start)."""
    reason = (
        f"{CAP_PAUSE} (${spent:.2f} of ${cap:.2f} this billing period). It resumes when an "
        f"owner or admin raises or removes the cap, or when the next period starts ({ends})."
    )
    for deployment in deployments:
        controller.deployment_pause(deployment, reason)


def cap_resume(team: Team) -> int:
    """Resume the team's deployments the spend cap paused; return how many. One the plan
    does not allow now (a downgrade while the cap held it) is not resumed: it stays
    paused, for the plan, until the plan allows it (``plan_hold``)."""
    paused = (
        Deployment.objects.for_team(team)
        .filter(deleted_at__isnull=True, status=Deployment.Status.PAUSED)
        .filter(paused_reason__startswith=CAP_PAUSE)
        .order_by("name", "pk")
    )
    plan = current_plan(team)
    allowed = {m.pk for m in plan.machine_types.all()} if plan is not None else set()
    resumed = 0
    for deployment in list(paused):
        why = None if plan is None else _plan_refusal(team, plan, allowed, deployment)
        if why:
            controller.deployment_pause(deployment, f"{PLAN_PAUSE}: {why}")
            continue
        controller.deployment_resume(deployment)
        resumed += 1
    return resumed


def plan_hold(team: Team, plan: Plan) -> int:
    """Pause the team's deployments the plan does not allow; resume those it paused that
    it allows now. Returns how many it paused."""
    allowed = {m.pk for m in plan.machine_types.all()}
    paused = 0
    live = Deployment.objects.for_team(team).filter(deleted_at__isnull=True)
    for deployment in list(live.order_by("name", "pk")):
        why = _plan_refusal(team, plan, allowed, deployment)
        # One the cap paused stays the cap's: cap_resume asks the plan before resuming it.
        if why and deployment.status != Deployment.Status.PAUSED:
            controller.deployment_pause(deployment, f"{PLAN_PAUSE}: {why}")
            paused += 1
        elif not why and deployment.paused_reason.startswith(PLAN_PAUSE):
            controller.deployment_resume(deployment)
    return paused


def _plan_refusal(team: Team, plan: Plan, allowed: set[int], deployment: Deployment) -> str | None:
    """Why ``plan`` does not allow the deployment's newest live revision; None if it does."""
    newest = (
        Revision.objects.for_team(team)
        .filter(deployment=deployment)
        .exclude(status__in=[Revision.Status.FAILED, Revision.Status.RETIRED])
        .select_related("machine_type")
        .order_by("-number")
        .first()
    )
    return None if newest is None else _plan_refuses(plan, allowed, newest)


def _plan_refuses(plan: Plan, allowed: set[int], revision: Revision) -> str | None:
    machine = revision.machine_type
    if machine.pk not in allowed:
        return (
            f"the {plan.name} plan does not include {machine.name}. It resumes once the plan "
            "includes it (an upgrade), or after a change to a machine type the plan includes."
        )
    limit = plan.max_replicas
    if limit is not None and revision.max_replicas > limit:
        return (
            f"the {plan.name} plan runs at most {limit} replica{'s' if limit != 1 else ''} of "
            f"a deployment and this one may run {revision.max_replicas}. It resumes once the "
            "plan allows that many (an upgrade), or after a change that lowers its maximum."
        )
    return None


def cap_changed(team: Team) -> int:
    """After the cap was set or removed (on commit): resume the deployments it paused if
    the new cap allows them; return how many. A lower cap pauses at the next sweep."""
    with team_scope(team):
        cap = BillingAccount.objects.for_team(team).values_list("spend_cap", flat=True).first()
        if cap is not None:
            start, end = current_period(team)
            if cap_reached(usage_cost(team, start, end), cap) >= FULL:
                return 0
        return cap_resume(team)
