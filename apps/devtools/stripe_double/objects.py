"""Stripe objects, each a deep copy of Stripe's own example object with fields overridden.

``fixtures.json`` holds Stripe's example objects (see its ``_notice``), so every object
the double serves carries every field real Stripe sends. The builders here set ids,
links, amounts and times, and null the examples' placeholders (1234567890 timestamps,
sample discounts, shipping costs) so each object reads like a fresh test-mode one.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from functools import cache
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

#: The API version the installed stripe-python (14.4.2) pins; events carry it.
API_VERSION = "2026-02-25.clover"
HOUR = 3_600
DAY = 86_400
PERIOD = 30 * DAY
_ALPHABET = string.ascii_letters + string.digits


@cache
def _resources() -> dict[str, JSON]:
    text = (Path(__file__).parent / "fixtures.json").read_text(encoding="utf-8")
    resources: dict[str, JSON] = json.loads(text)["resources"]
    return resources


def fixture(name: str) -> JSON:
    return copy.deepcopy(_resources()[name])


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


def list_object(data: list[JSON], url: str, *, has_more: bool = False) -> JSON:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "usage-based"
    if currency == "usd":
        return f"${amount / 100:,.2f}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def is_metered(price: JSON) -> bool:
    return bool(price.get("recurring")) and price["recurring"]["usage_type"] == "metered"


def line_amount(price: JSON, quantity: int | None) -> int:
    """What a line costs up front: metered usage is billed in arrears, so nothing."""
    if is_metered(price) or price["unit_amount"] is None:
        return 0
    return int(price["unit_amount"]) * (quantity or 0)


def customer(*, created: int, **fields: Any) -> JSON:
    obj = fixture("customer")
    obj.update(
        id=new_id("cus", 14),
        created=created,
        address=None,
        currency=None,
        discount=None,
        shipping=None,
        invoice_prefix=secrets.token_hex(4).upper(),
        livemode=False,
    )
    obj.update(fields)
    return obj


def product(*, id: str, name: str, created: int, **fields: Any) -> JSON:  # noqa: A002
    obj = fixture("product")
    obj.update(
        id=id,
        name=name,
        created=created,
        updated=created,
        default_price=None,
        description=None,
        package_dimensions=None,
        type="service",
        livemode=False,
    )
    obj.update(fields)
    return obj


def price(
    *,
    id: str,  # noqa: A002 - the object's own field name
    product: str,
    unit_amount: int | None,
    currency: str,
    interval: str | None,
    usage_type: str,
    meter: str | None,
    lookup_key: str | None,
    nickname: str | None,
    created: int,
) -> JSON:
    obj = fixture("price")
    obj.update(
        id=id,
        product=product,
        unit_amount=unit_amount,
        unit_amount_decimal=None if unit_amount is None else str(unit_amount),
        currency=currency,
        lookup_key=lookup_key,
        nickname=nickname,
        created=created,
        transform_quantity=None,
        livemode=False,
    )
    if interval is None:
        obj.update(type="one_time", recurring=None)
    else:
        obj["type"] = "recurring"
        obj["recurring"].update(
            interval=interval,
            interval_count=1,
            meter=meter,
            usage_type=usage_type,
            trial_period_days=None,
        )
    return obj


def portal_session(
    *, customer: str, return_url: str | None, configuration: str, url_base: str, created: int
) -> JSON:
    obj = fixture("billing_portal.session")
    session_id = new_id("bps", 24)
    obj.update(
        id=session_id,
        configuration=configuration,
        created=created,
        customer=customer,
        flow=None,
        livemode=False,
        return_url=return_url,
        url=f"{url_base}/portal/{session_id}",
    )
    return obj


def meter(
    *,
    id: str,  # noqa: A002 - the object's own field name
    display_name: str,
    event_name: str,
    formula: str,
    customer_key: str,
    value_key: str,
    created: int,
) -> JSON:
    obj = fixture("billing.meter")
    obj.update(
        id=id,
        created=created,
        updated=created,
        customer_mapping={"event_payload_key": customer_key, "type": "by_id"},
        default_aggregation={"formula": formula},
        display_name=display_name,
        event_name=event_name,
        livemode=False,
        value_settings={"event_payload_key": value_key},
    )
    return obj


def meter_event(
    *, event_name: str, identifier: str, payload: dict[str, str], timestamp: int, created: int
) -> JSON:
    obj = fixture("billing.meter_event")
    obj.update(
        created=created,
        event_name=event_name,
        identifier=identifier,
        payload=dict(payload),
        timestamp=timestamp,
    )
    return obj


def meter_event_summary(*, meter: str, start: int, end: int, value: int) -> JSON:
    obj = fixture("billing.meter_event_summary")
    obj.update(
        id=new_id("mtrusg", 24),
        aggregated_value=value,
        start_time=start,
        end_time=end,
        meter=meter,
    )
    return obj


def event(
    *,
    event_type: str,
    obj: JSON,
    previous_attributes: JSON | None,
    request: JSON | None,
    pending_webhooks: int,
    created: int,
) -> JSON:
    data: JSON = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    made = fixture("event")
    made.update(
        id=new_id("evt", 24),
        api_version=API_VERSION,
        created=created,
        data=data,
        livemode=False,
        pending_webhooks=pending_webhooks,
        request=dict(request) if request else {"id": None, "idempotency_key": None},
        type=event_type,
    )
    return made
