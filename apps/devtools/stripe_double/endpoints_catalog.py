"""The catalogue and usage v1 endpoints: prices, products, meters, meter events, events."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from . import objects
from .api import matching, newest_first, page, resource, route
from .errors import StripeDoubleError, invalid, missing_param
from .forms import Params, boolean, integer, mapping, metadata, required_text, string_list, text
from .objects import DAY, JSON, now

if TYPE_CHECKING:
    from .state import StripeState

# Stripe takes meter events from the past 35 days up to 5 minutes ahead.
_OLDEST_EVENT_S = 35 * DAY
_FUTURE_EVENT_S = 5 * 60


# Prices and products -------------------------------------------------------------------

resource("/v1/prices", "price", lambda state: state.prices)
resource("/v1/products", "product", lambda state: state.products, filters={"active": boolean})


@route("POST", "/v1/prices")
def price_create(state: StripeState, params: Params) -> JSON:
    product_id = text(params, "product")
    product_data = mapping(params, "product_data")
    if product_id is not None:
        state.find(state.products, "product", product_id, param="product")
    elif product_data:
        name = text(product_data, "name")
        if name is None:
            raise missing_param("product_data[name]")
        product_id = state.add_product(objects.new_id("prod", 14), name)["id"]
    else:
        raise missing_param("product")
    unit_amount = integer(params, "unit_amount")
    if unit_amount is None:
        raise missing_param("unit_amount")
    recurring = mapping(params, "recurring")
    usage_type = text(recurring, "usage_type") or "licensed"
    meter = text(recurring, "meter")
    if meter is not None:
        state.find(state.meters, "billing.meter", meter, param="recurring[meter]")
    lookup_key = text(params, "lookup_key")
    if lookup_key and boolean(params, "transfer_lookup_key"):
        for other in state.prices.values():
            if other["lookup_key"] == lookup_key:
                other["lookup_key"] = None
    if recurring and text(recurring, "interval") is None:
        raise missing_param("recurring[interval]")
    made = state.add_price(
        objects.new_id("price", 24),
        product=product_id,
        unit_amount=unit_amount,
        currency=required_text(params, "currency").lower(),
        interval=text(recurring, "interval"),
        usage_type=usage_type,
        meter=meter,
        lookup_key=lookup_key,
        nickname=text(params, "nickname"),
    )
    made["metadata"] = metadata(params)
    return made


@route("GET", "/v1/prices")
def price_list(state: StripeState, params: Params) -> JSON:
    lookup_keys = string_list(params, "lookup_keys")
    found = matching(
        newest_first(state.prices),
        active=boolean(params, "active"),
        product=text(params, "product"),
        type=text(params, "type"),
    )
    found = [price for price in found if not lookup_keys or price["lookup_key"] in lookup_keys]
    return page(found, params, "/v1/prices")


@route("POST", "/v1/products")
def product_create(state: StripeState, params: Params) -> JSON:
    product_id = text(params, "id") or objects.new_id("prod", 14)
    if product_id in state.products:
        raise invalid(f"Product already exists: {product_id}", param="id")
    made = state.add_product(product_id, required_text(params, "name"))
    made["description"] = text(params, "description")
    made["metadata"] = metadata(params)
    return made


# Meters and usage ------------------------------------------------------------------------

resource(
    "/v1/billing/meters", "billing.meter", lambda state: state.meters, filters={"status": text}
)


def _payload_keys(meter: JSON) -> tuple[str, str]:
    """Where a meter's events carry their customer and their value."""
    return (
        meter["customer_mapping"]["event_payload_key"],
        meter["value_settings"]["event_payload_key"],
    )


@route("POST", "/v1/billing/meters")
def meter_create(state: StripeState, params: Params) -> JSON:
    aggregation = mapping(params, "default_aggregation")
    formula = text(aggregation, "formula")
    if formula is None:
        raise missing_param("default_aggregation[formula]")
    return state.add_meter(
        objects.new_id("mtr", 24),
        display_name=required_text(params, "display_name"),
        event_name=required_text(params, "event_name"),
        formula=formula,
        customer_key=text(mapping(params, "customer_mapping"), "event_payload_key")
        or "stripe_customer_id",
        value_key=text(mapping(params, "value_settings"), "event_payload_key") or "value",
    )


@route("POST", "/v1/billing/meter_events")
def meter_event_create(state: StripeState, params: Params) -> JSON:
    event_name = required_text(params, "event_name")
    payload = mapping(params, "payload")
    if not payload:
        raise missing_param("payload")
    meter = next(
        (
            m
            for m in state.meters.values()
            if m["event_name"] == event_name and m["status"] == "active"
        ),
        None,
    )
    if meter is None:
        raise invalid(
            f"No active meter was found with the event_name {event_name}.", param="event_name"
        )
    customer_key, value_key = _payload_keys(meter)
    customer_id = text(payload, customer_key)
    if customer_id is None:
        raise missing_param(f"payload[{customer_key}]")
    state.find(state.customers, "customer", customer_id, param=f"payload[{customer_key}]")
    if text(payload, value_key) is None:
        raise missing_param(f"payload[{value_key}]")
    integer(payload, value_key, param=f"payload[{value_key}]")
    identifier = text(params, "identifier") or str(uuid.uuid4())
    if any(event["identifier"] == identifier for event in state.meter_events):
        # Stripe's wording, seen in its test mode; it sends no error code with it.
        raise StripeDoubleError(
            f"An event already exists with identifier {identifier}.", param="identifier"
        )
    moment = now()
    timestamp = integer(params, "timestamp")
    if timestamp is None:
        timestamp = moment
    if not moment - _OLDEST_EVENT_S <= timestamp <= moment + _FUTURE_EVENT_S:
        raise invalid(
            "The timestamp must be within the past 35 days and at most 5 minutes ahead.",
            param="timestamp",
        )
    made = objects.meter_event(
        event_name=event_name,
        identifier=identifier,
        payload=payload,
        timestamp=timestamp,
        created=moment,
    )
    state.meter_events.append(made)
    return made


@route("GET", "/v1/billing/meters/{id}/event_summaries")
def meter_event_summary_list(state: StripeState, params: Params, meter_id: str) -> JSON:
    meter = state.find(state.meters, "billing.meter", meter_id)
    customer = required_text(params, "customer")
    state.find(state.customers, "customer", customer, param="customer")
    start, end = integer(params, "start_time"), integer(params, "end_time")
    if start is None:
        raise missing_param("start_time")
    if end is None:
        raise missing_param("end_time")
    if end <= start:
        raise invalid("end_time must be after start_time.", param="end_time")
    if "value_grouping_window" in params:
        raise invalid(
            "The Stripe double sums the whole range; it has no value_grouping_window.",
            param="value_grouping_window",
        )
    customer_key, value_key = _payload_keys(meter)
    values = [
        int(event["payload"][value_key])
        for event in state.meter_events
        if event["event_name"] == meter["event_name"]
        and event["payload"].get(customer_key) == customer
        and start <= event["timestamp"] < end
    ]
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        value = len(values)
    elif formula == "last":
        value = values[-1] if values else 0
    else:
        value = sum(values)
    summary = objects.meter_event_summary(meter=meter_id, start=start, end=end, value=value)
    return objects.list_object([summary], f"/v1/billing/meters/{meter_id}/event_summaries")


# Events ------------------------------------------------------------------------------------

resource(
    "/v1/events",
    "event",
    lambda state: {event["id"]: event for event in state.events},
    filters={"type": text},
)
