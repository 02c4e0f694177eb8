"""The gateway's ASGI app: a request for a deployment, from the address to a replica and back.

Per request, with nothing of Django's request stack: find the route in this process's
table; read the generations and the caller's rate count from the shared cache in one
round trip (apps.deployments.gateway.shared); re-read the route or the credential's
decision from the database only when missing or stale (``database_sync_to_async``); count
the request against the caller's limit (429 + Retry-After past it). The caller is the
credential the decision accepted (a token, a key, a member), else the client's address:
what a public deployment is sent as a bearer is no caller. It is guessed from this
process's cache for the one round trip, and counted again when the guess was wrong (a
first request). Then choose a revision by
``Deployment.traffic`` weight and, within it, the ready replica with the fewest requests
in flight from this process; send the request on a pooled keep-alive connection
(apps.deployments.gateway.upstream), and stream the answer back as it comes (server-sent
events included).
A replica that refuses the connection is set aside for a few seconds and another tried.
With no ready replica the request is held: ``controller.deployment_wake`` once, then the
route is looked at again every ``HOLD_POLL`` seconds, up to LATTICE_DEPLOYMENT_COLD_WAIT,
then 503 with Retry-After. Each look decides the caller again when the route or the
credentials changed: a request held while its key was revoked, its member removed, or
its deployment paused or deleted is refused, never served.

On Lattice's own origin (the API path) every answer carries ``Content-Security-Policy:
sandbox``, ``X-Content-Type-Options: nosniff`` and ``Cross-Origin-Resource-Policy:
same-origin``, and only a short list of the replica's headers, its content type made safe
(``_on_lattice_headers``): what a replica returns must not run, style, redirect or set
cookies as Lattice. On the deployment's own host, a replica's cookie never lands on
Lattice or a notebook (``_tossed``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.cookie import parse_cookie

from apps.deployments import controller, metrics
from apps.deployments.gateway.access import Decision, decide
from apps.deployments.gateway.addresses import Address, address_of
from apps.deployments.gateway.shared import shared_state
from apps.deployments.gateway.upstream import Pool, Refused, Response, TimedOut, UpstreamError
from apps.deployments.routing import (
    CREDENTIALS_GENERATION,
    RevisionRoute,
    Route,
    deployment_generation,
    route_load,
)
from apps.notebooks.proxy.asgi import lattice_cookies, plain_response

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

logger = logging.getLogger(__name__)

HOLD_POLL = 0.25
HELD_RETRY_AFTER = 5
# A replica that refused a connection is passed over for this long (in this process).
SET_ASIDE_SECONDS = 5.0
# Request bodies up to this size are read whole, so a refused connection can be retried.
REPLAYABLE_BODY = 8 * 1024 * 1024
# Cached decisions are checked against the generations on every request; this only bounds
# what a change the signals cannot see (a queryset update) may leave.
DECISION_SECONDS = 60.0
_MAX_CACHED = 10_000

_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"authorization",
    b"cookie",
    b"expect",
}
# Set only by the gateway (its own answers, ``_answer``): a replica's is dropped, so
# its answer never passes for Lattice's (a model's 401 read as "your token is wrong").
_GATEWAY_ONLY = b"x-lattice-error"
_SANDBOX = [
    (b"content-security-policy", b"sandbox"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_READS = (b"GET", b"HEAD", b"OPTIONS")


@dataclass(frozen=True)
class _Refusal:
    status: int
    message: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class _Call:
    """What the gateway reads of a request once."""

    scope: dict[str, Any]
    address: Address
    headers: dict[bytes, bytes]
    method: bytes
    bearer: str
    session_key: str
    client: str
    # What the decision is cached under: the origin and the credential's digest (no
    # plaintext token stays in this process's tables). The rate limit counts the accepted
    # credential instead (Decision.caller), else the client's address: a made-up bearer
    # sent to a public deployment is no caller of its own.
    credential: str

    @classmethod
    def of(cls, scope: dict[str, Any], address: Address) -> _Call:
        headers = {name.lower(): value for name, value in scope.get("headers", ())}
        bearer = _bearer(headers.get(b"authorization", b""))
        session_key = ""
        if address.on_lattice_origin and not bearer:
            cookies = parse_cookie(headers.get(b"cookie", b"").decode("latin-1"))
            session_key = cookies.get(settings.SESSION_COOKIE_NAME, "")
        client = (scope.get("client") or ("", 0))[0] or ""
        credential = bearer or (f"s:{session_key}" if session_key else "")
        digest = hashlib.sha256(credential.encode()).hexdigest()[:32] if credential else ""
        return cls(
            scope=scope,
            address=address,
            headers=headers,
            method=scope["method"].encode(),
            bearer=bearer,
            session_key=session_key,
            client=client,
            credential=f"{int(address.on_lattice_origin)}:{digest}",
        )

    def caller(self, decision: Decision) -> str:
        """Who the rate limit counts: the accepted credential, else the client's address."""
        return decision.caller or f"ip:{self.client}"


