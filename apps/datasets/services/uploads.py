"""The resumable upload of a new version, up to its completion (apps.datasets.services.completion).

An upload is started with the manifest of the whole new version; the answer says which
files need bytes: every blob the team does not already hold (``blobs_held``), whoever else
has stored it, so that no team reads another's file by naming its hash and no answer says
whether a hash is stored elsewhere. Chunks of those arrive in any order and may be sent
again: to Lattice, which checks each against its SHA-256, or on S3 straight to a presigned
part of the blob's multipart upload.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from apps.core.audit import audit_record
from apps.datasets import s3, storage
from apps.datasets.entitlements import check_storage
from apps.datasets.hooks import upload_purposes
from apps.datasets.models import (
    DatasetVersion,
    Upload,
    UploadBlob,
    UploadChunk,
)
from apps.datasets.selectors import blobs_held, team_blob_sizes
from apps.datasets.services.errors import (
    DatasetConflictError,
    DatasetError,
    DatasetPermissionError,
)
from apps.datasets.services.manifest import SHA256, manifest_clean, manifest_store
from apps.datasets.services.received import part_key, staging_key
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from collections.abc import Iterable

    from apps.accounts.models import User
    from apps.datasets.models import Dataset
    from apps.teams.models import Team

# S3 takes at most this many parts in one multipart upload: a file never needs more chunks.
MAX_CHUNKS = 10_000
# The refusal code of a chunk whose bytes do not match the SHA-256 it was sent with: bytes
# damaged on the way, which the client may send again (every other refusal is final).
CHUNK_DAMAGED = "chunk_damaged"


def chunk_size(largest_file: int = 0) -> int:
    """The chunk size for an upload whose largest file is ``largest_file`` bytes: the
    setting's, or a whole number of MiB large enough for MAX_CHUNKS chunks."""
    configured = int(settings.LATTICE_UPLOAD_CHUNK_BYTES)
    if largest_file <= configured * MAX_CHUNKS:
        return configured
    mib = 1024 * 1024
    return -(-largest_file // (MAX_CHUNKS * mib)) * mib


def _team_blobs(team: Team) -> dict[str, int]:
    """The blobs the team holds, across its versions and open uploads: sha256 -> size."""
    held = team_blob_sizes(team)
    pending = UploadBlob.objects.for_team(team).filter(upload__status=Upload.Status.OPEN)
    held.update(pending.values_list("sha256", "size"))
    return held


def upload_permission(upload: Upload | str) -> str:
    """The team permission every step of an upload of this purpose needs."""
    purpose = upload if isinstance(upload, str) else upload.purpose
    registered = upload_purposes.get(purpose)
    return registered.permission if registered is not None else "datasets.manage"


def upload_is_system(upload: Upload | str) -> bool:
    """An upload of a system purpose (UploadPurpose.system): no person behind it, never
    refused by the storage quota."""
    purpose = upload if isinstance(upload, str) else upload.purpose
    registered = upload_purposes.get(purpose)
    return registered is not None and registered.system


def upload_require(team: Team, actor: User | None, upload: Upload | str) -> None:
    """The guard of every step: the actor's permission for the upload's purpose; no actor
    only for a system purpose's upload (its caller holds the right: a save ticket)."""
    if actor is None:
        if not upload_is_system(upload):
            raise DatasetPermissionError("This upload needs a person who may make it.")
        return
    require_permission(team, actor, upload_permission(upload), error=DatasetPermissionError)


@transaction.atomic
def upload_start(
    *,
    team: Team,
    actor: User,
    dataset: Dataset,
    files: object,
    message: str = "",
    source: str = "upload",
    source_id: int | None = None,
    source_label: str = "",
) -> Upload:
    """Open an upload of a new version of ``dataset`` with this manifest (upload_open);
    ``source``, ``source_id`` and ``source_label`` are its lineage (what made it)."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    manifest = manifest_clean(files)
    version = DatasetVersion.objects.for_team(team).create(
        team=team,
        dataset=dataset,
        message=message[:500],
        author=actor,
        source=source,
        source_id=source_id,
        source_label=source_label[:200],
    )
    upload = upload_open(
        team=team,
        actor=actor,
        manifest=manifest,
        purpose=Upload.DATASET,
        dataset=dataset,
        version=version,
    )
    audit_record(
        team=team,
        actor=actor,
        action="dataset.upload_started",
        target=dataset.name,
        files=len(manifest),
        new_bytes=upload.new_bytes,
    )
    return upload


def upload_open(
    *,
    team: Team,
    actor: User | None,
    manifest: list[dict[str, Any]],
    purpose: str,
    **made: Any,
) -> Upload:
    """Open an upload of a new version of any purpose (a dataset's, a model's), inside the
    caller's transaction, with ``manifest`` (manifest_clean's). Blobs the team holds are
    taken as they are, every other one is sent (blobs_held); the quota is checked up front
    for the bytes new to the team. ``made``: the Upload's fields naming what it makes."""
    upload_require(team, actor, purpose)
    sizes = {f["sha256"]: f["size"] for f in manifest}
    held = blobs_held(team=team, shas=sizes)
    for entry in manifest:
        if held.get(entry["sha256"], entry["size"]) != entry["size"]:
            raise DatasetError(
                f"{entry['path']}: listed as {entry['size']:,} bytes, but this team's file "
                f"with that sha256 is {held[entry['sha256']]:,} bytes.",
                field="files",
            )
    if not upload_is_system(purpose):
        # A system upload (a notebook's snapshot) is never refused: it would lose files.
        using = _team_blobs(team)  # what it holds already counts once, in use or on its way
        check_storage(
            team,
            used_bytes=sum(using.values()),
            adding_bytes=sum(size for sha, size in sizes.items() if sha not in using),
        )
    size = chunk_size(max(sizes.values(), default=0))
    upload = Upload.objects.for_team(team).create(
        team=team,
        purpose=purpose,
        created_by=actor,
        chunk_size=size,
        new_bytes=sum(s for sha, s in sizes.items() if sha not in held),
        **made,
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
    manifest_store(upload, manifest)
    return upload


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
    *, team: Team, actor: User | None, upload: Upload, sha256: str, index: int, checksum: str
) -> dict[str, Any]:
    """Where the client sends chunk ``index`` (whose SHA-256 is ``checksum``): a presigned
    S3 URL when storage is S3, else Lattice's own chunk address."""
    upload_require(team, actor, upload)
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
    actor: User | None,
    upload: Upload,
    sha256: str,
    index: int,
    pieces: Iterable[bytes],
    checksum: str,
) -> UploadChunk:
    """Store chunk ``index`` of blob ``sha256`` after checking its SHA-256 (``checksum``).
    Sending a chunk again replaces it; a wrong one stores nothing."""
    upload_require(team, actor, upload)
    blob = _sendable(team, upload, sha256, index)
    if not SHA256.match(checksum or ""):
        raise DatasetError("Send the chunk's SHA-256 in the X-Chunk-SHA256 header.")
    offset, length = blob.chunk_range(index, upload.chunk_size)
    part = storage.local_path(part_key(upload.pk, sha256))

    def refused(message: str, code: str | None = None) -> DatasetError:
        if part is not None and not blob.multipart_id:
            # Written in place: what was received for this chunk before is overwritten. (On
            # S3 a wrong chunk is not sent on, and the part received before stays.)
            UploadChunk.objects.for_team(team).filter(blob=blob, index=index).delete()
        return DatasetError(message, code=code)

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
        raise refused(
            f"Chunk {index} arrived damaged (its SHA-256 does not match). Send it again.",
            CHUNK_DAMAGED,
        )
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
