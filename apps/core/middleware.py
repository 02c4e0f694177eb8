"""Health probes answered before any other middleware.

Container and load-balancer probes reach the process by its internal address
(Host: 127.0.0.1:8000), which is rightly not in ALLOWED_HOSTS, and over plain
HTTP. Answering here, first, keeps them out of host validation and HTTPS
redirects without loosening either for real requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core import views

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
