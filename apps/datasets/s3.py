"""Uploads straight to S3: one multipart upload per new blob, parts sent by the client
to URLs Lattice presigns; and presigned reads of one blob each for hosts. Used when the
default storage is django-storages' S3Storage.

Each part is presigned with its SHA-256 (``x-amz-checksum-sha256``), so S3 (and
MinIO) refuse a damaged part when it arrives; Lattice checks the whole file's
SHA-256 once more when the upload completes, before the blob counts as stored.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.storage import default_storage

if TYPE_CHECKING:
    from typing import IO

# How long a presigned part URL works.
URL_SECONDS = 3600
# The longest a presigned URL may work: S3's limit for Signature Version 4.
URL_SECONDS_MAX = 7 * 24 * 3600


def enabled() -> bool:
    # By name: importing the S3 backend loads boto3 (6 MiB a process) for nothing.
    return str(settings.STORAGES["default"]["BACKEND"]).startswith("storages.backends.s3")


def _client() -> Any:
    return default_storage.connection.meta.client  # type: ignore[attr-defined]


def _where(key: str) -> dict[str, str]:
    return {
        "Bucket": default_storage.bucket_name,  # type: ignore[attr-defined]
        "Key": default_storage._normalize_name(key),  # type: ignore[attr-defined]
    }


def b64(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def multipart_start(key: str) -> str:
    answer = _client().create_multipart_upload(**_where(key), ChecksumAlgorithm="SHA256")
    return str(answer["UploadId"])


def part_target(
    key: str, upload_id: str, index: int, *, sha256: str, length: int
) -> dict[str, Any]:
    """Where and how the client PUTs part ``index`` (0-based) of ``key``."""
    url = _client().generate_presigned_url(
        "upload_part",
        Params={
            **_where(key),
            "UploadId": upload_id,
            "PartNumber": index + 1,
            "ChecksumSHA256": b64(sha256),
            "ContentLength": length,
        },
        ExpiresIn=URL_SECONDS,
    )
    return {"method": "PUT", "url": url, "headers": {"x-amz-checksum-sha256": b64(sha256)}}


def read_url(key: str, *, seconds: int) -> str:
    """A URL that GETs ``key``, and nothing else, for ``seconds`` (at most URL_SECONDS_MAX):
    what a host reads a blob through (apps.datasets.blob_urls)."""
    return str(
        _client().generate_presigned_url(
            "get_object", Params=_where(key), ExpiresIn=max(1, min(seconds, URL_SECONDS_MAX))
        )
    )


def part_put(key: str, upload_id: str, index: int, body: IO[bytes], *, sha256: str) -> None:
    """Send part ``index`` from Lattice itself (a chunk that came through the API)."""
    _client().upload_part(
        **_where(key),
        UploadId=upload_id,
        PartNumber=index + 1,
        Body=body,
        ChecksumSHA256=b64(sha256),
    )


def parts(key: str, upload_id: str) -> dict[int, dict[str, Any]]:
    """The parts S3 holds, by 0-based index."""
    found: dict[int, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {**_where(key), "UploadId": upload_id}
    while True:
        answer = _client().list_parts(**kwargs)
        for part in answer.get("Parts", []):
            found[int(part["PartNumber"]) - 1] = part
        if not answer.get("IsTruncated"):
            return found
        kwargs["PartNumberMarker"] = answer["NextPartNumberMarker"]


def multipart_complete(key: str, upload_id: str, held: dict[int, dict[str, Any]]) -> None:
    listed = []
    for index in sorted(held):
        part = {"PartNumber": index + 1, "ETag": held[index]["ETag"]}
        if held[index].get("ChecksumSHA256"):
            part["ChecksumSHA256"] = held[index]["ChecksumSHA256"]
        listed.append(part)
    _client().complete_multipart_upload(
        **_where(key), UploadId=upload_id, MultipartUpload={"Parts": listed}
    )


def multipart_abort(key: str, upload_id: str) -> None:
    _client().abort_multipart_upload(**_where(key), UploadId=upload_id)


def copy(source: str, target: str) -> None:
    """Server-side copy (multipart for large objects): the bytes never pass through Lattice."""
    where = _where(target)
    _client().copy(_where(source), where["Bucket"], where["Key"])
