"""ASGI entry point: Django for HTTP, the notebook proxy for /nb/, Channels for websockets.

Upload chunks (``PUT .../chunks/<n>/``) reach their Django view with the body streamed
to it rather than spooled first (apps/core/streamed_body.py).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Django must be set up before the routing imports models and consumers.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import Resolver404, resolve  # noqa: E402

from apps.core.streamed_body import streamed  # noqa: E402
from apps.notebooks.proxy import NotebookHTTPProxy  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

notebook_proxy = AuthMiddlewareStack(NotebookHTTPProxy())
django_streamed = streamed(django_asgi_app)
# Routes (view names) whose PUT bodies are streamed to the view: request.scope["lattice.body"].
STREAMED_PUTS = {"api:upload_chunk"}


def _streams_body(scope: dict[str, Any]) -> bool:
    if scope["method"] != "PUT":
        return False
    try:
        return resolve(scope["path"]).view_name in STREAMED_PUTS
    except Resolver404:
        return False


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """JupyterLab's pages and API under /nb/ go to the proxy; everything else to Django."""
    if scope["path"].startswith("/nb/") or scope["path"] == "/nb":
        await notebook_proxy(scope, receive, send)
    elif _streams_body(scope):
        await django_streamed(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        ),
    },
)
