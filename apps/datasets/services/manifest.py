"""A version's manifest: each file's path, size and sha256, checked as a whole when an
upload starts (paths that clash on macOS or Windows, a file that is also a folder, sizes
past what storage keeps), then kept in storage until the upload completes."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, NoReturn

from apps.datasets import storage
from apps.datasets.paths import (
    PathError,
    clean_path,
    conflicts,
    duplicates,
    posix_path,
    shown,
)
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


def manifest_clean(files: object, *, posix: bool = False) -> list[dict[str, Any]]:
    """The manifest ``files`` as sent, checked whole: its entries as {path (in NFC), size,
    sha256}; else a DatasetError on the field "files".

    ``posix``: a notebook snapshot's (a system upload, restored only onto a Linux volume):
    its paths are any POSIX paths, kept as sent (``posix_path``: not normalised, names
    that differ only by case or Unicode form are two files); only a path listed twice
    exactly, or used as a file and as a folder, is refused."""
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
        file = _clean_entry(entry, posix=posix)
        path, size, sha = file["path"], file["size"], file["sha256"]
        label = shown(path) if posix else path
        if path in seen:
            if seen[path] == entry["path"]:
                raise DatasetError(f"{label} is listed twice.", field="files")
            _one_name(seen[path], entry["path"])
        if sizes.setdefault(sha, size) != size:
            raise DatasetError(f"{label}: the same sha256 with two sizes.", field="files")
        seen[path] = entry["path"]
        cleaned.append(file)
    _paths_together([f["path"] for f in cleaned], posix=posix)
    total = sum(f["size"] for f in cleaned)
    if total > MAX_VERSION_BYTES:
        raise DatasetError(
            f"The files add up to {total:,} bytes; a version holds at most 1 PiB "
            f"({MAX_VERSION_BYTES:,} bytes).",
            field="files",
        )
    return cleaned


def _paths_together(paths: list[str], *, posix: bool) -> None:
    """DatasetError for two paths that are one name (ignoring case and Unicode form; not
    for a snapshot's), or a path that is a file and a folder."""
    same = None if posix else duplicates(paths)
    if same:
        _one_name(*same)
    clashing = _posix_conflicts(paths) if posix else conflicts(paths)
    if clashing:
        label = shown(clashing[0]) if posix else clashing[0]
        raise DatasetError(f"{label} is both a file and a folder.", field="files")


def _one_name(first: str, second: str) -> NoReturn:
    raise DatasetError(
        f"{shown(first)} and {shown(second)} are one name where case or the Unicode form of "
        "letters is ignored (macOS, Windows): rename one.",
        field="files",
    )


def _posix_conflicts(paths: list[str]) -> list[str]:
    """Paths used both as a file and as a folder, exactly (``a`` and ``a/b``), sorted."""
    files = set(paths)
    clashing = set()
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in files:
                clashing.add(folder)
    return sorted(clashing)


def _clean_entry(entry: object, *, posix: bool = False) -> dict[str, Any]:
    """One file of a manifest, {path (in NFC; as sent with ``posix``), size, sha256},
    checked on its own."""
    if not isinstance(entry, dict):
        raise DatasetError("Each file is {path, size, sha256}.", field="files")
    try:
        path = posix_path(entry.get("path")) if posix else clean_path(entry.get("path"))
    except PathError as exc:
        raise DatasetError(str(exc), field="files") from exc
    # A snapshot's path may hold any character: shown escaped in a message.
    label = shown(path) if posix else path
    size, sha = entry.get("size"), entry.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DatasetError(f"{label}: size is a whole number of bytes.", field="files")
    if size > MAX_FILE_BYTES:
        raise DatasetError(
            f"{label}: a file is at most 5 TiB (the largest object storage keeps); this "
            f"one is listed as {size:,} bytes.",
            field="files",
        )
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise DatasetError(f"{label}: sha256 is 64 lowercase hex digits.", field="files")
    if size == 0 and sha != EMPTY_SHA256:
        raise DatasetError(f"{label}: an empty file's sha256 is {EMPTY_SHA256}.", field="files")
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
