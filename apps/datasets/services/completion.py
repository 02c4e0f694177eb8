"""Writes to datasets: making and changing them, and the upload of a version.

An upload is started with the manifest of the whole new version; the answer says
which files need bytes: every blob the team does not already hold (``_held``), whoever
else has stored it, so that no team reads another's file by naming its hash and no answer
says whether a hash is stored elsewhere. Chunks of those arrive in any order and may be
sent again; ``upload_complete`` assembles and checks each new blob and makes the version
ready, numbered, in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from apps.core.audit import audit_record
from apps.core.errors import ConflictError, PermissionDeniedError, ServiceError
from apps.core.tenancy import unscoped
from apps.datasets import s3, storage
from apps.datasets.entitlements import check_private_dataset, check_storage
from apps.datasets.hooks import dataset_made_private
from apps.datasets.models import (
    Blob,
    Dataset,
    DatasetVersion,
    Upload,
    UploadBlob,
    UploadChunk,
    VersionFile,
    blob_key,
)
from apps.datasets.paths import (
    PathError,
    clean_path,
    conflicts,
    duplicates,
    hidden_character,
    shown,
)
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from apps.accounts.models import User
    from apps.teams.models import Team

SHA256 = re.compile(r"^[0-9a-f]{64}$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_FILES = 100_000
# S3's largest object: a file bigger than that could never be stored.
MAX_FILE_BYTES = 5 * 1024**4
# A version's files together, far past any plan's quota (a plan may have none).
MAX_VERSION_BYTES = 1024**5


class DatasetError(ServiceError):
    """A request refused; the message is shown as it is."""


class DatasetConflictError(ConflictError, DatasetError):
    """Not possible in the current state (409)."""


class DatasetPermissionError(PermissionDeniedError, DatasetError):
    """The actor's role does not allow this (403)."""


# S3 takes at most this many parts in one multipart upload: a file never needs more chunks.
MAX_CHUNKS = 10_000


