"""Models: list, create, versions, push a folder, aliases, download (owner: helper "transfer")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lattice.resources import Resource

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable
    from pathlib import Path

    from lattice.types import Model, ModelVersion, TransferProgress


class Models(Resource):
    def list(self, team: str | None = None) -> builtins.list[Model]:
        raise NotImplementedError

    def get(self, model: str, *, team: str | None = None) -> Model:
        raise NotImplementedError

    def create(self, name: str, *, team: str | None = None, description: str = "") -> Model:
        raise NotImplementedError

    def versions(self, model: str, *, team: str | None = None) -> builtins.list[ModelVersion]:
        raise NotImplementedError

    def push(
        self,
        model: str,
        path: str | Path,
        *,
        team: str | None = None,
        message: str = "",
        alias: str | None = None,
        workers: int = 4,
        create: bool = True,
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> ModelVersion:
        """Upload the folder ``path`` as a new version of ``model`` (resumable, as datasets)."""
        raise NotImplementedError

    def set_alias(self, model: str, alias: str, version: int, *, team: str | None = None) -> Model:
        raise NotImplementedError

    def delete_alias(self, model: str, alias: str, *, team: str | None = None) -> None:
        raise NotImplementedError

    def download(
        self,
        model: str,
        dest: str | Path,
        *,
        version: int | str | None = None,
        team: str | None = None,
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> Path:
        raise NotImplementedError
