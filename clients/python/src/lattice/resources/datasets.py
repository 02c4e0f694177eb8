"""Datasets: list, create, versions, resumable upload, download (owner: helper "transfer").

The upload and download engine is lattice.transfer, shared with models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lattice import transfer
from lattice.errors import NotFound
from lattice.resources import Resource
from lattice.types import Dataset, DatasetVersion

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable

    from lattice.types import TransferProgress


class Datasets(Resource):
    def list(self, team: str | None = None) -> builtins.list[Dataset]:
        path = f"{self.client.team_path(team)}/datasets/"
        return [Dataset.from_api(row) for row in self.transport.paginated(path)]

    def get(self, dataset: str, *, team: str | None = None) -> Dataset:
        return Dataset.from_api(self.transport.json("GET", self._path(dataset, team)))

    def create(self, name: str, *, team: str | None = None, description: str = "") -> Dataset:
        body = {"name": name, "description": description}
        path = f"{self.client.team_path(team)}/datasets/"
        return Dataset.from_api(self.transport.json("POST", path, json=body))

    def versions(self, dataset: str, *, team: str | None = None) -> builtins.list[DatasetVersion]:
        """The dataset's ready versions, oldest first."""
        return _versions(self.get(dataset, team=team))

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
        state_dir: Path | None = None,
    ) -> DatasetVersion:
        """Upload the folder (or one file) ``path`` as a new version of ``dataset`` (made
        when missing, if ``create``). Resumable: run it again after an interruption and it
        goes on with the same open upload, sending only what the server lacks.

        Files exactly those of the latest version raise a Conflict (code
        "identical_version", the server's message) unless ``allow_identical``.
        ``state_dir``: where resumable uploads and the hash cache are kept (default
        ``$XDG_STATE_HOME/lattice``)."""
        transfer.check_workers(workers)
        # Names and an empty folder are refused before the dataset is made or a byte hashed.
        transfer.list_files(Path(path))
        slug = self.client.team_slug(team)
        try:
            found = self.get(dataset, team=slug)
        except NotFound:
            if not create:
                raise
            found = self.create(dataset, team=slug)
        files = transfer.build_manifest(path, progress=progress, cache_dir=state_dir)
        target = transfer.UploadTarget(
            server=self.client.url,
            team=slug,
            purpose="dataset",
            slug=found.slug,
            start=f"/teams/{slug}/datasets/{found.slug}/uploads/",
            uploads=f"/teams/{slug}/uploads",
            message=message,
        )
        outcome = transfer.Uploader(
            self.transport,
            target,
            files,
            workers=workers,
            allow_identical=allow_identical,
            progress=progress,
            state_folder=state_dir,
        ).run()
        body: dict[str, Any] = outcome.body
        if "number" in body:
            return DatasetVersion.from_api(body)
        # A resumed upload the last run had completed: the version it made.
        number = body.get("version")
        for version in self.versions(found.slug, team=slug):
            if version.number == number:
                return version
        raise NotFound(f"Version {number} of {found.slug} is not ready.", code="not_found")

    def download(
        self,
        dataset: str,
        dest: str | Path,
        *,
        version: int | None = None,
        team: str | None = None,
        progress: Callable[[TransferProgress], None] | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the version's files (the latest when ``version`` is None) under ``dest``.
        Each file is written under a temporary name and renamed once whole and checked
        against its SHA-256: an interrupted download leaves no half file under a real name.
        A local file with other bytes is replaced only with ``overwrite`` (else a
        TransferError naming it, before anything is written)."""
        slug = self.client.team_slug(team)
        found = self.get(dataset, team=slug)
        numbers = [v.number for v in _versions(found)]
        if version is None:
            if not numbers:
                raise NotFound(f"{found.name} has no ready version yet.", code="not_found")
            version = max(numbers)
        route = f"/teams/{slug}/datasets/{found.slug}/versions/{version}/"

        def report(p: TransferProgress) -> None:
            if progress is not None:
                progress(replace(p, version=version))

        return transfer.download_archive(
            self.transport,
            f"{route}archive/",
            f"{route}files/",
            Path(dest),
            progress=report if progress is not None else None,
            overwrite=overwrite,
        )

    def _path(self, dataset: str, team: str | None) -> str:
        return f"{self.client.team_path(team)}/datasets/{dataset}/"


def _versions(dataset: Dataset) -> list[DatasetVersion]:
    rows = dataset.raw.get("versions") or []
    return sorted((DatasetVersion.from_api(row) for row in rows), key=lambda v: v.number)
