"""Middleware of the core: streaming responses give their database connection back, and
health probes are answered before any other middleware.

Streaming (``StreamingReleasesConnectionMiddleware``): a request's connection goes back to
the pool only at ``request_finished``, when the *response* ends. A response that streams
(a log follower, a download, an archive) would hold one of the process's few pooled
connections (config/settings/base.py) for its whole life: twenty ``logs -f`` and every
other request of the process waits. Outermost, so it runs after every other middleware's
response work: the stream starts holding none; what it reads later it takes and gives
back each time (apps.core.db.release_connections, e.g. the log followers' access checks).

Health probes:
Container and load-balancer probes reach the process by its internal address
(Host: 127.0.0.1:8000), which is rightly not in ALLOWED_HOSTS, and over plain
HTTP. Answering here, first, keeps them out of host validation and HTTPS
redirects without loosening either for real requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core import views
from apps.core.db import release_connections

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse

_PROBES = {"/healthz": views.healthz, "/readyz": views.readyz}


class HealthProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = _PROBES.get(request.path_info)
        if probe is not None:
            return probe(request)
        return self.get_response(request)


class StreamingReleasesConnectionMiddleware:
    """A streaming response starts with this thread's database connections given back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.streaming:
            release_connections()
        return response
