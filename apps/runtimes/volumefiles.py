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
import errno
import io
import os
import stat
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from apps.runtimes.base import (
    FolderEntry,
    FolderError,
    RestoreFile,
    WorkloadError,
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
# What opening a folder by name without following a link gives when it is a link now (or
# was removed meanwhile).
_NOW_A_LINK = {errno.ELOOP, errno.ENOTDIR, errno.ENOENT}
# Folder handles a restore keeps open at most (the ones used last); the others are opened
# again from the nearest one kept, a name at a time without following a link.
OPEN_FOLDERS = 64


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
    entries, and a folder on another device is skipped as "mount".

    An iterative walk (no recursion: a folder thousands of levels deep is read) holding at
    most two folder handles: going back up is ``..`` from the folder left, checked to be
    the very folder (device and inode) the walk came down from, else FolderError
    ("changed": a folder was moved while it was read). A folder that cannot be opened for
    another reason than being a link now (EMFILE, EACCES) fails the read (FolderError
    "unreadable"), never leaves its subtree out without a word."""
    try:
        handle = os.open(top, _DIRECTORY)
    except OSError as exc:
        raise FolderError("The volume's folder cannot be opened.", "missing") from exc
    try:
        info = os.fstat(handle)
        device = info.st_dev
        # Each level: the folder's identity, its path prefix, the names left to take.
        stack: list[tuple[tuple[int, int], str, Iterator[str]]] = [
            ((info.st_dev, info.st_ino), "", iter(_names(handle)))
        ]
        while stack:
            _, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if stack:
                    parent = _up(handle, stack[-1][0])
                    os.close(handle)
                    handle = parent
                continue
            path = prefix + name
            try:
                info = os.lstat(name, dir_fd=handle)
            except FileNotFoundError:
                continue  # removed meanwhile
            if stat.S_ISDIR(info.st_mode):
                if info.st_dev != device:
                    yield FolderEntry(path, 0, skipped="mount")
                    continue
                entered = _enter(name, handle, path)
                if entered is None:
                    yield FolderEntry(path, 0, skipped="link")  # swapped for a link meanwhile
                    continue
                os.close(handle)
                handle, ident, listed = entered
                stack.append((ident, path + "/", iter(listed)))
            elif stat.S_ISREG(info.st_mode):
                yield from _regular(handle, name, path)
            else:
                yield FolderEntry(path, 0, skipped=kind_of(info.st_mode))
    finally:
        os.close(handle)


def _names(folder: int) -> list[str]:
    with os.scandir(folder) as found:
        return sorted(entry.name for entry in found)


def _enter(name: str, folder: int, path: str) -> tuple[int, tuple[int, int], list[str]] | None:
    """The folder ``name`` in ``folder`` opened (no link followed): its handle, identity
    (device, inode) and names; None when it is a link (or gone) now; FolderError
    "unreadable" for anything else (out of descriptors, no permission): a subtree is never
    silently left out."""
    try:
        inner = os.open(name, _DIRECTORY, dir_fd=folder)
    except OSError as exc:
        if exc.errno in _NOW_A_LINK:
            return None
        raise FolderError(
            f"{_shown(path)} could not be opened: {exc.strerror or exc}.", "unreadable"
        ) from exc
    try:
        info = os.fstat(inner)
        return inner, (info.st_dev, info.st_ino), _names(inner)
    except OSError as exc:
        os.close(inner)
        raise FolderError(
            f"{_shown(path)} could not be listed: {exc.strerror or exc}.", "unreadable"
        ) from exc
    except BaseException:
        os.close(inner)
        raise


def _up(handle: int, expected: tuple[int, int]) -> int:
    """The parent of the open folder ``handle`` (left open: the caller closes it), checked
    to be the folder ``expected`` (device, inode) the walk came down from."""
    parent = os.open("..", _DIRECTORY, dir_fd=handle)
    try:
        info = os.fstat(parent)
    except BaseException:
        os.close(parent)
        raise
    if (info.st_dev, info.st_ino) != expected:
        os.close(parent)
        raise FolderError("A folder was moved while the volume was read.", "changed")
    return parent


def _shown(path: str) -> str:
    return ascii(path)[1:-1][:200]


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


# A snapshot's paths on the wire (docs/hosts.md, "Snapshots: file names"): a volume's names
# are any bytes but NUL and "/"; the bytes that are not UTF-8 (os.fsdecode's surrogates
# U+DC80..U+DCFF) travel as U+10FF80..U+10FFFF, and a name's own character in
# U+10FF7F..U+10FFFF is sent after the escape U+10FF7F. Every other name is sent as it is.
WIRE_ESCAPE = 0x10FF7F
_WIRE_BYTES = 0x10FF00  # + the byte (0x80..0xFF)
_SURROGATE_BYTES = 0xDC00  # + the byte: os.fsdecode's surrogateescape


def wire_path(path: str) -> str:
    """``path`` as os.fsdecode gives it, as a snapshot's manifest carries it (valid UTF-8)."""
    if all(ord(c) < 0xDC80 or 0xE000 <= ord(c) < WIRE_ESCAPE for c in path):  # noqa: PLR2004
        return path
    out = []
    for char in path:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # noqa: PLR2004
            out.append(chr(_WIRE_BYTES + code - _SURROGATE_BYTES))
        elif code >= WIRE_ESCAPE:
            out.extend((chr(WIRE_ESCAPE), char))
        else:
            out.append(char)
    return "".join(out)


def local_path(wire: str) -> str:
    """The reverse of ``wire_path``: the name os calls take (surrogates for the bytes that
    are not UTF-8). ValueError for a lone surrogate (which no wire path holds)."""
    out = []
    chars = iter(wire)
    for char in chars:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:  # noqa: PLR2004
            raise ValueError("a snapshot path holds no surrogate")
        if code == WIRE_ESCAPE:
            char = next(chars, "")  # noqa: PLW2901
            if not char:
                raise ValueError("a snapshot path cannot end with its escape")
            out.append(char)
        elif code > WIRE_ESCAPE:
            out.append(chr(_SURROGATE_BYTES + code - _WIRE_BYTES))
        else:
            out.append(char)
    return "".join(out)


def restore_path(path: str) -> list[str]:
    """A restored file's path as its names: any POSIX names (not "", "." or "..", no NUL;
    a backslash, a newline, "aux.py", "notes." are all names), as read_tree gives them;
    FolderError ("outside") for any other path."""
    names = str(path).split("/")
    if not path or any(n in {"", ".", ".."} or "\x00" in n for n in names):
        raise FolderError(f"{_shown(str(path))} is not a path inside the volume.", "outside")
    return names


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
    (uid, gid) when set. At most OPEN_FOLDERS folder handles are kept open. Raises
    WorkloadError when it cannot."""
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
        made = _Folders(root, owner)
        try:
            for file in files:
                names = restore_path(file.path)
                parent = made.get(tuple(names[:-1]))
                _write(parent, names[-1], file, owner, progress)
        finally:
            made.close()
    except OSError as exc:
        raise WorkloadError(f"The files could not be written: {exc.strerror or exc}.") from exc
    finally:
        os.close(root)


def _empty(top: int, device: int) -> None:
    """Remove everything in the open folder ``top``: links unlinked, never followed; a
    folder of another device (a mount point) is not entered: WorkloadError. Iterative (no
    recursion), two handles open at most: back up through ``..``, checked to be the folder
    the walk came down from."""
    handle = os.dup(top)
    info = os.fstat(handle)
    # Each level: its identity, its name in its parent, the names left to remove.
    stack: list[tuple[tuple[int, int], str, Iterator[str]]] = [
        ((info.st_dev, info.st_ino), "", iter(_names(handle)))
    ]
    try:
        while stack:
            _, own, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if stack:
                    try:
                        parent = _up(handle, stack[-1][0])
                    except FolderError as exc:
                        raise WorkloadError(str(exc)) from exc
                    os.close(handle)
                    handle = parent
                    os.rmdir(own, dir_fd=handle)
                continue
            try:
                info = os.lstat(name, dir_fd=handle)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(info.st_mode):
                os.unlink(name, dir_fd=handle)
                continue
            if info.st_dev != device:
                raise WorkloadError(
                    f"{_shown(name)} in the volume is a mount point: it cannot be emptied."
                )
            inner = os.open(name, _DIRECTORY, dir_fd=handle)
            try:
                inner_info = os.fstat(inner)
                listed = _names(inner)
            except BaseException:
                os.close(inner)
                raise
            os.close(handle)
            handle = inner
            stack.append(((inner_info.st_dev, inner_info.st_ino), name, iter(listed)))
    finally:
        os.close(handle)


class _Folders:
    """The restore's folders by their names under the root: made as needed, their handles
    kept for the OPEN_FOLDERS used last (the root's always); one closed is opened again
    from the nearest kept, a name at a time (``O_NOFOLLOW``)."""

    def __init__(self, root: int, owner: tuple[int, int] | None) -> None:
        self.root, self.owner = root, owner
        self.open: OrderedDict[tuple[str, ...], int] = OrderedDict()

    def get(self, names: tuple[str, ...]) -> int:
        if not names:
            return self.root
        if names in self.open:
            self.open.move_to_end(names)
            return self.open[names]
        depth = len(names) - 1
        while depth > 0 and names[:depth] not in self.open:
            depth -= 1
        handle = self.open[names[:depth]] if depth else self.root
        for at in range(depth, len(names)):
            handle = self._step(handle, names[: at + 1])
        return handle

    def _step(self, parent: int, names: tuple[str, ...]) -> int:
        name = names[-1]
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, FOLDER_MODE, dir_fd=parent)
            if self.owner is not None:
                os.chown(name, *self.owner, dir_fd=parent, follow_symlinks=False)
        try:
            handle = os.open(name, _DIRECTORY, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in _NOW_A_LINK:
                raise
            raise WorkloadError(f"{_shown('/'.join(names))} is both a file and a folder.") from exc
        self.open[names] = handle
        # The oldest goes (never the one just made, nor its parent: the two newest).
        while len(self.open) > OPEN_FOLDERS:
            _, oldest = self.open.popitem(last=False)
            os.close(oldest)
        return handle

    def close(self) -> None:
        while self.open:
            _, handle = self.open.popitem()
            os.close(handle)


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
