"""The customer-facing v1 endpoints: customers, Checkout, the portal, subscriptions, invoices.

Parameters Stripe accepts but the double has no use for (``allow_promotion_codes``,
``proration_behavior``...) are ignored; ones it would get wrong are refused with a 400
that says so, rather than answered with something Stripe would not send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import billing_objects, objects
from .api import matching, newest_first, page, resource, route
from .errors import invalid, missing_param, no_such
from .forms import Params, boolean, integer, mapping, metadata, required_text, text
from .objects import JSON, is_metered, line_amount, now
from .state import CheckoutDetails

if TYPE_CHECKING:
    from .state import StripeState


# Customers -------------------------------------------------------------------------------

_CUSTOMER_FIELDS = ("email", "name", "description", "phone")

resource("/v1/customers", "customer", lambda state: state.customers, filters={"email": text})


@route("POST", "/v1/customers")
def customer_create(state: StripeState, params: Params) -> JSON:
    fields = {name: text(params, name) for name in _CUSTOMER_FIELDS}
    return state.create_customer(**fields, metadata=metadata(params))


@route("POST", "/v1/customers/{id}")
def customer_update(state: StripeState, params: Params, customer_id: str) -> JSON:
    customer = state.find(state.customers, "customer", customer_id)
    for name in _CUSTOMER_FIELDS:
        if name in params:
            customer[name] = text(params, name)  # "" unsets, as on Stripe
    customer["metadata"] = metadata(params, customer["metadata"])
    return customer


# Checkout --------------------------------------------------------------------------------

resource(
    "/v1/checkout/sessions",
    "checkout.session",
    lambda state: state.checkout_sessions,
    filters={"customer": text, "subscription": text, "status": text},
)


def _line_items(state: StripeState, params: Params) -> list[tuple[JSON, int | None]]:
    raw_items = params.get("line_items")
    if not raw_items:
        raise missing_param("line_items")
    if not isinstance(raw_items, list) or not all(isinstance(raw, dict) for raw in raw_items):
        raise invalid("Invalid array: line_items must be a list of hashes", param="line_items")
    items: list[tuple[JSON, int | None]] = []
    for index, raw in enumerate(raw_items):
        where = f"line_items[{index}]"
        price_id = text(raw, "price")
        if price_id is None:
            raise missing_param(f"{where}[price]")
        price = state.find(state.prices, "price", price_id, param=f"{where}[price]")
        quantity = integer(raw, "quantity", param=f"{where}[quantity]")
        if is_metered(price) and quantity is not None:
            raise invalid(
                f"Quantity should not be specified where usage_type is `metered`. "
                f"Remove `quantity` from `{where}`.",
                param=f"{where}[quantity]",
            )
        if not is_metered(price) and quantity is None:
            raise invalid(
                f"Quantity is required. Add `quantity` to `{where}`.",
                param=f"{where}[quantity]",
                code="parameter_missing",
            )
        items.append((price, quantity))
    return items


@route("POST", "/v1/checkout/sessions")
def checkout_session_create(state: StripeState, params: Params) -> JSON:
    mode = required_text(params, "mode")
    if mode not in {"subscription", "payment"}:
        raise invalid(
            f"Invalid mode: {mode}. The Stripe double serves payment and subscription.",
            param="mode",
        )
    customer_id, email = text(params, "customer"), text(params, "customer_email")
    if customer_id and email:
        raise invalid(
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )
    if customer_id:
        state.find(state.customers, "customer", customer_id, param="customer")
    items = _line_items(state, params)
    recurring = [price for price, _ in items if price["type"] == "recurring"]
    if mode == "payment" and recurring:
        raise invalid(
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
            param="line_items",
        )
    if mode == "subscription" and len(recurring) != len(items):
        # Stripe would put one-time prices on the first invoice; the double does not.
        raise invalid(
            "The Stripe double takes only recurring prices in subscription mode.",
            param="line_items",
        )
    currencies = {price["currency"] for price, _ in items}
    if len(currencies) > 1:
        raise invalid("All line items must use the same currency.", param="line_items")
    subscription_data = mapping(params, "subscription_data")
    session = billing_objects.checkout_session(
        mode=mode,
        url_base=state.public_url,
        amount=sum(line_amount(price, quantity) for price, quantity in items),
        currency=currencies.pop(),
        created=now(),
        customer=customer_id,
        customer_email=email,
        success_url=text(params, "success_url"),
        cancel_url=text(params, "cancel_url"),
        client_reference_id=text(params, "client_reference_id"),
        metadata=metadata(params),
    )
    state.checkout_sessions[session["id"]] = session
    state.checkout_details[session["id"]] = CheckoutDetails(
        line_items=[
            billing_objects.checkout_item(
                price=price, quantity=quantity, product_name=state.product_name(price["product"])
            )
            for price, quantity in items
        ],
        subscription_metadata=metadata(subscription_data),
    )
    return session


@route("GET", "/v1/checkout/sessions/{id}/line_items")
def checkout_session_line_items(state: StripeState, params: Params, session_id: str) -> JSON:
    state.find(state.checkout_sessions, "checkout.session", session_id)
    items = state.checkout_details[session_id].line_items
    return page(items, params, f"/v1/checkout/sessions/{session_id}/line_items")


@route("POST", "/v1/checkout/sessions/{id}/expire")
def checkout_session_expire(state: StripeState, params: Params, session_id: str) -> JSON:
    state.cancel_checkout(session_id)
    return state.checkout_sessions[session_id]


@route("POST", "/v1/billing_portal/sessions")
def portal_session_create(state: StripeState, params: Params) -> JSON:
    customer_id = required_text(params, "customer")
    state.find(state.customers, "customer", customer_id, param="customer")
    session = objects.portal_session(
        customer=customer_id,
        return_url=text(params, "return_url"),
        configuration=state.portal_configuration,
        url_base=state.public_url,
        created=now(),
    )
    state.portal_sessions[session["id"]] = session
    return session


# Subscriptions -------------------------------------------------------------------------

resource("/v1/subscriptions", "subscription", lambda state: state.subscriptions)


@route("GET", "/v1/subscriptions")
def subscription_list(state: StripeState, params: Params) -> JSON:
    customer, status, price = (text(params, n) for n in ("customer", "status", "price"))

    def wanted(subscription: JSON) -> bool:
        if price is not None and all(
            item["price"]["id"] != price for item in subscription["items"]["data"]
        ):
            return False
        if status is None:
            return bool(subscription["status"] != "canceled")  # Stripe's default
        return status == "all" or subscription["status"] == status

    found = matching(newest_first(state.subscriptions), customer=customer)
    return page([s for s in found if wanted(s)], params, "/v1/subscriptions")


def _item_change(state: StripeState, subscription: JSON, index: int, raw: Any) -> JSON:
    """Check one ``items[i]`` entry before anything changes; return what to apply."""
    where = f"items[{index}]"
    if not isinstance(raw, dict):
        raise invalid(f"Invalid hash: {where}", param=where)
    item = None
    item_id = text(raw, "id")
    if item_id is not None:
        item = next((i for i in subscription["items"]["data"] if i["id"] == item_id), None)
        if item is None:
            raise no_such("subscription_item", item_id, param=f"{where}[id]")
    price = None
    price_id = text(raw, "price")
    if price_id is not None:
        price = state.find(state.prices, "price", price_id, param=f"{where}[price]")
        if price["type"] != "recurring":
            raise invalid("A subscription item needs a recurring price.", param=f"{where}[price]")
    elif item is None:
        raise missing_param(f"{where}[price]")
    quantity = integer(raw, "quantity", param=f"{where}[quantity]")
    if quantity is not None and is_metered(price or (item or {}).get("price", {})):
        raise invalid("Quantity should not be specified for a metered price.", param=where)
    deleted = boolean(raw, "deleted")
    if deleted and item is None:
        raise missing_param(f"{where}[id]")
    return {"item": item, "price": price, "quantity": quantity, "deleted": bool(deleted)}


def _apply_item_change(subscription: JSON, change: JSON) -> None:
    items: list[JSON] = subscription["items"]["data"]
    item = change["item"]
    if change["deleted"]:
        items.remove(item)
    elif item is None:
        added = billing_objects.subscription_item(
            subscription=subscription["id"],
            price=change["price"],
            quantity=change["quantity"],
            created=now(),
        )
        if items:  # a new item joins the subscription's current period
            added["current_period_start"] = items[0]["current_period_start"]
            added["current_period_end"] = items[0]["current_period_end"]
        items.append(added)
    elif change["price"] is not None:
        billing_objects.set_item_price(
            item, change["price"], change["quantity"] or item.get("quantity")
        )
    elif change["quantity"] is not None:
        item["quantity"] = change["quantity"]


def _cancellation_note(params: Params) -> dict[str, str | None]:
    """The comment and feedback that ``cancellation_details`` sets ("" clears one)."""
    details = mapping(params, "cancellation_details")
    return {name: details[name] or None for name in ("comment", "feedback") if name in details}


@route("POST", "/v1/subscriptions/{id}")
def subscription_update(state: StripeState, params: Params, subscription_id: str) -> JSON:
    subscription = state.find(state.subscriptions, "subscription", subscription_id)
    if "items" in params or "cancel_at_period_end" in params:
        state.live_subscription(subscription_id)
    cancel = boolean(params, "cancel_at_period_end")
    raw_items = params.get("items") or []
    if not isinstance(raw_items, list):
        raise invalid("Invalid array: items must be a list", param="items")
    changes = [_item_change(state, subscription, i, raw) for i, raw in enumerate(raw_items)]
    note = _cancellation_note(params)
    with state.updating(subscription):
        subscription["metadata"] = metadata(params, subscription["metadata"])
        subscription["cancellation_details"].update(note)
        if cancel is not None and cancel != subscription["cancel_at_period_end"]:
            state.schedule_cancel(subscription, cancel=cancel)
        for change in changes:
            _apply_item_change(subscription, change)
    return subscription


@route("DELETE", "/v1/subscriptions/{id}")
def subscription_cancel(state: StripeState, params: Params, subscription_id: str) -> JSON:
    subscription = state.live_subscription(subscription_id)
    subscription["cancellation_details"].update(_cancellation_note(params))
    state.cancel_now(subscription)
    return subscription


# Invoices ----------------------------------------------------------------------------

resource("/v1/invoices", "invoice", lambda state: state.invoices)

_INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


@route("GET", "/v1/invoices")
def invoice_list(state: StripeState, params: Params) -> JSON:
    customer, subscription, status = (
        text(params, n) for n in ("customer", "subscription", "status")
    )
    if status is not None and status not in _INVOICE_STATUSES:
        raise invalid(
            "Invalid status: must be one of draft, open, paid, uncollectible, or void",
            param="status",
        )

    found = [
        invoice
        for invoice in matching(newest_first(state.invoices), customer=customer, status=status)
        if subscription is None
        or invoice["parent"]["subscription_details"]["subscription"] == subscription
    ]
    return page(found, params, "/v1/invoices")
