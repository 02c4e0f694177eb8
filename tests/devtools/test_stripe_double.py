"""The local Stripe double, driven through the real stripe-python client.

What Lattice's billing tests lean on: Stripe's wire protocol (keys, form encoding,
errors, idempotency), the checkout → subscription → invoice story with its hosted
pages, signed webhooks, the portal, and meter events. No database is needed.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import stripe

from apps.devtools.stripe_double import API_VERSION, StripeDouble
from apps.devtools.stripe_double.forms import parse

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "whsec_test"
RETURN_URL = "http://lattice.test/billing"


class Inbox:
    """A ``deliver`` callable that keeps what it was sent and checks every signature."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []

    def __call__(self, payload: bytes, signature: str) -> None:
        self.received.append((payload, signature))

    def events(self) -> list[stripe.Event]:
        return [stripe.Webhook.construct_event(p, s, SECRET) for p, s in self.received]

    def types(self) -> list[str]:
        return [event.type for event in self.events()]


def add_catalogue(double: StripeDouble) -> None:
    double.add_product("prod_team", "Team")
    double.add_product("prod_pro", "Pro")
    double.add_product("prod_compute", "Compute")
    double.add_meter("mtr_compute", event_name="lattice_compute")
    double.add_price("price_team", product="prod_team", unit_amount=2000, lookup_key="team_monthly")
    double.add_price("price_pro", product="prod_pro", unit_amount=5000, nickname="Pro monthly")
    double.add_price(
        "price_compute",
        product="prod_compute",
        unit_amount=1,
        usage_type="metered",
        meter="mtr_compute",
    )


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def double(inbox: Inbox) -> Iterator[StripeDouble]:
    with StripeDouble(webhook_secret=SECRET, deliver=inbox) as started:
        add_catalogue(started)
        yield started


def client_for(double: StripeDouble, key: str = "sk_test_x") -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": double.url}, max_network_retries=0)


@pytest.fixture
def client(double: StripeDouble) -> stripe.StripeClient:
    return client_for(double)


def open_checkout(client: stripe.StripeClient) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer_email": "alice@example.com",
            "line_items": [{"price": "price_team", "quantity": 1}, {"price": "price_compute"}],
            "success_url": "http://lattice.test/billing/done?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://lattice.test/billing/cancelled",
            "client_reference_id": "7",
            "metadata": {"lattice_team": "7"},
            "subscription_data": {"metadata": {"lattice_team": "7"}},
        }
    )


def subscribe(double: StripeDouble, client: stripe.StripeClient) -> str:
    """alice's team subscribes to Team (plus metered compute); returns the subscription id."""
    subscription_id = double.complete_checkout(open_checkout(client).id)
    assert subscription_id is not None
    return subscription_id


# The wire protocol ---------------------------------------------------------------------


def test_it_creates_and_retrieves_a_customer(double: StripeDouble, client: stripe.StripeClient):
    made = client.v1.customers.create(
        params={"email": "alice@example.com", "name": "Alice", "metadata": {"team": "7"}}
    )

    fetched = client.v1.customers.retrieve(made.id)
    assert fetched.id.startswith("cus_")
    assert (fetched.email, fetched.name, fetched["metadata"]) == (
        "alice@example.com",
        "Alice",
        {"team": "7"},
    )
    # Stripe's example object underneath, cleaned to read like a fresh test-mode customer.
    assert fetched.livemode is False
    assert fetched.discount is None
    assert fetched["invoice_settings"]["default_payment_method"] is None
    assert abs(fetched.created - time.time()) < 60
    assert double.requests[0] == (
        "POST",
        "/v1/customers",
        {"email": "alice@example.com", "name": "Alice", "metadata": {"team": "7"}},
    )
    found = client.v1.customers.list(params={"email": "alice@example.com"})
    assert [c.id for c in found.data] == [made.id]


def test_it_decodes_stripes_nested_form_encoding():
    assert parse(
        "metadata[0]=zero&line_items[0][price]=p1&line_items[1][price]=p2"
        "&line_items[1][quantity]=3&expand[]=a&expand[]=b&lookup_keys[0]=team"
    ) == {
        "metadata": {"0": "zero"},
        "line_items": [{"price": "p1"}, {"price": "p2", "quantity": "3"}],
        "expand": ["a", "b"],
        "lookup_keys": ["team"],
    }