@dataclass
class _Cached:
    decision: Decision
    generations: tuple[int, int]
    until: float


class DeploymentGateway:
    """ASGI app for a deployment's host and for the invoke path on Lattice's origin."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.decisions: dict[tuple[int, str], _Cached] = {}
        self.in_flight: dict[int, int] = {}  # replica id -> requests from this process
        self.set_aside: dict[int, float] = {}  # replica id -> until (monotonic)
        self._pools: dict[asyncio.AbstractEventLoop, Pool] = {}

    # --- the request ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        address = address_of(scope)
        if address is None:
            await _answer(send, 404, "No such deployment.", sandbox=False)
            return
        metrics.flusher_start()
        call = _Call.of(scope, address)
        admitted = await self._admit(call)
        if isinstance(admitted, _Refusal):
            await _answer(
                send,
                admitted.status,
                admitted.message,
                sandbox=address.on_lattice_origin,
                headers=admitted.headers,
            )
            return
        await self._serve(call, receive, send, admitted)

    async def _admit(self, call: _Call) -> Route | _Refusal:
        """The deployment's route if this caller may send this request now, else why not."""
        found = await self._route(call)
        if isinstance(found, _Refusal):
            return found
        route, gens, counted, count = found
        decision = await self._decision(route, gens, call)
        if not decision.allowed:
            challenge = [(b"www-authenticate", b'Bearer realm="deployment"')]
            unauthorised = decision.status == 401  # noqa: PLR2004
            return _Refusal(decision.status, decision.message, challenge if unauthorised else [])
        if call.session_key and call.method not in _READS and not _from_lattice(call.headers):
            return _Refusal(403, "Refused: this request came from another page.")
        caller = call.caller(decision)
        if caller != counted:
            # Not the caller guessed from this process's cache (a new credential, a route
            # that changed): counted now, in a second round trip.
            _, count = await self._shared(route, caller)
        limit = route.rate_limit_per_minute
        if limit and count > limit:
            retry = str(60 - int(time.time()) % 60).encode()
            message = f"Over this deployment's limit of {limit} requests a minute for one caller."
            return _Refusal(429, message, [(b"retry-after", retry)])
        if route.paused_reason:
            message = f"This deployment is paused: {route.paused_reason}"
            return _Refusal(503, message, [(b"retry-after", b"60")])
        return route

    def _guess_caller(self, route: Route, call: _Call) -> str | None:
        """Who the rate limit will count, from this process's cache (checked after the
        decision); None when unknown: then nothing is counted before the decision."""
        if route.auth_mode == "public":
            return call.caller(Decision(0))
        cached = self.decisions.get((route.deployment_id, call.credential))
        if cached is None or not cached.decision.allowed:
            return None
        return call.caller(cached.decision)

    async def _route(
        self, call: _Call
    ) -> tuple[Route, tuple[int, int], str | None, int] | _Refusal:
        """The route (read again when stale), the generations, and the caller counted in the
        same round trip with its count (None and 0 when it could not be guessed)."""
        name = (call.address.team, call.address.slug)
        route = self.routes.get(name)
        if route is None:
            route = await database_sync_to_async(route_load)(*name)
            if route is None:
                return _Refusal(404, "No such deployment.")
            self._remember_route(route)
        counted = self._guess_caller(route, call)
        gens, count = await self._shared(route, counted)
        if gens[0] != route.generation:
            self.routes.pop(name, None)
            fresh = await database_sync_to_async(route_load)(*name)
            if fresh is None:
                return _Refusal(404, "No such deployment.")
            if fresh.deployment_id != route.deployment_id:
                # Another deployment by that name now: its own generation and count.
                counted = self._guess_caller(fresh, call)
                gens, count = await self._shared(fresh, counted)
            route = fresh
            gens = (route.generation, gens[1])
            self._remember_route(route)
        return route, gens, counted, count

    async def _decision(self, route: Route, gens: tuple[int, int], call: _Call) -> Decision:
        if route.auth_mode == "public":
            return Decision(0)
        key = (route.deployment_id, call.credential)
        cached = self.decisions.get(key)
        now = time.monotonic()
        if cached is not None and cached.generations == gens and cached.until > now:
            decision = cached.decision
            if decision.expires_at is None or decision.expires_at.timestamp() > time.time():
                return decision
        decision = await database_sync_to_async(decide)(
            route,
            bearer=call.bearer,
            session_key=call.session_key,
            on_lattice_origin=call.address.on_lattice_origin,
            ip=call.client or None,
        )
        if len(self.decisions) >= _MAX_CACHED:
            self.decisions.clear()
        self.decisions[key] = _Cached(decision, gens, now + DECISION_SECONDS)
        return decision

    async def _shared(self, route: Route, caller: str | None) -> tuple[tuple[int, int], int]:
        """The route's and the credentials' generations, and ``caller``'s count this minute
        after this request (every request counts, so a limit set later sees the minute's
        requests); 0 when no caller is given."""
        minute = int(time.time() // 60)
        rate_key = None
        if caller is not None:
            rate_key = f"lattice:gateway:rate:{route.deployment_id}:{caller}:{minute}"
        keys = [deployment_generation(route.deployment_id), CREDENTIALS_GENERATION]
        gens, count = await shared_state(keys, rate_key, window=60)
        return (gens[keys[0]], gens[keys[1]]), count

    def _remember_route(self, route: Route) -> None:
        if len(self.routes) >= _MAX_CACHED:
            self.routes.clear()
        self.routes[(route.team_slug, route.slug)] = route

    # --- to a replica ----------------------------------------------------------------------

    def _choose(self, route: Route, tried: set[int]) -> tuple[RevisionRoute, int, str] | None:
        """A revision by weight, then its ready replica with the fewest requests in flight
        here. Replicas this request tried are left out; those set aside (one refused a
        connection lately) only when no other is left. None when none is left."""
        now = time.monotonic()
        revisions, aside = [], []
        for revision in route.serving:
            untried = [r for r in revision.replicas if r[0] not in tried]
            usable = [r for r in untried if self.set_aside.get(r[0], 0) <= now]
            if usable:
                revisions.append((revision, usable))
            elif untried:
                aside.append((revision, untried))
        revisions = revisions or aside
        if not revisions:
            return None
        weights = [revision.weight for revision, _ in revisions]
        revision, usable = random.choices(revisions, weights=weights)[0]  # noqa: S311
        fewest = min(self.in_flight.get(r[0], 0) for r in usable)
        replica_id, endpoint = random.choice(  # noqa: S311
            [r for r in usable if self.in_flight.get(r[0], 0) == fewest]
        )
        return revision, replica_id, endpoint

    async def _serve(self, call: _Call, receive: Any, send: Any, route: Route) -> None:
        sandbox = call.address.on_lattice_origin
        body: bytes | AsyncIterator[bytes] | None = None
        length = call.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) <= REPLAYABLE_BODY:
            body = await _read_body(receive)
            if body is None:
                return  # the client went away
        elif call.method not in (*_READS, b"DELETE") or length is not None:
            body = _stream_body(receive)
        replayable = body is None or isinstance(body, bytes)
        started = time.monotonic()
        deadline = started + float(settings.LATTICE_DEPLOYMENT_COLD_WAIT)
        woken = False
        tried: set[int] = set()
        while True:
            chosen = self._choose(route, tried)
            if chosen is None:
                tried.clear()  # after a pause, every replica may be tried again
                if not woken:
                    woken = True
                    await _wake(route.deployment_id)
                held = await self._hold(call, send, route, deadline, started)
                if held is None:
                    return
                route = held
                continue
            sent = await self._forward(
                call, send, route=route, chosen=chosen, body=body, started=started
            )
            if sent:
                return
            # The replica refused the connection, or answered nothing: set it aside and try another.
            self.set_aside[chosen[1]] = time.monotonic() + SET_ASIDE_SECONDS
            tried.add(chosen[1])
            if not replayable:
                message = "The deployment's replica did not answer."
                await _answer(send, 502, message, sandbox=sandbox)
                self._count_unserved(call, route, chosen[0].revision_id, 502, started)
                return

    def _count_unserved(
        self, call: _Call, route: Route, revision_id: int | None, status: int, started: float
    ) -> None:
        """Count a request the gateway answered itself, so the charts' 5xx are honest."""
        if revision_id is None:
            return  # a deployment without a revision: nothing to count it under
        metrics.counts.answered(
            revision_id=revision_id,
            deployment_id=route.deployment_id,
            team_id=route.team_id,
            status=status,
            ms=(time.monotonic() - started) * 1000,
            method=call.scope["method"],
            path=call.address.log_path,
        )

    async def _hold(
        self, call: _Call, send: Any, route: Route, deadline: float, started: float
    ) -> Route | None:
        """Wait a poll for a ready replica: the route to try again, or None once answered
        (503 past the deadline, or the refusal of a caller decided again)."""
        sandbox = call.address.on_lattice_origin
        if time.monotonic() >= deadline:
            message = "No replica of this deployment is ready yet. Try again shortly."
            retry = [(b"retry-after", str(HELD_RETRY_AFTER).encode())]
            await _answer(send, 503, message, sandbox=sandbox, headers=retry)
            self._count_unserved(call, route, _meant_for(route), 503, started)
            return None
        await asyncio.sleep(HOLD_POLL)
        again = await self._again(call, route)
        if isinstance(again, _Refusal):
            await _answer(send, again.status, again.message, sandbox=sandbox, headers=again.headers)
            return None
        return again

    async def _again(self, call: _Call, route: Route) -> Route | _Refusal:
        """For a held request: the route again if it changed (its generation), and the
        caller decided again if the route or the credentials changed meanwhile, so a key
        or token revoked, a member removed, a deployment paused or deleted while the request
        waited opens nothing. Not counted against the rate limit a second time."""
        keys = [deployment_generation(route.deployment_id), CREDENTIALS_GENERATION]
        found, _ = await shared_state(keys, None, window=60)
        gens = (found[keys[0]], found[keys[1]])
        if gens[0] != route.generation:
            fresh = await database_sync_to_async(route_load)(route.team_slug, route.slug)
            if fresh is None or fresh.deployment_id != route.deployment_id:
                self.routes.pop((route.team_slug, route.slug), None)
                return _Refusal(404, "This deployment was deleted while the request waited.")
            self._remember_route(fresh)
            route = fresh
            gens = (route.generation, gens[1])
        decision = await self._decision(route, gens, call)
        if not decision.allowed:
            return _Refusal(decision.status, decision.message)
        if route.paused_reason:
            message = f"This deployment is paused: {route.paused_reason}"
            return _Refusal(503, message, [(b"retry-after", b"60")])
        return route

    async def _forward(
        self,
        call: _Call,
        send: Any,
        *,
        route: Route,
        chosen: tuple[RevisionRoute, int, str],
        body: bytes | AsyncIterator[bytes] | None,
        started: float,
    ) -> bool:
        """Send the request to the chosen replica and its answer back; False when the
        replica refused the connection or answered nothing (nothing went to the client)."""
        revision, replica_id, endpoint = chosen
        sandbox = call.address.on_lattice_origin
        method = call.scope["method"]
        path = call.address.upstream_path
        headers = _request_headers(call.scope, client=call.client)
        self.in_flight[replica_id] = self.in_flight.get(replica_id, 0) + 1
        metrics.counts.started(
            revision_id=revision.revision_id,
            deployment_id=route.deployment_id,
            team_id=route.team_id,
            replica_id=replica_id,
        )
        status = 502
        try:
            try:
                response = await self._pool().request(
                    endpoint,
                    method,
                    path,
                    headers,
                    body,
                    read_timeout=float(settings.LATTICE_DEPLOYMENT_REPLICA_TIMEOUT),
                )
            except Refused as exc:
                logger.info("replica %s refused a connection: %s", replica_id, exc)
                status = 0
                return False
            except _ClientGone:
                status = 499
                return True
            except TimedOut as exc:
                logger.info("replica %s timed out: %s", replica_id, exc)
                status = 504
                message = "The deployment's replica did not answer in time."
                await _answer(send, 504, message, sandbox=sandbox)
                return True
            except UpstreamError as exc:
                logger.info("replica %s failed: %s", replica_id, exc)
                await _answer(
                    send, 502, "The deployment's replica did not answer.", sandbox=sandbox
                )
                return True
            status = response.status
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": _response_headers(response, sandbox=sandbox),
                    }
                )
                async for chunk in response.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except (UpstreamError, OSError, asyncio.IncompleteReadError) as exc:
                logger.info("replica %s broke off its answer: %s", replica_id, exc)
            finally:
                response.close()
            return True
        finally:
            self.in_flight[replica_id] -= 1
            if not self.in_flight[replica_id]:
                del self.in_flight[replica_id]
            if status:
                metrics.counts.finished(
                    revision_id=revision.revision_id,
                    status=status,
                    ms=(time.monotonic() - started) * 1000,
                    method=method,
                    path=call.address.log_path,
                    replica_id=replica_id,
                )
            else:
                # Not a request the replica saw: in flight again as it was.
                metrics.counts.cancel(revision_id=revision.revision_id, replica_id=replica_id)

    def _pool(self) -> Pool:
        """This event loop's connections to replicas."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = Pool()
        return pool


# --- helpers ------------------------------------------------------------------------------


def _meant_for(route: Route) -> int | None:
    """The revision a request with no ready replica was meant for: one by traffic weight
    (as ``_choose`` would pick), else the deployment's newest."""
    shares = [r for r in route.revisions if r.weight > 0]
    if shares:
        weights = [r.weight for r in shares]
        return random.choices(shares, weights=weights)[0].revision_id  # noqa: S311
    return route.newest_revision_id


