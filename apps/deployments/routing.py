"""The gateway's route table: where a deployment's requests may go now, cached per process.

A **route** is what the gateway needs to serve a deployment without touching the database:
its id, team, auth mode, rate limit, whether it is paused, and per revision its traffic
weight and its ready replicas' endpoints. Each web process keeps the routes it has read
(``RouteTable``) and reads one again from the database only when it is missing or stale.

Staleness is said by **generations** in Django's cache (Redis in production, so every
process sees them; locmem in tests and dev, where the server is one process): one per
deployment (``routes_changed``) and one for every credential (``credentials_changed``:
a token revoked, a member removed or their role changed, a session ended). Each is a
random number set on commit of the change; the gateway reads the two it needs on every
request (one Redis round trip, pipelined with the rate limit's count) and drops what it
cached under another number. So a change takes effect on the next request, in every
process, with no timer. Receivers of the models' signals call these
(apps.deployments.gateway.signals); the controller calls ``routes_changed`` too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction

CREDENTIALS_GENERATION = "lattice:gateway:gen:credentials"


def deployment_generation(deployment_id: int) -> str:
    """The cache key of a deployment's route generation."""
    return f"lattice:gateway:gen:deployment:{deployment_id}"


def _new_generation() -> int:
    # An int: Django's Redis cache stores ints raw, so the gateway's pipelined MGET reads them.
    return secrets.randbits(62) + 1


def _bump(key: str) -> None:
    transaction.on_commit(lambda: cache.set(key, _new_generation(), timeout=None))


def routes_changed(deployment_id: int) -> None:
    """Forget every process's cached routes of this deployment (call on commit)."""
    _bump(deployment_generation(deployment_id))


def credentials_changed() -> None:
    """Forget every process's cached credential decisions (on commit)."""
    _bump(CREDENTIALS_GENERATION)


def generations(keys: list[str]) -> dict[str, int]:
    """The current generations of ``keys``; a key the cache lost gets a new one (so what a
    process cached under the lost one is stale, never taken as current)."""
    found = cache.get_many(keys)
    for key in keys:
        if key not in found:
            cache.add(key, _new_generation(), timeout=None)
            found[key] = cache.get(key)
    return {key: int(found[key]) for key in keys}


@dataclass(frozen=True)
class RevisionRoute:
    revision_id: int
    weight: int
    # (replica id, endpoint "http://address:port") of each ready replica.
    replicas: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Route:
    deployment_id: int
    team_id: int
    team_slug: str
    slug: str
    auth_mode: str
    rate_limit_per_minute: int
    paused_reason: str
    revisions: tuple[RevisionRoute, ...]
    generation: int = 0
    # The deployment's newest revision: what a request no revision has a share of (a first
    # revision still starting) is counted under when the gateway answers it itself.
    newest_revision_id: int | None = None

    @property
    def serving(self) -> tuple[RevisionRoute, ...]:
        """The revisions that take a share of requests and have a ready replica."""
        return tuple(r for r in self.revisions if r.weight > 0 and r.replicas)


def route_load(team_slug: str, slug: str) -> Route | None:
    """Read the route of deployment ``slug`` of team ``team_slug`` (None: no such deployment).
    The generation is read first: a change committed while this reads makes it stale."""
    from apps.deployments.models import Deployment, Replica, Revision

    # The team comes from the address, not a signed-in scope; limited to one slug pair here.
    deployment = (
        Deployment.objects.unscoped()
        .filter(team__slug=team_slug, slug=slug, deleted_at__isnull=True)
        .values("pk", "team_id", "auth_mode", "rate_limit_per_minute", "paused_reason", "traffic")
        .first()
    )
    if deployment is None:
        return None
    generation = generations([deployment_generation(deployment["pk"])])
    ready = (
        Replica.objects.for_team(deployment["team_id"])
        .filter(deployment_id=deployment["pk"], status=Replica.Status.READY)
        .exclude(endpoint="")
        .order_by("pk")
        .values_list("pk", "revision_id", "endpoint")
    )
    by_revision: dict[int, list[tuple[int, str]]] = {}
    for replica_id, revision_id, endpoint in ready:
        by_revision.setdefault(revision_id, []).append((replica_id, endpoint.rstrip("/")))
    traffic = {int(k): int(v) for k, v in (deployment["traffic"] or {}).items()}
    newest = (
        Revision.objects.for_team(deployment["team_id"])
        .filter(deployment_id=deployment["pk"])
        .order_by("-number")
        .values_list("pk", flat=True)
        .first()
    )
    revisions = tuple(
        RevisionRoute(
            revision_id, traffic.get(revision_id, 0), tuple(by_revision.get(revision_id, ()))
        )
        for revision_id in sorted(set(traffic) | set(by_revision))
    )
    return Route(
        deployment_id=deployment["pk"],
        team_id=deployment["team_id"],
        team_slug=team_slug,
        slug=slug,
        auth_mode=deployment["auth_mode"],
        rate_limit_per_minute=deployment["rate_limit_per_minute"],
        paused_reason=deployment["paused_reason"],
        revisions=revisions,
        generation=generation[deployment_generation(deployment["pk"])],
        newest_revision_id=newest,
    )
