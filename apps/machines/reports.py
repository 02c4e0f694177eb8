"""What an agent says about its host and its workloads, once the inbox has verified it.

Each function here gets the host whose key signed the message (apps.machines.inbox), never
a name from the message, and believes it only about workloads placed on that host.
A workload's events and output go to the app that runs that kind of workload
(apps.machines.hooks.workload_kinds, by the prefix of its name).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import TOKEN_PATTERN
from apps.core.stream import stream_publish_frame
from apps.machines.hooks import workload_kind
from apps.machines.models import Host, Placement
from apps.machines.queue import placement_free
from apps.machines.services import host_apply_inventory
from apps.teams.secrets import MASK, mask, mask_values

logger = logging.getLogger(__name__)
# Any API token a workload prints: its own LATTICE_TOKEN (apps.accounts.workload) or another.
_TOKEN_RE = re.compile(TOKEN_PATTERN)


def host_reported(
    host: Host,
    inventory: dict[str, Any],
    workloads: list[dict[str, Any]],
    collected_at: float | None = None,
) -> None:
    """An agent's report: inventory, heartbeat, and the workloads it runs.

    Dated when the agent took it, not when this ran: a report that waited
    in a backed-up queue must not judge placements made after it was taken.
    Its workloads judge only this host's placements (the reconciler below).
    """
    now = timezone.now()
    taken = now
    if collected_at is not None:
        # Trust the agent's clock only within reason (and never into the future).
        taken = min(now, max(now - timedelta(minutes=10), _from_epoch(collected_at)))
    with transaction.atomic():
        host = Host.objects.select_for_update(no_key=True).get(pk=host.pk)
        if host.reported_at is not None and taken <= host.reported_at:
            return  # an older report than the one already applied
        # Alive as of now (we just heard from it); its workloads as of when it looked.
        host = host_apply_inventory(host=host, inventory=inventory)
        host.reported_workloads = workloads
        host.reported_at = taken
        host.save(update_fields=["reported_workloads", "reported_at"])


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def placed_on(host: Host, name: str) -> bool:
    """Whether workload ``name`` is placed on ``host`` now: all a host may speak about."""
    return Placement.objects.filter(host=host, workload=name, active=True).exists()


def workload_event(host: Host, name: str, event: str, data: dict[str, Any]) -> None:
    """What an agent says of a workload placed on it: progress, started, ready, failed,
    stopped. Of any other workload, nothing it says is believed."""
    if not placed_on(host, name):
        logger.warning("event %s for %s from %s, not placed there: ignored", event, name, host)
        return
    kind = workload_kind(name)
    if kind is not None:
        kind.on_event(host.name, name, event, data)
        return
    if event == "failed":
        workload_failed(host, name, str(data.get("message", "")))
    else:
        logger.info("workload %s on %s: %s", name, host, event)


def workload_failed(host: Host, name: str, message: str) -> None:
    placement = Placement.objects.filter(host=host, workload=name, active=True).first()
    if placement is not None:
        placement_free(placement=placement, reason="failed")
    logger.warning("workload %s failed on %s: %s", name, host, message)


def workload_logs(
    host: Host, name: str, source: str, frame: int, lines: list[str], *, backfill: bool = False
) -> None:
    """A frame of a workload's output: published to that workload's stream, in the order its
    shipper numbered them, if the workload is placed on ``host``; else dropped. A backfill
    (the workload's recent lines, sent by an agent that found it running) is marked so:
    viewers show its lines instead of what they showed (apps.machines.logship). The values
    of the team's secrets, and any API token (the workload's own LATTICE_TOKEN), are masked
    in every line first (apps.teams.secrets)."""
    kind = workload_kind(name)
    stream = kind.stream(host.name, name) if kind is not None else None
    placement = (
        Placement.objects.filter(host=host, workload=name, active=True).only("team_id").first()
    )
    if stream is None or placement is None:
        logger.warning("log lines for %s from %s, not placed there: ignored", name, host)
        return
    if placement.team_id is not None:
        # A workload prints what it was given: its team's secret values never reach a viewer
        # (apps.teams.secrets; values shorter than MASK_MIN_LENGTH stay).
        lines = mask(lines, mask_values(placement.team_id))
    # Only hashes of API tokens are kept, so they are masked by their shape.
    lines = [_TOKEN_RE.sub(MASK, line) for line in lines]
    message: dict[str, Any] = {"type": "logs", "lines": lines}
    if backfill:
        message["backfill"] = True
    stream_publish_frame(stream, message, source=source, frame=frame)
    if kind is not None and kind.lines is not None:
        kind.lines(host.name, name, lines)
