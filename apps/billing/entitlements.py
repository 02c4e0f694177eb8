"""What a team's plan allows, checked where the work is done (services), not in the UI.

With ``LATTICE_BILLING`` off every check passes: a private Lattice has no plans.
With it on, a team's plan is its subscription's while the subscription is active
or trialing, or past due within the grace period; otherwise the default (Free)
plan. Nothing stores "downgraded": the plan is derived each time it is asked for.

A refusal is a ``PlanLimitError``: HTTP 402 in the API, with a code from
``LIMIT_CODES`` and the billing page's address to upgrade from.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import BillingAccount, Plan, Subscription
from apps.billing.usage import usage_cost
from apps.core.errors import PaymentRequiredError
from apps.deployments.models import Deployment
from apps.jobs.selectors import open_attempts
from apps.notebooks.selectors import open_session_count
from apps.teams.selectors import member_count

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from django.http import HttpRequest

    from apps.machines.models import MachineType
    from apps.teams.models import Team

LIVE_STATUSES = frozenset({Subscription.Status.ACTIVE, Subscription.Status.TRIALING})
GRACE_STATUSES = frozenset({Subscription.Status.PAST_DUE, Subscription.Status.UNPAID})
ENDED_STATUSES = frozenset(
    {Subscription.Status.CANCELED, Subscription.Status.INCOMPLETE_EXPIRED},
)

LIMIT_CODES = {
    "plan_machine_type": "The plan does not include this machine type.",
    "plan_concurrency": "The plan's number of notebooks running at once is reached.",
    "plan_storage": "The upload would pass the plan's storage quota.",
    "spend_cap": "The team's spend cap for this billing period is reached.",
    "plan_private_datasets": "The plan keeps datasets public.",
    "plan_deployments": "The plan's number of deployments is reached.",
    "plan_replicas": "The plan runs fewer replicas of one deployment than asked for.",
}


class PlanLimitError(PaymentRequiredError):
    """The team's plan (or spend cap) does not allow this (402). The message says what to do;
    ``upgrade_url`` is the team's billing page."""

    # The form field a limit is about, where there is one (pages show the refusal there).
    FIELDS: ClassVar[dict[str, str]] = {"plan_private_datasets": "visibility"}

    def __init__(self, message: str, *, code: str, team: Team) -> None:
        assert code in LIMIT_CODES  # noqa: S101 - a new code must be documented above
        super().__init__(
            message,
            code=code,
            field=self.FIELDS.get(code),
            upgrade_url=billing_url(team.slug),
        )


def billing_url(team_slug: str, request: HttpRequest | None = None, **query: str) -> str:
    """The team's billing page (where to upgrade), absolute when ``request`` is given. Braces
    stay as they are: Stripe fills in ``{CHECKOUT_SESSION_ID}`` itself."""
    url = reverse("billing:overview", kwargs={"team_slug": team_slug})
    if request is not None:
        # Only the path goes through build_absolute_uri: it percent-encodes braces, and
        # Stripe replaces the template variable only where it reads it literally.
        url = request.build_absolute_uri(url)
    if query:
        url += "?" + urlencode(query, safe="{}")
    return url


def checkout_return_urls(team_slug: str, request: HttpRequest) -> tuple[str, str]:
    """Where Stripe Checkout sends the person back to, absolute: after paying (Stripe fills
    in the session id), and after cancelling."""
    return (
        billing_url(team_slug, request, checkout="success", session_id="{CHECKOUT_SESSION_ID}"),
        billing_url(team_slug, request, checkout="cancelled"),
    )


def billing_enabled() -> bool:
    return bool(settings.LATTICE_BILLING)


def default_plan() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def current_subscription(team: Team | int) -> Subscription | None:
    """The team's newest subscription that has not ended, if any."""
    return (
        Subscription.objects.for_team(team)
        .exclude(status__in=ENDED_STATUSES)
        .select_related("plan")
        .first()
    )


def grace_ends(subscription: Subscription) -> datetime | None:
    if subscription.past_due_since is None:
        return None
    return subscription.past_due_since + timedelta(days=settings.LATTICE_BILLING_GRACE_DAYS)


def plan_of(subscription: Subscription | None, *, now: datetime | None = None) -> Plan | None:
    """The plan a subscription gives, or the default plan when it gives none (any more)."""
    now = now or timezone.now()
    if subscription is not None and subscription.plan is not None:
        if subscription.status in LIVE_STATUSES:
            return subscription.plan
        ends = grace_ends(subscription)
        if subscription.status in GRACE_STATUSES and ends is not None and now < ends:
            return subscription.plan
    return default_plan()


