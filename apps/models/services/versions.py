"""A model's versions: the upload of a new one (over datasets' resumable upload protocol
and blob store), its completion, and its failure.

A new version is started with the manifest of its files. When a ready version of the
model has exactly those files (the same ``digest``), that version is the answer and
nothing is uploaded; otherwise an Upload of purpose "model" opens (apps.datasets), which
asks only for the blobs the team does not hold, and its completion calls ``_finish`` here
(registered in apps.models.apps) to make the version ready with the next number.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.audit import audit_record
from apps.datasets.hooks import UploadPurpose
from apps.datasets.models import Upload, blob_key
from apps.datasets.selectors import version_usable_by
from apps.datasets.services.completion import upload_abandon
from apps.datasets.services.manifest import manifest_clean
from apps.datasets.services.uploads import upload_open
from apps.models.models import Model, ModelFile, ModelVersion, ModelVersionDataset
from apps.models.services.errors import ModelConflictError, ModelError, ModelPermissionError
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from apps.accounts.models import User
    from apps.datasets.models import Blob, DatasetVersion
    from apps.teams.models import Team

PURPOSE = "model"
# A version's metadata and schema are for people and tools to read, not a store.
MAX_METADATA_BYTES = 64 * 1024
# A saved folder's file whose object becomes the version's metrics (_metrics_from_file).
METRICS_FILE = "metrics.json"


def manifest_digest(manifest: list[dict[str, Any]]) -> str:
    """SHA-256 over the files' (path, size, sha256), by path: the version's content."""
    lines = sorted(f"{f['path']}\0{f['size']}\0{f['sha256']}" for f in manifest)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _clean_format(format: str) -> None:  # noqa: A002 - the field's name
    if format not in ModelVersion.Format.values:
        raise ModelError(
            f"Format is one of {', '.join(ModelVersion.Format.values)}.", field="format"
        )


def _metrics_from_file(
    version: ModelVersion, manifest: list[dict[str, Any]], blobs: dict[str, Blob]
) -> None:
    """A saved folder's top-level metrics.json (at most 64 KiB, a JSON object) becomes the
    version's metrics, read from the stored blob once its bytes are all in: the server's
    reading, never a host's word. An object with a "metrics" key is metadata already (what
    examples/models/iris/train.py writes): its keys are added; any other object is
    recorded as {"metrics": ...}. Keys the version has already (e.g. "skipped") stay."""
    if version.source != ModelVersion.Source.NOTEBOOK or "metrics" in (version.metadata or {}):
        return
    entry = next((f for f in manifest if f["path"] == METRICS_FILE), None)
    if entry is None or entry["size"] > MAX_METADATA_BYTES:
        return
    with default_storage.open(blob_key(blobs[entry["sha256"]].sha256), "rb") as stored:
        raw = stored.read(MAX_METADATA_BYTES + 1)
    try:
        found = json.loads(raw)
    except (ValueError, RecursionError):
        return
    if not isinstance(found, dict):
        return
    added = found if isinstance(found.get("metrics"), dict) else {"metrics": found}
    merged = {**added, **(version.metadata or {})}
    if len(json.dumps(merged)) <= MAX_METADATA_BYTES:
        version.metadata = merged


def _clean_json(value: object, field: str, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelError("Give an object of names and values.", field=field)
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ModelError("At most 64 KiB of it, as JSON.", field=field)
    return value


def _clean_lineage(
    team: Team, model: Model, dataset_versions: list[int], parent: int | None
) -> tuple[list[DatasetVersion], ModelVersion | None]:
    readable: list[DatasetVersion] = []
    for pk in dict.fromkeys(dataset_versions):
        version = version_usable_by(team=team, pk=pk)
        if version is None or version.status != version.Status.READY:
            raise ModelError(
                f"Dataset version {pk} is not one this team can read.", field="dataset_versions"
            )
        readable.append(version)
    parent_version = None
    if parent is not None:
        parent_version = (
            ModelVersion.objects.for_team(team)
            .filter(pk=parent, status=ModelVersion.Status.READY)
            .first()
        )
        if parent_version is None:
            raise ModelError(
                "The parent is a ready version of one of this team's models.", field="parent"
            )
    return readable, parent_version


@transaction.atomic
def version_start(
    *,
    team: Team,
    actor: User,
    model: Model,
    files: object,
    message: str = "",
    format: str = ModelVersion.Format.OTHER,  # noqa: A002 - the field's name
    metadata: object = None,
    io_schema: object = None,
    source: str = ModelVersion.Source.UPLOAD,
    source_id: int | None = None,
    source_label: str = "",
    dataset_versions: list[int] | None = None,
    parent: int | None = None,
) -> tuple[ModelVersion, Upload | None]:
    """Start a new version of ``model`` with this manifest. The same files as a ready
    version of it: (that version, None), nothing made. Else (the new version, uploading,
    and the Upload that brings its files; complete it as any upload)."""
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    _clean_format(format)
    metadata = _clean_json(metadata, "metadata")
    io_schema = _clean_json(io_schema, "io_schema", allow_none=True)
    datasets, parent_version = _clean_lineage(team, model, dataset_versions or [], parent)
    manifest = manifest_clean(files)
    digest = manifest_digest(manifest)
    same = (
        ModelVersion.objects.for_team(team)
        .filter(model=model, digest=digest, status=ModelVersion.Status.READY)
        .first()
    )
    if same is not None:
        return same, None
    version = _version_create(
        team,
        actor,
        model,
        datasets,
        message=message[:500],
        source=source,
        source_id=source_id,
        source_label=source_label[:200],
        parent=parent_version,
        digest=digest,
        format=format,
        metadata=metadata,
        io_schema=io_schema,
        file_count=len(manifest),
        total_size=sum(f["size"] for f in manifest),
    )
    return version, _upload_open(team, actor, version, manifest)


def _version_create(
    team: Team, actor: User, model: Model, datasets: list[DatasetVersion], **fields: Any
) -> ModelVersion:
    """An uploading version with ``fields``, linked to the dataset versions it was made
    from (each one the team can read, as _clean_lineage checked), each link labelled with
    the dataset's name and number so that it outlives the dataset."""
    version = ModelVersion.objects.for_team(team).create(
        team=team, model=model, created_by=actor, **fields
    )
    ModelVersionDataset.objects.for_team(team).bulk_create(
        ModelVersionDataset(
            team=team,
            version=version,
            dataset_version=used,
            label=f"{used.dataset.name} v{used.number}"[:200],
        )
        for used in datasets
    )
    return version


