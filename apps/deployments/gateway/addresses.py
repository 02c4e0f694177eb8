"""Which deployment a request names: by its host, or by the invoke path on Lattice's origin.

- ``<slug>--<team>.<LATTICE_USER_CONTENT_DOMAIN>`` (``chat--acme.localhost`` in the embedded
  default): the deployment's own origin; every path there is the replica's.
- ``/api/v1/teams/<team>/deployments/<slug>/invoke/<rest>`` on Lattice's origin, for clients
  that cannot use wildcard names: ``/<rest>`` is the replica's path.

A deployment's slug has no ``--`` (apps.deployments.models), so the first ``--`` of the
label divides it from the team's slug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.http.request import split_domain_port

INVOKE_PATH = re.compile(
    r"^/api/v1/teams/(?P<team>[-a-zA-Z0-9_]+)/deployments/(?P<slug>[-a-zA-Z0-9_]+)/invoke"
    r"(?P<rest>/.*)?$"
)
_LABEL = re.compile(r"^(?P<slug>[a-z0-9_]+(?:-[a-z0-9_]+)*)--(?P<team>[a-z0-9][-a-z0-9_]*)$")


@dataclass(frozen=True)
class Address:
    team: str
    slug: str
    on_lattice_origin: bool
    # The path and query the replica gets, as the client sent them (still encoded).
    upstream_path: str
    # The path alone, for the request log (a query may carry secrets: never logged).
    log_path: str


def deployment_host(host: str) -> tuple[str, str] | None:
    """(team slug, deployment slug) a deployment's host names, or None for any other host."""
    name, _ = split_domain_port(host.lower())
    label, dot, rest = name.partition(".")
    domain = str(settings.LATTICE_USER_CONTENT_DOMAIN).lower().strip(".")
    match = _LABEL.match(label)
    if not dot or rest != domain or match is None:
        return None
    return match["team"], match["slug"]


def is_invoke_path(path: str) -> bool:
    return path.startswith("/api/v1/teams/") and INVOKE_PATH.match(path) is not None


def _raw_path(scope: dict[str, Any]) -> str:
    raw = (scope.get("raw_path") or b"").split(b"?", 1)[0]
    if raw.startswith(b"/"):
        return raw.decode("latin-1")
    return quote(scope["path"], safe="/:@!$&'()*+,;=-._~")


def address_of(scope: dict[str, Any]) -> Address | None:
    """The deployment ``scope`` is for and the replica's path, or None."""
    host = ""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"host":
            host = value.decode("latin-1")
            break
    query = scope.get("query_string", b"").decode("latin-1")
    suffix = f"?{query}" if query else ""
    named = deployment_host(host)
    if named is not None:
        path = _raw_path(scope)
        return Address(named[0], named[1], False, path + suffix, scope["path"])
    match = INVOKE_PATH.match(_raw_path(scope))
    if match is None:
        return None
    rest = match["rest"] or "/"
    decoded = INVOKE_PATH.match(scope["path"])
    log_path = (decoded["rest"] if decoded and decoded["rest"] else "/") or "/"
    return Address(match["team"], match["slug"], True, rest + suffix, log_path)
