"""A dataset version as a read-only folder on a host, built once per content and reused.

Runs on the host's agent, before a notebook that mounts the version starts.
The folder is ``<cache root>/<content key>/``: the same files make the same
key, so versions and teams with the same content share one folder, and a
folder once built never changes. It is written under a temporary name and
renamed into place when complete, so a half-built folder is never used.

The host trusts nothing it is sent: the key must be a SHA-256, every path
must land inside the folder, and every file's bytes must have the size and
the SHA-256 its storage key names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from apps.datasets import storage

_SHA256 = re.compile(r"[0-9a-f]{64}")
FILE_MODE = 0o444
FOLDER_MODE = 0o555


class MaterialiseError(Exception):
    """The folder could not be built; the message says why."""


def materialise(mount: dict[str, Any], cache_root: Path) -> Path:
    """The folder holding ``mount``'s files (see apps.datasets.mounts.mounts_for_spec),
    built if this host has not built it yet."""
    key = str(mount.get("key", ""))
    if not _SHA256.fullmatch(key):
        raise MaterialiseError(f"{key[:80]!r} is not a content key.")
    cache_root.mkdir(parents=True, exist_ok=True)
    final = cache_root / key
    if final.is_dir():
        return final
    partial = cache_root / f"{key}.partial-{secrets.token_hex(8)}"
    partial.mkdir(mode=0o700)
    try:
        for target, storage_key, size in _planned(partial, mount.get("files") or []):
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy(storage_key, target, size)
            target.chmod(FILE_MODE)
        for folder in sorted(_folders(partial), key=lambda p: len(p.parts), reverse=True):
            folder.chmod(FOLDER_MODE)
        try:
            partial.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            # Another start built the same folder meanwhile: theirs is as good as ours.
            _remove(partial)
    except BaseException:
        _remove(partial)
        raise
    return final


def _planned(root: Path, files: list[Any]) -> list[tuple[Path, str, int]]:
    """Each file's place under ``root``, all checked before any byte is written."""
    inside = root.resolve()
    planned = []
    for entry in files:
        path, storage_key, size = str(entry[0]), str(entry[1]), int(entry[2])
        if not path or "\x00" in path:
            raise MaterialiseError(f"{path[:200]!r} is not a file's path.")
        target = (inside / path).resolve()
        # Resolved, so "..", absolute paths and anything else that leaves the folder show.
        if target == inside or not target.is_relative_to(inside):
            raise MaterialiseError(f"{path[:200]!r} would be outside the dataset's folder.")
        if size < 0:
            raise MaterialiseError(f"{path[:200]!r} has a negative size.")
        planned.append((target, storage_key, size))
    return planned


def _copy(storage_key: str, target: Path, size: int) -> None:
    """Copy one blob, a piece at a time, checking its size and the hash its key names."""
    expected = storage_key.rsplit("/", 1)[-1]
    if not _SHA256.fullmatch(expected):
        raise MaterialiseError(f"{storage_key[:200]!r} is not a blob's storage key.")
    digest = hashlib.sha256()
    written = 0
    with target.open("xb") as out:
        for piece in storage.open_pieces(storage_key):
            written += len(piece)
            if written > size:
                break
            digest.update(piece)
            out.write(piece)
    if written != size or digest.hexdigest() != expected:
        raise MaterialiseError(
            f"The stored bytes of {target.name!r} are not what the dataset says they are."
        )


def _folders(root: Path) -> list[Path]:
    return [root, *(Path(top) / name for top, names, _ in os.walk(root) for name in names)]


def _remove(root: Path) -> None:
    """Delete a folder this module made, read-only parts included."""
    if not root.exists():
        return
    for folder in _folders(root):
        with contextlib.suppress(OSError):
            folder.chmod(0o700)
    shutil.rmtree(root, ignore_errors=True)
