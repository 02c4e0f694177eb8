"""A version's manifest: each file's path, size and sha256, checked as a whole when an
upload starts (paths that clash on macOS or Windows, a file that is also a folder, sizes
past what storage keeps), then kept in storage until the upload completes."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, NoReturn

from apps.datasets import storage
from apps.datasets.paths import PathError, clean_path, conflicts, duplicates, shown
from apps.datasets.services.errors import DatasetError
from apps.datasets.services.received import manifest_key

if TYPE_CHECKING:
    from apps.datasets.models import Upload

SHA256 = re.compile(r"^[0-9a-f]{64}$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_FILES = 100_000
# S3's largest object: a file bigger than that could never be stored.
MAX_FILE_BYTES = 5 * 1024**4
# A version's files together, far past any plan's quota (a plan may have none).
MAX_VERSION_BYTES = 1024**5


def manifest_clean(files: object) -> list[dict[str, Any]]:
    """The manifest ``files`` as sent, checked whole: its entries as {path (in NFC), size,
    sha256}; else a DatasetError on the field "files"."""
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


def manifest_store(upload: Upload, manifest: list[dict[str, Any]]) -> None:
    """Keep ``upload``'s manifest in storage until the upload completes."""
    storage.write_stream(
        manifest_key(upload.pk),
        (_json_line(f) for f in manifest),
        expected_size=sum(len(_json_line(f)) for f in manifest),
    )


def _json_line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, ensure_ascii=False) + "\n").encode()


def upload_manifest(upload: Upload) -> list[dict[str, Any]]:
    lines = b"".join(storage.open_pieces(manifest_key(upload.pk)))
    return [json.loads(line) for line in lines.splitlines() if line]
