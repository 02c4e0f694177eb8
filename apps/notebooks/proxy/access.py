"""Who may reach a notebook's JupyterLab: the one rule behind the launch, the HTTP proxy and
the websocket proxy.

``resolve``: members of the notebook's team whose role may open notebooks (viewers may not:
docs/permissions.md), while it runs; anyone else gets what a missing notebook gets, 404. On
the notebook's own origin the person is the one its cookie names (``authorise``); a request
without a valid cookie is refused there.

The notebook is found by id without a team in the URL (the route is short on purpose:
JupyterLab builds its URLs from it); the team comes from the notebook row, read through
``unscoped()`` and then checked against the membership.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.notebooks.models import Notebook, Status
from apps.notebooks.origin import cookie_user
from apps.notebooks.selectors import open_session
from apps.teams.permissions import role_allows
from apps.teams.selectors import role_in

NOT_LET_IN = (
    "This browser has not been let in to this notebook here, or its pass has ended: "
    "open the notebook from its page in Lattice."
)


@dataclass(frozen=True)
class Target:
    endpoint: str  # http://127.0.0.1:PORT
    token: str
    session_id: int
    team_id: int


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def resolve(user: Any, notebook_id: int) -> Target | Refusal:
    """Where to send ``user``'s request for notebook ``notebook_id``, or why not."""
    if user is None or not user.is_authenticated:
        return Refusal(401, "Log in to open notebooks.")
    # The team comes from the row here; the membership check below is the gate.
    notebook = Notebook.objects.unscoped().filter(pk=notebook_id, deleted_at__isnull=True).first()
    role = role_in(user_id=user.pk, team_id=notebook.team_id) if notebook else None
    if notebook is None or role is None:
        return Refusal(404, "No such notebook.")
    if not role_allows(role, "notebooks.open"):
        return Refusal(403, "Viewers see a notebook's status and logs but cannot open it.")
    session = open_session(notebook)  # one at most (notebooks_one_open_session)
    if session is None or session.status != Status.RUNNING or not session.endpoint:
        return Refusal(503, "This notebook is not running. Start it from its page in Lattice.")
    return Target(session.endpoint, session.jupyter_token, session.pk, notebook.team_id)


def authorise(cookie: str | None, notebook_id: int) -> Target | Refusal:
    """``resolve`` for the person a notebook origin's cookie names; refused without one."""
    user = cookie_user(cookie, notebook_id=notebook_id)
    if user is None:
        return Refusal(403, NOT_LET_IN)
    return resolve(user, notebook_id)
