"""User content on its own origin (ARCHITECTURE decision 10): each notebook's host name, the
ticket that hands a member over to it, and the cookie that lets them in there.

Every JupyterLab is served at ``nb-<id>.<LATTICE_USER_CONTENT_DOMAIN>`` (``nb-7.localhost``
in the embedded default, a registrable domain of its own in production), never on
Lattice's origin: a script in a notebook's output runs where Lattice's session cookie is
never sent and from where Lattice takes no request (config/asgi.py). The way over:

1. ``/nb/<id>/<path>`` on Lattice's origin (the launch, signed in with Lattice's session)
   checks that the person may open the notebook, then redirects to the notebook's origin at
   ``TICKET_PATH?ticket=...``. The ticket is signed, names the person and the notebook, is
   good for ``TICKET_SECONDS`` and only once: its nonce waits in the cache and redeeming it
   deletes it (a nonce the cache lost is refused, never accepted twice).
2. The notebook's origin redeems it and sets ``COOKIE_NAME``: host-only, HttpOnly,
   SameSite=Lax, Secure over HTTPS, signed for that notebook, carrying the person's id and
   their session auth hash (changing the password ends it), then redirects to ``<path>``.
3. Every request and websocket there checks that cookie (``cookie_user``), then the
   membership and role (apps.notebooks.proxy.resolve).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache
from django.http.request import split_domain_port
from django.utils.crypto import constant_time_compare

from apps.core.sessions import session_signs_in

if TYPE_CHECKING:
    from apps.accounts.models import User

TICKET_SECONDS = 60
# On the notebook's origin, outside Jupyter's base URL (/nb/<id>/): Lattice's own.
TICKET_PATH = "/_lattice/ticket"
COOKIE_NAME = "lattice_notebook"
# Over HTTPS the cookie carries the __Host- prefix: browsers then refuse it unless it is Secure,
# host-only and for Path=/, so a page on another notebook's host under the same domain cannot
# set it for this one (a Domain= cookie planted from nb-7 would otherwise reach nb-8).
SECURE_COOKIE_NAME = f"__Host-{COOKIE_NAME}"


def cookie_name(*, secure: bool) -> str:
    """The notebook origin's cookie name for a request over HTTPS or not."""
    return SECURE_COOKIE_NAME if secure else COOKIE_NAME


_TICKET_SALT = "lattice.notebooks.ticket"
_COOKIE_SALT = "lattice.notebooks.cookie"
_LABEL = re.compile(r"^nb-(?P<id>[1-9][0-9]{0,17})$")


def launch_path(notebook_id: int) -> str:
    """Where "Open JupyterLab" leads, on Lattice's origin: the launch (apps.notebooks.launch)."""
    return f"/nb/{notebook_id}/"


def content_domain() -> str:
    return str(settings.LATTICE_USER_CONTENT_DOMAIN).lower().strip(".")


def is_user_content_host(host: str) -> bool:
    """Whether ``host`` (a Host header or an origin's host and port) lies under the
    user-content domain. Lattice itself may be served at the domain (``localhost``),
    never under it."""
    name, _ = split_domain_port(host)
    return name.endswith("." + content_domain())


def notebook_for_host(host: str) -> int | None:
    """The notebook ``nb-<id>.<domain>`` names, or None for any other host."""
    name, _ = split_domain_port(host)
    label, dot, rest = name.partition(".")
    match = _LABEL.match(label)
    if not dot or rest != content_domain() or match is None:
        return None
    return int(match["id"])


def notebook_origin(notebook_id: int, *, lattice_host: str, secure: bool) -> str:
    """The notebook's origin, on the port Lattice was reached on (none behind a proxy on 443)."""
    _, port = split_domain_port(lattice_host)
    scheme = "https" if secure else "http"
    return f"{scheme}://nb-{notebook_id}.{content_domain()}" + (f":{port}" if port else "")