def current_plan(team: Team | int, *, now: datetime | None = None) -> Plan | None:
    """The plan in force for ``team``; None when billing is off or no plan is defined."""
    if not billing_enabled():
        return None
    return plan_of(current_subscription(team), now=now)


def current_subscriptions(team_ids: Iterable[int]) -> dict[int, Subscription]:
    """Each team's newest subscription that has not ended, by team id: one query for all of
    ``team_ids`` (teams the caller has already checked the person may see)."""
    subscriptions: dict[int, Subscription] = {}
    rows = (
        Subscription.objects.unscoped()
        .filter(team_id__in=list(team_ids))
        .exclude(status__in=ENDED_STATUSES)
        .select_related("plan")
    )
    for row in rows:  # newest first (Meta.ordering): the first of each team is its own
        subscriptions.setdefault(row.team_id, row)
    return subscriptions


def current_period(team: Team, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The team's billing period: its subscription's (past due included), else the
    calendar month (UTC)."""
    return period_of(current_subscription(team), now=now)


def period_of(
    subscription: Subscription | None, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The billing period ``subscription`` gives (see current_period)."""
    now = now or timezone.now()
    if (
        subscription is not None
        and subscription.status in LIVE_STATUSES | GRACE_STATUSES
        and subscription.current_period_start
        and subscription.current_period_end
        and subscription.current_period_start <= now < subscription.current_period_end
    ):
        return subscription.current_period_start, subscription.current_period_end
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def account_locked(team: Team) -> BillingAccount:
    """The team's billing row, made on first use, locked until the transaction ends.

    Starts lock it so two starts of one team cannot both take the last free slot.
    """
    return BillingAccount.objects.for_team(team).select_for_update().get_or_create(team=team)[0]


def plans_with(machine_type: MachineType) -> list[Plan]:
    return list(Plan.objects.filter(active=True, machine_types=machine_type))


def machine_notes(team: Team) -> dict[int, str]:
    """For the machine picker: "needs Pro" beside each machine type the plan lacks."""
    plan = current_plan(team)
    if plan is None:
        return {}
    allowed = set(plan.machine_types.values_list("pk", flat=True))
    notes: dict[int, str] = {}
    for other in Plan.objects.filter(active=True).prefetch_related("machine_types"):
        for machine in other.machine_types.all():
            if machine.pk not in allowed:
                notes.setdefault(machine.pk, f"needs {other.name}")
    return notes


def allows_machine(plan: Plan | None, machine_type: MachineType) -> bool:
    return plan is None or plan.machine_types.filter(pk=machine_type.pk).exists()


def check_start(team: Team, machine_type: MachineType) -> None:
    """Refuse a start the plan or the spend cap does not allow. Call it inside the start's
    transaction, before its session is made: it counts the team's open sessions under a
    lock, so two starts cannot both take the last slot."""

    def within(plan: Plan) -> None:
        limit = plan.max_running_notebooks
        # A job run's attempt holds a machine as a session does: the plan's limit is one
        # count of both.
        running = open_session_count(team) + open_attempts(team).count()
        if limit is not None and running >= limit:
            raise PlanLimitError(
                f"The {plan.name} plan runs {limit} notebook{'s' if limit != 1 else ''} at "
                "once (job runs included), and that many are running. Stop one, or upgrade "
                "for more.",
                code="plan_concurrency",
                team=team,
            )

    _check_run(team, machine_type, within)


def check_replicas(team: Team, machine_type: MachineType, replicas: int) -> None:
    """Refuse a deployment revision (or a scale-up) of ``replicas`` replicas of
    ``machine_type`` that the plan or the spend cap does not allow (registered as
    apps.deployments.entitlements.check_replicas)."""

    def within(plan: Plan) -> None:
        limit = plan.max_replicas
        if limit is None or replicas <= limit:
            return
        upgrades = [
            p.name
            for p in Plan.objects.filter(active=True).exclude(pk=plan.pk)
            if p.max_replicas is None or p.max_replicas >= replicas
        ]
        hint = f" Upgrade to {' or '.join(upgrades)} for more." if upgrades else ""
        raise PlanLimitError(
            f"The {plan.name} plan runs at most {limit} replica{'s' if limit != 1 else ''} "
            f"of a deployment; this asks for {replicas}. Lower the maximum replicas.{hint}",
            code="plan_replicas",
            team=team,
        )

    _check_run(team, machine_type, within)


def _check_run(team: Team, machine_type: MachineType, within: Callable[[Plan], None]) -> None:
    """Refuse running ``machine_type`` (a notebook or a deployment's replicas): the plan's
    machine types, then ``within`` (the plan's count for that kind), then the spend cap."""
    found = _plan_locked(team)
    if found is None:
        return
    account, plan = found
    _check_machine(team, plan, machine_type)
    within(plan)
    _check_spend_cap(team, account, machine_type)


def check_deployment(team: Team) -> None:
    """Refuse one more deployment beyond the plan's number (registered as
    apps.deployments.entitlements.check_deployment). Counted under the team's billing
    lock, so two creates cannot both take the last one."""
    found = _plan_locked(team)
    if found is None or found[1].max_deployments is None:
        return
    plan = found[1]
    limit = plan.max_deployments
    if Deployment.objects.for_team(team).filter(deleted_at__isnull=True).count() >= limit:
        raise PlanLimitError(
            f"The {plan.name} plan has {limit} deployment{'s' if limit != 1 else ''}, and "
            "this team has that many. Delete one, or upgrade for more.",
            code="plan_deployments",
            team=team,
        )


def _plan_locked(team: Team) -> tuple[BillingAccount, Plan] | None:
    """The team's billing row, locked until the transaction ends (so two starts cannot
    both take the last slot), and its plan; None when no plan limits it."""
    if not billing_enabled():
        return None
    account = account_locked(team)
    plan = current_plan(team)
    return None if plan is None else (account, plan)


def _check_machine(team: Team, plan: Plan, machine_type: MachineType) -> None:
    if not allows_machine(plan, machine_type):
        upgrades = [p.name for p in plans_with(machine_type)]
        hint = f" Upgrade to {' or '.join(upgrades)} to use it." if upgrades else ""
        raise PlanLimitError(
            f"{machine_type.name} is not included in the {plan.name} plan.{hint}",
            code="plan_machine_type",
            team=team,
        )


def _check_spend_cap(team: Team, account: BillingAccount, machine_type: MachineType) -> None:
    # A free machine costs nothing, so no cap stops it.
    if account.spend_cap is not None and machine_type.hourly_price > 0:
        start, end = current_period(team)
        spent = usage_cost(team, start, end)
        if spent >= account.spend_cap:
            raise PlanLimitError(
                f"This team has used ${spent:.2f} of its ${account.spend_cap:.2f} spend cap "
                "this billing period, so nothing new can start. An owner or admin can raise "
                "the cap on the billing page.",
                code="spend_cap",
                team=team,
            )


def check_storage(team: Team, *, used_bytes: int, adding_bytes: int) -> None:
    """Refuse, up front, a write that would take the team past its plan's storage quota."""
    plan = current_plan(team)
    if plan is None or plan.storage_gib is None:
        return
    quota = plan.storage_gib * 1024**3
    if used_bytes + adding_bytes > quota:
        room = max(quota - used_bytes, 0)
        raise PlanLimitError(
            f"The {plan.name} plan holds {plan.storage_gib} GiB and this team has "
            f"{_gib(room)} GiB free; this needs {_gib(adding_bytes)} GiB. Delete something "
            "or upgrade for more room.",
            code="plan_storage",
            team=team,
        )


def check_private_dataset(team: Team) -> None:
    """Refuse a private dataset on a plan whose datasets are public (Free)."""
    plan = current_plan(team)
    if plan is not None and not plan.private_datasets:
        upgrades = [p.name for p in Plan.objects.filter(active=True, private_datasets=True)]
        hint = f" Upgrade to {' or '.join(upgrades)} for private ones." if upgrades else ""
        raise PlanLimitError(
            f"On the {plan.name} plan datasets are public.{hint}",
            code="plan_private_datasets",
            team=team,
        )


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f}"


def seats_free(team: Team) -> int | None:
    """Seats the plan has beyond the members, or None for no limit (registered as
    apps.teams.seats.seats_free).

    Invitations count pending ones against this when they are sent (apps.teams.invitations).
    """
    plan = current_plan(team)
    if plan is None or plan.seats is None:
        return None
    return max(plan.seats - member_count(team), 0)


def idle_limit(team: Team | int) -> int | None:
    """The longest idle shutdown the plan allows, in minutes (None: any, including never)."""
    plan = current_plan(team)
    return None if plan is None else plan.max_idle_minutes


def session_limit(team: Team | int) -> timedelta | None:
    """The plan's session cap: the longest a notebook session or a job run may run."""
    plan = current_plan(team)
    if plan is None or plan.max_session_hours is None:
        return None
    return timedelta(hours=plan.max_session_hours)
