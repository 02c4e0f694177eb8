"""A run's executed notebook, rendered read-only, on the user-content origin only
(ARCHITECTURE decision 10: user content never runs on Lattice's origin).

The notebook's outputs are whatever its code printed: HTML and scripts included. So:

1. ``/t/<team>/jobs/runs/<run>/notebook/`` on Lattice's origin (a member, signed in) never
   serves it: it issues a ticket (``ticket_issue``) and redirects to the results origin,
   ``results.<LATTICE_USER_CONTENT_DOMAIN>`` at ``RESULT_PATH?ticket=...``. The ticket is
   signed, names the person (and their session auth hash) and the kept file, is good for
   ``TICKET_SECONDS`` and only once (its nonce waits in the cache; redeeming deletes it).
2. There, ``ResultsApp`` (config/asgi.py sends that host nowhere else) redeems it, checks
   the person is still a member of the run's team and the file still kept, and answers the
   notebook rendered by nbconvert with ``Content-Security-Policy: sandbox`` (no
   allow-scripts, no allow-same-origin: nothing in it runs, and it has no origin to act
   from), ``default-src 'none'`` but inline styles and data: images, no-store, no
   referrer. No cookie is set or read on that origin; Lattice's never reaches it.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.http.request import split_domain_port
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from apps.jobs.models import RunFile
from apps.notebooks.origin import content_domain
from apps.notebooks.proxy import plain_response
from apps.teams.models import Membership

if TYPE_CHECKING:
    from apps.accounts.models import User

TICKET_SECONDS = 60
RESULT_PATH = "/_lattice/result"
RESULTS_LABEL = "results"
# A rendered notebook bigger than this is offered as a download instead.
RENDER_MAX_BYTES = 50 * 1024 * 1024
CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "font-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_SALT = "lattice.jobs.result-ticket"


def results_host() -> str:
    return f"{RESULTS_LABEL}.{content_domain()}"


def is_results_host(host: str) -> bool:
    """Whether ``host`` (a Host header) is the results origin's."""
    name, _ = split_domain_port(host)
    return name.lower() == results_host()


def _nonce_key(nonce: str) -> str:
    return f"lattice:result-ticket:{nonce}"


def ticket_issue(*, user: User, run_file: RunFile) -> str:
    """A single-use ticket that shows ``run_file`` (an executed notebook) to ``user``."""
    nonce = secrets.token_urlsafe(18)
    cache.set(_nonce_key(nonce), user.pk, timeout=TICKET_SECONDS)
    payload = {"u": user.pk, "f": run_file.pk, "x": nonce, "h": user.get_session_auth_hash()}
    return signing.dumps(payload, salt=_SALT)


def result_url(ticket: str, *, lattice_host: str, secure: bool) -> str:
    """Where the ticket is used: the results origin, on the port Lattice was reached on."""
    _, port = split_domain_port(lattice_host)
    scheme = "https" if secure else "http"
    origin = f"{scheme}://{results_host()}" + (f":{port}" if port else "")
    return f"{origin}{RESULT_PATH}?{urlencode({'ticket': ticket})}"


def _person(payload: dict[str, Any]) -> User | None:
    """The person a ticket names, while their password is unchanged."""
    user_id, auth_hash = payload.get("u"), payload.get("h")
    if not isinstance(user_id, int) or not isinstance(auth_hash, str):
        return None
    user: User | None = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not constant_time_compare(user.get_session_auth_hash(), auth_hash):
        return None
    return user


def ticket_redeem(ticket: str) -> RunFile | None:
    """The kept file ``ticket`` shows, once, while its person may still see it; else None."""
    try:
        payload = signing.loads(ticket, salt=_SALT, max_age=TICKET_SECONDS)
    except signing.BadSignature:  # SignatureExpired included
        return None
    user = _person(payload) if isinstance(payload, dict) else None
    file_id = payload.get("f") if user is not None else None
    if user is None or not isinstance(file_id, int):
        return None
    found = (
        RunFile.objects.unscoped()  # by its own id; its team checked against the person next
        .filter(pk=file_id, kind=RunFile.Kind.RESULT, expires_at__gt=timezone.now())
        .select_related("blob")
        .first()
    )
    if found is None or not Membership.objects.for_team(found.team_id).filter(user=user).exists():
        return None
    # Last: a ticket refused for another reason is not spent.
    return found if cache.delete(_nonce_key(str(payload.get("x")))) else None


# nbconvert's lab template without its scripts: require.js, MathJax and Mermaid come from
# a CDN, which the page's CSP refuses (and no script runs in its sandbox anyway), so each
# would only be a console error. The CSS stays, inline.
_TEMPLATE_NAME = "lattice_result.html.j2"
_TEMPLATE = """{%- extends "lab/index.html.j2" -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def render(run_file: RunFile) -> str:
    """The executed notebook as one HTML page (nbconvert's lab template, its inline CSS and
    no script or other reference to another site), read-only."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    with default_storage.open(run_file.blob.storage_key, "rb") as stored:
        notebook = nbformat.reads(stored.read().decode("utf-8"), as_version=4)
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        template_file=_TEMPLATE_NAME,
    )
    body, _ = exporter.from_notebook_node(notebook)
    return str(body)


def _rendered(ticket: str) -> tuple[int, str]:
    run_file = ticket_redeem(ticket)
    if run_file is None:
        return 403, ""
    if run_file.size > RENDER_MAX_BYTES:
        return 413, ""
    try:
        return 200, render(run_file)
    except (ValueError, UnicodeDecodeError):
        return 422, ""


REFUSALS = {
    403: "This link to the notebook has expired or was used already: open it again from "
    "its run's page in Lattice.",
    413: "This notebook is too large to show here: download it from its run's page.",
    422: "This file is not a notebook that can be shown: download it from its run's page.",
}


class ResultsApp:
    """ASGI app for every HTTP request on the results origin: one path, one ticket, one page."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != RESULT_PATH:
            await plain_response(send, 404, "Not found.")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await plain_response(send, 405, "", [(b"allow", b"GET, HEAD")])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ticket = query.get("ticket", [""])[0]
        status, page = await database_sync_to_async(_rendered)(ticket)
        if status != 200:  # noqa: PLR2004
            await plain_response(
                send, status, REFUSALS[status], [(b"referrer-policy", b"no-referrer")]
            )
            return
        body = page.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


results_app = ResultsApp()
