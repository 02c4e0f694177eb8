"""The completion of an upload: every new blob checked whole against its SHA-256 and put
in place, and the version made ready, numbered, in one transaction; then what was received
is cleared away. Nothing is made if anything is missing or wrong, and what arrived damaged
is forgotten so that the client sends it again."""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.audit import audit_record
from apps.datasets import s3, storage
from apps.datasets.hooks import upload_purposes
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
from apps.datasets.selectors import blobs_held
from apps.datasets.services.errors import (
    DatasetConflictError,
    DatasetError,
)
from apps.datasets.services.manifest import upload_manifest
from apps.datasets.services.received import (
    chunk_key,
    manifest_key,
    part_key,
    received_delete,
    staging_key,
)
from apps.datasets.services.uploads import upload_missing, upload_require

if TYPE_CHECKING:
    from pathlib import Path

    from apps.accounts.models import User
    from apps.teams.models import Team


def upload_complete(
    *, team: Team, actor: User | None, upload: Upload, allow_identical: bool = False
) -> Any:
    """Check every new blob whole against its SHA-256, store it, and make the version
    ready: a dataset's with the next number, or what the upload's purpose makes
    (apps.datasets.hooks.upload_purposes), returned. Nothing is made if anything is missing
    or wrong, nor when the files are exactly those of the dataset's latest version, unless
    ``allow_identical`` (a 409 "identical_version" that names it; the upload stays open to
    be completed so)."""
    upload_require(team, actor, upload)
    try:
        return _complete(team, actor, upload, allow_identical=allow_identical)
    except _DamagedBlobError as damaged:
        # After the transaction: what is forgotten must stay forgotten after the refusal.
        resend = _restart_blob(upload, damaged)
        raise DatasetError(
            f"The file with sha256 {damaged.blob.sha256[:12]}... arrived whole but does not "
            f"hash to it: send {resend} again."
        ) from damaged


def _complete(team: Team, actor: User | None, upload: Upload, *, allow_identical: bool) -> Any:
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
        # A blob stored only by other teams is no excuse (blobs_held).
        forgiven = set(blobs_held(team=team, shas=missing)) if missing else set()
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
        purpose = upload_purposes.get(locked.purpose)
        if purpose is None and not allow_identical:
            _refuse_identical(team, locked, manifest)
        # Every local part is checked before any is moved: a refusal leaves them all.
        for blob, part, digest in _hash_parts(locked, new_blobs):
            _part_check(locked, blob, part, digest)
        for blob in new_blobs:
            _blob_assemble(locked, blob)
        blobs = _stored_as_listed(manifest)
        made = (
            purpose.finish(team, actor, locked, manifest, blobs)
            if purpose is not None
            else _version_ready(team, actor, locked, manifest, blobs)
        )
        locked.status = Upload.Status.COMPLETE
        locked.completed_at = timezone.now()
        locked.save(update_fields=["status", "completed_at"])
        transaction.on_commit(lambda: _discard_chunks(locked, unused=forgiven))
    return made


def _version_ready(
    team: Team,
    actor: User | None,
    upload: Upload,
    manifest: list[dict[str, Any]],
    blobs: dict[str, Blob],
) -> DatasetVersion:
    """The dataset's version gets its files and the next number, in the completion's
    transaction."""
    version = DatasetVersion.objects.for_team(team).select_for_update().get(pk=upload.version_id)
    VersionFile.objects.for_team(team).bulk_create(
        VersionFile(
            team=team, version=version, path=f["path"], blob=blobs[f["sha256"]], size=f["size"]
        )
        for f in manifest
    )
    # Numbers in completion order, under the dataset's lock.
    dataset = Dataset.objects.for_team(team).select_for_update().get(pk=upload.dataset_id)
    last = (
        DatasetVersion.objects.for_team(team)
        .filter(dataset_id=upload.dataset_id)
        .aggregate(n=Max("number"))["n"]
    )
    version.number = (last or 0) + 1
    version.status = DatasetVersion.Status.READY
    version.file_count = len(manifest)
    version.total_size = sum(f["size"] for f in manifest)
    version.ready_at = timezone.now()
    version.save()
    audit_record(
        team=team,
        actor=actor,
        action="dataset.version_created",
        target=f"{dataset.name} v{version.number}",
    )
    return version


