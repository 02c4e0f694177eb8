"""Where a deployment answers, and a ``curl`` that calls it, for the API and the pages.

Two forms of the same endpoint (the gateway, apps.deployments.gateway, serves both):

- its own origin, ``<slug>--<team>.<LATTICE_USER_CONTENT_DOMAIN>`` on the port Lattice was
  reached on (``iris--acme.localhost:8000`` in the embedded default);
- a path on Lattice's origin, ``/api/v1/teams/<team>/deployments/<slug>/invoke/``, for
  clients that cannot resolve wildcard names.

"<slug>--<team>" is one DNS label: at most ``MAX_LABEL`` (63) characters, or no resolver
takes it and no wildcard certificate covers it. The services make a slug that fits
(``slug_room``); a deployment made before, whose label does not fit, has no own origin
(``Endpoints.origin`` is "" and ``origin_note`` says why) and is called at its API path.
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


# The longest DNS label (RFC 1035), and so the longest "<slug>--<team>".
MAX_LABEL = 63


@dataclass(frozen=True)
class Endpoints:
    origin: str  # https://iris--acme.example-content.com/ ("" when its label is too long)
    api: str  # https://lattice.example.com/api/v1/teams/acme/deployments/iris/invoke/
    origin_note: str = ""  # why there is no origin, else ""


def slug_room(team_slug: str) -> int:
    """How long a deployment's slug may be in this team: its host label,
    "<slug>--<team>", must fit in one DNS label."""
    return MAX_LABEL - len("--") - len(team_slug)


def label_fits(team_slug: str, slug: str) -> bool:
    return len(slug) <= slug_room(team_slug)


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
    api = f"{scheme}://{lattice_host}{invoke_path(team_slug, deployment.slug)}"
    if not label_fits(team_slug, deployment.slug):
        note = (
            f'"{deployment.slug}--{team_slug}" is longer than a host name\'s part may be '
            f"({MAX_LABEL} characters): this deployment has no address of its own. Call it "
            "under the API, or make it again with a shorter name."
        )
        return Endpoints(origin="", api=api, origin_note=note)
    return Endpoints(
        origin=f"{scheme}://{endpoint_host(team_slug, deployment.slug)}{suffix}/", api=api
    )


def curl_example(deployment: Deployment, revision: Revision | None, urls: Endpoints) -> str:
    """A ``curl`` that calls the deployment as its auth mode asks: no credential (public),
    or a token of the deployments:invoke scope (or, protected, a deployment key) in place of
    ``$LATTICE_TOKEN``. A private deployment is called at its API path form, where a
    member's token is read."""
    builtin = revision is None or revision.serving == "builtin"
    base = urls.api if deployment.auth_mode == "private" or not urls.origin else urls.origin
    url = base + (BUILTIN_PREDICT if builtin else "")
    parts = ["curl", "-X", "POST", shlex.quote(url)]
    if deployment.auth_mode != "public":
        parts += ["-H", f'"Authorization: Bearer {TOKEN_PLACEHOLDER}"']
    parts += ["-H", shlex.quote("Content-Type: application/json"), "-d", shlex.quote("{}")]
    return " ".join(parts)
