"""Where an open upload keeps what it has received, in storage: its manifest, and each new
blob's chunks (one object each), part file (a local folder) or multipart staging object
(S3). The services write there; the housekeeping (apps.datasets.upkeep) clears it."""

from __future__ import annotations


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
