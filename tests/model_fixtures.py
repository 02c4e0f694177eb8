"""Model versions made for tests through the real path: ``version_start`` (apps.models),
then datasets' resumable upload protocol (each missing chunk received, checked, stored)
and its completion. Not a fixture module: import ``make_model_version``."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from apps.datasets.services.completion import upload_complete
from apps.datasets.services.uploads import chunk_receive, upload_missing
from apps.models.models import Model, ModelVersion
from apps.models.services.registry import model_create
from apps.models.services.versions import version_start

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_model_version(
    team: Team, actor: User, model: Model | str, files: dict[str, bytes], **fields: Any
) -> ModelVersion:
    """A ready version of ``model`` (made with that name if a string the team has not)
    holding ``files``; ``fields`` go to version_start (message, format, metadata, lineage)."""
    if isinstance(model, str):
        found = Model.objects.for_team(team).filter(name=model).first()
        model = found or model_create(team=team, actor=actor, name=model)
    manifest = [{"path": p, "size": len(d), "sha256": sha(d)} for p, d in files.items()]
    version, upload = version_start(team=team, actor=actor, model=model, files=manifest, **fields)
    if upload is None:
        return version
    by_sha = {sha(d): d for d in files.values()}
    for blob_sha, indexes in upload_missing(upload).items():
        for index in indexes:
            size = upload.chunk_size
            piece = by_sha[blob_sha][index * size : (index + 1) * size]
            chunk_receive(
                team=team,
                actor=actor,
                upload=upload,
                sha256=blob_sha,
                index=index,
                pieces=[piece],
                checksum=sha(piece),
            )
    return upload_complete(team=team, actor=actor, upload=upload)
