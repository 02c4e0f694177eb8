"""Teams and their members (owner: helper "sdk")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lattice.resources import Resource
from lattice.types import Member, Team

if TYPE_CHECKING:
    import builtins


class Teams(Resource):
    def list(self) -> builtins.list[Team]:
        """The teams the token may act in (``GET /teams/``)."""
        return [Team.from_api(item) for item in self.transport.paginated("/teams/")]

    def get(self, team: str | None = None) -> Team:
        """One team (the client's default unless named), with the caller's role in it."""
        return Team.from_api(self.transport.json("GET", f"{self.client.team_path(team)}/"))

    def members(self, team: str | None = None) -> builtins.list[Member]:
        """The team's members, newest first."""
        path = f"{self.client.team_path(team)}/members/"
        return [Member.from_api(item) for item in self.transport.paginated(path)]
