"""Base classes for API views. Team views resolve the team from the URL.

``TeamAPIView`` does for the API what ``apps.core.tenancy.TeamViewMixin``
does for pages: the team comes from ``/api/v1/teams/<team_slug>/``, through
the requesting user's membership; an outsider, or a token restricted to
another team, gets 404; a member whose role lacks the permission for the
method gets 403; the view then runs inside the team's scope. Subclasses set
``team_permissions`` and implement ``get_team_queryset``; they may not
override ``initial``, ``get_queryset`` or ``dispatch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import exceptions, generics

from apps.accounts.models import PersonalAccessToken
from apps.core.tenancy import Sealed, team_scope
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.teams.models import Membership, Team


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
        if not role_allows(membership.role, permission):
            raise exceptions.PermissionDenied(
                f"Your role in this team ({membership.role}) does not allow this.",
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

    def get_team_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError
