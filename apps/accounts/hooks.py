"""What accounts asks of the apps above it (apps.core.hooks).

A personal access token may be limited to one team, so making, listing and revoking
tokens needs the teams a person is in. Accounts sits below teams in the layer order:
it declares ``user_teams`` here and the teams app registers its answer from its
``AppConfig.ready()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


def _no_teams(user: User) -> list[Team]:
    return []


# Every team ``user`` is in, by name.
user_teams: Hook[[User], list[Team]] = Hook("the teams a user is in", default=_no_teams)
