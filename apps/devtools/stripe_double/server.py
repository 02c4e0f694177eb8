"""The double's HTTP face: Stripe's v1 wire protocol and the hosted pages.

:class:`StripeDouble` serves both from a ``ThreadingHTTPServer`` in a daemon thread. For
``/v1/`` it does what Stripe does around every endpoint: Bearer (or Basic) API keys,
form-encoded parameters, ``Request-Id`` headers, Stripe's error bodies, and idempotency
keys on POSTs, with replays marked ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import socket
import threading
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

# The endpoint modules register their routes when imported.
from . import api, endpoints, endpoints_catalog, forms, pages  # noqa: F401
from .errors import StripeDoubleError
from .objects import API_VERSION, JSON, new_id
from .state import StripeState

if TYPE_CHECKING:
    from email.message import Message

logger = logging.getLogger(__name__)

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class _Replay:
    """A stored answer to an idempotent request, and the request it answered."""

    method: str
    path: str
    params: JSON
    status: int
    body: bytes
    request_id: str


class StripeDouble(StripeState):
    """A local Stripe for tests and offline development.

    ``start()`` it and give stripe-python ``base_addresses={"api": double.url}``; the
    stores, scenario steps, webhook delivery and the arguments it is made with are
    :class:`StripeState`'s.
    """

    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @cached_property
    def replays(self) -> dict[str, _Replay]:
        """The stored answers to idempotent POSTs, by Idempotency-Key."""
        return {}

    def start(self, port: int = 0) -> StripeDouble:
        """Serve on 127.0.0.1 (a free port unless ``port`` is given); returns self."""
        if self._server is not None:
            raise RuntimeError("The Stripe double is already serving.")
        self._server = _Server(("127.0.0.1", port), self)
        self._url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread, self._url = None, None, None

    def __enter__(self) -> StripeDouble:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def answer_api(
        self, method: str, path: str, query: str, body: bytes, headers: Message
    ) -> Answer:
        """Answer one ``/v1/`` request: authenticate, decode, replay or dispatch."""
        request_id = new_id("req", 14)
        key = headers.get("Idempotency-Key") if method == "POST" else None
        base = {
            "Request-Id": request_id,
            "Stripe-Version": headers.get("Stripe-Version") or API_VERSION,
        }
        if key:
            base["Idempotency-Key"] = key
        try:
            params = forms.parse(body.decode() if method == "POST" else query)
        except (StripeDoubleError, UnicodeDecodeError) as exc:
            with self.lock:
                self.requests.append((method, path, {}))
            error = exc if isinstance(exc, StripeDoubleError) else StripeDoubleError("Invalid body")
            return _json(error.status, error.body(), base)
        with self.lock:
            self.requests.append((method, path, params))
        refused = self._refuse_key(headers.get("Authorization", ""))
        if refused is not None:
            return _json(401, refused.body(), base)
        with self.mutation():
            if key and key in self.replays:
                return self._replay(
                    self.replays[key], key=key, method=method, path=path, params=params, base=base
                )
            self.request = {"id": request_id, "idempotency_key": key}
            try:
                status, answer = 200, api.dispatch(self, method, path, params)
            except StripeDoubleError as exc:
                status, answer = exc.status, exc.body()
            finally:
                self.request = None
            reply = _json(status, answer, base)
            # Stripe stores no result for a request that failed validation.
            if key and status < HTTPStatus.BAD_REQUEST:
                self.replays[key] = _Replay(method, path, params, status, reply[2], request_id)
            return reply

    def _replay(
        self,
        replay: _Replay,
        *,
        key: str,
        method: str,
        path: str,
        params: JSON,
        base: dict[str, str],
    ) -> Answer:
        if (replay.method, replay.path, replay.params) != (method, path, params):
            error = StripeDoubleError(
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
            return _json(400, error.body(), base)
        headers = {
            **base,
            "Content-Type": "application/json",
            "Idempotent-Replayed": "true",
            "Original-Request": replay.request_id,
        }
        return replay.status, headers, replay.body

    def _refuse_key(self, authorization: str) -> StripeDoubleError | None:
        key = _api_key(authorization)
        if key is None:
            return StripeDoubleError(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
                status=401,
            )
        if not key.startswith(("sk_", "rk_")) or (self.api_key and key != self.api_key):
            masked = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:]
            return StripeDoubleError(f"Invalid API Key provided: {masked}", status=401)
        return None


def _api_key(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    if scheme == "Bearer":
        return credentials.strip() or None
    if scheme == "Basic":  # curl -u sk_test_...: sends the key as the user name
        try:
            user = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    return None


def _json(status: int, body: JSON, base: dict[str, str]) -> Answer:
    headers = {**base, "Content-Type": "application/json"}
    return status, headers, json.dumps(body, indent=2).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], double: StripeDouble) -> None:
        super().__init__(address, _Handler)
        self.double = double
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections, so a stopped double answers nobody."""
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as stripe-python's requests session expects
    timeout = 30  # an idle kept-alive connection gives its thread back after this
    # Headers and body go out as separate writes; without this, delayed ACKs cost 40 ms each.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        logger.debug("Stripe double: %s", format % args)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        double = self.server.double
        try:
            if url.path.startswith("/v1/"):
                status, headers, payload = double.answer_api(
                    method, url.path, url.query, body, self.headers
                )
            else:
                form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
                status, headers, payload = _page(pages.handle(double, method, url.path, form))
        except Exception:
            logger.exception("Stripe double: %s %s failed", method, url.path)
            error = StripeDoubleError(
                "The Stripe double failed; see its log.", status=500, type="api_error"
            )
            # Retrying would repeat whatever half-done change caused this.
            status, headers, payload = _json(500, error.body(), {"Stripe-Should-Retry": "false"})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _page(page: pages.Page) -> Answer:
    if page.location is not None:
        return page.status, {"Location": page.location}, b""
    return page.status, {"Content-Type": page.content_type}, page.html.encode()
