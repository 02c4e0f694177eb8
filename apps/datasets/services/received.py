"""Where an open upload keeps what it has received, in storage: its manifest, and each new
blob's chunks (one object each), part file (a local folder) or multipart staging object
(S3). The services write there; completing the upload, or the housekeeping that abandons
it (apps.datasets.upkeep), clears it away."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.datasets import storage

if TYPE_CHECKING:
    from apps.datasets.models import UploadBlob


def manifest_key(upload_id: int) -> str:
    """The upload's manifest, one JSON line a file, kept until it completes."""
    return f"datasets/uploads/{upload_id}/manifest.jsonl"


def chunk_key(upload_id: int, sha256: str, index: int) -> str:
    return f"datasets/uploads/{upload_id}/{sha256}/{index}"


def part_key(upload_id: int, sha256: str) -> str:
    """On a local folder: the file a blob's chunks are written into, each at its offset."""
    return f"datasets/uploads/{upload_id}/{sha256}.part"


def staging_key(upload_id: int, sha256: str) -> str:
    """On S3: where a blob's multipart upload assembles before it is checked."""
    return f"datasets/uploads/{upload_id}/{sha256}"


def received_delete(upload_id: int, blob: UploadBlob) -> None:
    """Delete what Lattice itself received of ``blob``: its part file on a local folder,
    else its chunks; either may be gone already. (A blob sent to S3 as a multipart upload
    has neither: its parts are S3's, to complete or abort.)"""
    part = part_key(upload_id, blob.sha256)
    if storage.local_path(part) is not None:
        storage.delete(part)
        return
    for index in range(blob.chunk_count):
        storage.delete(chunk_key(upload_id, blob.sha256, index))