def _upload_open(
    team: Team, actor: User, version: ModelVersion, manifest: list[dict[str, Any]]
) -> Upload:
    upload = upload_open(team=team, actor=actor, manifest=manifest, purpose=PURPOSE)
    version.upload = upload
    version.save(update_fields=["upload"])
    audit_record(
        team=team,
        actor=actor,
        action="model.upload_started",
        target=version.model.name,
        files=len(manifest),
        new_bytes=upload.new_bytes,
    )
    return upload


@transaction.atomic
def version_begin(
    *,
    team: Team,
    actor: User,
    model: Model,
    message: str = "",
    source: str = ModelVersion.Source.UPLOAD,
    source_id: int | None = None,
    source_label: str = "",
    dataset_versions: list[int] | None = None,
    parent: int | None = None,
    format: str = ModelVersion.Format.OTHER,  # noqa: A002 - the field's name
) -> ModelVersion:
    """A new version of ``model``, uploading, whose files are not known yet (a folder a
    host is about to read): it shows its progress meanwhile; ``version_manifest`` gives it
    its files."""
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    _clean_format(format)
    datasets, parent_version = _clean_lineage(team, model, dataset_versions or [], parent)
    return _version_create(
        team,
        actor,
        model,
        datasets,
        message=message[:500],
        source=source,
        source_id=source_id,
        source_label=source_label[:200],
        parent=parent_version,
        format=format,
    )


@transaction.atomic
def version_manifest(
    *, team: Team, actor: User, version: ModelVersion, files: object
) -> tuple[ModelVersion, Upload | None]:
    """Give a version ``version_begin`` made its manifest. The same files as a ready version
    of the model: (that version, None), and this one goes. Else (this version, the Upload
    that brings its files), also when the same manifest is given again."""
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    locked = ModelVersion.objects.for_team(team).select_for_update().get(pk=version.pk)
    manifest = manifest_clean(files)
    digest = manifest_digest(manifest)
    if locked.status != ModelVersion.Status.UPLOADING or locked.upload_id or locked.digest:
        upload = locked.upload
        if (
            locked.status == ModelVersion.Status.UPLOADING
            and locked.digest == digest
            and upload is not None
            and upload.status == upload.Status.OPEN
        ):
            # The same manifest again (a host that lost the answer and tried again): the
            # same answer, not a refusal that would end its save.
            return locked, upload
        raise ModelConflictError("This version has its files already.")
    same = (
        ModelVersion.objects.for_team(team)
        .filter(model_id=locked.model_id, digest=digest, status=ModelVersion.Status.READY)
        .first()
    )
    if same is not None:
        locked.delete()
        return same, None
    locked.digest = digest
    locked.file_count = len(manifest)
    locked.total_size = sum(f["size"] for f in manifest)
    locked.save(update_fields=["digest", "file_count", "total_size"])
    return locked, _upload_open(team, actor, locked, manifest)


