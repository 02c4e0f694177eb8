"""Whether the control plane has been able to hear its hosts: a host's silence means it is
gone only if its reports could have arrived.

A host goes offline (apps.machines.tasks) when no report of it was read for
LATTICE_HOST_OFFLINE_AFTER. But reports are read by the control worker's inbox, through
the broker, into the database: while the control worker is down, PostgreSQL refuses the
inbox, or the agents are locked out of Redis (a restart forgets their users until beat
makes them again, apps.machines.broker), every host is silent although every host is
well. Judged on the first pass after such an outage, every host would go offline and every
running notebook be ended as lost, its container then removed as a stale one.

So the reconciler keeps, in the cache, when its last pass began (a pass that fails still
counts: the control plane was there, and a host that makes every pass fail must not open
a deaf period at each). A pass that finds the previous one older than ``GAP_PASSES``
intervals (the control plane did not run), or an
agent's broker user made again, opens a *deaf* period: until LATTICE_HOST_OFFLINE_AFTER
after it, no host is taken offline for silence (queued reports are read and fresh ones
arrive meanwhile). A host still silent after that is offline as before, lost as of its
last heartbeat. With no previous pass known (the first ever, or the cache emptied), no
deaf period is opened: nothing says the control plane was away.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

LAST_PASS_KEY = "lattice:machines:reconciled-at"  # noqa: S105 - a cache key
HEARING_SINCE_KEY = "lattice:machines:hearing-since"
# Missed passes before the reconciler counts itself as having been away.
GAP_PASSES = 3
_FOREVER = None


def _every() -> float:
    schedule = settings.CELERY_BEAT_SCHEDULE.get("reconcile", {}).get("schedule", 30.0)
    return float(schedule)


def deaf_since(moment: datetime | None = None) -> None:
    """The control plane could not hear its hosts until ``moment`` (default now)."""
    cache.set(HEARING_SINCE_KEY, (moment or timezone.now()).timestamp(), _FOREVER)


def pass_began(now: datetime | None = None) -> None:
    """A reconciler pass begins: if the last one began too long ago, the control plane was
    away, and hears again only from now."""
    now = now or timezone.now()
    last = cache.get(LAST_PASS_KEY)
    if last is not None and now.timestamp() - float(last) > GAP_PASSES * _every():
        deaf_since(now)
    cache.set(LAST_PASS_KEY, now.timestamp(), _FOREVER)


def may_judge_silence(now: datetime | None = None) -> bool:
    """Whether the control plane has heard for long enough to call a silent host gone."""
    now = now or timezone.now()
    since = cache.get(HEARING_SINCE_KEY)
    if since is None:
        return True
    heard_for = timedelta(seconds=now.timestamp() - float(since))
    return heard_for >= timedelta(seconds=settings.LATTICE_HOST_OFFLINE_AFTER)
