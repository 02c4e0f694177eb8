"""An agent's message waits out a broker that refuses it for a while (Redis restarting, then
the agent's broker user lost until beat makes it again) instead of being dropped after
Celery's default three tries within a second: a start's "started" event was lost so, with
its container running (the fault suite's Redis restart, tests/faults)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.machines import inbox
from apps.machines.identity import identity_set, new_key


def _intervals(policy: dict[str, Any]) -> list[float]:
    """kombu's retry_over_time intervals for ``policy``: the first try, then each retry's."""
    delays, delay = [0.0], policy["interval_start"]
    for _ in range(policy["max_retries"]):
        delays.append(min(delay, policy["interval_max"]))
        delay += policy["interval_step"]
    return delays


def test_the_retry_policy_outlasts_a_lost_broker_user(settings):
    # Beat makes a lost user again every LATTICE_BROKER_USERS_EVERY (5 s): a refusal lasts
    # that long plus Redis's restart; the policy waits several times longer.
    waited = sum(_intervals(inbox.SEND_RETRY_POLICY))
    every = settings.CELERY_BEAT_SCHEDULE["broker-users"]["schedule"]
    assert waited >= 4 * every


@pytest.mark.parametrize("kind", ["report", "event", "logs"])
def test_every_kind_goes_through_the_retrying_send(monkeypatch, kind):
    identity_set("send-b", new_key())
    seen: list[dict[str, Any]] = []

    def publish(*_args: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    monkeypatch.setattr(inbox.inbox, "apply_async", publish)
    inbox.send("send-b", kind, {})
    assert seen == [{"retry": True, "retry_policy": inbox.SEND_RETRY_POLICY}]
