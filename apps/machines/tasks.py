"""Control-plane tasks for hosts: the reconciler (beat).

The reconciler compares what the database believes with what agents last reported
(apps.machines.reports), both ways: a labelled workload with no active
placement is an orphan and is removed; an active placement whose workload vanished
is lost, and its resources are freed (a workload run to its end that exited, reported
with its status, is not lost: its container waits for its outputs to be read); a host
silent for longer than LATTICE_HOST_OFFLINE_AFTER goes offline and its placements are lost
as of its last heartbeat. Each pass then keeps the warm pools at their sizes
(apps.machines.pool).

What agents send arrives by the inbox's own task, ``control.inbox``, which lives with
the inbox (apps.machines.inbox) because the agent sends through it; it is imported
here so that Celery's autodiscovery, which reads each app's tasks module, registers it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app, shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.machines import (
    hearing,
    inbox,  # noqa: F401 - registers control.inbox (see above)
)
from apps.machines.agent import agent_remove_orphan
from apps.machines.broker import broker_users_restore
from apps.machines.hooks import host_offline
from apps.machines.models import Host, Placement
from apps.machines.pool import pool_names_claimed, pool_replenish
from apps.machines.queue import placement_free, queue_advance_all
from apps.runtimes.base import LABEL_PREFIX

logger = logging.getLogger(__name__)


_MISSES_BEFORE_LOST = 2


@shared_task(name="control.broker_users", soft_time_limit=20, time_limit=30)
def broker_users() -> list[str]:
    """Hosts' broker users that Redis lost (a restart) made again: beat runs it every
    LATTICE_BROKER_USERS_EVERY seconds, so agents are locked out for at most that long."""
    restored = broker_users_restore()
    if restored:
        # Those agents were locked out until now: their silence says nothing of them.
        hearing.deaf_since()
        logger.warning("broker users made again after Redis lost them: %s", ", ".join(restored))
    return restored


@shared_task(name="control.reconcile", soft_time_limit=120, time_limit=180)
def reconcile() -> dict[str, int]:
    """One pass of the reconciler. Idempotent; beat runs it every LATTICE_RECONCILE_EVERY."""
    counts = {"offline": 0, "lost": 0, "orphans": 0, "placed": 0}
    hearing.pass_began()
    if hearing.may_judge_silence():  # not just after the control plane itself was away
        _take_silent_hosts_offline(counts)
    for host in Host.objects.exclude(status=Host.Status.OFFLINE).filter(reported_at__isnull=False):
        try:
            _judge_placements(host, counts)
            _remove_orphans(host, counts)
        except Exception:  # one host's report must not stop the pass for the others
            logger.exception("reconciler: host %s not judged", host.name)
    # Freed capacity goes to whoever waits longest: the lines move once a pass, here, not
    # once per placement freed above (those pass advance=False).
    counts["placed"] = queue_advance_all()
    # Warm pools are filled with what room is left once the lines moved: people first.
    counts.update({f"pool_{k}": v for k, v in pool_replenish().items() if v})
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
        # At once: a report arriving while its placements are freed makes it ready again,
        # and what is sent to it from then on is not void.
        _purge_queue(host)
        for placement in Placement.objects.filter(host=host, active=True):
            seen = max(host.last_heartbeat_at or now, placement.created_at)
            placement_free(placement=placement, reason="lost", at=seen, advance=False)
            counts["lost"] += 1
        host.status = Host.Status.OFFLINE
        try:
            host_offline(host)
        except Exception:  # what the apps above do must not stop the reconciler's pass
            logger.exception("reconciler: host_offline(%s) failed", host.name)


def _purge_queue(host: Host) -> None:
    """What waits in the queue of a host that went offline is void: every placement it had
    was freed (lost) above. A start sent to it while it was silent (the sessions
    reconciler's resend of one that made no progress) would otherwise be taken by its agent
    when it comes back, and start a workload whose session ended, on GPUs that may be
    someone else's by then (issue 20's host-power fault). What still runs there is removed
    once it reports again (the orphans, below)."""
    try:
        with current_app.connection_for_write() as connection:
            channel: Any = connection.default_channel  # kombu's virtual channel
            dropped = channel.queue_purge(host.queue)
    except Exception:  # the broker away: what is left is fenced at its return
        logger.exception("reconciler: the queue of offline host %s not purged", host.name)
        return
    if dropped:
        logger.warning("reconciler: %s message(s) to offline host %s dropped", dropped, host)


def _judge_placements(host: Host, counts: dict[str, int]) -> None:
    """Placed well before the report was taken, or seen running by an earlier report, yet
    not running in it: a miss.

    Two reports in a row that miss a workload, and it is lost. The grace covers a start in
    flight (its message still queued: no report can show it yet); a workload a report saw
    running has started, so it is judged at once however young: one whose container died
    under a live agent (its Docker engine killed and started again) is lost within two
    reports, not LATTICE_RECONCILE_GRACE after it was placed (issue 20's engine fault).
    """
    assert host.reported_at is not None  # noqa: S101 - the caller filtered
    # A job's container that exited is kept (with its status) until its outputs are read:
    # there, not lost, while its placement is active.
    running = {
        w["name"]
        for w in host.reported_workloads
        if (w.get("running") or w.get("exited")) and _ours(w)
    }
    grace = timedelta(seconds=settings.LATTICE_RECONCILE_GRACE)
    judged = Placement.objects.filter(
        Q(created_at__lt=host.reported_at - grace) | Q(last_seen_at__lt=host.reported_at),
        host=host,
        active=True,
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
            placement_free(placement=placement, reason="lost", at=seen, advance=False)
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
    ) | pool_names_claimed(host)
    for name in sorted(reported - known):
        agent_remove_orphan.apply_async(args=(host.name, name), queue=host.queue)
        counts["orphans"] += 1
