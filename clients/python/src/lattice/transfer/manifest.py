"""The manifest of a folder: relative POSIX paths, sizes and SHA-256s (hashes cached)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from lattice.transfer.state import (
    REPORT_EVERY,
    TransferError,
    notify,
    read_json,
    state_dir,
    write_private,
)
from lattice.types import TransferProgress

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

HASH_PIECE = 8 * 1024 * 1024
# Characters the server refuses in a path (apps/datasets/paths.py): control, format (bidi,
# zero-width), line and paragraph separators, surrogates (a name that is not UTF-8, as
# os.fsdecode gives it) and private use.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})

SAVE_CACHE_EVERY = 10.0


@dataclass(frozen=True)
class FileEntry:
    """One file of an upload: its path in the version, size, SHA-256 and where it is here."""

    path: str
    size: int
    sha256: str
    local: Path
    mtime_ns: int = 0

    def api(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def manifest_digest(files: Iterable[FileEntry]) -> str:
    """One SHA-256 for the whole manifest (paths, sizes, contents): what a resume matches."""
    canonical = json.dumps(sorted((f.path, f.size, f.sha256) for f in files), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def list_files(root: Path) -> list[tuple[str, Path, os.stat_result]]:
    """Every regular file under the folder ``root`` (or ``root`` itself, a file): its path in
    the version, where it is, and its stat. Links to files or folders inside ``root`` are
    followed (the file appears under the link's path); a link leaving ``root``, a broken link,
    a link loop and a special file (FIFO, socket, device) are refused with a TransferError,
    as are a name that is not UTF-8 or holds a control or invisible character, and a folder
    with no file: all before any byte is read or sent."""
    root = Path(root)
    found = _listed(root)
    if not found:
        raise TransferError(f"{root}: the folder has no files: nothing to upload.", code="empty")
    return found


def _listed(root: Path) -> list[tuple[str, Path, os.stat_result]]:
    """``list_files`` but for an empty folder (an empty list)."""
    try:
        top = root.stat()
    except FileNotFoundError:
        raise TransferError(f"{root}: no such file or folder.", code="not_found") from None
    if stat.S_ISREG(top.st_mode):
        _check_name(root.name, root)
        return [(root.name, root, top)]
    if not stat.S_ISDIR(top.st_mode):
        raise TransferError(f"{root}: not a regular file or a folder.", code="special_file")
    real_root = root.resolve()
    found: list[tuple[str, Path, os.stat_result]] = []

    def walk(folder: Path, relative: PurePosixPath, seen: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise TransferError(f"{folder}: cannot be read ({exc.strerror}).") from exc
        for entry in entries:
            local = Path(entry.path)
            _check_name(entry.name, local)
            name = relative / entry.name
            info = _stat_inside(local, root, real_root, link=entry.is_symlink())
            if stat.S_ISDIR(info.st_mode):
                real = local.resolve()
                if real in seen:
                    raise TransferError(f"{local}: a link loop.", code="link_loop")
                walk(local, name, seen | {real})
            elif stat.S_ISREG(info.st_mode):
                found.append((str(name), local, info))
            else:
                raise TransferError(
                    f"{local}: a special file (FIFO, socket or device): only regular files "
                    "are uploaded; move it out of the folder.",
                    code="special_file",
                )

    walk(root, PurePosixPath(), frozenset({real_root}))
    return found


def _check_name(name: str, local: Path) -> None:
    """Refuse a name the server would refuse, naming the file: one that is not UTF-8 (its
    undecodable bytes shown as ``\\xNN``) or holds a control or invisible character."""
    shown = str(os.fsencode(local))[2:-1]
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise TransferError(
            f"{shown}: the file name is not UTF-8; rename it.", code="bad_name"
        ) from None
    for char in name:
        if unicodedata.category(char) in _HIDDEN:
            raise TransferError(
                f"{ascii(str(local))[1:-1]}: the file name holds a control or invisible "
                f"character (U+{ord(char):04X}); rename it.",
                code="bad_name",
            )


def _stat_inside(local: Path, root: Path, real_root: Path, *, link: bool) -> os.stat_result:
    """``local``'s stat, following a link only when it stays inside ``root``."""
    if link:
        target = local.resolve()
        if not target.exists():
            raise TransferError(f"{local}: a broken link.", code="broken_link")
        if target != real_root and real_root not in target.parents:
            raise TransferError(
                f"{local}: a link to {target}, outside {root}: copy the file in, or "
                "upload the folder it is in.",
                code="link_outside",
            )
    try:
        return local.stat()
    except OSError as exc:
        raise TransferError(f"{local}: cannot be read ({exc.strerror}).") from exc


class HashCache:
    """SHA-256s of files already hashed, by (path, size, mtime_ns, inode), kept in one JSON
    file per uploaded folder under the state folder."""

    def __init__(self, root: Path, folder: Path | None = None) -> None:
        key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:32]
        self.path = (folder or state_dir()) / "hashes" / f"{key}.json"
        self.entries: dict[str, list[Any]] = {}
        loaded = read_json(self.path)
        if loaded and isinstance(loaded.get("files"), dict):
            self.entries = loaded["files"]
        self.fresh: dict[str, list[Any]] = {}

    def get(self, local: Path, info: os.stat_result) -> str | None:
        key = str(local.absolute())
        row = self.entries.get(key)
        if row and row[:3] == [info.st_size, info.st_mtime_ns, info.st_ino]:
            self.fresh[key] = row
            return str(row[3])
        return None

    def put(self, local: Path, info: os.stat_result, sha256: str) -> None:
        key = str(local.absolute())
        self.fresh[key] = [info.st_size, info.st_mtime_ns, info.st_ino, sha256]

    def save(self) -> None:
        """Keep what this run hashed or found (files gone since are dropped)."""
        with contextlib.suppress(OSError):
            write_private(self.path, {"files": self.fresh})


def build_manifest(
    root: str | Path,
    *,
    progress: Callable[[TransferProgress], None] | None = None,
    cache_dir: Path | None = None,
) -> list[FileEntry]:
    """The manifest of the folder (or file) ``root``, hashing what the cache lacks."""
    listed = list_files(Path(root))
    total = sum(info.st_size for _, _, info in listed)
    cache = HashCache(Path(root), cache_dir)
    report = TransferProgress(phase="hashing", total_bytes=total, files_total=len(listed))
    notify(progress, report)
    entries: list[FileEntry] = []
    done = 0
    last_report = last_save = time.monotonic()
    try:
        for files_done, (name, local, info) in enumerate(listed, start=1):
            digest = cache.get(local, info)
            if digest is None:
                hasher = hashlib.sha256()
                with local.open("rb") as stream:
                    while piece := stream.read(HASH_PIECE):
                        hasher.update(piece)
                        done += len(piece)
                        now = time.monotonic()
                        if progress is not None and now - last_report > REPORT_EVERY:
                            last_report = now
                            progress(replace(report, done_bytes=done, files_done=files_done - 1))
                digest = hasher.hexdigest()
                after = local.stat()
                if (after.st_size, after.st_mtime_ns) != (info.st_size, info.st_mtime_ns):
                    raise TransferError(
                        f"{local} changed while it was read: run again once it is written."
                    )
                cache.put(local, info, digest)
                if time.monotonic() - last_save > SAVE_CACHE_EVERY:
                    cache.save()
                    last_save = time.monotonic()
            else:
                done += info.st_size
            entries.append(FileEntry(name, info.st_size, digest, local, info.st_mtime_ns))
    finally:
        cache.save()
    notify(progress, replace(report, done_bytes=total, files_done=len(listed)))
    return entries
