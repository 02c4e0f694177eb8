"""Fail-closed tenancy: every tenant-owned query is scoped to one team.

Tenant-owned models use ``TeamScopedManager()`` as their default manager
(django-scopes underneath). A query made while no team scope is active raises
``ScopeError`` instead of returning every team's rows. The scope is entered in
one place per interface: ``TeamViewMixin`` (HTML views) and ``team_task``
(Celery) here, ``apps.core.api.views.TeamAPIView`` (DRF) and
``apps.core.consumers.TeamConsumer`` (Channels).

Escape hatches have names that stand out in review:
``Model.objects.for_team(team)``: one team's rows, with no scope active;
``Model.objects.unscoped()``: every team's rows (admin, reconciler, migrations);
``unscoped()``: a block in which every scoped manager answers for all teams.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from django.db import models
from django_scopes import ScopedManager, scope, scopes_disabled

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from apps.teams.models import Team

__all__ = [
    "Sealed",
    "TeamManager",
    "TeamScopedManager",
    "TeamViewMixin",
    "team_scope",
    "team_task",
    "unscoped",
]


class TeamManager(models.Manager[Any]):
    """What a team-scoped default manager offers beyond Django's (see TeamScopedManager)."""

    def for_team(self, team: Team | int) -> Any:
        """This manager, limited to ``team``, usable outside any scope."""
        return self.with_scope(team=team)  # type: ignore[attr-defined]

    def unscoped(self) -> Any:
        """This manager across every team. Say why at the call site."""
        return self.with_scopes_disabled()  # type: ignore[attr-defined]


def TeamScopedManager() -> TeamManager:  # noqa: N802 - reads as the class it makes
    """A default manager that refuses to query outside a team scope."""
    return cast("TeamManager", ScopedManager(team="team", _manager_class=TeamManager))


@contextmanager
def team_scope(team: Team | int) -> Iterator[None]:
    """Scoped managers answer for ``team`` inside this block."""
    with scope(team=team):
        yield


def team_task(function: Callable[..., Any]) -> Callable[..., Any]:
    """Make a Celery task body run in one team's scope.

    The task is queued with ``team_id=`` (ids, not rows, travel through the
    broker); the body receives ``team=`` and runs inside that team's scope.
    Put it under the Celery decorator: ``@shared_task`` then ``@team_task``.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, team_id: int, **kwargs: Any) -> Any:
        from apps.teams.models import Team

        team = Team.objects.get(pk=team_id)  # the tenant itself is not tenant-owned
        with team_scope(team):
            return function(*args, team=team, **kwargs)

    return wrapper


@contextmanager
def unscoped() -> Iterator[None]:
    """Every scoped manager answers for every team inside this block."""
    with scopes_disabled():
        yield


class Sealed:
    """Refuses subclasses that override the methods named in ``_SEALED``.

    The team base classes resolve the team and enter its scope in those
    methods; a subclass that replaced one could skip the check by accident.
    """

    _SEALED: tuple[str, ...] = ()
    _SEALED_HINT = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if Sealed in cls.__bases__:
            return  # a sealing base class itself: it defines them
        # Whatever the subclass inherits ahead of the sealing base (its own body,
        # or a mixin listed before it) must not define the sealed methods.
        mro = cls.__mro__
        base = next(c for c in mro if Sealed in c.__bases__)
        ahead = mro[: mro.index(base)]
        overridden = [name for name in cls._SEALED if any(name in c.__dict__ for c in ahead)]
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(overridden)}, which team classes "
                f"must not. {cls._SEALED_HINT}",
            )


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
    membership: Any

    _SEALED = ("dispatch", "get_queryset", "get_object")
    _SEALED_HINT = "Read self.team and rely on the scoped managers instead."

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        from django.contrib.auth.views import redirect_to_login
        from django.core.exceptions import PermissionDenied
        from django.http import Http404

        from apps.teams.permissions import role_allows
        from apps.teams.selectors import membership_in

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
