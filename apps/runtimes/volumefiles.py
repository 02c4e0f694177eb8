"""A volume's files on this host's own file system, for snapshots (issue 20): read and
restored without ever following a link out of the volume.

Used by the runtimes that can reach a volume as a folder here: the process runtime (its
volumes are folders) and Docker when the agent runs as root beside the engine (a volume's
``Mountpoint``). Every step goes through an open folder handle (``dir_fd``) and opens
with ``O_NOFOLLOW``: a link swapped in for a folder or a file meanwhile is skipped (read)
or refused (restore), never followed; a folder on another device (a mount point inside
the volume) is never entered.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from typing import TYPE_CHECKING, Any

from apps.runtimes.base import (
    NOTEBOOKS_PATH,
    FolderEntry,
    FolderError,
    RestoreFile,
    WorkloadError,
    folder_path,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

# The permission bits a restored file or folder keeps (no setuid, setgid or sticky bit).
PERMISSION_BITS = 0o777
FOLDER_MODE = 0o755
# Bytes written at a time.
PIECE = 1024 * 1024
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def stamp_of(info: os.stat_result) -> str:
    """What changes whenever a file may have: size, mtime (ns), inode, ctime (ns)."""
    return f"{info.st_size}-{info.st_mtime_ns}-{info.st_ino}-{info.st_ctime_ns}"


def stamp_changed_at(stamp: str) -> int | None:
    """The ctime (ns) a ``stamp_of`` stamp holds, None for another stamp."""
    parts = stamp.split("-")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):  # noqa: PLR2004
        return None
    return int(parts[3])


def read_tree(top: Path) -> Iterator[FolderEntry]:
    """Every regular file under the folder ``top`` (which must not be a link), by path,
    with its permission bits and stamp; links, devices, fifos and sockets are skipped
    entries, and a folder on another device is skipped as "mount"."""
    try:
        handle = os.open(top, _DIRECTORY)
    except OSError as exc:
        raise FolderError("The volume's folder cannot be opened.", "missing") from exc
    try:
        yield from _walk(handle, "", os.fstat(handle).st_dev)
    finally:
        os.close(handle)


def _walk(folder: int, prefix: str, device: int) -> Iterator[FolderEntry]:
    with os.scandir(folder) as found:
        names = sorted(entry.name for entry in found)
    for name in names:
        path = prefix + name
        try:
            info = os.lstat(name, dir_fd=folder)
        except FileNotFoundError:
            continue  # removed meanwhile
        if stat.S_ISDIR(info.st_mode):
            if info.st_dev != device:
                yield FolderEntry(path, 0, skipped="mount")
                continue
            try:
                inner = os.open(name, _DIRECTORY, dir_fd=folder)
            except OSError:
                yield FolderEntry(path, 0, skipped="link")  # swapped for a link meanwhile
                continue
            try:
                yield from _walk(inner, path + "/", device)
            finally:
                os.close(inner)
        elif stat.S_ISREG(info.st_mode):
            yield from _regular(folder, name, path)
        else:
            yield FolderEntry(path, 0, skipped=kind_of(info.st_mode))


def _regular(folder: int, name: str, path: str) -> Iterator[FolderEntry]:
    """One regular file, opened without following a link or waiting on a fifo; its stamp
    taken from the open file (so it is the file read), at most the size it had then read."""
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        yield FolderEntry(path, 0, skipped="link")
        return
    with os.fdopen(handle, "rb", buffering=0) as raw:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            yield FolderEntry(path, 0, skipped=kind_of(info.st_mode))
            return
        yield FolderEntry(
            path,
            info.st_size,
            Bounded(raw, info.st_size),
            mode=stat.S_IMODE(info.st_mode) & PERMISSION_BITS,
            stamp=stamp_of(info),
        )


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "other"


class Bounded(io.RawIOBase):
    """The first ``size`` bytes of a file."""

    def __init__(self, raw: Any, size: int) -> None:
        self._raw, self._left = raw, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        count = self._raw.readinto(view) or 0
        self._left -= count
        return count


def restore_path(path: str) -> list[str]:
    """A restored file's path as its names; WorkloadError (FolderError "outside") for one
    folder_path refuses, or none at all."""
    names = folder_path(str(path), root=NOTEBOOKS_PATH)
    if not names:
        raise FolderError("A restored file needs a name.", "outside")
    return names.split("/")


def restore_tree(
    top: Path,
    files: Iterable[RestoreFile],
    *,
    owner: tuple[int, int] | None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Make the folder ``top`` (made if missing) hold exactly ``files``: emptied first
    (links removed, never followed; a mount point inside it refused), then each file
    written with its mode, its folders made (FOLDER_MODE), everything given to ``owner``
    (uid, gid) when set. Raises WorkloadError when it cannot."""
    top.mkdir(parents=True, exist_ok=True)
    try:
        root = os.open(top, _DIRECTORY)
    except OSError as exc:
        raise WorkloadError("The volume's folder cannot be opened (is it a link?).") from exc
    try:
        _empty(root, os.fstat(root).st_dev)
        if owner is not None:
            os.fchown(root, *owner)
        os.fchmod(root, FOLDER_MODE)
        made: dict[tuple[str, ...], int] = {(): root}
        try:
            for file in files:
                names = restore_path(file.path)
                parent = _folder(made, tuple(names[:-1]), owner)
                _write(parent, names[-1], file, owner, progress)
        finally:
            for key, handle in made.items():
                if key:
                    os.close(handle)
    except OSError as exc:
        raise WorkloadError(f"The files could not be written: {exc.strerror or exc}.") from exc
    finally:
        os.close(root)


