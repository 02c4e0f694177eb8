"""Datasets: list, create, versions, resumable upload, download (owner: helper "transfer")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lattice.resources import Resource

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable
    from pathlib import Path

    from lattice.types import Dataset, DatasetVersion, TransferProgress


class Datasets(Resource):
    def list(self, team: str | None = None) -> builtins.list[Dataset]:
        raise NotImplementedError

    def get(self, dataset: str, *, team: str | None = None) -> Dataset:
        raise NotImplementedError

    def create(self, name: str, *, team: str | None = None, description: str = "") -> Dataset:
        raise NotImplementedError

    def versions(self, dataset: str, *, team: str | None = None) -> builtins.list[DatasetVersion]:
        raise NotImplementedError

    def upload(
        self,
        dataset: str,
        path: str | Path,
        *,
        team: str | None = None,
        message: str = "",
        workers: int = 4,
        create: bool = True,
        allow_identical: bool = False,
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> DatasetVersion:
        """Upload the folder (or one file) ``path`` as a new version of ``dataset`` (made
        when missing, if ``create``). Resumable: run it again after an interruption and it
        goes on with the same open upload, sending only what the server lacks."""
        raise NotImplementedError

    def download(
        self,
        dataset: str,
        dest: str | Path,
        *,
        version: int | None = None,
        team: str | None = None,
        progress: Callable[[TransferProgress], None] | None = None,
    ) -> Path:
        """Write the version's files (the latest when ``version`` is None) under ``dest``."""
        raise NotImplementedError
