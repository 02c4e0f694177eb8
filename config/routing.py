"""Websocket routes: Lattice's live streams under ``/ws/``, and JupyterLab's own under
``/nb/<id>/`` on each notebook's origin (config/asgi.py picks the list by Host)."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from apps.deployments.consumers import DeploymentStreamConsumer
from apps.jobs.consumers import RunStreamConsumer
from apps.notebooks.consumers import NotebookStreamConsumer
from apps.notebooks.proxy import NotebookWebsocketProxy

# On Lattice's origin.
websocket_urlpatterns: list[Any] = [
    re_path(
        r"^ws/teams/(?P<team_slug>[-a-zA-Z0-9_]+)/notebooks/(?P<notebook_id>[0-9]+)/$",
        NotebookStreamConsumer.as_asgi(),
    ),
    re_path(
        r"^ws/teams/(?P<team_slug>[-a-zA-Z0-9_]+)/deployments/(?P<deployment_id>[0-9]+)/$",
        DeploymentStreamConsumer.as_asgi(),
    ),
    re_path(
        r"^ws/teams/(?P<team_slug>[-a-zA-Z0-9_]+)/jobs/runs/(?P<run_id>[0-9]+)/$",
        RunStreamConsumer.as_asgi(),
    ),
]
# On a notebook's origin, nb-<id>.<user-content domain>, and only there.
notebook_websocket_urlpatterns: list[Any] = [
    re_path(r"^nb/(?P<notebook_id>[0-9]+)/", NotebookWebsocketProxy.as_asgi()),
]
