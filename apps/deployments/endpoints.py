"""Where a deployment answers, and a ``curl`` that calls it, for the API and the pages.

Two forms of the same endpoint (the gateway, apps.deployments.gateway, serves both):

- its own origin, ``<slug>--<team>.<LATTICE_USER_CONTENT_DOMAIN>`` on the port Lattice was
  reached on (``iris--acme.localhost:8000`` in the embedded default);
- a path on Lattice's origin, ``/api/v1/teams/<team>/deployments/<slug>/invoke/``, for
  clients that cannot resolve wildcard names.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.http.request import split_domain_port

from apps.notebooks.origin import content_domain

if TYPE_CHECKING:
    from apps.deployments.models import Deployment, Revision

# Where the built-in model server takes requests (images/model-server/serve.py).
BUILTIN_PREDICT = "predict"
# What a person puts in place of their credential in the example.
TOKEN_PLACEHOLDER = "$LATTICE_TOKEN"  # noqa: S105 - a placeholder, not a token


@dataclass(frozen=True)
class Endpoints:
    origin: str  # https://iris--acme.example-content.com/
    api: str  # https://lattice.example.com/api/v1/teams/acme/deployments/iris/invoke/


def invoke_path(team_slug: str, slug: str) -> str:
    """The endpoint's path on Lattice's origin (its gateway's API path form)."""
    return f"/api/v1/teams/{team_slug}/deployments/{slug}/invoke/"


def endpoint_host(team_slug: str, slug: str) -> str:
    """The endpoint's own host name: "<slug>--<team>.<user-content domain>"."""
    return f"{slug}--{team_slug}.{content_domain()}"


def endpoints(deployment: Deployment, *, lattice_host: str, secure: bool) -> Endpoints:
    """Both forms of the deployment's endpoint, for a request that reached Lattice at
    ``lattice_host`` (its port is the origin's too: none behind a proxy on 443)."""
    scheme = "https" if secure else "http"
    _, port = split_domain_port(lattice_host)
    suffix = f":{port}" if port else ""
    team_slug = deployment.team.slug
    return Endpoints(
        origin=f"{scheme}://{endpoint_host(team_slug, deployment.slug)}{suffix}/",
        api=f"{scheme}://{lattice_host}{invoke_path(team_slug, deployment.slug)}",
    )


def curl_example(deployment: Deployment, revision: Revision | None, urls: Endpoints) -> str:
    """A ``curl`` that calls the deployment as its auth mode asks: no credential (public),
    or a token of the deployments:invoke scope (or, protected, a deployment key) in place of
    ``$LATTICE_TOKEN``. A private deployment is called at its API path form, where a
    member's token is read."""
    builtin = revision is None or revision.serving == "builtin"
    base = urls.api if deployment.auth_mode == "private" else urls.origin
    url = base + (BUILTIN_PREDICT if builtin else "")
    parts = ["curl", "-X", "POST", shlex.quote(url)]
    if deployment.auth_mode != "public":
        parts += ["-H", f'"Authorization: Bearer {TOKEN_PLACEHOLDER}"']
    parts += ["-H", shlex.quote("Content-Type: application/json"), "-d", shlex.quote("{}")]
    return " ".join(parts)
