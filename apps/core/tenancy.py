"""Fail-closed tenancy: every tenant-owned query is scoped to one team.

Tenant-owned models use ``TeamScopedManager()`` as their default manager
(django-scopes underneath). A query made while no team scope is active raises
``ScopeError`` instead of returning every team's rows. The scope is entered in
one place per interface, by the team base classes the teams app owns (they read
memberships): ``apps.teams.scope.TeamViewMixin`` (HTML views) and
``apps.teams.scope.team_task`` (Celery), ``apps.teams.api.base.TeamAPIView`` (DRF) and
``apps.teams.consumers.TeamConsumer`` (Channels). This module is the machinery
they share; it knows a team only as the value the scope holds.

Escape hatches have names that stand out in review:
``Model.objects.for_team(team)``: one team's rows, with no scope active;
``Model.objects.unscoped()``: every team's rows (admin, reconciler, migrations);
``unscoped()``: a block in which every scoped manager answers for all teams.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from django.db import models
from django_scopes import ScopedManager, scope, scopes_disabled

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.teams.models import Team

__all__ = [
    "Sealed",
    "TeamManager",
    "TeamScopedManager",
    "team_scope",
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
