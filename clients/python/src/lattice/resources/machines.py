"""Machine types with their live availability (owner: helper "sdk")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lattice.resources import Resource
from lattice.types import MachineType

if TYPE_CHECKING:
    import builtins


class MachineTypes(Resource):
    def list(self, team: str | None = None) -> builtins.list[MachineType]:
        """The machine types the team may pick, in the catalogue's order, each with its
        specs, price, the plan's note and live availability
        (``GET /teams/<team>/machine-types/``)."""
        path = f"{self.client.team_path(team)}/machine-types/"
        return [MachineType.from_api(item) for item in self.transport.paginated(path)]