def _refuse_identical(team: Team, upload: Upload, manifest: list[dict[str, Any]]) -> None:
    """A DatasetConflictError when ``manifest`` lists exactly the files (paths, contents
    and sizes) of the dataset's latest ready version: a re-upload of the same folder."""
    latest = (
        DatasetVersion.objects.for_team(team)
        .filter(dataset_id=upload.dataset_id, status=DatasetVersion.Status.READY)
        .order_by("-number")
        .first()
    )
    if latest is None or latest.file_count != len(manifest):
        return
    theirs = set(
        VersionFile.objects.for_team(team)
        .filter(version=latest)
        .values_list("path", "blob__sha256", "size")
    )
    if theirs == {(f["path"], f["sha256"], f["size"]) for f in manifest}:
        raise DatasetConflictError(
            f"These files are identical to v{latest.number}, the latest version: no new "
            "version was made. To make one anyway, complete the upload with "
            "allow_identical (on the upload page: tick “Make a new version even if it "
            "is identical” and press Resume).",
            code="identical_version",
        )


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
    """After complete: the manifest and what was received are gone (moved into place, or not
    needed: the blobs in ``unused`` were stored by another upload of the team meanwhile)."""
    for blob in UploadBlob.objects.for_team(upload.team_id).filter(upload=upload):
        if blob.multipart_id:
            if blob.sha256 in unused:
                with contextlib.suppress(Exception):  # already gone: nothing to abort
                    s3.multipart_abort(staging_key(upload.pk, blob.sha256), blob.multipart_id)
            continue  # else its parts became the staged object, already removed
        # A part file renamed into place is gone already; chunks were copied into the blob.
        received_delete(upload.pk, blob)
    storage.delete(manifest_key(upload.pk))


def upload_abandon(upload: Upload) -> None:
    """Close an open upload that is given up (its version failed or went), inside the
    caller's transaction and under the caller's lock of the Upload row: what it received
    is discarded once that commits, and it no longer counts against the team's storage.
    An upload that is not open is left as it is."""
    if upload.status != Upload.Status.OPEN:
        return
    upload.status = Upload.Status.ABANDONED
    upload.save(update_fields=["status"])
    shas = set(UploadBlob.objects.for_team(upload.team_id).values_list("sha256", flat=True))
    transaction.on_commit(lambda: _discard_chunks(upload, unused=shas))


def upload_cancel(*, team: Team, actor: User, upload: Upload) -> Upload:
    """Give up an open upload at its client's request (a rerun of changed files starts a new
    one): it is marked abandoned, what it received (staged chunks, an S3 multipart) is
    discarded once this commits, and the version it was making is forgotten, as the
    housekeeping does after a week. Abandoning one already abandoned changes nothing; a
    complete one is refused (409)."""
    upload_require(team, actor, upload)
    with transaction.atomic():
        locked = Upload.objects.for_team(team).select_for_update().get(pk=upload.pk)
        if locked.status == Upload.Status.COMPLETE:
            raise DatasetConflictError(
                "This upload is complete: its version is made, there is nothing to abandon.",
                code="upload_complete",
            )
        if locked.status != Upload.Status.OPEN:
            return locked
        upload_abandon(locked)
        purpose = upload_purposes.get(locked.purpose)
        if purpose is not None:
            purpose.abandon(locked)
        else:
            DatasetVersion.objects.for_team(team).filter(
                pk=locked.version_id, status=DatasetVersion.Status.UPLOADING
            ).update(message="(abandoned upload)")
        audit_record(
            team=team,
            actor=actor,
            action="upload.abandoned",
            target=str(locked.pk),
            purpose=locked.purpose,
        )
    return locked
