"""The event log, and webhook delivery signed and posted the way Stripe does it.

:class:`EventLog` owns the double's one re-entrant lock. Every change runs inside
:meth:`EventLog.mutation`; the events it emits wait in an outbox and are delivered when
the outermost mutation ends, after the lock is released, so a webhook handler may call
the double's API back without deadlocking.

The ``Stripe-Signature`` header is ``t=<timestamp>,v1=<hex HMAC-SHA256 of
"<timestamp>.<payload>" keyed by the endpoint secret>``, which is what
``stripe.Webhook.construct_event`` verifies. stripe-python 14.4.2 has no public helper
that makes the header (only ``WebhookSignature._compute_signature``), so it is built
here from the same recipe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from . import objects
from .errors import StripeDoubleError
from .objects import JSON, now

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post(url: str, payload: bytes, signature: str) -> int | None:
    """POST one event; the endpoint's status, or None when it could not be reached."""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature,
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    try:
        response = httpx.post(url, content=payload, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        # Stripe would retry later; the double records the miss and goes on.
        logger.warning("Stripe double: webhook POST to %s failed: %s", url, exc)
        return None
    return response.status_code


class EventLog:
    """Every event the double made, in order, and where (and whether) each was delivered."""

    def __init__(
        self,
        *,
        webhook_secret: str,
        webhook_url: str | None,
        deliver: Callable[[bytes, str], None] | None,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.hold_webhooks = False
        self.lock = threading.RLock()
        self.events: list[JSON] = []
        self.deliveries: list[tuple[str, int | None]] = []
        # The API request being served; the events it causes name it, as Stripe's do.
        self.request: JSON | None = None
        self._deliver_to = deliver
        self._outbox: list[JSON] = []
        self._depth = 0

    @contextmanager
    def mutation(self) -> Iterator[None]:
        """Hold the lock for one change; deliver its events once the outermost one ends."""
        with self.lock:
            self._depth += 1
            try:
                yield
            except BaseException:
                if self._depth == 1:
                    self._outbox.clear()  # a change that failed delivers nothing
                raise
            finally:
                self._depth -= 1
            outbox: list[JSON] = []
            if self._depth == 0:
                outbox, self._outbox = self._outbox, []
        for event in outbox:
            self.deliver(event)

    def make_event(
        self, event_type: str, obj: JSON, *, previous_attributes: JSON | None = None
    ) -> JSON:
        """Record an event about ``obj`` (a snapshot of it) without delivering it."""
        with self.lock:
            destination = self._deliver_to is not None or self.webhook_url is not None
            made = objects.event(
                event_type=event_type,
                obj=obj,
                previous_attributes=previous_attributes,
                request=self.request,
                pending_webhooks=int(destination and not self.hold_webhooks),
                created=now(),
            )
            self.events.append(made)
            return made

    def emit(self, event_type: str, obj: JSON, *, previous_attributes: JSON | None = None) -> None:
        """Record an event and, unless webhooks are held, deliver it when the change ends."""
        made = self.make_event(event_type, obj, previous_attributes=previous_attributes)
        if not self.hold_webhooks:
            self._outbox.append(made)

    def sign(self, payload: bytes, timestamp: int | None = None) -> str:
        """The Stripe-Signature header for ``payload`` (signed now unless told when)."""
        return sign(payload, self.webhook_secret, now() if timestamp is None else timestamp)

    def deliver(self, event: JSON) -> None:
        """Send one event to the ``deliver`` callable, else POST it to ``webhook_url``.

        A callable that returns is recorded as 200; one that raises as 500, and the
        exception propagates. With neither destination the event is only recorded.
        """
        payload = json.dumps(event).encode()
        signature = self.sign(payload)
        if self._deliver_to is not None:
            try:
                self._deliver_to(payload, signature)
            except Exception:
                self._delivered(event, 500)
                raise
            self._delivered(event, 200)
        elif self.webhook_url is not None:
            self._delivered(event, post(self.webhook_url, payload, signature))

    def resend(self, event_id: str) -> None:
        """Deliver a recorded event again, byte for byte the same payload."""
        with self.lock:
            found = next((e for e in self.events if e["id"] == event_id), None)
        if found is None:
            raise StripeDoubleError(
                f"No such event: '{event_id}'", status=404, code="resource_missing"
            )
        self.deliver(found)

    def _delivered(self, event: JSON, status: int | None) -> None:
        with self.lock:
            self.deliveries.append((event["id"], status))
