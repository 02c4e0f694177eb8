"""Who may call a deployment: the rule per auth mode, read from the database on a cache miss.

- **public**: anyone.
- **protected**: ``Authorization: Bearer lat_...``, a personal access token with the
  ``deployments:invoke`` scope, not limited to another team, of a person who is a member
  of the deployment's team now; or ``Bearer ldk_...``, a key of this deployment.
- **private**: a member's token as above, or (on Lattice's own origin, the API path) a
  member's signed-in Lattice session. Keys do not open a private deployment.

``decide`` answers with a ``Decision`` the gateway caches per process under the credential
and deployment generations (apps.deployments.routing), so a revoked token or key, a
removed member or an ended session is refused on the next request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import SESSION_KEY

from apps.accounts.models import INVOKE_SCOPE, TOKEN_PREFIX
from apps.accounts.tokens import token_authenticate
from apps.core.sessions import session_signs_in
from apps.deployments.models import Deployment, DeploymentKey
from apps.teams.selectors import role_in

if TYPE_CHECKING:
    from datetime import datetime

    from apps.deployments.routing import Route

KEY_PREFIX = "ldk_"
HOW_TO_CALL = "Send Authorization: Bearer <a lat_ token with deployments:invoke, or a key>."


@dataclass(frozen=True)
class Decision:
    status: int  # 0: let in
    message: str = ""
    # Who the rate limit counts ("t:<token>", "k:<key>", "u:<user>"); "" counts the address.
    caller: str = ""
    expires_at: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 0


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def decide(
    route: Route, *, bearer: str, session_key: str, on_lattice_origin: bool, ip: str | None
) -> Decision:
    """Whether the credential sent (a bearer token or key, or a Lattice session) may call
    the deployment ``route`` names."""
    mode = route.auth_mode
    if mode == Deployment.Auth.PUBLIC:
        return Decision(0)
    if bearer.startswith(KEY_PREFIX):
        return _key_decision(route, bearer)
    if bearer:
        return _token_decision(route, bearer, ip)
    if session_key and on_lattice_origin and mode == Deployment.Auth.PRIVATE:
        return _session_decision(route, session_key)
    return Decision(401, f"This deployment needs credentials. {HOW_TO_CALL}")


def _key_decision(route: Route, bearer: str) -> Decision:
    if route.auth_mode != Deployment.Auth.PROTECTED:
        return Decision(403, "A private deployment takes a member's token, not a key.")
    key = (
        DeploymentKey.objects.for_team(route.team_id)
        .filter(deployment_id=route.deployment_id, key_hash=_digest(bearer))
        .filter(revoked_at__isnull=True)
        .values_list("pk", flat=True)
        .first()
    )
    if key is None:
        return Decision(401, "This key is not valid for this deployment, or was revoked.")
    return Decision(0, caller=f"k:{key}")


def _token_decision(route: Route, bearer: str, ip: str | None) -> Decision:
    token = token_authenticate(bearer, ip=ip) if bearer.startswith(TOKEN_PREFIX) else None
    if token is None:
        return Decision(401, "This token is not valid: it may be mistyped, expired or revoked.")
    if INVOKE_SCOPE not in token.scopes:
        return Decision(403, f"This token lacks the {INVOKE_SCOPE} scope.")
    if token.team_id is not None and token.team_id != route.team_id:
        return Decision(403, "This token is limited to another team.")
    if role_in(user_id=token.user_id, team_id=route.team_id) is None:
        return Decision(403, "This token's owner is not a member of the deployment's team.")
    return Decision(0, caller=f"t:{token.pk}", expires_at=token.expires_at)


def _session_decision(route: Route, session_key: str) -> Decision:
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    user_id = data.get(SESSION_KEY)
    if user_id is None or not session_signs_in(session_key, int(user_id)):
        return Decision(401, "Sign in to Lattice, or send a token.")
    if role_in(user_id=int(user_id), team_id=route.team_id) is None:
        return Decision(403, "Only the team's members may call this private deployment.")
    return Decision(0, caller=f"u:{user_id}")
