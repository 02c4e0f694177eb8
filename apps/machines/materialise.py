"""A dataset version as a read-only folder on a host, built once per content and reused.

Runs on the host's agent, before a notebook that mounts the version starts.
The folder is ``<cache root>/<content key>/``: the same files make the same
key, so versions and teams with the same content share one folder, and a
folder once built never changes. It is written under a temporary name and
renamed into place when complete, so a half-built folder is never used.

The host holds no storage credentials (ARCHITECTURE decision 9): it downloads
each blob from the read link its start brought (``urls``, by SHA-256; see
apps.datasets.blob_urls), a piece at a time, and a blob repeated in the version
is downloaded once. It trusts nothing it is sent: the key must be a SHA-256,
every path must land inside the folder, and every file's bytes must have the
size and the SHA-256 the manifest gives, or the folder is not made.

The cache has a size budget: each use of a folder sets its modification time
to now, so ``evict`` can remove the least recently used folders that no
workload on the host mounts. Deciding what to remove and marking a folder used
happen under one lock on the cache folder (flock, so across threads and
processes), so a folder just handed to a start is never removed under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Folders this module is writing (``.partial-``) or removing (``.evicted-``).
_TEMPORARY = re.compile(r"[0-9a-f]{64}\.(?:partial|evicted)-[0-9a-f]{16}")
FILE_MODE = 0o444
FOLDER_MODE = 0o555
# A temporary folder this old is left over from a start or an eviction that died: a start
# gives up after minutes (apps.machines.agent.AGENT_TIME_LIMIT).
STALE_SECONDS = 24 * 3600
# Bytes read from a download at a time: memory stays flat whatever a blob's size.
PIECE = 1024 * 1024
# One client for every download: connections to the store are kept and reused. A read
# that waits this long for its next bytes gives up (the start fails with the reason).
_http = httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=False)
# The bytes as stored, never re-encoded on the way: they are hashed as they arrive.
_IDENTITY = {"Accept-Encoding": "identity"}


class MaterialiseError(Exception):
    """The folder could not be built; the message says why."""


def materialise(
    mount: dict[str, Any], cache_root: Path, copied: Callable[[int], None] | None = None
) -> Path:
    """The folder holding ``mount``'s files (one of a start's datasets, as sent: see
    apps.runtimes.base.Spec.datasets), built if this host has not built it yet, and marked
    used now either way (see evict). ``copied(n)`` hears of each piece of n bytes copied
    while it builds."""
    key = str(mount.get("key", ""))
    if not _SHA256.fullmatch(key):
        raise MaterialiseError(f"{key[:80]!r} is not a content key.")
    cache_root.mkdir(parents=True, exist_ok=True)
    final = cache_root / key
    with _locked(cache_root):
        if final.is_dir():
            _touch(final)
            return final
    urls = mount.get("urls") or {}
    partial = cache_root / f"{key}.partial-{secrets.token_hex(8)}"
    partial.mkdir(mode=0o700)
    try:
        fetched: dict[str, Path] = {}
        for target, sha256, size in _planned(partial, mount.get("files") or []):
            target.parent.mkdir(parents=True, exist_ok=True)
            if sha256 in fetched:
                _copy_local(fetched[sha256], target, size, copied)
            else:
                _download(_url(urls, sha256, target), target, sha256, size, copied)
                fetched[sha256] = target
            target.chmod(FILE_MODE)
        for folder in sorted(_folders(partial), key=lambda p: len(p.parts), reverse=True):
            folder.chmod(FOLDER_MODE)
        with _locked(cache_root):
            _touch(partial)
            try:
                partial.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
                _touch(final)
    except BaseException:
        _remove(partial)
        raise
    # Still there only when another start built the same folder meanwhile: theirs is as
    # good as ours.
    _remove(partial)
    return final


def evict(
    cache_root: Path,
    *,
    budget_bytes: int,
    in_use: Collection[str],
    used_within: float = 0.0,
) -> list[str]:
    """Remove the least recently used folders until the cache holds at most ``budget_bytes``
    (the sum of its files' sizes); returns the keys removed, oldest first.

    Kept whatever the budget: the folders named in ``in_use`` (content keys: what the
    host's workloads mount) and those used within the last ``used_within`` seconds (a start
    in flight holds a folder before its workload runs). Anything in ``cache_root`` that is
    not a key's folder is left alone, but for this module's temporary folders left over for
    ``STALE_SECONDS``. Symbolic links are never followed.
    """
    now = time.time()
    folders = _measured(cache_root, now)
    total = sum(size for _, _, size in folders)
    keep_since_ns = int((now - used_within) * 1e9)
    evicted: dict[str, Path] = {}
    if total > budget_bytes:
        with _locked(cache_root):
            for mtime_ns, key, size in sorted(folders):
                if total <= budget_bytes:
                    break
                if key in in_use or mtime_ns >= keep_since_ns:
                    continue
                trash = _set_aside(cache_root, key, mtime_ns)
                if trash is not None:
                    total -= size
                    evicted[key] = trash
    # The slow part, deleting, without holding up starts: no start is handed these now.
    for trash in evicted.values():
        _remove(trash)
    return list(evicted)


def _measured(cache_root: Path, now: float) -> list[tuple[int, str, int]]:
    """(last used in ns, key, size) for each key's folder in the cache; temporary folders
    left over for STALE_SECONDS are removed on the way, anything else is left alone."""
    if not cache_root.is_dir():
        return []
    folders = []
    with os.scandir(cache_root) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            mtime_ns = entry.stat(follow_symlinks=False).st_mtime_ns
            if _SHA256.fullmatch(entry.name):
                folders.append((mtime_ns, entry.name, _size(Path(entry.path))))
            elif _TEMPORARY.fullmatch(entry.name) and now - mtime_ns / 1e9 > STALE_SECONDS:
                logger.info("removing %s, left over in the dataset cache", entry.name)
                _remove(Path(entry.path))
    return folders


def _set_aside(cache_root: Path, key: str, mtime_ns: int) -> Path | None:
    """Rename ``key``'s folder to a temporary name, unless it was used since ``mtime_ns``
    (it is no longer the least recently used). Call it holding the lock."""
    folder = cache_root / key
    trash = cache_root / f"{key}.evicted-{secrets.token_hex(8)}"
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_mtime_ns != mtime_ns:
            return None
        folder.rename(trash)
    except OSError:
        return None
    return trash


@contextlib.contextmanager
def _locked(cache_root: Path) -> Iterator[None]:
    """Hold the cache's lock, taken on the cache folder itself (no file of its own in the
    cache): other threads and processes that use the cache wait meanwhile."""
    fd = os.open(cache_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # lets go of the lock


def _touch(folder: Path) -> None:
    """Mark ``folder`` used now: its modification time (files are never added to it)."""
    try:
        os.utime(folder, follow_symlinks=False)
    except PermissionError:
        # Made by another user: it is still good to use; this agent can't remove it anyway.
        logger.warning("cannot mark %s used: this agent does not own it", folder)


def _size(folder: Path) -> int:
    """The sum of the sizes of the files under ``folder``, without following links."""
    total = 0
    pending = [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(Path(entry.path))
                    elif stat.S_ISREG(info.st_mode):
                        total += info.st_size
        except OSError:
            continue
    return total


def _planned(root: Path, files: list[Any]) -> list[tuple[Path, str, int]]:
    """Each file's place under ``root``, its SHA-256 and size: all checked before any byte
    is written."""
    inside = root.resolve()
    planned = []
    for entry in files:
        path, sha256, size = str(entry[0]), str(entry[1]), int(entry[2])
        if not path or "\x00" in path:
            raise MaterialiseError(f"{path[:200]!r} is not a file's path.")
        target = (inside / path).resolve()
        # Resolved, so "..", absolute paths and anything else that leaves the folder show.
        if target == inside or not target.is_relative_to(inside):
            raise MaterialiseError(f"{path[:200]!r} would be outside the dataset's folder.")
        if not _SHA256.fullmatch(sha256):
            raise MaterialiseError(f"{path[:200]!r} has no SHA-256.")
        if size < 0:
            raise MaterialiseError(f"{path[:200]!r} has a negative size.")
        planned.append((target, sha256, size))
    return planned


def _url(urls: dict[str, Any], sha256: str, target: Path) -> str:
    url = str(urls.get(sha256) or "")
    if not url.startswith(("https://", "http://")):
        raise MaterialiseError(f"no link to read {target.name!r} from came with the start.")
    return url


def _download(
    url: str,
    target: Path,
    sha256: str,
    size: int,
    copied: Callable[[int], None] | None = None,
) -> None:
    """Download one blob into ``target``, a piece at a time, refusing it unless its size
    and SHA-256 are the manifest's. (``target`` goes with its folder when this raises.)"""
    digest = hashlib.sha256()
    written = 0
    try:
        with _http.stream("GET", url, headers=_IDENTITY) as response, target.open("xb") as out:
            if response.status_code != HTTPStatus.OK:
                raise MaterialiseError(_refused(target.name, response.status_code))
            for piece in response.iter_bytes(PIECE):
                written += len(piece)
                if written > size:
                    break
                digest.update(piece)
                out.write(piece)
                if copied is not None:
                    copied(len(piece))
    except httpx.HTTPError as exc:
        # The URL holds the link's signature: the log gets the kind of failure, not it.
        raise MaterialiseError(
            f"{target.name!r} could not be downloaded ({type(exc).__name__})."
        ) from None
    if written != size or digest.hexdigest() != sha256:
        raise MaterialiseError(
            f"The downloaded bytes of {target.name!r} are not what the dataset says they are."
        )


def _refused(name: str, status: int) -> str:
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        return (
            f"the storage refused to send {name!r} (HTTP {status}): its link may have expired."
            " Start the notebook again."
        )
    if status == HTTPStatus.NOT_FOUND:
        return f"{name!r} is missing from the storage (HTTP 404)."
    return f"the storage could not send {name!r} (HTTP {status})."


def _copy_local(
    source: Path, target: Path, size: int, copied: Callable[[int], None] | None
) -> None:
    """A second file with the same content, from the one downloaded and checked already."""
    if source.stat().st_size != size:
        raise MaterialiseError(f"{target.name!r} has the SHA-256 of a file of another size.")
    shutil.copyfile(source, target)
    if copied is not None:
        copied(size)


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
