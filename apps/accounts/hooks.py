"""What accounts asks of the apps above it (apps.core.hooks).

A personal access token may be limited to one team, so making, listing and revoking
tokens needs the teams a person is in. Accounts sits below teams in the layer order:
it declares ``user_teams`` here and the teams app registers its answer from its
``AppConfig.ready()``.

A new token comes with a ``curl`` example: a list the token may GET. Each token area's
routes belong to the app above that serves them, so ``example_urls`` holds, per area, how
that app builds one (its path for a team, or None where it needs a team and has none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook, HookTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from apps.accounts.models import User
    from apps.teams.models import Team


def _no_teams(user: User) -> list[Team]:
    return []


# Every team ``user`` is in, by name.
user_teams: Hook[[User], list[Team]] = Hook("the teams a user is in", default=_no_teams)


# Per token area (TOKEN_AREAS), the path of a list a token of that area may GET: given the
# token's team (or the person's first), None where the area needs a team and there is none.
example_urls: HookTable[str, Callable[[Team | None], str | None]] = HookTable(
    "a list each token area may GET"
)
