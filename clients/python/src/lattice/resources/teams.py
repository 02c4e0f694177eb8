"""Teams and their members (owner: helper "sdk")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lattice.resources import Resource

if TYPE_CHECKING:
    import builtins

    from lattice.types import Member, Team


class Teams(Resource):
    def list(self) -> builtins.list[Team]:
        """The teams the token may act in."""
        raise NotImplementedError

    def get(self, team: str | None = None) -> Team:
        raise NotImplementedError

    def members(self, team: str | None = None) -> builtins.list[Member]:
        raise NotImplementedError
