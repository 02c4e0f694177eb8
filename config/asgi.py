"""ASGI entry point. What serves a request depends first on its Host:

- **A deployment's origin** (``<slug>--<team>.<LATTICE_USER_CONTENT_DOMAIN>``,
  apps.deployments.gateway): every HTTP request goes to the deployments' gateway, a lean
  ASGI app (no Django middleware or view per request); websockets are refused. Lattice's
  pages are never served there.
- **The results origin** (``results.<LATTICE_USER_CONTENT_DOMAIN>``, apps.jobs.results): a
  job run's executed notebook, rendered read-only for the holder of a single-use ticket.
- **A notebook's origin** (``nb-<id>.<LATTICE_USER_CONTENT_DOMAIN>``, apps.notebooks.origin):
  every HTTP request and websocket goes to the notebook proxy and nowhere else. Lattice's
  pages, API and ``/ws/`` are never served under such a host, whatever ALLOWED_HOSTS says.
- **Lattice's origin**: ``/api/v1/teams/<team>/deployments/<slug>/invoke/...`` goes to the
  gateway too (its answers sandboxed by CSP there); ``/nb/<id>/...`` is the launch that
  hands a member over to the notebook's origin (apps.notebooks.launch); everything else
  is Django, and websockets under ``/ws/`` are Channels' routes (config/routing.py). A
  request or websocket sent from a page under the user-content domain (its Origin) is
  refused here before it reaches either, whatever ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS
  say: a notebook's page must not act on Lattice as the person who opened it.

Upload chunks (``PUT .../chunks/<n>/``, and a host's ``/hosts/saves/.../chunks/<n>``) reach
their Django view with the body streamed to it rather than spooled first
(apps/core/streamed_body.py).
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Django must be set up before the routing imports models and consumers.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import (  # noqa: E402
    AllowedHostsOriginValidator,
    WebsocketDenier,
)
from django.urls import Resolver404, resolve  # noqa: E402

from apps.core.streamed_body import streamed  # noqa: E402
from apps.deployments.gateway import (  # noqa: E402
    DeploymentGateway,
    deployment_host,
    is_invoke_path,
)
from apps.jobs.results import is_results_host, results_app  # noqa: E402
from apps.notebooks.launch import NotebookLaunch  # noqa: E402
from apps.notebooks.origin import is_user_content_host  # noqa: E402
from apps.notebooks.proxy import NotebookHTTPProxy, header, plain_response  # noqa: E402
from config.routing import notebook_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402

notebook_launch = AuthMiddlewareStack(NotebookLaunch())
notebook_proxy = NotebookHTTPProxy()
deployment_gateway = DeploymentGateway()
django_streamed = streamed(django_asgi_app)
lattice_websockets = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
)
notebook_websockets = URLRouter(notebook_websocket_urlpatterns)
refused_websocket = WebsocketDenier.as_asgi()
NOTEBOOK_WEBSOCKET = re.compile(r"^/nb/[0-9]+/")
# Routes (view names) whose PUT bodies are streamed to the view: request.scope["lattice.body"].
STREAMED_PUTS = {"api:upload_chunk", "api:model_upload_chunk", "hostsave_chunk"}


def _streams_body(scope: dict[str, Any]) -> bool:
    if scope["method"] != "PUT":
        return False
    try:
        return resolve(scope["path"]).view_name in STREAMED_PUTS
    except Resolver404:
        return False


def _on_notebook_origin(scope: dict[str, Any]) -> bool:
    return is_user_content_host(header(scope, b"host"))


def _sent_from_user_content(scope: dict[str, Any]) -> bool:
    origin = header(scope, b"origin")
    return bool(origin) and is_user_content_host(urlsplit(origin).netloc)


def _on_deployment_origin(scope: dict[str, Any]) -> bool:
    return deployment_host(header(scope, b"host")) is not None


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if _on_deployment_origin(scope):
        await deployment_gateway(scope, receive, send)
    elif is_results_host(header(scope, b"host")):
        await results_app(scope, receive, send)
    elif _on_notebook_origin(scope):
        await notebook_proxy(scope, receive, send)
    elif _sent_from_user_content(scope):
        await plain_response(send, 403, "Lattice takes no requests from a notebook's page.")
    elif is_invoke_path(scope["path"]):
        await deployment_gateway(scope, receive, send)
    elif scope["path"].startswith("/nb/") or scope["path"] == "/nb":
        await notebook_launch(scope, receive, send)
    elif _streams_body(scope):
        await django_streamed(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    app: Any
    if _on_deployment_origin(scope):
        app = refused_websocket
    elif _on_notebook_origin(scope):
        app = notebook_websockets if NOTEBOOK_WEBSOCKET.match(scope["path"]) else refused_websocket
    elif _sent_from_user_content(scope) or not scope["path"].startswith("/ws/"):
        app = refused_websocket
    else:
        app = lattice_websockets
    await app(scope, receive, send)


application = ProtocolTypeRouter({"http": http, "websocket": websocket})