def _finish(
    team: Team,
    actor: User | None,
    upload: Upload,
    manifest: list[dict[str, Any]],
    blobs: dict[str, Blob],
) -> ModelVersion:
    """The upload's version gets its files and the next number, inside the completion's
    transaction; or, when a version with the same files became ready meanwhile, this one
    goes and that one is the answer."""
    # Locks in one order everywhere: the upload (the caller's), the model, the version.
    # Numbers in completion order, and one version a content, under the model's lock.
    model_id = (
        ModelVersion.objects.for_team(team).filter(upload=upload).values_list("model_id").first()
    )
    model = (
        Model.objects.for_team(team).select_for_update().filter(pk=model_id[0]).first()
        if model_id
        else None
    )
    version = ModelVersion.objects.for_team(team).select_for_update().filter(upload=upload).first()
    if model is None or version is None:
        raise ModelConflictError("This model was deleted: its upload cannot be completed.")
    if version.status != ModelVersion.Status.UPLOADING:
        raise ModelConflictError(
            f"This version failed ({version.failure}): it cannot be completed; start a new one."
            if version.status == ModelVersion.Status.FAILED
            else "This version is ready already."
        )
    same = (
        ModelVersion.objects.for_team(team)
        .filter(model=model, digest=version.digest, status=ModelVersion.Status.READY)
        .first()
    )
    if same is not None:
        version.delete()
        return same
    ModelFile.objects.for_team(team).bulk_create(
        ModelFile(
            team=team, version=version, path=f["path"], blob=blobs[f["sha256"]], size=f["size"]
        )
        for f in manifest
    )
    last = ModelVersion.objects.for_team(team).filter(model=model).aggregate(n=Max("number"))["n"]
    version.number = (last or 0) + 1
    version.status = ModelVersion.Status.READY
    version.file_count = len(manifest)
    version.total_size = sum(f["size"] for f in manifest)
    version.ready_at = timezone.now()
    version.progress = None
    _metrics_from_file(version, manifest, blobs)
    version.save()
    audit_record(
        team=team,
        actor=actor,
        action="model.version_created",
        target=f"{model.name} v{version.number}",
    )
    return version


def version_fail(*, version: ModelVersion, reason: str) -> ModelVersion:
    """Mark an uploading version failed with ``reason`` (shown as it is), and give up its
    upload in the same transaction (what it received is discarded), so that a failed
    version can never be completed. A version that is ready already stays so."""
    with transaction.atomic():
        # The upload's lock before the version's, as its completion takes them.
        upload_id = (
            ModelVersion.objects.for_team(version.team_id)
            .filter(pk=version.pk)
            .values_list("upload_id", flat=True)
            .first()
        )
        upload = (
            Upload.objects.for_team(version.team_id)
            .select_for_update()
            .filter(pk=upload_id)
            .first()
            if upload_id
            else None
        )
        locked = (
            ModelVersion.objects.for_team(version.team_id).select_for_update().get(pk=version.pk)
        )
        if locked.status != ModelVersion.Status.UPLOADING:
            return locked
        locked.status = ModelVersion.Status.FAILED
        locked.failure = reason[:1000]
        locked.save(update_fields=["status", "failure"])
        if upload is not None:
            upload_abandon(upload)
    return locked


def _abandon(upload: Upload) -> None:
    version = ModelVersion.objects.unscoped().filter(upload=upload).first()
    if version is not None:
        version_fail(version=version, reason="Its upload was given up: no file came for a week.")


def _holdings(team: Team | None) -> QuerySet[Any]:
    files = ModelFile.objects.for_team(team) if team is not None else ModelFile.objects.unscoped()
    return files.values("blob_id")


def _describe(upload: Upload) -> dict[str, Any]:
    version = (
        ModelVersion.objects.for_team(upload.team_id)
        .select_related("model")
        .filter(upload=upload)
        .first()
    )
    if version is None:
        return {"model": None, "version": None}
    return {"model": version.model.slug, "version": version.number, "version_id": version.pk}


upload_purpose = UploadPurpose(
    permission="models.manage",
    finish=_finish,
    abandon=_abandon,
    holdings=_holdings,
    describe=_describe,
)
