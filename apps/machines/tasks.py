"""Control-plane work for hosts: what agents report, and the reconciler (beat).

What an agent says arrives through the inbox (apps.machines.inbox), which has
verified whose key signed it: each function here gets that host, never a name
from the message, and believes it only about workloads placed on that host.
A workload's events and output go to the app that runs that kind of workload
(apps.machines.hooks.workload_kinds, by the prefix of its name).

The reconciler compares what the database believes with what agents report,
both ways: a labelled workload with no active placement is an orphan and is
removed; an active placement whose workload vanished is lost, and its
resources are freed; a host silent for longer than LATTICE_HOST_OFFLINE_AFTER
goes offline and its placements are lost as of its last heartbeat.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.stream import stream_publish_frame
from apps.machines.agent import agent_remove_orphan
from apps.machines.hooks import workload_kind
from apps.machines.models import Host, Placement
from apps.machines.queue import queue_advance_all
from apps.machines.scheduler import placement_release
from apps.machines.services import host_apply_inventory
from apps.runtimes.base import LABEL_PREFIX

logger = logging.getLogger(__name__)


_MISSES_BEFORE_LOST = 2


@shared_task(name="control.inbox", soft_time_limit=30, time_limit=60)
def inbox(envelope: Any) -> None:
    """A signed message from an agent: verified, then believed only about its own host."""
    from apps.machines.inbox import inbox_receive

    inbox_receive(envelope)


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
        placement_release(placement=placement, reason="failed")
    logger.warning("workload %s failed on %s: %s", name, host, message)


def workload_logs(host: Host, name: str, source: str, frame: int, lines: list[str]) -> None:
    """A frame of a workload's output: published to that workload's stream, in the order its
    shipper numbered them, if the workload is placed on ``host``; else dropped."""
    kind = workload_kind(name)
    stream = kind.stream(host.name, name) if kind is not None else None
    if stream is None or not placed_on(host, name):
        logger.warning("log lines for %s from %s, not placed there: ignored", name, host)
        return
    stream_publish_frame(stream, {"type": "logs", "lines": lines}, source=source, frame=frame)


@shared_task(name="control.reconcile", soft_time_limit=120, time_limit=180)
def reconcile() -> dict[str, int]:
    """One pass of the reconciler. Idempotent; beat runs it every LATTICE_RECONCILE_EVERY."""
    counts = {"offline": 0, "lost": 0, "orphans": 0, "placed": 0}
    _take_silent_hosts_offline(counts)
    for host in Host.objects.exclude(status=Host.Status.OFFLINE).filter(reported_at__isnull=False):
        _judge_placements(host, counts)
        _remove_orphans(host, counts)
    # Freed capacity goes to whoever waits longest.
    counts["placed"] = queue_advance_all()
    if any(counts.values()):
        logger.info("reconciler: %s", counts)
    return counts


def _take_silent_hosts_offline(counts: dict[str, int]) -> None:
    now = timezone.now()
    silent_since = now - timedelta(seconds=settings.LATTICE_HOST_OFFLINE_AFTER)
    for host in Host.objects.exclude(status=Host.Status.OFFLINE).filter(
        last_heartbeat_at__lt=silent_since,
    ):
        # Only if it is still silent now: a report may have arrived since the query.
        went_offline = (
            Host.objects.filter(pk=host.pk, last_heartbeat_at__lt=silent_since)
            .exclude(status=Host.Status.OFFLINE)
            .update(status=Host.Status.OFFLINE)
        )
        if not went_offline:
            continue
        counts["offline"] += 1
        for placement in Placement.objects.filter(host=host, active=True):
            seen = max(host.last_heartbeat_at or now, placement.created_at)
            placement_release(placement=placement, reason="lost", at=seen)
            counts["lost"] += 1


def _judge_placements(host: Host, counts: dict[str, int]) -> None:
    """Placed well before the report was taken, yet not running in it: a miss.

    Two reports in a row that miss a workload, and it is lost.
    """
    assert host.reported_at is not None  # noqa: S101 - the caller filtered
    running = {w["name"] for w in host.reported_workloads if w.get("running") and _ours(w)}
    grace = timedelta(seconds=settings.LATTICE_RECONCILE_GRACE)
    judged = Placement.objects.filter(
        host=host,
        active=True,
        created_at__lt=host.reported_at - grace,
    )
    # Seen running in this report: alive as of when it was taken.
    Placement.objects.filter(host=host, active=True, workload__in=running).exclude(
        last_seen_at__gte=host.reported_at,
    ).update(last_seen_at=host.reported_at, missed_reports=0)
    for placement in judged:
        if placement.workload in running:
            continue
        if placement.last_missed_report_at == host.reported_at:
            continue  # this report already counted
        misses = placement.missed_reports + 1
        Placement.objects.filter(pk=placement.pk).update(
            missed_reports=misses,
            last_missed_report_at=host.reported_at,
        )
        if misses >= _MISSES_BEFORE_LOST:
            # Billed up to the last report that saw it, or its start if none did.
            seen = placement.last_seen_at or placement.created_at
            placement_release(placement=placement, reason="lost", at=seen)
            counts["lost"] += 1


def _ours(workload: dict[str, Any]) -> bool:
    """Started by this Lattice (or being started by its agent right now)."""
    if workload.get("starting"):
        return True
    label = workload.get("labels", {}).get(f"{LABEL_PREFIX}installation")
    return label == settings.LATTICE_INSTALLATION


def _remove_orphans(host: Host, counts: dict[str, int]) -> None:
    """A workload the host runs that no active placement knows: the agent removes it."""
    reported = {w["name"] for w in host.reported_workloads if _ours(w) and not w.get("starting")}
    known = set(
        Placement.objects.filter(host=host, active=True).values_list("workload", flat=True),
    )
    for name in sorted(reported - known):
        agent_remove_orphan.apply_async(args=(host.name, name), queue=host.queue)
        counts["orphans"] += 1
