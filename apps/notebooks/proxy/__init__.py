"""The JupyterLab proxy: every request and websocket on a notebook's own origin.

A notebook's JupyterLab is served on an origin of its own, ``nb-<id>.<user-content
domain>`` (apps.notebooks.origin), never on Lattice's: a script in a notebook's output
must not act as the person who opened it. People arrive from the launch on Lattice's
origin (apps.notebooks.launch) with a single-use ticket; the proxy redeems it into the
origin's own cookie, and on every request and websocket handshake checks that cookie,
then ``resolve``: members of the notebook's team whose role may open notebooks (viewers
may not: docs/permissions.md); anyone else gets what a missing notebook gets, 404. A
request that changes something must come from the notebook's own page (its Origin
header), and so must every websocket: another notebook's page is another origin,
perhaps of the same site.

Lattice talks to the notebook's Jupyter Server, adding ``Authorization: token <session
token>`` to every request. The token never reaches the browser (not in a URL, not in a
page, not in history). Lattice's cookies and the notebook origin's own are taken out of
what goes to the notebook, and a notebook cannot set them.

An open websocket joins its person's revocation group (apps.core.revocation): when their
membership ends or their role is lowered it checks again and closes at once.

The modules: ``access`` (who may pass: ``resolve``, ``authorise``), ``asgi`` (what of a
request is read and passed on, the plain answers), ``http`` (NotebookHTTPProxy) and
``websocket`` (NotebookWebsocketProxy). config.asgi and config.routing mount the two
proxies from here.
"""

from __future__ import annotations

from apps.notebooks.proxy.asgi import header, plain_response
from apps.notebooks.proxy.http import NotebookHTTPProxy
from apps.notebooks.proxy.websocket import NotebookWebsocketProxy

__all__ = ["NotebookHTTPProxy", "NotebookWebsocketProxy", "header", "plain_response"]
