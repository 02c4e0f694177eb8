"""Control-plane tasks for hosts: what agents report, and the reconciler (beat).

The reconciler compares what the database believes with what agents report,
both ways: a labelled workload with no active placement is an orphan and is
removed; an active placement whose workload vanished is lost, and its
resources are freed; a host silent for longer than LATTICE_HOST_OFFLINE_AFTER
goes offline and its placements are lost as of its last heartbeat.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.machines.models import Host, Placement
from apps.machines.queue import queue_advance_all
from apps.machines.scheduler import placement_release
from apps.machines.services import HostError, host_apply_inventory, host_register

logger = logging.getLogger(__name__)


@shared_task(name="control.host_join", soft_time_limit=30, time_limit=60)
def host_join(name: str, join_token: str, inventory: dict[str, Any]) -> None:
    try:
        host_register(name=name, join_token=join_token, inventory=inventory)
    except HostError as exc:
        logger.warning("host %s could not join: %s", name, exc)


@shared_task(name="control.host_reported", soft_time_limit=30, time_limit=60)
def host_reported(name: str, inventory: dict[str, Any], workloads: list[dict[str, Any]]) -> None:
    """An agent's report: inventory, heartbeat, and the workloads it runs."""
    host = Host.objects.filter(name=name).first()
    if host is None:
        logger.warning("report from unknown host %s ignored", name)
        return
    with transaction.atomic():
        host = host_apply_inventory(host=host, inventory=inventory)
        host.reported_workloads = workloads
        host.reported_at = timezone.now()
        host.save(update_fields=["reported_workloads", "reported_at"])


@shared_task(name="control.workload_started", soft_time_limit=30, time_limit=60)
def workload_started(host_name: str, name: str, state: dict[str, Any]) -> None:
    # The notebooks issue stores the state on its session; until then, note it.
    logger.info("workload %s started on %s", name, host_name)


@shared_task(name="control.workload_failed", soft_time_limit=30, time_limit=60)
def workload_failed(host_name: str, name: str, message: str) -> None:
    placement = Placement.objects.filter(host__name=host_name, workload=name, active=True).first()
    if placement is not None:
        placement_release(placement=placement, reason="failed")
    logger.warning("workload %s failed on %s: %s", name, host_name, message)


@shared_task(name="control.reconcile", soft_time_limit=120, time_limit=180)
def reconcile() -> dict[str, int]:
    """One pass of the reconciler. Idempotent; beat runs it every LATTICE_RECONCILE_EVERY."""
    from apps.machines.agent import agent_remove_orphan, host_queue

    now = timezone.now()
    counts = {"offline": 0, "lost": 0, "orphans": 0, "placed": 0}
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

    grace = timedelta(seconds=settings.LATTICE_RECONCILE_GRACE)
    for host in Host.objects.exclude(status=Host.Status.OFFLINE).filter(reported_at__isnull=False):
        assert host.reported_at is not None  # noqa: S101 - filtered above
        running = {w["name"] for w in host.reported_workloads if w.get("running")}
        reported = {w["name"] for w in host.reported_workloads}
        active = Placement.objects.filter(host=host, active=True)
        # Placed before the report was taken, yet not running: it vanished.
        for placement in active.filter(created_at__lt=host.reported_at - grace):
            if placement.workload not in running:
                placement_release(placement=placement, reason="lost", at=host.reported_at)
                counts["lost"] += 1
        known = set(active.values_list("workload", flat=True))
        for name in sorted(reported - known):
            agent_remove_orphan.apply_async(args=(host.name, name), queue=host_queue(host.name))
            counts["orphans"] += 1
    # Freed capacity goes to whoever waits longest.
    counts["placed"] = queue_advance_all()
    if any(counts.values()):
        logger.info("reconciler: %s", counts)
    return counts
