"""The one place the SDK speaks HTTP: base URL, the token, JSON, and errors as LatticeError.

Every resource calls ``Transport.request`` (or ``stream`` for NDJSON follows and downloads);
nothing else builds requests, so authentication, the User-Agent and error mapping are the
same everywhere.

Retries: a ``GET`` (or ``HEAD``) answered 429 is sent again after the server's
``Retry-After`` (at most ``MAX_RETRY_WAIT`` seconds a time, 1 s when it says nothing), up to
``retries`` times (2 by default); then ``RateLimited`` is raised. A write (POST, PUT,
PATCH, DELETE) is never sent again by the transport: whether it took effect is the
caller's to decide, so its 429 is raised at once.

The token goes only to the server the Transport was made for: an absolute URL (a list's
``next`` link) is followed only on that server (scheme, host and port), and a redirect is
never followed but raised as an error naming where the server points.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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

    def owns(self, url: str) -> bool:
        """Whether the absolute ``url`` is on this Transport's server (same scheme, host and
        port: not a prefix match, which ``https://host.evil.io`` or ``host@other`` pass)."""
        return _origin(url) == _origin(self.base_url)

    def _ours(self, path: str) -> str:
        """``path`` as sent: a relative one as is; an absolute one only on this server."""
        if not path.startswith(("http://", "https://")):
            return path
        if not self.owns(path):
            raise LatticeError(
                f"The server at {self.base_url} sent a link to another server "
                f"({_origin_text(path)}): not followed, so the token stays here.",
                code="foreign_link",
            )
        return path

    def _page_path(self, link: str) -> str:
        """A ``next`` link as a path on this server: only its path and query are used, so
        the token goes where the Transport was made for, whatever scheme or host the server
        built the link with (a proxy that does not pass on https, an internal host name)."""
        parts = urlsplit(link)
        prefix = urlsplit(self.base_url).path.rstrip("/") + API_PREFIX
        if not parts.path.startswith(prefix + "/"):
            raise LatticeError(
                f"The server at {self.base_url} sent a page link outside its API ({link!r}): "
                "not followed.",
                code="foreign_link",
            )
        return parts.path[len(prefix) :] + (f"?{parts.query}" if parts.query else "")

    def _redirect(self, response: httpx.Response) -> LatticeError:
        location = response.headers.get("Location", "")
        where = location
        if location.startswith(("http://", "https://")):
            parts = urlsplit(location)
            prefix = parts.path.split(API_PREFIX, 1)[0] if API_PREFIX in parts.path else ""
            where = f"{parts.scheme}://{parts.netloc}{prefix}"
        return LatticeError(
            f"The server at {self.base_url} redirects to {where or 'another address'}: use "
            f"that URL (`lattice login --url {where or 'URL'}`, or LATTICE_URL).",
            code="redirect",
            status=response.status_code,
        )

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
        path = self._ours(path)
        attempt = 0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise _unreachable(self.base_url, exc) from exc
            if response.is_redirect:
                raise self._redirect(response)
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
        path = self._ours(path)
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and its JSON body (None for an empty body); a LatticeError when the
        body is not JSON (the URL is not a Lattice API)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise LatticeError(
                f"{self.base_url} does not look like a Lattice API (its answer to "
                f"{method} {API_PREFIX}{path if path.startswith('/') else '/' + path} "
                "is not JSON): check the URL.",
                code="not_lattice",
                status=response.status_code,
            ) from None

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
            body = self.json("GET", self._page_path(str(following)))

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (NDJSON follows, downloads), raising as ``request`` does."""
        path = self._ours(path)
        try:
            with self.http.stream(method, path, **kwargs) as response:
                if response.is_redirect:
                    raise self._redirect(response)
                if response.is_error:
                    response.read()
                    raise LatticeError.from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return scheme, "\0invalid", None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    if parts.username is not None or parts.password is not None:
        return scheme, "\0userinfo", port
    return scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}"


def _unreachable(url: str, exc: Exception) -> ConnectionFailed:
    return ConnectionFailed(
        f"Could not reach {url}: {exc or type(exc).__name__}.", code="connection"
    )
