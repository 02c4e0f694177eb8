"""Machine types with their live availability (owner: helper "sdk")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lattice.resources import Resource

if TYPE_CHECKING:
    import builtins

    from lattice.types import MachineType


class MachineTypes(Resource):
    def list(self, team: str | None = None) -> builtins.list[MachineType]:
        raise NotImplementedError
