"""Celery tasks for billing: apply a stored Stripe event; the periodic billing sweep."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db.models import Q

from apps.billing import events, metering
from apps.billing.entitlements import billing_enabled
from apps.billing.models import BillingAccount
from apps.core.tenancy import team_scope
from apps.deployments.models import Deployment, Replica
from apps.notebooks.models import NotebookSession
from apps.teams.models import Team

logger = logging.getLogger(__name__)


@shared_task(name="billing.process_event", soft_time_limit=60, time_limit=90)
def process_event(event_pk: int) -> None:
    """Apply one stored Stripe event by refetching its object (apps.billing.events)."""
    events.event_process(event_pk)


@shared_task(name="billing.sweep", soft_time_limit=540, time_limit=600)
def sweep() -> dict[str, int]:
    """For every team with billing to look after: usage to Stripe, the spend cap, the plan's
    limits; and events that failed are tried again. One team's failure stops no other."""
    if not billing_enabled():
        return {}
    counts = {"teams": 0, "failed": 0, "events_retried": events.events_retry()}
    teams = Team.objects.filter(
        Q(pk__in=BillingAccount.objects.unscoped().values("team_id"))
        # Free teams too, while something runs: the plan's session cap and machines apply.
        | Q(pk__in=NotebookSession.objects.unscoped().filter(ended_at=None).values("team_id"))
        # And while a deployment's replica runs, or a deployment is paused (to resume it).
        | Q(pk__in=Replica.objects.unscoped().filter(ended_at=None).values("team_id"))
        | Q(
            pk__in=Deployment.objects.unscoped()
            .filter(status=Deployment.Status.PAUSED, deleted_at=None)
            .values("team_id")
        )
    )
    for team in teams:
        counts["teams"] += 1
        try:
            with team_scope(team):
                team_sweep(team)
        except Exception:
            counts["failed"] += 1
    return counts


STEPS = (
    metering.plan_enforce,
    metering.spend_cap_enforce,
    metering.usage_sync,
    metering.usage_reconcile,
)


def team_sweep(team: Team) -> None:
    """Every step, each on its own: mail being down must not keep usage from Stripe."""
    failed = []
    for step in STEPS:
        try:
            step(team)
        except Exception:
            logger.exception("Billing %s failed for team %s", step.__name__, team.slug)
            failed.append(step.__name__)
    if failed:
        raise RuntimeError(f"billing steps failed: {', '.join(failed)}")
