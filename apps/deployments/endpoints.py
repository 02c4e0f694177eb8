"""Where a deployment answers, and a ``curl`` that calls it, for its page.

Two addresses (issue 16): its own origin, ``<slug>--<team>.<user-content domain>`` (on the
port Lattice was reached on, like notebooks' origins), and a path under the API on
Lattice's origin for clients that cannot use wildcard names. The example never holds a
credential: a protected or private deployment's says ``$LATTICE_TOKEN``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.http.request import split_domain_port

from apps.deployments.models import Deployment, Revision
from apps.notebooks.origin import content_domain

if TYPE_CHECKING:
    from django.http import HttpRequest


def endpoint_urls(request: HttpRequest, deployment: Deployment) -> dict[str, str]:
    """``{"origin": ..., "api": ...}``: the deployment's base URLs, ending in "/"."""
    host = request.get_host()
    _, port = split_domain_port(host)
    scheme = "https" if request.is_secure() else "http"
    team = deployment.team.slug
    origin = f"{scheme}://{deployment.slug}--{team}.{content_domain()}" + (
        f":{port}" if port else ""
    )
    api = f"{scheme}://{host}/api/v1/teams/{team}/deployments/{deployment.slug}/invoke/"
    return {"origin": f"{origin}/", "api": api}


def _example_inputs(revision: Revision | None) -> dict[str, Any]:
    """Inputs named by the version's schema when it has one, else an empty object."""
    schema = revision.model_version.io_schema if revision and revision.model_version else None
    inputs = schema.get("inputs") if isinstance(schema, dict) else None
    names: list[str] = []
    if isinstance(inputs, dict):
        names = [str(name) for name in inputs]
    elif isinstance(inputs, list):
        names = [str(i.get("name")) for i in inputs if isinstance(i, dict) and i.get("name")]
    return dict.fromkeys(names, "...")


def curl_example(url: str, deployment: Deployment, revision: Revision | None) -> str:
    """A ready ``curl`` for ``url`` (one of endpoint_urls'), the built-in server's /predict
    or a custom image's root."""
    builtin = revision is None or revision.serving == Revision.Serving.BUILTIN
    lines = [f"curl -X POST {url}{'predict' if builtin else ''}"]
    if deployment.auth_mode != Deployment.Auth.PUBLIC:
        lines.append('-H "Authorization: Bearer $LATTICE_TOKEN"')
    lines.append('-H "Content-Type: application/json"')
    body = json.dumps({"input": _example_inputs(revision)})
    lines.append(f"-d '{body}'")
    return " \\\n  ".join(lines)
