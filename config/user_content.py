"""What production requires of the user-content domain (docs/notebooks.md).

Notebooks are served at ``nb-<id>.<LATTICE_USER_CONTENT_DOMAIN>``, never on Lattice's
origin. That only holds as a boundary if the domain is a registrable domain of its own:
sharing one with Lattice's hosts would make a notebook's page same-site with Lattice
(SameSite cookies sent along, cookies set for the shared parent), and a Lattice cookie
with a Domain covering it, or a trusted origin matching it, would hand Lattice's session
or its CSRF trust to every notebook. Production settings refuse to start on any of these.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def _parent(host: str) -> str:
    """``host`` less its first label, when that still names a domain (two labels or more)."""
    rest = host.partition(".")[2]
    return rest if "." in rest else ""


def _within(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _shares_a_site(domain: str, host: str) -> bool:
    parent = _parent(host)
    return (
        _within(domain, host) or _within(host, domain) or bool(parent and _within(domain, parent))
    )


def user_content_problems(
    *,
    domain: str,
    allowed_hosts: list[str],
    cookie_domains: dict[str, str | None],
    csrf_trusted_origins: list[str],
) -> list[str]:
    """Why ``domain`` cannot hold user content next to these settings; empty when it can."""
    domain = domain.lower().strip(".")
    if "." not in domain or _within(domain, "localhost"):
        return [
            (
                "LATTICE_USER_CONTENT_DOMAIN must be set in production to a registrable domain "
                "of its own (e.g. example-usercontent.net), with wildcard DNS *.<domain> and a "
                "wildcard certificate pointing at Lattice (docs/notebooks.md)."
            ),
        ]
    problems = []
    for entry in allowed_hosts:
        host = entry.lower().lstrip(".").split(":")[0]
        if host != "*" and _shares_a_site(domain, host):
            problems.append(
                f"LATTICE_USER_CONTENT_DOMAIN ({domain}) shares a site with Lattice's host "
                f"{entry} (DJANGO_ALLOWED_HOSTS): notebooks' pages would be same-site with "
                "Lattice. Use a registrable domain of its own, e.g. example-usercontent.net.",
            )
    for setting, cookie_domain in cookie_domains.items():
        if cookie_domain and _within(domain, cookie_domain.lower().strip(".")):
            problems.append(
                f"{setting} ({cookie_domain}) covers LATTICE_USER_CONTENT_DOMAIN ({domain}): "
                "Lattice's cookie would reach every notebook. Leave it unset (host-only).",
            )
    for origin in csrf_trusted_origins:
        host = (urlsplit(origin).hostname or "").lower()
        wildcard = host.startswith("*.")
        base = host[2:] if wildcard else host
        if _within(base, domain) or (wildcard and _within(domain, base)):
            problems.append(
                f"DJANGO_CSRF_TRUSTED_ORIGINS trusts {origin}, which is or covers a notebook's "
                f"origin under {domain}: a notebook's page could post to Lattice as its viewer.",
            )
    return problems