def is_secure(scope: dict[str, Any]) -> bool:
    """HTTPS: as the request came, or as production says it does (TLS ends at the proxy)."""
    return scope.get("scheme") in ("https", "wss") or settings.SESSION_COOKIE_SECURE


# --- the ticket -------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    user: User
    path: str
    grant: str


def _nonce_key(nonce: str) -> str:
    return f"lattice:notebook-ticket:{nonce}"


def _grant_key(grant: str) -> str:
    return f"lattice:notebook-grant:{grant}"


def ticket_issue(*, user: User, notebook_id: int, path: str, session_key: str | None) -> str:
    """A single-use ticket that lets ``user`` into notebook ``notebook_id`` at ``path``, for
    as long as the Lattice session ``session_key`` that asked stays signed in.

    The cookie it turns into names a grant, not the session: the session's key stays on
    Lattice's side (the cache maps the grant to it), never in a cookie of another origin."""
    nonce, grant = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    cache.set(_nonce_key(nonce), user.pk, timeout=TICKET_SECONDS)
    cache.set(_grant_key(grant), session_key or "", timeout=settings.SESSION_COOKIE_AGE)
    payload = {
        "u": user.pk,
        "n": notebook_id,
        "p": path,
        "x": nonce,
        "g": grant,
        "h": user.get_session_auth_hash(),
    }
    return signing.dumps(payload, salt=_TICKET_SALT)


def ticket_redeem(ticket: str, *, notebook_id: int) -> Admission | None:
    """Who ``ticket`` lets into ``notebook_id`` and where to, once; None if it does not."""
    try:
        payload = signing.loads(ticket, salt=_TICKET_SALT, max_age=TICKET_SECONDS)
    except signing.BadSignature:  # SignatureExpired included
        return None
    if not isinstance(payload, dict) or payload.get("n") != notebook_id:
        return None
    path = payload.get("p")
    if not isinstance(path, str) or not path.startswith(f"/nb/{notebook_id}/"):
        return None
    user = _current_user(payload.get("u"), payload.get("h"), payload.get("g"))
    # Last: a ticket for the wrong notebook or person is refused without being spent.
    if user is None or not cache.delete(_nonce_key(str(payload.get("x")))):
        return None
    return Admission(user=user, path=path, grant=str(payload["g"]))


# --- the cookie on the notebook's origin ----------------------------------------------------


def cookie_value(*, user: User, notebook_id: int, grant: str) -> str:
    payload = {"u": user.pk, "n": notebook_id, "g": grant, "h": user.get_session_auth_hash()}
    return signing.dumps(payload, salt=f"{_COOKIE_SALT}.{notebook_id}")


def cookie_header(value: str, *, secure: bool) -> bytes:
    """The Set-Cookie value: no Domain (host-only), so it reaches this notebook's host alone."""
    flags = "Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
    return f"{cookie_name(secure=secure)}={value}; {flags}".encode("latin-1")


def cookie_user(value: str | None, *, notebook_id: int) -> User | None:
    """The person a notebook origin's cookie names, while their password is unchanged and
    the Lattice session that launched the notebook is signed in."""
    if not value:
        return None
    try:
        payload = signing.loads(
            value,
            salt=f"{_COOKIE_SALT}.{notebook_id}",
            max_age=settings.SESSION_COOKIE_AGE,
        )
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("n") != notebook_id:
        return None
    return _current_user(payload.get("u"), payload.get("h"), payload.get("g"))


def _current_user(user_id: object, auth_hash: object, grant: object) -> User | None:
    if not isinstance(user_id, int) or not isinstance(auth_hash, str):
        return None
    if not isinstance(grant, str):
        return None
    user: User | None = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not constant_time_compare(user.get_session_auth_hash(), auth_hash):
        return None
    # Signed out of Lattice (or the session ended from the sessions page): out of here too.
    if not session_signs_in(cache.get(_grant_key(grant)), user.pk, user=user):
        return None
    return user
