"""What the double knows, and the scenario steps that change it the way Stripe would.

Every store holds the JSON objects exactly as served. Each change runs inside
:meth:`EventLog.mutation <.webhooks.EventLog.mutation>` (one lock for everything), and
the events it emits are delivered once it ends.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import billing_objects, objects
from .errors import invalid, no_such
from .objects import JSON, is_metered, now
from .webhooks import EventLog

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@dataclass
class CheckoutDetails:
    """What a Checkout Session holds that Stripe does not put on the session object."""

    line_items: list[JSON]
    subscription_metadata: dict[str, str] = field(default_factory=dict)


class StripeState(EventLog):
    """The stores, the catalogue, and the scenario steps."""

    def __init__(
        self,
        webhook_secret: str = "whsec_test",  # noqa: S107 - a test-mode placeholder
        webhook_url: str | None = None,
        deliver: Callable[[bytes, str], None] | None = None,
        public_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        """Events are signed with ``webhook_secret`` and handed to ``deliver`` or POSTed to
        ``webhook_url``; hosted pages are linked under ``public_url`` (by default where the
        double serves); with ``api_key`` set, only that secret key is accepted."""
        super().__init__(webhook_secret=webhook_secret, webhook_url=webhook_url, deliver=deliver)
        self.api_key = api_key
        self.customers: dict[str, JSON] = {}
        self.checkout_sessions: dict[str, JSON] = {}
        self.subscriptions: dict[str, JSON] = {}
        self.invoices: dict[str, JSON] = {}
        self.portal_sessions: dict[str, JSON] = {}
        self.prices: dict[str, JSON] = {}
        self.products: dict[str, JSON] = {}
        self.meters: dict[str, JSON] = {}
        self.meter_events: list[JSON] = []
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.checkout_details: dict[str, CheckoutDetails] = {}
        self.portal_configuration = objects.new_id("bpc", 24)
        self._public_url = public_url
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The Stripe double is not serving: call start() first.")
        return self._url

    @property
    def public_url(self) -> str:
        return self._public_url or self.url

    def find(
        self, store: dict[str, JSON], object_name: str, object_id: str, *, param: str = "id"
    ) -> JSON:
        with self.lock:
            found = store.get(object_id)
        if found is None:
            raise no_such(object_name, object_id, param=param)
        return found

    def product_name(self, product_id: str) -> str:
        found = self.products.get(product_id)
        return str(found["name"]) if found else product_id

    def _keep(self, store: dict[str, JSON], made: JSON) -> JSON:
        """Store a new object under its id; return it."""
        with self.mutation():
            store[made["id"]] = made
            return made

    # The catalogue and customers ---------------------------------------------------

    def add_product(self, id: str, name: str) -> JSON:  # noqa: A002 - Stripe's field name
        return self._keep(self.products, objects.product(id=id, name=name, created=now()))

    def add_price(
        self,
        id: str,  # noqa: A002 - Stripe's field name
        *,
        product: str,
        unit_amount: int | None,
        currency: str = "usd",
        interval: str | None = "month",
        usage_type: str = "licensed",
        meter: str | None = None,
        lookup_key: str | None = None,
        nickname: str | None = None,
    ) -> JSON:
        """Add a price (``interval=None`` makes a one-time price); Stripe's rules apply."""
        if usage_type not in {"licensed", "metered"}:
            raise invalid(f"Invalid usage_type: {usage_type}", param="recurring[usage_type]")
        if usage_type == "metered" and (interval is None or meter is None):
            raise invalid(
                "A metered price needs an interval and a meter.", param="recurring[meter]"
            )
        with self.mutation():
            if id in self.prices:
                raise invalid(f"A price with id {id} already exists.", param="id")
            if lookup_key and any(p["lookup_key"] == lookup_key for p in self.prices.values()):
                raise invalid(
                    f"A price with lookup key {lookup_key} already exists.", param="lookup_key"
                )
            made = objects.price(
                id=id,
                product=product,
                unit_amount=unit_amount,
                currency=currency,
                interval=interval,
                usage_type=usage_type,
                meter=meter,
                lookup_key=lookup_key,
                nickname=nickname,
                created=now(),
            )
            return self._keep(self.prices, made)

    def add_meter(
        self,
        id: str,  # noqa: A002 - Stripe's field name
        *,
        event_name: str,
        display_name: str = "",
        formula: str = "sum",
        customer_key: str = "stripe_customer_id",
        value_key: str = "value",
    ) -> JSON:
        """Add a meter (named for its event unless ``display_name``); Stripe's rules apply.

        Events name their customer under ``customer_key`` and their value under ``value_key``.
        """
        if formula not in {"sum", "count", "last"}:
            raise invalid(f"Invalid formula: {formula}", param="default_aggregation[formula]")
        with self.mutation():
            if any(m["event_name"] == event_name for m in self.meters.values()):
                raise invalid(
                    f"An active meter with event_name {event_name} already exists.",
                    param="event_name",
                )
            made = objects.meter(
                id=id,
                display_name=display_name or event_name,
                event_name=event_name,
                formula=formula,
                customer_key=customer_key,
                value_key=value_key,
                created=now(),
            )
            return self._keep(self.meters, made)

    def create_customer(self, **fields: Any) -> JSON:
        return self._keep(self.customers, objects.customer(created=now(), **fields))

    # Scenario steps ------------------------------------------------------------------

    def complete_checkout(self, session_id: str) -> str | None:
        """Pay a Checkout Session: its customer, subscription and first invoice appear.

        Events: customer.subscription.created, invoice.paid, checkout.session.completed.
        Returns the subscription id (None in payment mode); a completed session is left
        as it is.
        """
        with self.mutation():
            session = self.find(self.checkout_sessions, "checkout.session", session_id)
            if session["status"] == "complete":
                return session["subscription"]
            if session["status"] != "open":
                raise invalid("This Checkout Session is no longer active.")
            if session["customer"]:
                customer = self.customers[session["customer"]]
            else:
                customer = self.create_customer(
                    email=session["customer_email"] or "customer@example.com"
                )
            details = objects.fixture("checkout.session", "customer_details")
            details.update(email=customer["email"], name=customer["name"], tax_ids=[])
            session.update(
                status="complete",
                payment_status="paid",
                customer=customer["id"],
                customer_details=details,
            )
            if session["mode"] == "payment":
                session["payment_intent"] = objects.new_id("pi", 24)
                self.emit("checkout.session.completed", session)
                return None
            pending = self.checkout_details[session_id]
            subscription = billing_objects.subscription(
                customer=customer["id"],
                items=[(item["price"], item["quantity"]) for item in pending.line_items],
                metadata=pending.subscription_metadata,
                created=now(),
            )
            self.subscriptions[subscription["id"]] = subscription
            invoice = self._invoice(
                subscription, billing_reason="subscription_create", status="paid"
            )
            customer["currency"] = subscription["currency"]
            session.update(subscription=subscription["id"], invoice=invoice["id"])
            self.emit("customer.subscription.created", subscription)
            self.emit("invoice.paid", invoice)
            self.emit("checkout.session.completed", session)
            return str(subscription["id"])

    def cancel_checkout(self, session_id: str) -> None:
        """The customer gives up: the session expires (event checkout.session.expired)."""
        with self.mutation():
            session = self.find(self.checkout_sessions, "checkout.session", session_id)
            if session["status"] != "open":
                raise invalid(
                    f"Only an open Checkout Session can expire; this one is {session['status']}."
                )
            session["status"] = "expired"
            self.emit("checkout.session.expired", session)

    def fail_payment(self, subscription_id: str) -> str:
        """A renewal payment fails: a new open invoice, the subscription goes past_due.

        Events: invoice.payment_failed, customer.subscription.updated. Returns the invoice id.
        """
        with self.mutation():
            subscription = self.live_subscription(subscription_id)
            with self.updating(subscription):
                invoice = self._invoice(
                    subscription, billing_reason="subscription_cycle", status="open"
                )
                self.emit("invoice.payment_failed", invoice)
                subscription["status"] = "past_due"
            return str(invoice["id"])

    def draft_invoice(self, subscription_id: str) -> str:
        """The renewal's invoice as Stripe first makes it: a draft, finalized about an hour
        later (the double leaves it a draft). Event: invoice.created. Returns its id."""
        with self.mutation():
            subscription = self.live_subscription(subscription_id)
            invoice = self._invoice(
                subscription, billing_reason="subscription_cycle", status="draft"
            )
            self.emit("invoice.created", invoice)
            return str(invoice["id"])

    def pay_invoice(self, invoice_id: str) -> None:
        """Pay an open invoice; its subscription becomes active again.

        Events: invoice.paid, then customer.subscription.updated if the status changed.
        """
        with self.mutation():
            invoice = self.find(self.invoices, "invoice", invoice_id)
            if invoice["status"] == "paid":
                raise invalid("Invoice is already paid")
            if invoice["status"] != "open":
                raise invalid(f"You can only pay an open invoice; this one is {invoice['status']}.")
            invoice.update(
                status="paid",
                amount_paid=invoice["amount_due"],
                amount_remaining=0,
                auto_advance=False,
                next_payment_attempt=None,
            )
            invoice["status_transitions"]["paid_at"] = now()
            subscription = self.subscriptions[
                invoice["parent"]["subscription_details"]["subscription"]
            ]
            with self.updating(subscription):
                self.emit("invoice.paid", invoice)
                if subscription["status"] in {"past_due", "unpaid", "incomplete"}:
                    subscription["status"] = "active"

    def change_price(self, subscription_id: str, price_id: str) -> None:
        """Put the licensed item on another price (event customer.subscription.updated)."""
        with self.mutation():
            subscription = self.live_subscription(subscription_id)
            price = self.find(self.prices, "price", price_id, param="price")
            if price["type"] != "recurring" or is_metered(price):
                raise invalid("Switch to a licensed recurring price.", param="price")
            item = next(
                (i for i in subscription["items"]["data"] if not is_metered(i["price"])), None
            )
            if item is None:
                raise invalid("This subscription has no licensed item to change.")
            if item["price"]["id"] != price_id:
                with self.updating(subscription):
                    billing_objects.set_item_price(item, price, item.get("quantity"))

    def cancel_subscription(self, subscription_id: str, at_period_end: bool = False) -> None:
        """Cancel at period end (event customer.subscription.updated) or now (.deleted)."""
        with self.mutation():
            subscription = self.live_subscription(subscription_id)
            if at_period_end:
                with self.updating(subscription):
                    self.schedule_cancel(subscription, cancel=True)
            else:
                self.cancel_now(subscription)

    # Shared by the scenario steps, the API and the hosted pages -----------------------

    def live_subscription(self, subscription_id: str) -> JSON:
        subscription = self.find(self.subscriptions, "subscription", subscription_id)
        if subscription["status"] == "canceled":
            raise invalid(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        return subscription

    def _invoice(self, subscription: JSON, *, billing_reason: str, status: str) -> JSON:
        made = billing_objects.invoice(
            customer=self.customers[subscription["customer"]],
            subscription=subscription,
            product_names={pid: p["name"] for pid, p in self.products.items()},
            billing_reason=billing_reason,
            status=status,
            hosted_url=f"{self.public_url}/invoice/{{id}}",
            pdf_url=f"{self.public_url}/invoice/{{id}}/pdf",
            created=now(),
        )
        self.invoices[made["id"]] = made
        subscription["latest_invoice"] = made["id"]
        return made

    @contextmanager
    def updating(self, subscription: JSON) -> Iterator[None]:
        """Emit customer.subscription.updated, with previous_attributes, if anything changed."""
        before = copy.deepcopy(subscription)
        yield
        previous = {k: v for k, v in before.items() if subscription.get(k) != v}
        if previous:
            self.emit("customer.subscription.updated", subscription, previous_attributes=previous)

    def schedule_cancel(self, subscription: JSON, *, cancel: bool) -> None:
        details = subscription["cancellation_details"]
        if cancel:
            period_end = max(i["current_period_end"] for i in subscription["items"]["data"])
            subscription.update(cancel_at_period_end=True, cancel_at=period_end, canceled_at=now())
            details["reason"] = "cancellation_requested"
        else:
            subscription.update(cancel_at_period_end=False, cancel_at=None, canceled_at=None)
            details["reason"] = None

    def cancel_now(self, subscription: JSON) -> None:
        moment = now()
        subscription.update(
            status="canceled", ended_at=moment, canceled_at=moment, cancel_at_period_end=False
        )
        subscription["cancellation_details"]["reason"] = "cancellation_requested"
        self.emit("customer.subscription.deleted", subscription)