def test_it_refuses_a_request_without_the_right_key(double: StripeDouble):
    answer = httpx.get(f"{double.url}/v1/customers")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "invalid_request_error"

    guarded = StripeDouble(api_key="sk_test_right").start()
    try:
        with pytest.raises(stripe.AuthenticationError):
            client_for(guarded, "sk_test_wrong").v1.customers.list()
        assert client_for(guarded, "sk_test_right").v1.customers.list().data == []
    finally:
        guarded.stop()


def test_a_missing_object_is_resource_missing(client: stripe.StripeClient):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_nope")
    assert (missing.value.http_status, missing.value.code, missing.value.param) == (
        404,
        "resource_missing",
        "id",
    )
    assert missing.value.user_message == "No such subscription: 'sub_nope'"

    with pytest.raises(stripe.InvalidRequestError) as bad_price:
        client.v1.checkout.sessions.create(
            params={"mode": "subscription", "line_items": [{"price": "price_nope", "quantity": 1}]}
        )
    assert (bad_price.value.http_status, bad_price.value.code, bad_price.value.param) == (
        400,
        "resource_missing",
        "line_items[0][price]",
    )


def test_an_idempotent_retry_replays_and_changes_nothing(
    double: StripeDouble, client: stripe.StripeClient
):
    first = client.v1.customers.create(
        params={"email": "alice@example.com"}, options={"idempotency_key": "signup-7"}
    )
    again = client.v1.customers.create(
        params={"email": "alice@example.com"}, options={"idempotency_key": "signup-7"}
    )

    assert again.id == first.id
    assert list(double.customers) == [first.id]
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(
            params={"email": "bob@example.com"}, options={"idempotency_key": "signup-7"}
        )
    assert list(double.customers) == [first.id]


# Checkout, subscriptions and invoices -----------------------------------------------------


def test_checkout_through_the_hosted_page_makes_an_active_subscription(
    double: StripeDouble, client: stripe.StripeClient, inbox: Inbox
):
    session = open_checkout(client)
    assert session.status == "open"
    assert session.url == f"{double.url}/checkout/{session.id}"

    page = httpx.get(session.url)
    assert page.status_code == 200
    assert "Team" in page.text
    assert "$20.00 / month" in page.text
    assert "id='pay'>Subscribe</button>" in page.text
    paid = httpx.post(f"{session.url}/pay", follow_redirects=False)

    assert paid.status_code == 303
    assert paid.headers["location"] == f"http://lattice.test/billing/done?session={session.id}"
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    subscription = client.v1.subscriptions.retrieve(done["subscription"])
    assert subscription.status == "active"
    assert subscription.customer == done.customer
    assert dict(subscription.metadata) == {"lattice_team": "7"}
    team, compute = subscription["items"]["data"]
    assert (team.price.id, team.quantity) == ("price_team", 1)
    assert team.current_period_end - team.current_period_start == 30 * 86_400
    assert compute.price.id == "price_compute"
    assert "quantity" not in compute  # Stripe leaves it off metered items
    assert subscription.cancel_at is None
    assert subscription.ended_at is None
    customer = client.v1.customers.retrieve(done["customer"])
    assert customer.email == "alice@example.com"
    invoice = client.v1.invoices.retrieve(subscription["latest_invoice"])
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == (
        "paid",
        2000,
        "subscription_create",
    )
    assert invoice["parent"]["type"] == "subscription_details"
    assert invoice["parent"]["subscription_details"]["subscription"] == subscription.id

    events = inbox.events()
    assert [e.type for e in events] == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
    ]
    assert [e["data"]["object"]["id"] for e in events] == [subscription.id, invoice.id, session.id]
    assert [e["id"] for e in double.events] == [e.id for e in events]
    assert events[0].api_version == API_VERSION == stripe.api_version
    assert double.deliveries == [(e.id, 200) for e in events]

    again = httpx.post(f"{session.url}/pay", follow_redirects=False)
    assert again.status_code == 303
    assert len(double.subscriptions) == 1
    assert len(inbox.received) == 3


def test_cancelling_on_the_hosted_page_expires_the_session(
    double: StripeDouble, client: stripe.StripeClient, inbox: Inbox
):
    session = open_checkout(client)

    answer = httpx.post(f"{session.url}/cancel", follow_redirects=False)

    assert answer.status_code == 303
    assert answer.headers["location"] == "http://lattice.test/billing/cancelled"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert double.subscriptions == {}
    assert inbox.types() == ["checkout.session.expired"]
    assert httpx.post(f"{session.url}/pay").status_code == 400


