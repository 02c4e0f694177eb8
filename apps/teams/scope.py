"""The team base classes for pages and tasks: where they enter the team's scope.

Each interface takes its team from one place and enters the fail-closed scope
(apps.core.tenancy) there: ``TeamViewMixin`` for HTML views and ``team_task`` for
Celery tasks here, ``apps.teams.api.base.TeamAPIView`` for the API and
``apps.teams.consumers.TeamConsumer`` for websockets. They live in the teams app
because they read the team and the member's role.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.core.tenancy import Sealed, team_scope
from apps.teams.models import Membership, Team
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TeamViewMixin", "team_task"]


def team_task(function: Callable[..., Any]) -> Callable[..., Any]:
    """Make a Celery task body run in one team's scope.

    The task is queued with ``team_id=`` (ids, not rows, travel through the
    broker); the body receives ``team=`` and runs inside that team's scope.
    Put it under the Celery decorator: ``@shared_task`` then ``@team_task``.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, team_id: int, **kwargs: Any) -> Any:
        team = Team.objects.get(pk=team_id)  # the tenant itself is not tenant-owned
        with team_scope(team):
            return function(*args, team=team, **kwargs)

    return wrapper


class TeamViewMixin(Sealed):
    """Base for every HTML view under ``/t/<team_slug>/``.

    Resolves the team from the URL through the requesting user's membership,
    then runs the view inside that team's scope. A visitor who is not logged
    in is sent to log in; a logged-in outsider gets 404, never 403, so team
    slugs and object ids cannot be probed. A member whose role lacks
    ``permission`` gets 403.

    Subclasses implement ``get``/``post`` and read ``self.team`` and
    ``self.membership``. They may not override ``dispatch``, ``get_queryset``
    or ``get_object``: the class refuses to be defined if they do.
    """

    permission = "team.view"
    team: Team
    membership: Membership

    _SEALED = ("dispatch", "get_queryset", "get_object")
    _SEALED_HINT = "Read self.team and rely on the scoped managers instead."

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = membership_in(request.user, kwargs["team_slug"])
        if membership is None:
            raise Http404("No such team")
        if not role_allows(membership.role, self.permission):
            raise PermissionDenied
        self.team = membership.team
        self.membership = membership
        request.team = membership.team
        request.membership = membership
        with team_scope(self.team):
            response = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
            # Render inside the scope: templates may still evaluate querysets.
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
        return response
