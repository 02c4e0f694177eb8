"""Billing on: the Stripe test double, the settings that point Lattice at it, and a helper
that subscribes a team the way a person does (Checkout, then Stripe's webhooks)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client, TestCase

from apps.billing.services import checkout_start
from apps.devtools.offline_billing import settings_for, start_double

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.devtools.stripe_double import StripeDouble

WEBHOOK_PATH = "/billing/stripe/webhook/"


def post_webhook(payload: bytes, signature: str) -> int:
    """Deliver one event to Lattice as Stripe does; its queued work runs before returning."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = Client().post(
            WEBHOOK_PATH,
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )
    return response.status_code


@pytest.fixture
def billing_plans(catalogue: dict[str, Any]) -> None:
    """The seeded plans. A data migration loads them, but tests that commit
    (transaction=True) flush every table afterwards, so load them again."""
    from apps.billing.models import MachinePrice, Plan
    from apps.billing.plans import load_plans
    from apps.machines.models import MachineType

    load_plans(Plan, MachineType, MachinePrice)


@pytest.fixture
def priced(catalogue: dict[str, Any]) -> Any:
    """cpu-large at $36 an hour (a cent a second) since 8 February 2026, a month before
    the tests' fixed instants (T0, 10 March 2026)."""
    from apps.billing.services import machine_price_set

    machine = catalogue["cpu-large"]
    machine_price_set(
        machine_type=machine,
        hourly_price=Decimal("36.00"),
        effective_from=datetime(2026, 2, 8, 9, 0, 0, tzinfo=UTC),
    )
    return machine


@pytest.fixture
def stripe_double(settings: Any, billing_plans: None) -> Iterator[StripeDouble]:
    statuses: list[int] = []

    def deliver(payload: bytes, signature: str) -> None:
        statuses.append(post_webhook(payload, signature))

    double = start_double(deliver=deliver)
    double.webhook_statuses = statuses  # type: ignore[attr-defined]
    for name, value in settings_for(double).items():
        setattr(settings, name, value)
    yield double
    double.stop()


def subscribe(double: StripeDouble, *, team: Any, actor: Any, plan: str) -> str:
    """Check out ``plan`` for ``team`` and pay; returns the Stripe subscription id."""
    from apps.billing.models import Plan

    url = checkout_start(
        team=team,
        actor=actor,
        plan=Plan.objects.get(slug=plan),
        success_url="http://testserver/done?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/cancelled",
    )
    subscription = double.complete_checkout(url.rstrip("/").rsplit("/", 1)[-1])
    assert subscription is not None
    return subscription


def plan_slug(team: Any) -> str | None:
    from apps.billing.entitlements import current_plan

    plan = current_plan(team)
    return plan.slug if plan else None
