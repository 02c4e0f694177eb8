"""The past-due banner on every team page: which team, until when its plan holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

from apps.billing.entitlements import (
    GRACE_STATUSES,
    billing_enabled,
    current_subscription,
    grace_ends,
)
from apps.core.tenancy import team_scope

if TYPE_CHECKING:
    from django.http import HttpRequest


def billing_notice(request: HttpRequest) -> dict[str, Any]:
    team = getattr(request, "team", None)
    if team is None or not billing_enabled():
        return {}
    with team_scope(team):
        subscription = current_subscription(team)
    if subscription is None or subscription.status not in GRACE_STATUSES:
        return {}
    ends = grace_ends(subscription)
    return {
        "billing_notice": {
            "plan": subscription.plan.name if subscription.plan else "paid",
            "grace_ends": ends,
            "expired": ends is not None and ends <= timezone.now(),
        },
    }