def test_a_failed_renewal_goes_past_due_until_the_invoice_is_paid(
    double: StripeDouble, client: stripe.StripeClient, inbox: Inbox
):
    subscription_id = subscribe(double, client)
    first_invoice = double.subscriptions[subscription_id]["latest_invoice"]
    inbox.received.clear()

    invoice_id = double.fail_payment(subscription_id)

    invoice = client.v1.invoices.retrieve(invoice_id)
    assert (invoice.status, invoice.attempt_count, invoice.amount_remaining) == ("open", 1, 2000)
    assert client.v1.subscriptions.retrieve(subscription_id).status == "past_due"
    failed, updated = inbox.events()
    assert (failed.type, failed["data"]["object"]["id"]) == ("invoice.payment_failed", invoice_id)
    assert updated.type == "customer.subscription.updated"
    assert updated["data"]["previous_attributes"]["status"] == "active"
    listed = client.v1.invoices.list(params={"subscription": subscription_id})
    assert [i.id for i in listed.data] == [invoice_id, first_invoice]
    inbox.received.clear()

    double.pay_invoice(invoice_id)

    assert client.v1.invoices.retrieve(invoice_id).status == "paid"
    assert client.v1.subscriptions.retrieve(subscription_id).status == "active"
    assert inbox.types() == ["invoice.paid", "customer.subscription.updated"]


def test_subscription_updates_and_cancellation_through_the_api(
    double: StripeDouble, client: stripe.StripeClient, inbox: Inbox
):
    subscription_id = subscribe(double, client)
    item_id = double.subscriptions[subscription_id]["items"]["data"][0]["id"]
    inbox.received.clear()

    changed = client.v1.subscriptions.update(
        subscription_id,
        params={"items": [{"id": item_id, "price": "price_pro"}], "cancel_at_period_end": True},
    )

    assert changed["items"]["data"][0].price.id == "price_pro"
    assert changed["items"]["data"][0].id == item_id
    assert changed.cancel_at_period_end is True
    (updated,) = inbox.events()
    assert updated.type == "customer.subscription.updated"
    assert updated["data"]["previous_attributes"]["cancel_at_period_end"] is False
    assert changed.last_response is not None
    assert updated["request"]["id"] == changed.last_response.request_id

    cancelled = client.v1.subscriptions.cancel(subscription_id)

    assert cancelled.status == "canceled"
    assert cancelled.ended_at is not None
    assert inbox.types()[-1] == "customer.subscription.deleted"
    customer = cancelled["customer"]
    assert client.v1.subscriptions.list(params={"customer": customer}).data == []
    everything = client.v1.subscriptions.list(params={"customer": customer, "status": "all"})
    assert [s.id for s in everything.data] == [subscription_id]


def test_prices_are_found_by_lookup_key(double: StripeDouble, client: stripe.StripeClient):
    found = client.v1.prices.list(
        params={"lookup_keys": ["team_monthly"], "expand": ["data.product"]}
    )

    assert [(p.id, p["product"]["name"]) for p in found.data] == [("price_team", "Team")]
    raw = httpx.get(
        f"{double.url}/v1/prices?lookup_keys[]=team_monthly",
        headers={"Authorization": "Bearer sk_test_x"},
    )
    assert [p["id"] for p in raw.json()["data"]] == ["price_team"]


# Webhooks -------------------------------------------------------------------------------