async def _wake(deployment_id: int) -> None:
    """Ask the controller for a replica (cheap and idempotent there); a failure is logged,
    and the request is held all the same."""
    try:
        await database_sync_to_async(controller.deployment_wake)(deployment_id)
    except Exception:
        logger.exception("waking deployment %s failed", deployment_id)


def _bearer(value: bytes) -> str:
    scheme, _, credential = value.decode("latin-1").strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


def _from_lattice(headers: dict[bytes, bytes]) -> bool:
    """A write signed in by a session must come from Lattice's own pages (its Origin)."""
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    return bool(origin) and urlsplit(origin).netloc.lower() == host.lower()


class _ClientGone(Exception):  # noqa: N818 - an event, not an error
    """The client went away before it had sent the whole body."""


async def _read_body(receive: Any) -> bytes | None:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _stream_body(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def _request_headers(scope: dict[str, Any], *, client: str) -> list[tuple[bytes, bytes]]:
    """The caller's headers less hop-by-hop ones and its credentials (a replica never sees a
    token, key or Lattice cookie), plus X-Forwarded-For."""
    out = [(n, v) for n, v in scope.get("headers", ()) if n.lower() not in _HOP_BY_HOP]
    if client:
        out.append((b"x-forwarded-for", client.encode("latin-1")))
    return out


def _response_headers(response: Response, *, sandbox: bool) -> list[tuple[bytes, bytes]]:
    """The replica's headers less hop-by-hop ones. On Lattice's origin (``sandbox``) only
    those on ``_ON_LATTICE`` and harmless ``x-`` ones pass, with the content type made safe
    (``_on_lattice_headers``). On the deployment's own host every header passes but a
    cookie that would land on Lattice or a notebook (``_tossed``)."""
    if sandbox:
        return _on_lattice_headers(response)
    out = []
    for name, value in response.headers:
        lower = name.lower()
        if lower in (b"connection", b"keep-alive", b"transfer-encoding", _GATEWAY_ONLY):
            continue
        if lower == b"set-cookie" and _tossed(value):
            continue
        out.append((name, value))
    if response.content_type.startswith("text/event-stream"):
        out.append((b"x-accel-buffering", b"no"))  # a proxy in front must not hold events
    return out


def _tossed(set_cookie: bytes) -> bool:
    """A cookie a deployment's origin may not set: one of Lattice's or the notebook
    origin's names (apps.notebooks.proxy.asgi.lattice_cookies, the notebook proxy's own
    list), or any with a Domain attribute: a deployment's cookies stay on its own host,
    never on the user-content domain (every notebook's and deployment's parent) or on
    Lattice's."""
    pair, *attributes = set_cookie.decode("latin-1").split(";")
    if pair.split("=", 1)[0].strip() in lattice_cookies():
        return True
    return any(a.split("=", 1)[0].strip().lower() == "domain" for a in attributes)


# The replica's headers that pass on Lattice's origin (the API path), besides ``x-`` ones.
# Nothing that acts on the origin: no Set-Cookie, Location, Refresh, Link, CORS,
# Service-Worker-Allowed, Clear-Site-Data, CSP or Content-Type options of the replica's.
_ON_LATTICE = {
    b"content-type",
    b"content-length",
    b"content-encoding",
    b"content-language",
    b"content-disposition",
    b"content-range",
    b"accept-ranges",
    b"cache-control",
    b"expires",
    b"etag",
    b"last-modified",
    b"date",
    b"vary",
    b"retry-after",
}
# ``x-`` headers that are not a replica's own: read by a proxy in front or by a browser.
_X_NOT_ON_LATTICE = (
    b"x-content-type-options",
    b"x-frame-options",
    b"x-accel-",
    b"x-sendfile",
    b"x-lighttpd-send-file",
    b"x-dns-prefetch-control",
    b"x-permitted-cross-domain-policies",
)
# Types a browser does not run as script or style (nosniff is sent): kept on Lattice's
# origin. Any other (HTML, script, CSS, SVG, XML, none) is sent as an attachment of
# application/octet-stream.
_SAFE_TYPES = {
    "application/json",
    "application/x-ndjson",
    "application/octet-stream",
    "text/plain",
    "text/event-stream",
    "text/csv",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "video/mp4",
    "video/webm",
}
_CHARSET = re.compile(r";\s*charset=\"?([A-Za-z0-9_.:-]{1,40})\"?", re.IGNORECASE)


def _safe_type(value: str) -> str | None:
    """The content type rebuilt from its essence and charset when the essence is a safe
    one, else None. Rebuilt, not passed: a list ("text/plain, text/javascript") is read by
    browsers as its last type."""
    if "," in value:
        return None
    essence = value.split(";", 1)[0].strip().lower()
    if essence not in _SAFE_TYPES and not (
        essence.startswith("application/") and essence.endswith("+json")
    ):
        return None
    charset = _CHARSET.search(value)
    return f"{essence}; charset={charset.group(1)}" if charset else essence


def _on_lattice_headers(response: Response) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in response.headers:
        lower = name.lower()
        if lower == b"content-type":
            continue  # set below, made safe
        if lower == _GATEWAY_ONLY:
            continue
        if lower in _ON_LATTICE or (
            lower.startswith(b"x-") and not lower.startswith(_X_NOT_ON_LATTICE)
        ):
            out.append((name, value))
    content_type = _safe_type(response.content_type)
    if content_type is None:
        out = [(n, v) for n, v in out if n.lower() != b"content-disposition"]
        out += [
            (b"content-type", b"application/octet-stream"),
            (b"content-disposition", b"attachment"),
        ]
    else:
        out.append((b"content-type", content_type.encode("latin-1")))
        if content_type.startswith("text/event-stream"):
            out.append((b"x-accel-buffering", b"no"))  # a proxy in front must not hold events
    return [*out, *_SANDBOX]


async def _answer(
    send: Any,
    status: int,
    text: str,
    *,
    sandbox: bool,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """The gateway's own short answer (the notebook proxy's: text/plain, never cached;
    sandboxed on Lattice's origin), marked ``X-Lattice-Error: <code>`` so a client tells it
    from a replica's answer of the same status."""
    code = _ERROR_CODES.get(status, "error").encode()
    marked = [(b"x-lattice-error", code), *(headers or [])]
    await plain_response(send, status, text, [*marked, *(_SANDBOX if sandbox else [])])


# The gateway's own answers' codes, as the API's error format names the same refusals.
_ERROR_CODES = {
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    429: "throttled",
    502: "bad_gateway",
    503: "unavailable",
    504: "replica_timeout",
}
