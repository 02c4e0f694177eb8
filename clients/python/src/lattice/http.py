"""The one place the SDK speaks HTTP: base URL, the token, JSON, and errors as LatticeError.

Every resource calls ``Transport.request`` (or ``stream`` for NDJSON follows and downloads);
nothing else builds requests, so authentication, the User-Agent and error mapping are the
same everywhere.

Retries: a ``GET`` (or ``HEAD``) answered 429 is sent again after the server's
``Retry-After`` (at most ``MAX_RETRY_WAIT`` seconds a time, 1 s when it says nothing), up to
``retries`` times (2 by default); then ``RateLimited`` is raised. A write (POST, PUT,
PATCH, DELETE) is never sent again by the transport: whether it took effect is the
caller's to decide, so its 429 is raised at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

from lattice import __version__
from lattice.errors import ConnectionFailed, LatticeError, RateLimited

if TYPE_CHECKING:
    from collections.abc import Iterator

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# The longest the transport waits before sending a throttled read again (seconds).
MAX_RETRY_WAIT = 30.0
_IDEMPOTENT = frozenset({"GET", "HEAD"})


class Transport:
    """An ``httpx.Client`` bound to one server and token. ``path``s are relative to
    ``/api/v1`` unless they start with ``http``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: httpx.Timeout | None = None,
        retries: int = 2,
    ):
        self.base_url = url.rstrip("/")
        self.token = token
        self.retries = retries
        headers = {"User-Agent": f"lattice-client/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout or DEFAULT_TIMEOUT,
            follow_redirects=False,
        )
        self._external: httpx.Client | None = None
        self._external_lock = threading.Lock()

    def clone(self) -> Transport:
        """Another Transport to the same server with the same token and its own connections:
        one per upload thread, so each keeps its own connection warm."""
        return Transport(self.base_url, self.token, timeout=self.http.timeout)

    def close(self) -> None:
        self.http.close()
        if self._external is not None:
            self._external.close()

    def external(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request to a URL the server handed out (a presigned S3 part URL): without the
        token, which must never leave for another host; errors as ``request``'s."""
        with self._external_lock:
            if self._external is None:
                self._external = httpx.Client(
                    timeout=self.http.timeout,
                    follow_redirects=False,
                    headers={"User-Agent": self.http.headers["User-Agent"]},
                )
        try:
            response = self._external.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(url.split("?", 1)[0], exc) from exc
        if response.is_error:
            raise LatticeError.from_response(response)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; the response when 2xx, else the LatticeError it stands for.
        ``kwargs`` go to httpx (json=, params=, content=, headers=, timeout=). A throttled
        read is sent again as the module says."""
        attempt = 0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise _unreachable(self.base_url, exc) from exc
            if not response.is_error:
                return response
            error = LatticeError.from_response(response)
            if (
                isinstance(error, RateLimited)
                and method.upper() in _IDEMPOTENT
                and attempt < self.retries
            ):
                attempt += 1
                time.sleep(min(error.retry_after or 1.0, MAX_RETRY_WAIT))
                continue
            raise error

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request and whatever it was answered (no error raised for a status, none sent
        again): for a deployment's invoke, where the answer may be the replica's own."""
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and its JSON body (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def paginated(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list route, following ``next`` when the route paginates."""
        body = self.json("GET", path, params=params or None)
        while True:
            if isinstance(body, list):
                yield from body
                return
            yield from body.get("results", [])
            following = body.get("next")
            if not following:
                return
            body = self.json("GET", following)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (NDJSON follows, downloads), raising as ``request`` does."""
        try:
            with self.http.stream(method, path, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise LatticeError.from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc


def _unreachable(url: str, exc: Exception) -> ConnectionFailed:
    return ConnectionFailed(
        f"Could not reach {url}: {exc or type(exc).__name__}.", code="connection"
    )
