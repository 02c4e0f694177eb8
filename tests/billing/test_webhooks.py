"""Stripe's webhooks: verified on the raw body, stored once by event id, applied by
refetching, so repeats and out-of-order delivery end in Stripe's current state."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.billing.entitlements import PlanLimitError
from apps.billing.events import events_retry
from apps.billing.models import Plan, StripeEvent, Subscription
from apps.billing.services import checkout_start
from apps.core.tenancy import team_scope
from apps.notebooks.services import notebook_create, notebook_start
from tests.billing_fixtures import plan_slug, post_webhook, subscribe


def stripe_client(settings):
    import stripe

    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )


pytestmark = pytest.mark.django_db


def _deliver(double, event, *, times: int = 1) -> list[int]:
    payload = json.dumps(event).encode()
    return [post_webhook(payload, double.sign(payload)) for _ in range(times)]


def _subscription_fetches(double, subscription_id: str) -> int:
    return sum(
        1
        for method, path, _ in double.requests
        if method == "GET" and path == f"/v1/subscriptions/{subscription_id}"
    )


def test_checkout_webhooks_put_the_team_on_its_plan(stripe_double, acme, alice):
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")

    assert stripe_double.webhook_statuses == [200, 200, 200]
    assert [e["type"] for e in stripe_double.events] == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
    ]
    with team_scope(acme):
        row = Subscription.objects.get(stripe_id=subscription_id)
        assert row.status == "active"
        assert row.plan is not None
        assert row.plan.slug == "pro"
        assert row.current_period_end > timezone.now()
        assert plan_slug(acme) == "pro"
    assert StripeEvent.objects.filter(outcome="processed").count() == 3


def test_the_same_event_five_times_is_processed_once(stripe_double, acme, alice):
    stripe_double.hold_webhooks = True
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    created = next(e for e in stripe_double.events if e["type"] == "customer.subscription.created")

    assert _deliver(stripe_double, created, times=5) == [200] * 5

    assert StripeEvent.objects.filter(stripe_id=created["id"]).count() == 1
    assert StripeEvent.objects.get(stripe_id=created["id"]).attempts == 1
    assert _subscription_fetches(stripe_double, subscription_id) == 1
    with team_scope(acme):
        assert Subscription.objects.filter(stripe_id=subscription_id).count() == 1


def test_updated_before_created_ends_in_stripes_current_state(stripe_double, acme, alice):
    stripe_double.hold_webhooks = True
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    stripe_double.change_price(subscription_id, "price_lattice_growth_monthly")
    created = next(e for e in stripe_double.events if e["type"] == "customer.subscription.created")
    updated = next(e for e in stripe_double.events if e["type"] == "customer.subscription.updated")
    # The created event still carries the Pro price: applying its payload would be wrong.
    assert created["data"]["object"]["items"]["data"][0]["price"]["id"] == (
        "price_lattice_pro_monthly"
    )

    assert _deliver(stripe_double, updated) == [200]
    assert _deliver(stripe_double, created) == [200]

    with team_scope(acme):
        row = Subscription.objects.get(stripe_id=subscription_id)
        assert row.plan.slug == "growth"
        assert plan_slug(acme) == "growth"


def test_a_forged_signature_gets_400_and_changes_nothing(stripe_double, acme, alice):
    stripe_double.hold_webhooks = True
    subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    event = stripe_double.events[0]
    payload = json.dumps(event).encode()
    forged = stripe_double.sign(payload).replace("v1=", "v1=00")
    tampered = payload.replace(b'"active"', b'"canceled"')

    assert post_webhook(payload, forged) == 400
    assert post_webhook(tampered, stripe_double.sign(payload)) == 400
    assert post_webhook(payload, "") == 400

    assert StripeEvent.objects.count() == 0
    with team_scope(acme):
        assert Subscription.objects.count() == 0
        assert plan_slug(acme) == "free"


def test_a_stale_signature_gets_400(stripe_double, acme, alice):
    stripe_double.hold_webhooks = True
    subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    payload = json.dumps(stripe_double.events[0]).encode()
    ten_minutes_ago = int(time.time()) - 600

    assert post_webhook(payload, stripe_double.sign(payload, timestamp=ten_minutes_ago)) == 400
    assert StripeEvent.objects.count() == 0


def test_an_unknown_event_type_gets_200_and_is_ignored(stripe_double):
    event = stripe_double.make_event(
        "customer.tax_id.created", {"id": "txi_123", "object": "tax_id"}
    )
    requests_before = len(stripe_double.requests)

    assert _deliver(stripe_double, event) == [200]

    row = StripeEvent.objects.get(stripe_id=event["id"])
    assert row.outcome == "ignored"
    assert len(stripe_double.requests) == requests_before  # nothing was fetched


def test_a_webhook_without_a_configured_secret_is_refused(stripe_double, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    event = stripe_double.make_event("invoice.paid", {"id": "in_1", "object": "invoice"})
    payload = json.dumps(event).encode()

    assert post_webhook(payload, stripe_double.sign(payload)) == 400
    assert StripeEvent.objects.count() == 0


def test_payment_failed_then_grace_then_free(stripe_double, acme, alice, client, catalogue):
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    notebook = notebook_create(
        team=acme, actor=alice, name="Paid", template="pytorch", machine_type=catalogue["p5000"]
    )
    mail.outbox.clear()

    stripe_double.fail_payment(subscription_id)

    with team_scope(acme):
        row = Subscription.objects.get(stripe_id=subscription_id)
        assert row.status == "past_due"
        assert row.past_due_since is not None
        assert plan_slug(acme) == "pro"  # the grace period
    assert [m.subject for m in mail.outbox] == ["[Lattice] Payment failed for Acme"]
    assert mail.outbox[0].to == ["alice@example.com"]
    client.force_login(alice)
    page = client.get(f"/t/{acme.slug}/notebooks/").content.decode()
    assert 'id="past-due-banner"' in page
    assert "keeps its Pro plan until" in page

    # Eight days on, the grace period is over: Free, and the P5000 notebook cannot start.
    with team_scope(acme):
        Subscription.objects.filter(pk=row.pk).update(
            past_due_since=timezone.now() - timedelta(days=8)
        )
        assert plan_slug(acme) == "free"
        with pytest.raises(PlanLimitError) as refused:
            notebook_start(team=acme, actor=alice, notebook=notebook)
    assert refused.value.code == "plan_machine_type"
    response = client.post(f"/api/v1/teams/{acme.slug}/notebooks/{notebook.pk}/start/")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "plan_machine_type"
    assert error["upgrade_url"] == f"http://testserver/t/{acme.slug}/billing/"
    assert "not included in the Free plan" in error["message"]
    page = client.get(f"/t/{acme.slug}/notebooks/").content.decode()
    assert "The grace period has ended" in page


def test_paying_the_invoice_ends_the_grace_period(stripe_double, acme, alice):
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    invoice = stripe_double.fail_payment(subscription_id)

    stripe_double.pay_invoice(invoice)

    with team_scope(acme):
        row = Subscription.objects.get(stripe_id=subscription_id)
        assert row.status == "active"
        assert row.past_due_since is None


def test_cancelling_in_the_portal_returns_the_team_to_free(stripe_double, acme, alice):
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")

    stripe_double.cancel_subscription(subscription_id)

    with team_scope(acme):
        assert Subscription.objects.get(stripe_id=subscription_id).status == "canceled"
        assert plan_slug(acme) == "free"


def test_an_event_stripe_cannot_answer_for_is_retried_later(stripe_double, acme, alice, settings):
    stripe_double.hold_webhooks = True
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    created = next(e for e in stripe_double.events if e["type"] == "customer.subscription.created")
    stripe_double.stop()  # Stripe unreachable

    assert _deliver(stripe_double, created) == [200]
    row = StripeEvent.objects.get(stripe_id=created["id"])
    assert row.outcome == "failed"
    assert "APIConnectionError" in row.error

    stripe_double.start()
    settings.STRIPE_API_BASE = stripe_double.url
    StripeEvent.objects.filter(pk=row.pk).update(received_at=timezone.now() - timedelta(minutes=5))
    assert events_retry() == 1
    row.refresh_from_db()
    assert row.outcome == "processed"
    with team_scope(acme):
        assert Subscription.objects.get(stripe_id=subscription_id).status == "active"


def test_a_subscription_of_a_customer_we_do_not_know_is_not_attached(stripe_double, acme, settings):
    # Another installation's customer, whose subscription's metadata names a team id of ours.
    stripe_double.hold_webhooks = True
    stripe = stripe_client(settings)
    stranger = stripe.v1.customers.create(params={"email": "x@elsewhere.example"})
    session = stripe.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": stranger.id,
            "line_items": [{"price": "price_lattice_growth_monthly", "quantity": 1}],
            "success_url": "http://elsewhere.example/",
            "cancel_url": "http://elsewhere.example/",
            "subscription_data": {"metadata": {"lattice_team": str(acme.pk)}},
        }
    )
    stripe_double.complete_checkout(session.id)

    statuses = [_deliver(stripe_double, event)[0] for event in stripe_double.events]

    assert statuses == [200, 200, 200]
    with team_scope(acme):
        assert Subscription.objects.count() == 0
        assert plan_slug(acme) == "free"


def test_a_failed_event_delivered_again_is_applied(stripe_double, acme, alice, settings):
    stripe_double.hold_webhooks = True
    subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
    created = next(e for e in stripe_double.events if e["type"] == "customer.subscription.created")
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # Stripe unreachable for a moment
    assert _deliver(stripe_double, created) == [200]
    assert StripeEvent.objects.get(stripe_id=created["id"]).outcome == "failed"
    settings.STRIPE_API_BASE = stripe_double.url

    assert _deliver(stripe_double, created) == [200]  # Stripe's own retry

    assert StripeEvent.objects.get(stripe_id=created["id"]).outcome == "processed"
    with team_scope(acme):
        assert Subscription.objects.get(stripe_id=subscription_id).status == "active"


def test_the_return_page_ignores_another_teams_checkout(
    stripe_double, acme, alice, globex, charlie, client
):
    stripe_double.hold_webhooks = True
    url = checkout_start(
        team=globex,
        actor=charlie,
        plan=Plan.objects.get(slug="growth"),
        success_url="http://testserver/x",
        cancel_url="http://testserver/y",
    )
    session_id = url.rsplit("/", 1)[-1]
    stripe_double.complete_checkout(session_id)
    client.force_login(alice)

    page = client.get(f"/t/{acme.slug}/billing/?checkout=success&session_id={session_id}")

    assert page.status_code == 200
    with team_scope(acme):
        assert plan_slug(acme) == "free"
    with team_scope(globex):
        assert Subscription.objects.count() == 0  # the webhook applies it, not this page


def test_the_return_page_without_stripe_is_not_an_error(stripe_double, acme, alice, client):
    stripe_double.stop()
    client.force_login(alice)

    page = client.get(f"/t/{acme.slug}/billing/?checkout=success&session_id=cs_test_123")

    assert page.status_code == 200
    assert "Your plan changes as soon as Stripe confirms it" in page.content.decode()