def test_webhooks_are_posted_signed_to_a_webhook_url():
    received: list[tuple[bytes, str, str]] = []

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers["Stripe-Signature"], self.headers["Content-Type"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(
        target=endpoint.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    url = f"http://127.0.0.1:{endpoint.server_address[1]}/stripe/webhook"
    try:
        with StripeDouble(webhook_secret=SECRET, webhook_url=url) as double:
            add_catalogue(double)
            subscription_id = subscribe(double, client_for(double))
    finally:
        endpoint.shutdown()
        endpoint.server_close()

    events = [stripe.Webhook.construct_event(body, sig, SECRET) for body, sig, _ in received]
    assert [e.type for e in events] == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
    ]
    assert events[0]["data"]["object"]["id"] == subscription_id
    assert {content_type for _, _, content_type in received} == {"application/json; charset=utf-8"}
    assert double.deliveries == [(e.id, 204) for e in events]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(received[0][0], received[0][1], "whsec_other")


def test_held_webhooks_are_delivered_by_hand_in_any_order_and_resent(
    double: StripeDouble, client: stripe.StripeClient, inbox: Inbox
):
    double.hold_webhooks = True
    subscribe(double, client)
    assert inbox.received == []
    created, paid, completed = double.events

    for event in (completed, paid, created):
        double.deliver(event)
    double.resend(completed["id"])

    assert inbox.types() == [
        "checkout.session.completed",
        "invoice.paid",
        "customer.subscription.created",
        "checkout.session.completed",
    ]
    assert inbox.received[3][0] == inbox.received[0][0]  # the same event, byte for byte
    made = double.make_event(
        "customer.updated", double.customers[created["data"]["object"]["customer"]]
    )
    assert double.events[-1] is made
    assert len(inbox.received) == 4
    header = double.sign(b"{}", timestamp=int(time.time()))
    assert stripe.WebhookSignature.verify_header("{}", header, SECRET)


# The customer portal ------------------------------------------------------------------------


def test_the_portal_switches_plans_and_cancels_at_period_end(
    double: StripeDouble, client: stripe.StripeClient, inbox: Inbox
):
    subscription_id = subscribe(double, client)
    customer = double.subscriptions[subscription_id]["customer"]
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": RETURN_URL}
    )
    assert portal.url == f"{double.url}/portal/{portal.id}"
    page = httpx.get(portal.url).text
    assert "Switch to Pro" in page
    assert "id='cancel-subscription'" in page
    assert f"href='{RETURN_URL}'>Return to Lattice" in page
    inbox.received.clear()

    switched = httpx.post(f"{portal.url}/change", data={"price": "price_pro"})
    cancelled = httpx.post(f"{portal.url}/cancel")

    assert (switched.status_code, switched.headers["location"]) == (303, RETURN_URL)
    assert (cancelled.status_code, cancelled.headers["location"]) == (303, RETURN_URL)
    subscription = client.v1.subscriptions.retrieve(subscription_id)
    assert subscription["items"]["data"][0].price.id == "price_pro"
    assert subscription.cancel_at_period_end is True
    assert subscription.status == "active"
    assert inbox.types() == ["customer.subscription.updated", "customer.subscription.updated"]
    page = httpx.get(portal.url).text
    assert "Cancels on" in page
    assert "Switch to Team" in page

    with pytest.raises(stripe.InvalidRequestError) as stranger:
        client.v1.billing_portal.sessions.create(params={"customer": "cus_charlie"})
    assert stranger.value.code == "resource_missing"


# Usage ----------------------------------------------------------------------------------


def test_meter_events_sum_in_summaries_and_a_duplicate_is_not_counted(
    double: StripeDouble, client: stripe.StripeClient
):
    customer = client.v1.customers.create(params={"email": "alice@example.com"}).id
    now = int(time.time())

    def report(identifier: str, value: str, timestamp: int) -> None:
        client.v1.billing.meter_events.create(
            params={
                "event_name": "lattice_compute",
                "identifier": identifier,
                "timestamp": timestamp,
                "payload": {"stripe_customer_id": customer, "value": value},
            }
        )

    report("usage-1", "25", now - 60)
    report("usage-2", "10", now - 30)
    report("usage-old", "1000", now - 7200)
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        report("usage-1", "25", now - 60)

    assert duplicate.value.http_status == 400
    assert "An event already exists with identifier usage-1" in str(duplicate.value.user_message)
    assert len(double.meter_events) == 3
    summaries = client.v1.billing.meters.event_summaries.list(
        "mtr_compute", params={"customer": customer, "start_time": now - 3600, "end_time": now}
    )
    assert [s.aggregated_value for s in summaries.data] == [35]
    assert summaries.data[0].object == "billing.meter_event_summary"
    with pytest.raises(stripe.InvalidRequestError) as unknown_customer:
        client.v1.billing.meter_events.create(
            params={
                "event_name": "lattice_compute",
                "payload": {"stripe_customer_id": "cus_charlie", "value": "1"},
            }
        )
    assert unknown_customer.value.param == "payload[stripe_customer_id]"