def chunk_size(largest_file: int = 0) -> int:
    """The chunk size for an upload whose largest file is ``largest_file`` bytes: the
    setting's, or a whole number of MiB large enough for MAX_CHUNKS chunks."""
    configured = int(settings.LATTICE_UPLOAD_CHUNK_BYTES)
    if largest_file <= configured * MAX_CHUNKS:
        return configured
    mib = 1024 * 1024
    return -(-largest_file // (MAX_CHUNKS * mib)) * mib


def chunk_key(upload_id: int, sha256: str, index: int) -> str:
    return f"datasets/uploads/{upload_id}/{sha256}/{index}"


def part_key(upload_id: int, sha256: str) -> str:
    """On a local folder: the file a blob's chunks are written into, each at its offset."""
    return f"datasets/uploads/{upload_id}/{sha256}.part"


def staging_key(upload_id: int, sha256: str) -> str:
    """On S3: where a blob's multipart upload assembles before it is checked."""
    return f"datasets/uploads/{upload_id}/{sha256}"


# --- datasets -------------------------------------------------------------------------


def _clean_name(team: Team, name: str, *, exclude: int | None = None) -> tuple[str, str]:
    name = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not name:
        raise DatasetError("Give the dataset a name.", field="name")
    hidden = hidden_character(name)
    if hidden:
        # Shown in the catalogue to every team: a bidi control would make it read as another.
        raise DatasetError(
            f"{shown(name)}: a name cannot contain invisible or text-direction characters "
            f"({hidden}).",
            field="name",
        )
    if len(name) > Dataset._meta.get_field("name").max_length:  # type: ignore[operator]
        raise DatasetError("A name is at most 80 characters.", field="name")
    slug = slugify(name)[:80]
    if not slug:
        raise DatasetError("A name needs a letter or a digit.", field="name")
    taken = Dataset.objects.for_team(team).filter(slug=slug)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise DatasetConflictError(f"This team already has a dataset called {name}.", field="name")
    return name, slug


def _clean_visibility(visibility: str) -> str:
    if visibility not in Dataset.Visibility.values:
        raise DatasetError("Visibility is private or public.", field="visibility")
    return visibility


@transaction.atomic
def dataset_create(
    *,
    team: Team,
    actor: User,
    name: str,
    description: str = "",
    licence: str = "",
    visibility: str = Dataset.Visibility.PRIVATE,
) -> Dataset:
    """Make an empty dataset (its first upload makes version 1); audit it."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    name, slug = _clean_name(team, name)
    if _clean_visibility(visibility) == Dataset.Visibility.PRIVATE:
        check_private_dataset(team)  # a 402 on a plan whose datasets are public
    dataset = Dataset.objects.for_team(team).create(
        team=team,
        name=name,
        slug=slug,
        description=description[:5000],
        licence=licence[:80],
        visibility=_clean_visibility(visibility),
        created_by=actor,
    )
    audit_record(team=team, actor=actor, action="dataset.created", target=name)
    return dataset


@transaction.atomic
def dataset_update(
    *,
    team: Team,
    actor: User,
    dataset: Dataset,
    name: str | None = None,
    description: str | None = None,
    licence: str | None = None,
    visibility: str | None = None,
) -> Dataset:
    """Change what is given of the name (the slug follows), description, licence and
    visibility; going private removes other teams' mounts of it. Audited."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    locked = Dataset.objects.for_team(team).select_for_update().get(pk=dataset.pk)
    previous_name, previous_visibility = locked.name, locked.visibility
    changed = _changes_apply(
        team, locked, name=name, description=description, licence=licence, visibility=visibility
    )
    if not changed:
        return locked
    slug = ["slug"] if "name" in changed else []
    try:
        locked.save(update_fields=[*changed, *slug, "updated_at"])
    except IntegrityError:
        # _clean_name found the slug free, then another rename took it first.
        raise DatasetConflictError(
            f"This team already has a dataset called {locked.name}.", field="name"
        ) from None
    details: dict[str, Any] = {"fields": changed}
    if "name" in changed:
        details["previous_name"] = previous_name
    if "visibility" in changed:
        details["visibility"] = f"{previous_visibility} -> {locked.visibility}"
        if locked.visibility == Dataset.Visibility.PRIVATE:
            # Other teams' notebooks lose their mounts of it (apps.datasets.hooks).
            details["mounts_removed"] = dataset_made_private(team, locked)
    audit_record(team=team, actor=actor, action="dataset.updated", target=locked.name, **details)
    return locked


def _changes_apply(
    team: Team,
    dataset: Dataset,
    *,
    name: str | None,
    description: str | None,
    licence: str | None,
    visibility: str | None,
) -> list[str]:
    """Check what is given as dataset_create does and set what differs on ``dataset``
    (unsaved); the fields that changed."""
    changed: list[str] = []
    if name is not None:
        name, slug = _clean_name(team, name, exclude=dataset.pk)
        if name != dataset.name:
            dataset.name, dataset.slug = name, slug
            changed.append("name")
    if description is not None and description[:5000] != dataset.description:
        dataset.description = description[:5000]
        changed.append("description")
    if licence is not None and licence[:80] != dataset.licence:
        dataset.licence = licence[:80]
        changed.append("licence")
    if visibility is not None and _clean_visibility(visibility) != dataset.visibility:
        if visibility == Dataset.Visibility.PRIVATE:
            check_private_dataset(team)  # a 402 on a plan whose datasets are public
        dataset.visibility = visibility
        changed.append("visibility")
    return changed


@transaction.atomic
def dataset_delete(*, team: Team, actor: User, dataset: Dataset, confirmation: str) -> None:
    """Delete a dataset and its versions after its name is typed; blobs nothing else holds
    are removed by the hourly housekeeping (apps.datasets.upkeep)."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    if confirmation.strip() != dataset.name:
        raise DatasetError(
            f"Type the dataset's name, {dataset.name}, to delete it.", field="confirmation"
        )
    locked = Dataset.objects.for_team(team).select_for_update().get(pk=dataset.pk)
    # Notebooks mounting it (any team's, if it was public) lose the folder from their
    # next start; the mounts go with it.
    with unscoped():
        locked.delete()
    audit_record(team=team, actor=actor, action="dataset.deleted", target=dataset.name)


# --- uploads --------------------------------------------------------------------------


def _team_blobs(team: Team) -> dict[str, int]:
    """The blobs the team holds, across its versions and open uploads: sha256 -> size."""
    held = dict(
        VersionFile.objects.for_team(team).values_list("blob__sha256", "blob__size").distinct()
    )
    pending = UploadBlob.objects.for_team(team).filter(upload__status=Upload.Status.OPEN)
    held.update(pending.values_list("sha256", "size"))
    return held


def _held(team: Team, shas: Iterable[str]) -> dict[str, int]:
    """Of ``shas``, the blobs ``team`` holds (sha256 -> size): those a ready version of its
    own lists. It sent their bytes (or held them already when it listed them), so it may
    list them again without sending them. One query, whatever other teams store.

    Only these: a blob another team stored, even in a public dataset, is sent again and
    checked, or naming a hash would be enough to read a file and would say it is stored.
    """
    mine = VersionFile.objects.for_team(team).filter(blob=OuterRef("pk"))
    held = Blob.objects.filter(sha256__in=list(shas)).filter(Exists(mine)).order_by()
    return dict(held.values_list("sha256", "size"))


def _clean_manifest(files: object) -> list[dict[str, Any]]:
    if not isinstance(files, list) or not files:
        raise DatasetError(
            "List the version's files: path, size and sha256 of each.", field="files"
        )
    if len(files) > MAX_FILES:
        raise DatasetError(f"A version holds at most {MAX_FILES:,} files.", field="files")
    cleaned: list[dict[str, Any]] = []
    seen: dict[str, str] = {}  # path in NFC -> as it was sent
    sizes: dict[str, int] = {}
    for entry in files:
        file = _clean_entry(entry)
        path, size, sha = file["path"], file["size"], file["sha256"]
        if path in seen:
            if seen[path] == entry["path"]:
                raise DatasetError(f"{path} is listed twice.", field="files")
            _one_name(seen[path], entry["path"])
        if sizes.setdefault(sha, size) != size:
            raise DatasetError(f"{path}: the same sha256 with two sizes.", field="files")
        seen[path] = entry["path"]
        cleaned.append(file)
    paths = [f["path"] for f in cleaned]
    same = duplicates(paths)
    if same:
        _one_name(*same)
    clashing = conflicts(paths)
    if clashing:
        raise DatasetError(f"{clashing[0]} is both a file and a folder.", field="files")
    total = sum(f["size"] for f in cleaned)
    if total > MAX_VERSION_BYTES:
        raise DatasetError(
            f"The files add up to {total:,} bytes; a version holds at most 1 PiB "
            f"({MAX_VERSION_BYTES:,} bytes).",
            field="files",
        )
    return cleaned


def _one_name(first: str, second: str) -> NoReturn:
    raise DatasetError(
        f"{shown(first)} and {shown(second)} are one name where case or the Unicode form of "
        "letters is ignored (macOS, Windows): rename one.",
        field="files",
    )


def _clean_entry(entry: object) -> dict[str, Any]:
    """One file of a manifest, {path (in NFC), size, sha256}, checked on its own."""
    if not isinstance(entry, dict):
        raise DatasetError("Each file is {path, size, sha256}.", field="files")
    try:
        path = clean_path(entry.get("path"))
    except PathError as exc:
        raise DatasetError(str(exc), field="files") from exc
    size, sha = entry.get("size"), entry.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DatasetError(f"{path}: size is a whole number of bytes.", field="files")
    if size > MAX_FILE_BYTES:
        raise DatasetError(
            f"{path}: a file is at most 5 TiB (the largest object storage keeps); this "
            f"one is listed as {size:,} bytes.",
            field="files",
        )
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise DatasetError(f"{path}: sha256 is 64 lowercase hex digits.", field="files")
    if size == 0 and sha != EMPTY_SHA256:
        raise DatasetError(f"{path}: an empty file's sha256 is {EMPTY_SHA256}.", field="files")
    return {"path": path, "size": size, "sha256": sha}


@transaction.atomic
def upload_start(
    *,
    team: Team,
    actor: User,
    dataset: Dataset,
    files: object,
    message: str = "",
) -> Upload:
    """Open an upload of a new version with this manifest. Blobs the team holds are taken
    as they are, every other one is sent (_held); the quota is checked up front for the
    bytes new to the team."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    manifest = _clean_manifest(files)
    sizes = {f["sha256"]: f["size"] for f in manifest}
    held = _held(team, sizes)
    for entry in manifest:
        if held.get(entry["sha256"], entry["size"]) != entry["size"]:
            raise DatasetError(
                f"{entry['path']}: listed as {entry['size']:,} bytes, but this team's file "
                f"with that sha256 is {held[entry['sha256']]:,} bytes.",
                field="files",
            )
    using = _team_blobs(team)  # what it holds already counts once, in use or on its way
    check_storage(
        team,
        used_bytes=sum(using.values()),
        adding_bytes=sum(size for sha, size in sizes.items() if sha not in using),
    )
    version = DatasetVersion.objects.for_team(team).create(
        team=team, dataset=dataset, message=message[:500], author=actor
    )
    size = chunk_size(max(sizes.values(), default=0))
    upload = Upload.objects.for_team(team).create(
        team=team,
        dataset=dataset,
        version=version,
        created_by=actor,
        chunk_size=size,
        new_bytes=sum(s for sha, s in sizes.items() if sha not in held),
    )
    # On S3 the client sends each new blob's parts straight to its multipart upload, to
    # URLs Lattice presigns; an empty file has no parts.
    direct = s3.enabled()
    UploadBlob.objects.for_team(team).bulk_create(
        UploadBlob(
            team=team,
            upload=upload,
            sha256=sha,
            size=blob_size,
            chunk_count=math.ceil(blob_size / size),
            multipart_id=(
                s3.multipart_start(staging_key(upload.pk, sha)) if direct and blob_size else ""
            ),
        )
        for sha, blob_size in sizes.items()
        if sha not in held
    )
    # The manifest waits in storage until complete: it may be 100,000 lines.
    _manifest_store(upload, manifest)
    audit_record(
        team=team,
        actor=actor,
        action="dataset.upload_started",
        target=dataset.name,
        files=len(manifest),
        new_bytes=upload.new_bytes,
    )
    return upload


def _manifest_store(upload: Upload, manifest: list[dict[str, Any]]) -> None:
    storage.write_stream(
        f"datasets/uploads/{upload.pk}/manifest.jsonl",
        (_json_line(f) for f in manifest),
        expected_size=sum(len(_json_line(f)) for f in manifest),
    )


def _json_line(entry: dict[str, Any]) -> bytes:
    import json

    return (json.dumps(entry, ensure_ascii=False) + "\n").encode()


def upload_manifest(upload: Upload) -> list[dict[str, Any]]:
    import json

    lines = b"".join(storage.open_pieces(f"datasets/uploads/{upload.pk}/manifest.jsonl"))
    return [json.loads(line) for line in lines.splitlines() if line]


def upload_missing(upload: Upload, blobs: list[UploadBlob] | None = None) -> dict[str, list[int]]:
    """For each blob still to send (``blobs``: the upload's, when already read): the chunk
    indexes not received yet."""
    if blobs is None:
        blobs = list(UploadBlob.objects.for_team(upload.team_id).filter(upload=upload))
    if s3.enabled():
        return {blob.sha256: _parts_missing(upload, blob) for blob in blobs}
    received: dict[int, set[int]] = {}
    for blob_id, index in (
        UploadChunk.objects.for_team(upload.team_id)
        .filter(blob__upload=upload)
        .values_list("blob_id", "index")
    ):
        received.setdefault(blob_id, set()).add(index)
    return {
        blob.sha256: [i for i in range(blob.chunk_count) if i not in received.get(blob.pk, set())]
        for blob in blobs
    }


def _parts_missing(upload: Upload, blob: UploadBlob) -> list[int]:
    if not blob.multipart_id:
        return []  # an empty file: nothing to send
    held = s3.parts(staging_key(upload.pk, blob.sha256), blob.multipart_id)
    return [
        i
        for i in range(blob.chunk_count)
        if i not in held or held[i]["Size"] != blob.chunk_range(i, upload.chunk_size)[1]
    ]


def _sendable(team: Team, upload: Upload, sha256: str, index: int) -> UploadBlob:
    if upload.status != Upload.Status.OPEN:
        raise DatasetConflictError("This upload is finished: start a new one.")
    blob = UploadBlob.objects.for_team(team).filter(upload=upload, sha256=sha256).first()
    if blob is None:
        raise DatasetError(f"This upload does not need the blob {sha256[:12]}...: nothing to send.")
    if not 0 <= index < blob.chunk_count:
        raise DatasetError(f"Chunks of this file are numbered 0 to {blob.chunk_count - 1}.")
    return blob


def chunk_target(
    *, team: Team, actor: User, upload: Upload, sha256: str, index: int, checksum: str
) -> dict[str, Any]:
    """Where the client sends chunk ``index`` (whose SHA-256 is ``checksum``): a presigned
    S3 URL when storage is S3, else Lattice's own chunk address."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    blob = _sendable(team, upload, sha256, index)
    if not SHA256.match(checksum or ""):
        raise DatasetError("Give the chunk's SHA-256 (64 lowercase hex digits).", field="sha256")
    _, length = blob.chunk_range(index, upload.chunk_size)
    if blob.multipart_id:
        return s3.part_target(
            staging_key(upload.pk, sha256),
            blob.multipart_id,
            index,
            sha256=checksum,
            length=length,
        )
    address = {"team_slug": team.slug, "upload_id": upload.pk, "sha256": sha256, "index": index}
    return {
        "method": "PUT",
        "url": reverse("api:upload_chunk", kwargs=address),
        "headers": {"X-Chunk-SHA256": checksum},
    }


def chunk_receive(
    *,
    team: Team,
    actor: User,
    upload: Upload,
    sha256: str,
    index: int,
    pieces: Iterable[bytes],
    checksum: str,
) -> UploadChunk:
    """Store chunk ``index`` of blob ``sha256`` after checking its SHA-256 (``checksum``).
    Sending a chunk again replaces it; a wrong one stores nothing."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    blob = _sendable(team, upload, sha256, index)
    if not SHA256.match(checksum or ""):
        raise DatasetError("Send the chunk's SHA-256 in the X-Chunk-SHA256 header.")
    offset, length = blob.chunk_range(index, upload.chunk_size)
    part = storage.local_path(part_key(upload.pk, sha256))

    def refused(message: str) -> DatasetError:
        if part is not None and not blob.multipart_id:
            # Written in place: what was received for this chunk before is overwritten. (On
            # S3 a wrong chunk is not sent on, and the part received before stays.)
            UploadChunk.objects.for_team(team).filter(blob=blob, index=index).delete()
        return DatasetError(message)

    try:
        if part is not None and not blob.multipart_id:
            digest = storage.pwrite_pieces(part, offset, pieces, expected_size=length)
        else:
            # A part sent again replaces the last one: no lock is needed here either.
            digest = _part_receive(upload, blob, index, pieces, checksum=checksum, length=length)
    except storage.SizeError as exc:
        raise refused(
            f"Chunk {index} is {length} bytes; this one had {exc}. Send it again."
        ) from exc
    if digest != checksum:
        raise refused(f"Chunk {index} arrived damaged (its SHA-256 does not match). Send it again.")
    chunk, _ = UploadChunk.objects.for_team(team).update_or_create(
        blob=blob, index=index, defaults={"team": team, "sha256": digest}
    )
    return chunk


def _part_receive(
    upload: Upload,
    blob: UploadBlob,
    index: int,
    pieces: Iterable[bytes],
    *,
    checksum: str,
    length: int,
) -> str:
    """A chunk that came through Lattice on S3: checked here, then sent on as its part."""
    with storage.spooled(pieces, expected_size=length) as (spool, digest):
        if digest == checksum:
            s3.part_put(
                staging_key(upload.pk, blob.sha256),
                blob.multipart_id,
                index,
                spool,
                sha256=digest,
            )
    return digest


def upload_complete(*, team: Team, actor: User, upload: Upload) -> DatasetVersion:
    """Check every new blob whole against its SHA-256, store it, and make the version
    ready with the next number. Nothing is made if anything is missing or wrong."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    try:
        return _complete(team, actor, upload)
    except _DamagedBlobError as damaged:
        # After the transaction: what is forgotten must stay forgotten after the refusal.
        resend = _restart_blob(upload, damaged)
        raise DatasetError(
            f"The file with sha256 {damaged.blob.sha256[:12]}... arrived whole but does not "
            f"hash to it: send {resend} again."
        ) from damaged


def _complete(team: Team, actor: User, upload: Upload) -> DatasetVersion:
    with transaction.atomic():
        locked = Upload.objects.for_team(team).select_for_update().get(pk=upload.pk)
        if locked.status != Upload.Status.OPEN:
            raise DatasetConflictError(
                "This upload is already complete."
                if locked.status == Upload.Status.COMPLETE
                else "This upload was abandoned: start a new one."
            )
        new_blobs = list(UploadBlob.objects.for_team(team).filter(upload=locked))
        missing = {sha: idx for sha, idx in upload_missing(locked, new_blobs).items() if idx}
        # Another upload of this team may have stored one of them since: then it holds it.
        # A blob stored only by other teams is no excuse (_held).
        forgiven = set(_held(team, missing)) if missing else set()
        missing = {sha: idx for sha, idx in missing.items() if sha not in forgiven}
        if missing:
            count = sum(len(i) for i in missing.values())
            raise DatasetError(
                f"{count} chunk{'s' if count != 1 else ''} of {len(missing)} "
                f"file{'s' if len(missing) != 1 else ''} still to send (GET the upload for "
                "which); nothing was made."
            )
        new_blobs = [blob for blob in new_blobs if blob.sha256 not in forgiven]
        manifest = upload_manifest(locked)
        # Every local part is checked before any is moved: a refusal leaves them all.
        for blob, part, digest in _hash_parts(locked, new_blobs):
            _part_check(locked, blob, part, digest)
        for blob in new_blobs:
            _blob_assemble(locked, blob)
        blobs = _stored_as_listed(manifest)
        version = (
            DatasetVersion.objects.for_team(team).select_for_update().get(pk=locked.version_id)
        )
        VersionFile.objects.for_team(team).bulk_create(
            VersionFile(
                team=team, version=version, path=f["path"], blob=blobs[f["sha256"]], size=f["size"]
            )
            for f in manifest
        )
        # Numbers in completion order, under the dataset's lock.
        dataset = Dataset.objects.for_team(team).select_for_update().get(pk=locked.dataset_id)
        last = (
            DatasetVersion.objects.for_team(team)
            .filter(dataset_id=locked.dataset_id)
            .aggregate(n=Max("number"))["n"]
        )
        version.number = (last or 0) + 1
        version.status = DatasetVersion.Status.READY
        version.file_count = len(manifest)
        version.total_size = sum(f["size"] for f in manifest)
        version.ready_at = timezone.now()
        version.save()
        locked.status = Upload.Status.COMPLETE
        locked.completed_at = timezone.now()
        locked.save(update_fields=["status", "completed_at"])
        audit_record(
            team=team,
            actor=actor,
            action="dataset.version_created",
            target=f"{dataset.name} v{version.number}",
        )
        transaction.on_commit(lambda: _discard_chunks(locked, unused=forgiven))
    return version


def _stored_as_listed(manifest: list[dict[str, Any]]) -> dict[str, Blob]:
    """The blobs ``manifest`` lists, by sha256, once each is known to be stored with the
    size listed (the size a version's files and archives are told): else a DatasetError
    naming the file. Every blob it lists is the team's by now: held, or sent and checked."""
    blobs = {b.sha256: b for b in Blob.objects.filter(sha256__in={f["sha256"] for f in manifest})}
    for entry in manifest:
        blob = blobs.get(entry["sha256"])
        if blob is None:
            raise DatasetError(
                f"{entry['path']}: its file is no longer stored; start a new upload, which "
                "will ask for its bytes."
            )
        if blob.size != entry["size"]:
            raise DatasetError(
                f"{entry['path']}: listed as {entry['size']:,} bytes, but the file with its "
                f"sha256 is {blob.size:,} bytes; nothing was made."
            )
    return blobs


def _hash_parts(
    upload: Upload, blobs: list[UploadBlob]
) -> list[tuple[UploadBlob, Path, str | None]]:
    """On a local folder: each blob's part file with its SHA-256 (None: no part file, or
    not the blob's size), several files at once (hashing and reading let threads run)."""
    parts = []
    for blob in blobs:
        part = storage.local_path(part_key(upload.pk, blob.sha256))
        if part is not None and not blob.multipart_id:
            parts.append((blob, part))

    def digest(item: tuple[UploadBlob, Path]) -> str | None:
        blob, part = item
        if not blob.size or not part.exists() or part.stat().st_size != blob.size:
            return None
        return storage.hash_file(part)

    workers = min(len(parts), os.cpu_count() or 1, 4)
    if workers < 2:  # noqa: PLR2004 - one file gains nothing from threads
        return [(blob, part, digest((blob, part))) for blob, part in parts]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [
            (blob, part, sha)
            for (blob, part), sha in zip(parts, pool.map(digest, parts), strict=True)
        ]


def _part_check(upload: Upload, blob: UploadBlob, part: Path, digest: str | None) -> None:
    """A local part file whose SHA-256 is ``digest``: _DamagedBlobError, naming the chunks
    that are wrong, unless it is whole and right (or already moved into place)."""
    if blob.size == 0 or digest == blob.sha256:
        return
    if not part.exists():
        target = storage.local_path(blob_key(blob.sha256))
        if target is not None and target.exists():
            return  # moved by a complete whose transaction then failed: the same bytes
        raise _DamagedBlobError(blob)
    # Say which chunks are wrong (two sends of one chunk at once can mix them).
    recorded = dict(
        UploadChunk.objects.for_team(blob.team_id).filter(blob=blob).values_list("index", "sha256")
    )
    bad = [
        index
        for index in range(blob.chunk_count)
        if storage.hash_file(
            part,
            offset=index * upload.chunk_size,
            length=blob.chunk_range(index, upload.chunk_size)[1],
        )
        != recorded.get(index)
    ]
    raise _DamagedBlobError(blob, bad_chunks=bad or None)


def _blob_assemble(upload: Upload, blob: UploadBlob) -> None:
    """Store ``blob`` from what was received, checked whole against its SHA-256 first (a
    local part file is checked already). Whether or not the same bytes are stored already
    (another team's, say), they are checked and put in place again: the same bytes, so
    nothing changes for anyone reading them, and complete takes as long either way."""
    part = storage.local_path(part_key(upload.pk, blob.sha256))
    if blob.multipart_id:
        _multipart_assemble(upload, blob)
    elif part is not None:
        _part_assemble(blob, part)
    else:
        _chunks_assemble(upload, blob)
    Blob.objects.get_or_create(sha256=blob.sha256, defaults={"size": blob.size})


class _DamagedBlobError(Exception):
    """A blob's bytes arrived whole but do not hash to it. ``bad_chunks``: the chunks to
    send again, when known; None: all of them."""

    def __init__(self, blob: UploadBlob, *, bad_chunks: list[int] | None = None) -> None:
        super().__init__(blob.sha256)
        self.blob = blob
        self.bad_chunks = bad_chunks


def _restart_blob(upload: Upload, damaged: _DamagedBlobError) -> str:
    """Forget what must be sent again; return what to tell the person."""
    blob = damaged.blob
    chunks = UploadChunk.objects.for_team(blob.team_id).filter(blob=blob)
    if damaged.bad_chunks:
        chunks.filter(index__in=damaged.bad_chunks).delete()
        listed = ", ".join(str(i) for i in damaged.bad_chunks[:10])
        return f"chunk{'s' if len(damaged.bad_chunks) != 1 else ''} {listed} of it"
    if blob.multipart_id:  # its parts went into the bad object: start it again
        blob.multipart_id = s3.multipart_start(staging_key(upload.pk, blob.sha256))
        blob.save(update_fields=["multipart_id"])
    chunks.delete()
    return "all of its chunks"


def _multipart_assemble(upload: Upload, blob: UploadBlob) -> None:
    staged = staging_key(upload.pk, blob.sha256)
    s3.multipart_complete(staged, blob.multipart_id, s3.parts(staged, blob.multipart_id))
    try:
        digest = storage.hash_stored(staged, expected_size=blob.size)
    except storage.SizeError as exc:
        digest = f"a size of {exc}"
    if digest != blob.sha256:
        storage.delete(staged)
        raise _DamagedBlobError(blob)
    s3.copy(staged, blob_key(blob.sha256))
    storage.delete(staged)


def _part_assemble(blob: UploadBlob, part: Path) -> None:
    """On a local folder: the part file, checked whole (_part_check), becomes the blob (a
    rename)."""
    target = storage.local_path(blob_key(blob.sha256))
    assert target is not None  # noqa: S101 - the part is local, so is the blob
    target.parent.mkdir(parents=True, exist_ok=True)
    if blob.size == 0:
        part.parent.mkdir(parents=True, exist_ok=True)
        part.touch()
    if part.exists():
        part.replace(target)
    target.chmod(0o644)


def _chunks_assemble(upload: Upload, blob: UploadBlob) -> None:
    """Chunks stored one by one (a remote storage without multipart uploads): checked whole
    before anything is written where the blob lives, which may hold another team's bytes."""
    pieces = (
        piece
        for index in range(blob.chunk_count)
        for piece in storage.open_pieces(chunk_key(upload.pk, blob.sha256, index))
    )
    try:
        storage.write_stream(
            blob_key(blob.sha256), pieces, expected_size=blob.size, sha256=blob.sha256
        )
    except storage.SizeError as exc:
        raise DatasetError(f"A file of {blob.size} bytes arrived as {exc}.") from exc
    except storage.HashError as exc:
        raise DatasetError(
            f"The file with sha256 {blob.sha256[:12]}... arrived whole but its bytes hash to "
            f"{str(exc)[:12]}...: check the manifest's hash and start again."
        ) from exc


def _discard_chunks(upload: Upload, *, unused: set[str]) -> None:
    """After complete: what was received is gone (moved into place, or not needed: the
    blobs in ``unused`` were stored by another upload of the team meanwhile)."""
    for blob in UploadBlob.objects.for_team(upload.team_id).filter(upload=upload):
        if blob.multipart_id:
            if blob.sha256 in unused:
                with contextlib.suppress(Exception):  # already gone: nothing to abort
                    s3.multipart_abort(staging_key(upload.pk, blob.sha256), blob.multipart_id)
            continue  # else its parts became the staged object, already removed
        part = storage.local_path(part_key(upload.pk, blob.sha256))
        if part is not None:
            part.unlink(missing_ok=True)  # renamed into place, or a blob someone else sent
            continue
        for index in range(blob.chunk_count):
            storage.delete(chunk_key(upload.pk, blob.sha256, index))
