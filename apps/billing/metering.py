"""The billing sweep's work for one team: usage to Stripe, the spend cap, the plan's limits.

At the spend cap, and past the plan, the team's deployments are paused (apps.billing.holds).

Usage goes to Stripe as Billing Meter events whose value is cents. Each report
is a ``UsageReport`` row committed *before* it is sent, with an identifier that
is also the request's idempotency key: a send interrupted after Stripe took it
is sent again with the same identifier, and Stripe counts it once. What is sent
is always "derived total so far minus what was already reported", in whole
cents, so nothing is counted twice and fractions carry over.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone

from apps.billing import services
from apps.billing.entitlements import (
    ENDED_STATUSES,
    account_locked,
    billing_enabled,
    current_period,
    current_plan,
    current_subscription,
    session_limit,
)
from apps.billing.holds import (
    FULL,
    cap_pause,
    cap_reached,
    cap_resume,
    paid_live_deployments,
    plan_hold,
)
from apps.billing.models import BillingAccount, Subscription, UsageReport
from apps.billing.notify import billing_mail
from apps.billing.usage import cents, usage_cost
from apps.jobs.errors import JobConflictError
from apps.jobs.models import Attempt
from apps.jobs.runs import run_cancel
from apps.jobs.selectors import open_attempts
from apps.notebooks.models import NotebookSession
from apps.notebooks.services import notebook_stop

if TYPE_CHECKING:
    from collections.abc import Callable
    from decimal import Decimal

    from apps.deployments.models import Deployment
    from apps.teams.models import Team

logger = logging.getLogger(__name__)


def _reported(team: Team) -> tuple[int, datetime | None]:
    """Cents reported so far (sent or about to be) and the instant they cover up to."""
    totals = UsageReport.objects.for_team(team).aggregate(
        cents=Sum("cents"), until=Max("covers_until")
    )
    return int(totals["cents"] or 0), totals["until"]


def _report(
    team: Team,
    account: BillingAccount,
    *,
    customer: str,
    period: tuple[datetime, datetime],
    until: datetime,
) -> None:
    """Write (not send) a report of the usage up to ``until`` not reported yet, dated in
    ``period``. Called with the team's billing row locked.

    Cumulative: all usage since billing began, rounded down to cents, minus every
    report so far. However the periods move (a plan change may restart one), no second
    of usage is reported twice, and fractions of a cent carry over.
    """
    assert account.usage_since is not None  # noqa: S101 - set by usage_sync
    reported, covered = _reported(team)
    if covered is not None and until <= covered:
        return
    delta = cents(usage_cost(team, account.usage_since, until, now=until)) - reported
    if delta <= 0:
        return
    UsageReport.objects.for_team(team).create(
        team=team,
        # Unique per team and instant; the same report keeps it when it is sent again.
        identifier=f"lattice-{settings.LATTICE_INSTALLATION}-t{team.pk}-{until:%Y%m%dT%H%M%S%f}",
        stripe_customer_id=customer,
        period_start=period[0],
        covers_until=until,
        cents=delta,
    )


def _send(report: UsageReport) -> None:
    # Stripe bills an event in the period its timestamp falls in: one second before the
    # end of what it covers is inside that period even when it covers a period's end.
    timestamp = int(report.covers_until.timestamp()) - 1
    try:
        services._stripe().v1.billing.meter_events.create(
            params={
                "event_name": settings.STRIPE_USAGE_EVENT_NAME,
                "identifier": report.identifier,
                "timestamp": timestamp,
                "payload": {
                    "stripe_customer_id": report.stripe_customer_id,
                    "value": str(report.cents),
                },
            },
            options={"idempotency_key": report.identifier},
        )
    except stripe.InvalidRequestError as exc:
        # Past the idempotency key's 24 hours, Stripe refuses an identifier it already has
        # ("An event already exists with identifier ..."): that report was counted then.
        if "already exists with identifier" not in str(exc.user_message or exc):
            raise
    UsageReport.objects.for_team(report.team_id).filter(pk=report.pk, sent_at=None).update(
        sent_at=timezone.now(),
    )


def usage_sync(team: Team, *, now: datetime | None = None) -> int:
    """Send Stripe the team's usage not sent yet; return the cents sent this time.

    The newest subscription counts even once cancelled, so the usage up to its end is
    still sent; a period that ended since the last sweep is closed first, dated inside it.
    """
    if not billing_enabled() or not settings.STRIPE_USAGE_PRICE:
        return 0
    now = now or timezone.now()
    subscription = Subscription.objects.for_team(team).order_by("-created_at", "-pk").first()
    if subscription is None:
        return 0
    start, end = subscription.current_period_start, subscription.current_period_end
    with transaction.atomic():
        account = account_locked(team)
        customer = account.stripe_customer_id or subscription.stripe_customer_id
        if customer and start is not None and end is not None:
            if account.usage_since is None:
                account.usage_since = start
                account.save(update_fields=["usage_since"])
            last = UsageReport.objects.for_team(team).order_by("-covers_until").first()
            if last is not None and last.covers_until < start <= now:
                period = (last.period_start, start)
                _report(team, account, customer=customer, period=period, until=start)
            until = min(now, end)
            if subscription.status in ENDED_STATUSES and subscription.ended_at is not None:
                until = min(until, subscription.ended_at)
            _report(team, account, customer=customer, period=(start, end), until=until)
    sent = 0
    for report in UsageReport.objects.for_team(team).filter(sent_at=None).order_by("pk"):
        _send(report)
        sent += report.cents
    return sent


def usage_reconcile(team: Team, *, now: datetime | None = None) -> tuple[int, int] | None:
    """Compare what Lattice sent this period with what Stripe's meter holds; record both.

    Returns (sent, held by Stripe), or None when there is nothing to compare. A
    difference is logged, not corrected: Stripe aggregates meter events a few
    minutes late, so a short gap is normal.
    """
    if not billing_enabled() or not settings.STRIPE_USAGE_METER:
        return None
    now = now or timezone.now()
    account = services.account_for(team)
    subscription = current_subscription(team)
    if not account.stripe_customer_id or subscription is None:
        return None
    start = subscription.current_period_start
    if start is None:
        return None
    # Stripe wants minute boundaries.
    begin = start.replace(second=0, microsecond=0)
    finish = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    summaries = services._stripe().v1.billing.meters.event_summaries.list(
        settings.STRIPE_USAGE_METER,
        params={
            "customer": account.stripe_customer_id,
            "start_time": int(begin.timestamp()),
            "end_time": int(finish.timestamp()),
        },
    )
    held = int(sum(float(s["aggregated_value"]) for s in summaries.data))
    # The events Stripe counts in this window: each is dated a second before its end.
    sent = sum(
        report.cents
        for report in UsageReport.objects.for_team(team).filter(
            sent_at__isnull=False, covers_until__gt=begin, covers_until__lte=finish
        )
    )
    BillingAccount.objects.for_team(team).filter(pk=account.pk).update(
        usage_checked_at=now, usage_sent_cents=sent, usage_stripe_cents=held
    )
    if held != sent:
        logger.warning(
            "Stripe's meter holds %s cents for team %s; Lattice sent %s", held, team, sent
        )
    return sent, held


def spend_cap_enforce(team: Team, *, now: datetime | None = None) -> int:
    """Alert at 50, 80 and 100 % of the cap (once each a period); at 100 %, pause the
    team's deployments and, if the team chose so, stop its running notebooks; below it,
    resume the deployments the cap paused. Returns the percentage reached."""
    if not billing_enabled():
        return 0
    now = now or timezone.now()
    if not BillingAccount.objects.for_team(team).filter(spend_cap__isnull=False).exists():
        cap_resume(team)
        return 0
    start, end = current_period(team, now=now)
    # Priced before the lock: starts of this team take it too, and wait for nothing.
    spent = usage_cost(team, start, end, now=now)
    with transaction.atomic():
        account = account_locked(team)
        cap = account.spend_cap
        if cap is None:
            reached, stop, pausing = 0, False, []
        else:
            reached = cap_reached(spent, cap)
            stop = reached >= FULL and account.stop_at_cap
            pausing = paid_live_deployments(team) if reached >= FULL else []
            if account.cap_alert_period != start:
                account.cap_alert_period, account.cap_alert_percent = start, 0
            if reached > account.cap_alert_percent:
                account.cap_alert_percent = reached
                _cap_mail(team, spent, cap, (start, end), reached, stop=stop, pausing=pausing)
            account.save(update_fields=["cap_alert_period", "cap_alert_percent"])
    if stop:
        # Free machines cost nothing: the cap leaves them running.
        _stop_running(
            team, reason="spend_cap", keep=lambda running: running.machine_type.hourly_price == 0
        )
    if cap is None or reached < FULL:
        cap_resume(team)
    else:
        cap_pause(pausing, spent=spent, cap=cap, ends=f"{end:%d %b}")
    return reached


def _cap_mail(
    team: Team,
    spent: Decimal,
    cap: Decimal,
    period: tuple[datetime, datetime],
    reached: int,
    *,
    stop: bool,
    pausing: list[Deployment],
) -> None:
    body = (
        f"{team.name} has used ${spent:.2f} of its ${cap:.2f} spend cap this billing "
        f"period ({period[0]:%d %b} to {period[1]:%d %b})."
    )
    if reached >= FULL:
        body += "\n\nNothing new can start until the cap is raised or the period ends."
    if stop:
        body += " Running notebooks are being stopped."
    if pausing:
        names = ", ".join(d.name for d in pausing)
        body += (
            " Deployments are paused until then (scaled to zero; their endpoints answer "
            f"503): {names}."
        )
    billing_mail(team, subject=f"{team.name} has used {reached}% of its spend cap", body=body)


def plan_enforce(team: Team, *, now: datetime | None = None) -> int:
    """Stop running notebooks the plan no longer allows (a machine type after a downgrade,
    or a session past the plan's session cap), pause the deployments it does not allow and
    resume those it allows again. Returns how many were stopped or paused."""
    plan = current_plan(team, now=now)
    if plan is None:
        return 0
    now = now or timezone.now()
    cap = session_limit(team)
    allowed = {m.pk for m in plan.machine_types.all()}

    def keep(running: NotebookSession | Attempt) -> bool:
        if running.machine_type_id not in allowed:
            return False
        started = running.started_at
        return cap is None or started is None or now - started < cap

    return _stop_running(team, reason="plan_limit", keep=keep) + plan_hold(team, plan)


def _stop_running(
    team: Team, *, reason: str, keep: Callable[[NotebookSession | Attempt], bool]
) -> int:
    """Stop the team's running notebooks and job runs that ``keep`` does not keep."""
    stopped = 0
    sessions = (
        NotebookSession.objects.for_team(team)
        .filter(ended_at__isnull=True)
        .select_related("notebook", "machine_type")
    )
    for session in list(sessions):
        if keep(session):
            continue
        notebook_stop(team=team, actor=None, notebook=session.notebook, reason=reason)
        stopped += 1
    # A job run's attempt holds a machine as a session does. One whose process exited is
    # saving its outputs: it holds nothing billed any more, so it is left to finish.
    attempts = (
        open_attempts(team)
        .exclude(status__in=[Attempt.Status.EXITED, Attempt.Status.STOPPING])
        .filter(run__cancel_requested_at__isnull=True)
        .select_related("run", "machine_type")
    )
    for attempt in list(attempts):
        if keep(attempt):
            continue
        with contextlib.suppress(JobConflictError):  # it ended meanwhile
            run_cancel(attempt.run, actor=None, why=_RUN_STOPPED[reason])
        stopped += 1
    return stopped


_RUN_STOPPED = {
    "spend_cap": "Stopped: the team's spend cap is reached (stop at the cap).",
    "plan_limit": "Stopped: the team's plan does not allow it (its machine type or session cap).",
}