def _empty(folder: int, device: int) -> None:
    """Remove everything in the open folder ``folder``: links unlinked, never followed; a
    folder of another device (a mount point) is not entered: WorkloadError."""
    with os.scandir(folder) as found:
        names = [entry.name for entry in found]
    for name in names:
        info = os.lstat(name, dir_fd=folder)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=folder)
            continue
        if info.st_dev != device:
            raise WorkloadError(f"{name} in the volume is a mount point: it cannot be emptied.")
        inner = os.open(name, _DIRECTORY, dir_fd=folder)
        try:
            _empty(inner, device)
        finally:
            os.close(inner)
        os.rmdir(name, dir_fd=folder)


def _folder(made: dict[tuple[str, ...], int], names: tuple[str, ...], owner: Any) -> int:
    """The open handle of the folder ``names`` under the root, made as needed."""
    if names in made:
        return made[names]
    parent = _folder(made, names[:-1], owner)
    name = names[-1]
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, FOLDER_MODE, dir_fd=parent)
        if owner is not None:
            os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)
    try:
        handle = os.open(name, _DIRECTORY, dir_fd=parent)
    except OSError as exc:
        raise WorkloadError(f"{'/'.join(names)} is both a file and a folder.") from exc
    made[names] = handle
    return handle


def _write(
    folder: int,
    name: str,
    file: RestoreFile,
    owner: tuple[int, int] | None,
    progress: Callable[[int], None] | None,
) -> None:
    try:
        handle = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder
        )
    except FileExistsError as exc:
        raise WorkloadError(f"{file.path[:200]} is listed twice.") from exc
    with os.fdopen(handle, "wb", buffering=0) as out:
        written = 0
        source = file.open()
        while True:
            piece = source.read(min(PIECE, file.size - written + 1))
            if not piece:
                break
            written += len(piece)
            if written > file.size:
                break
            out.write(piece)
            if progress is not None:
                progress(len(piece))
        if written != file.size:
            raise WorkloadError(f"{file.path[:200]} did not have the size it was listed with.")
        if owner is not None:
            os.fchown(handle, *owner)
        os.fchmod(handle, int(file.mode) & PERMISSION_BITS)
