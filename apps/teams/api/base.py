"""The team base class for API views: the team comes from the URL.

``TeamAPIView`` does for the API what ``apps.teams.scope.TeamViewMixin``
does for pages: the team comes from ``/api/v1/teams/<team_slug>/``, through
the requesting user's membership; an outsider, or a token restricted to
another team, gets 404; a member whose role lacks the permission for the
method gets 403; the view then runs inside the team's scope. Subclasses set
``team_permissions`` and implement ``get_team_queryset``; they may not
override ``initial``, ``get_queryset`` or ``dispatch``. A response that outlives
its request (a log follow) asks ``access_check()`` for a check to run as it goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import exceptions, generics

from apps.accounts.models import PersonalAccessToken
from apps.core.sessions import session_signs_in
from apps.core.tenancy import Sealed, team_scope
from apps.teams.models import Role
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in, role_in

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.teams.models import Membership, Team

# A workload token (the one a notebook or job finds in its environment) acts no further than
# this role, whatever its person's: the lowest role that may open a notebook and read it.
WORKLOAD_ROLE_CAP = Role.MEMBER


class TeamAPIView(Sealed, generics.GenericAPIView):
    token_area: str | None = "teams"
    # HTTP method -> permission (apps.teams.permissions); unlisted methods need team.view.
    team_permissions: dict[str, str] = {}
    team: Team
    membership: Membership

    _SEALED = ("initial", "get_queryset", "dispatch")
    _SEALED_HINT = "Implement get_team_queryset and read self.team instead."

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, token scope, throttles
        membership = membership_in(request.user, kwargs["team_slug"])  # type: ignore[arg-type]
        token = request.auth if isinstance(request.auth, PersonalAccessToken) else None
        if membership is None or (token and token.team_id not in (None, membership.team_id)):
            raise exceptions.NotFound("No such team.")
        # HEAD runs the GET handler, so it needs GET's permission.
        method = "GET" if request.method in (None, "HEAD") else str(request.method)
        permission = self.team_permissions.get(method, "team.view")
        self._permission = permission
        if not role_allows(membership.role, permission):
            raise exceptions.PermissionDenied(
                f"Your role in this team ({membership.role}) does not allow this.",
            )
        if token and token.workload and not role_allows(WORKLOAD_ROLE_CAP, permission):
            # Any member who may open the notebook can read its token from the environment:
            # it may not do what that member's own role could not (the audit log, settings).
            raise exceptions.PermissionDenied(
                "A notebook's or job's own token acts no further than a member's role; "
                "use a personal token for this.",
            )
        self.team = membership.team
        self.membership = membership
        self._scope: Any = team_scope(self.team)
        self._scope.__enter__()

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # The scope is entered in initial(), once the user is known; leave it
        # here, whatever happened, so it never outlives the request.
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            scope = getattr(self, "_scope", None)
            if scope is not None:
                self._scope = None
                scope.__exit__(None, None, None)

    def get_queryset(self) -> QuerySet[Any]:
        return self.get_team_queryset()

    def access_check(self) -> Callable[[], bool]:
        """A check that what let this request in still holds: the user active and in the
        team with a role that has the permission, the token (if one) neither revoked nor
        expired, and the browser session (if one) neither signed out nor made stale by a
        new password. For responses that outlive the request; it reads, it never raises."""
        user_id, team_id = self.membership.user_id, self.membership.team_id
        permission = self._permission
        auth = self.request.auth
        token_id = auth.pk if isinstance(auth, PersonalAccessToken) else None
        session = getattr(self.request._request, "session", None)
        session_key = session.session_key if token_id is None and session is not None else None

        def still_held() -> bool:
            role = role_in(user_id=user_id, team_id=team_id)
            if role is None or not role_allows(role, permission):
                return False
            if token_id is None:
                # A browser session: it must still be there (not signed out) and still
                # match the password (a change signs every other session out).
                return session_key is not None and session_signs_in(session_key, user_id)
            token = PersonalAccessToken.objects.filter(pk=token_id).first()
            return token is not None and token.is_active

        return still_held

    def get_team_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError
