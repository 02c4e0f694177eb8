"""Models: list, create, versions, push a folder, aliases, download (owner: helper "transfer").

A version is pushed with datasets' resumable blob protocol (lattice.transfer), at the
model's own routes (``.../models/<slug>/versions/`` to start, ``.../model-uploads/<id>/``
for the chunks and the complete)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lattice import transfer
from lattice.errors import NotFound
from lattice.resources import Resource
from lattice.types import Model, ModelVersion

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable

    from lattice.types import TransferProgress


class Models(Resource):
    def list(self, team: str | None = None) -> builtins.list[Model]:
        path = f"{self.client.team_path(team)}/models/"
        return [Model.from_api(row) for row in self.transport.paginated(path)]

    def get(self, model: str, *, team: str | None = None) -> Model:
        return Model.from_api(self.transport.json("GET", self._path(model, team)))

    def create(self, name: str, *, team: str | None = None, description: str = "") -> Model:
        body = {"name": name, "description": description}
        path = f"{self.client.team_path(team)}/models/"
        return Model.from_api(self.transport.json("POST", path, json=body))

    def versions(self, model: str, *, team: str | None = None) -> builtins.list[ModelVersion]:
        """The model's versions, newest first (one still uploading has no number yet)."""
        path = f"{self._path(model, team)}versions/"
        return [ModelVersion.from_api(row) for row in self.transport.paginated(path)]

    def version(
        self, model: str, ref: int | str = "latest", *, team: str | None = None
    ) -> ModelVersion:
        """One version, by number, alias or "latest" (with its files and lineage in ``raw``)."""
        path = f"{self._path(model, team)}versions/{ref}/"
        return ModelVersion.from_api(self.transport.json("GET", path))

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
        format: str | None = None,  # noqa: A002 (the API's field)
        metadata: dict[str, Any] | None = None,
        state_dir: Path | None = None,
    ) -> ModelVersion:
        """Upload the folder ``path`` as a new version of ``model`` (resumable, as datasets).
        A ready version that holds exactly these files is the answer instead (nothing is
        sent). ``alias`` is then pointed at the version. ``format``: "sklearn", "pytorch",
        ... (the server's list; "other" when None); ``metadata``: metrics, parameters."""
        transfer.check_workers(workers)
        # Names and an empty folder are refused before the model is made or a byte hashed.
        transfer.list_files(Path(path))
        slug = self.client.team_slug(team)
        try:
            found = self.get(model, team=slug)
        except NotFound:
            if not create:
                raise
            found = self.create(model, team=slug)
        files = transfer.build_manifest(path, progress=progress, cache_dir=state_dir)
        extra: dict[str, Any] = {}
        if format is not None:
            extra["format"] = format
        if metadata is not None:
            extra["metadata"] = metadata
        target = transfer.UploadTarget(
            server=self.client.url,
            team=slug,
            purpose="model",
            slug=found.slug,
            start=f"/teams/{slug}/models/{found.slug}/versions/",
            uploads=f"/teams/{slug}/model-uploads",
            message=message,
            extra=extra,
        )
        outcome = transfer.Uploader(
            self.transport,
            target,
            files,
            workers=workers,
            progress=progress,
            state_folder=state_dir,
        ).run()
        body = outcome.body
        if outcome.existing:
            made = ModelVersion.from_api(body["version"])
        elif "number" in body:
            made = ModelVersion.from_api(body)
        else:  # a resumed upload the last run had completed
            made = self.version(found.slug, int(body["version"]), team=slug)
        if alias:
            self.set_alias(found.slug, alias, made.number, team=slug)
            made = self.version(found.slug, made.number, team=slug)
        return made

    def set_alias(self, model: str, alias: str, version: int, *, team: str | None = None) -> Model:
        path = f"{self._path(model, team)}aliases/{alias}/"
        self.transport.json("PUT", path, json={"version": version})
        return self.get(model, team=team)

    def delete_alias(self, model: str, alias: str, *, team: str | None = None) -> None:
        self.transport.request("DELETE", f"{self._path(model, team)}aliases/{alias}/")

    def download(
        self,
        model: str,
        dest: str | Path,
        *,
        version: int | str | None = None,
        team: str | None = None,
        progress: Callable[[TransferProgress], None] | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write the version's files (by number or alias; the latest when None) under
        ``dest``, each renamed into place once whole and checked against its SHA-256. A local
        file with other bytes is replaced only with ``overwrite``."""
        slug = self.client.team_slug(team)
        # The alias is read once: the files and the archive are of that one number.
        number = self.version(model, "latest" if version is None else version, team=slug).number
        route = f"{self._path(model, slug)}versions/{number}/"
        return transfer.download_archive(
            self.transport,
            f"{route}archive/",
            f"{route}files/",
            Path(dest),
            progress=progress,
            overwrite=overwrite,
        )

    def _path(self, model: str, team: str | None) -> str:
        return f"{self.client.team_path(team)}/models/{model}/"
