"""A notebook volume's snapshots and restores (issue 20): the host's side.

Snapshot (``agent.snapshot``, and after a stop that asks for one): the save protocol of
apps.machines.savefolder over ``Runtime.read_volume``, its manifest's files with their
"mode". A host remembers, per volume, the SHA-256 of each file it hashed and the file's
stamp then (size, mtime, inode, ctime: FolderEntry.stamp), in a small JSON file of its
own (``StampCache``: under the agent's state folder, mode 0600, replaced whole): pass 1
does not read a file whose stamp is unchanged. Pass 2 reads only the files whose chunks
the server lacks (checking each against pass 1's SHA-256) and takes any other file as
unchanged when its stamp still is pass 1's (a file with no stamp, as a helper container's
archive gives them, is read and hashed again). A file written within RACY_SECONDS before
pass 1 began is not remembered: a write in the same clock tick as its stamp could leave
the stamp as it was (git's "racy" files), so it is hashed again next time.

Restore (``agent.start`` with the option ``restore``, before the workload starts): each
file downloaded from its per-object read link (the host holds no storage credentials,
ARCHITECTURE decision 9) as the runtime writes it, its bytes checked against the size and
SHA-256 the control plane sent as they stream (apps.machines.materialise's client and
words), "progress" with phase "restoring" at most every PROGRESS_EVERY seconds and once at
the end. Any failure fails the start with a message that says which file and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from apps.machines.materialise import PIECE
from apps.machines.materialise import _http as blob_http
from apps.machines.materialise import _refused as refused_words
from apps.machines.savefolder import SaveClient, run_client, save_entries
from apps.runtimes.base import FolderEntry, RestoreFile, WorkloadError
from apps.runtimes.volumefiles import local_path, stamp_changed_at, wire_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from apps.runtimes.base import Runtime

logger = logging.getLogger(__name__)

# A file whose stamp says it changed this close before pass 1 began is not remembered.
RACY_SECONDS = 1.0
# Restore progress is told at most this often (seconds), and once at the end.
PROGRESS_EVERY = 0.5
_SHA256 = re.compile(r"[0-9a-f]{64}")


def stamps_dir() -> Path:
    """Where the stamp caches are: beside the agent's key, in its own state folder (each
    agent on a machine has its own)."""
    return Path(settings.LATTICE_AGENT_KEY_FILE).parent / "snapshot-stamps"


class StampCache:
    """path -> [stamp, sha256] of a volume's files, as this host hashed them last time
    (savefolder.Hashes). Only the files of the last snapshot are kept: a removed file's
    entry goes at the next save."""

    def __init__(self, file: Path, volume: str, held: dict[str, list[str]]) -> None:
        self.file, self.volume, self.held = file, volume, held
        self.kept: dict[str, list[str]] = {}
        self.began_ns = time.time_ns()
        self.reused = 0
        self.hashed_count = 0

    @classmethod
    def load(cls, folder: Path, volume: str) -> StampCache:
        name = hashlib.sha256(volume.encode()).hexdigest()[:32]
        file = folder / f"{name}.json"
        held: dict[str, list[str]] = {}
        with contextlib.suppress(OSError, ValueError):
            found = json.loads(file.read_text())
            if isinstance(found, dict) and found.get("volume") == volume:
                held = {
                    str(path): [str(entry[0]), str(entry[1])]
                    for path, entry in (found.get("files") or {}).items()
                    if isinstance(entry, list) and len(entry) == 2  # noqa: PLR2004
                }
        return cls(file, volume, held)

    def known(self, path: str, stamp: str) -> str | None:
        entry = self.held.get(path)
        if entry is None or entry[0] != stamp or not _SHA256.fullmatch(entry[1]):
            return None
        self.kept[path] = entry
        self.reused += 1
        return entry[1]

    def hashed(self, path: str, stamp: str, sha256: str) -> None:
        self.hashed_count += 1
        changed_at = stamp_changed_at(stamp)
        if changed_at is not None and changed_at < self.began_ns - int(RACY_SECONDS * 1e9):
            self.kept[path] = [stamp, sha256]

    def save(self) -> None:
        """Replace the file whole (written aside, then renamed), readable by the agent only."""
        self.file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        aside = self.file.with_name(f".{self.file.name}.{secrets.token_hex(6)}")
        body = json.dumps({"volume": self.volume, "files": self.kept}).encode()
        handle = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            aside.replace(self.file)
        except BaseException:
            aside.unlink(missing_ok=True)
            raise


def run_snapshot(
    runtime: Runtime,
    volume: str,
    ticket_url: str,
    ticket: str,
    *,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The agent's task: save the volume's files through the ticket (the server's last
    answer, or what run_client says of a failure); the stamp cache kept whatever happens
    (what pass 1 hashed is true of those files either way)."""
    cache = StampCache.load(cache_dir or stamps_dir(), volume)

    def save(client: SaveClient) -> dict[str, Any]:
        try:
            answer = save_entries(
                lambda: on_the_wire(runtime.read_volume(volume)), client, modes=True, hashes=cache
            )
            # A file that did not read as pass 1 said is not believed next time either (a
            # hash remembered wrongly would otherwise fail every snapshot after).
            if answer.get("failed") and answer.get("path"):
                cache.kept.pop(str(answer["path"]), None)
            return answer
        finally:
            try:
                cache.save()
            except OSError:
                logger.exception("keeping the stamps of %s", volume)
            logger.info(
                "snapshot of %s: %d files hashed, %d known",
                volume,
                cache.hashed_count,
                cache.reused,
            )

    return run_client(ticket_url, ticket, volume, save)


# The longest path the server keeps for a snapshot's file (apps.datasets.paths
# MAX_PATH_BYTES, SnapshotFile.path): a longer one is skipped ("long"), not sent.
MAX_PATH_BYTES = 1024


def on_the_wire(entries: Iterator[FolderEntry]) -> Iterator[FolderEntry]:
    """A volume's entries with their paths as a snapshot's manifest carries them
    (volumefiles.wire_path: the bytes that are not UTF-8 escaped, every other name as it
    is); a path longer than the server keeps (MAX_PATH_BYTES) is a skipped entry ("long"),
    so the snapshot holds every other file. The reader is closed with this generator."""
    try:
        for entry in entries:
            path = wire_path(entry.path)
            if len(path.encode()) > MAX_PATH_BYTES:
                yield FolderEntry(path[:1000], 0, skipped="long")
                continue
            same_as = wire_path(entry.same_as) if entry.same_as else ""
            if path != entry.path or same_as != entry.same_as:
                entry = dataclasses.replace(entry, path=path, same_as=same_as)  # noqa: PLW2901
            yield entry
    finally:
        close = getattr(entries, "close", None)
        if close is not None:
            close()


# --- Restore ----------------------------------------------------------------------------------


class RestoreError(WorkloadError):
    """A snapshot's files could not be restored; the message says which and why."""


def restore_files(restore: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of a start's ``restore`` option, each checked: a relative path, a whole
    size, a SHA-256, permission bits and an http(s) link. RestoreError otherwise."""
    files = restore.get("files")
    if not isinstance(files, list):
        raise RestoreError("The snapshot's list of files is missing.")
    checked = []
    for entry in files:
        if not isinstance(entry, dict):
            raise RestoreError("A snapshot file is {path, size, sha256, mode, url}.")
        path, size, sha256 = entry.get("path"), entry.get("size"), entry.get("sha256")
        mode, url = entry.get("mode", 0o644), entry.get("url")
        if not isinstance(path, str) or not path:
            raise RestoreError("A snapshot file has no path.")
        try:
            local_path(path)
        except ValueError as exc:
            raise RestoreError(f"{path[:200]!r} is not a snapshot's path.") from exc
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RestoreError(f"{path[:200]!r} has no size.")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise RestoreError(f"{path[:200]!r} has no SHA-256.")
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:  # noqa: PLR2004
            raise RestoreError(f"{path[:200]!r} has no permission bits.")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise RestoreError(f"No link to read {path[:200]!r} from came with the start.")
        checked.append({"path": path, "size": size, "sha256": sha256, "mode": mode, "url": url})
    return checked


class _Download:
    """One file's bytes as they arrive from its read link (a Readable): refused as soon as
    they pass its size, and at their end unless size and SHA-256 are the snapshot's."""

    def __init__(self, url: str, path: str, size: int, sha256: str) -> None:
        self.path, self.size, self.sha256 = path, size, sha256
        self.digest = hashlib.sha256()
        self.count = 0
        self.checked = False
        self.left = b""
        self.stack = contextlib.ExitStack()
        try:
            response = self.stack.enter_context(
                blob_http.stream("GET", url, headers={"Accept-Encoding": "identity"})
            )
        except httpx.HTTPError as exc:
            self.close()
            raise self._unreachable(exc) from None
        if response.status_code != HTTPStatus.OK:
            self.close()
            raise RestoreError(refused_words(path, response.status_code))
        self.pieces = response.iter_bytes(PIECE)

    def _unreachable(self, exc: Exception) -> RestoreError:
        # The URL holds the link's signature: the message names the kind of failure only.
        return RestoreError(f"{self.path!r} could not be downloaded ({type(exc).__name__}).")

    def read(self, size: int = -1, /) -> bytes:
        wanted = size if size >= 0 else 1 << 62
        out = bytearray()
        while len(out) < wanted:
            if not self.left:
                try:
                    self.left = next(self.pieces, b"")
                except httpx.HTTPError as exc:
                    self.close()
                    raise self._unreachable(exc) from None
                if not self.left:
                    self._check()
                    break
                self.count += len(self.left)
                if self.count > self.size:
                    self.close()
                    raise self._damaged()
                self.digest.update(self.left)
            take = min(wanted - len(out), len(self.left))
            out += self.left[:take]
            self.left = self.left[take:]
        if self.count == self.size and not self.left:
            self._check()
        return bytes(out)

    def _check(self) -> None:
        if self.checked:
            return
        self.checked = True
        self.close()
        if self.count != self.size or self.digest.hexdigest() != self.sha256:
            raise self._damaged()

    def _damaged(self) -> RestoreError:
        return RestoreError(
            f"The downloaded bytes of {self.path!r} are not what the snapshot says they are."
        )

    def close(self) -> None:
        self.stack.close()


class _Progress:
    """Counts the bytes written of ``total`` and sends "progress" (phase "restoring") at
    most every PROGRESS_EVERY seconds, and once at the end (``end``)."""

    def __init__(self, total: int, send: Callable[..., None]) -> None:
        self.total, self.send = total, send
        self.done = 0
        self.said_at = 0.0

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.said_at >= PROGRESS_EVERY:
            self.said_at = now
            self.send("progress", phase="restoring", done=self.done, total=self.total)

    def end(self) -> None:
        self.send("progress", phase="restoring", done=self.done, total=self.total)


def restore_snapshot(
    runtime: Runtime,
    restore: dict[str, Any],
    *,
    volumes: dict[str, str],
    labels: dict[str, str],
    send: Callable[..., None],
) -> None:
    """Restore ``restore`` (a start's option) into its volume, one the spec mounts
    (``volumes``), made with the spec's ``labels`` when missing. RestoreError (a
    WorkloadError: the start fails with it) when anything goes wrong."""
    volume = str(restore.get("volume") or "")
    if volume not in volumes:
        raise RestoreError("The snapshot is for a volume this notebook does not mount.")
    files = restore_files(restore)
    total = sum(int(f["size"]) for f in files)
    progress = _Progress(total, send)
    opened: list[_Download] = []

    def opener(entry: dict[str, Any]) -> Callable[[], _Download]:
        def open_it() -> _Download:
            download = _Download(entry["url"], entry["path"], entry["size"], entry["sha256"])
            opened.append(download)
            return download

        return open_it

    progress.said_at = time.monotonic()
    send("progress", phase="restoring", done=0, total=total)
    try:
        runtime.restore_volume(
            volume,
            [RestoreFile(local_path(f["path"]), f["size"], f["mode"], opener(f)) for f in files],
            labels=labels,
            progress=progress,
        )
    except WorkloadError as exc:
        raise RestoreError(f"The notebook's files could not be restored: {exc}") from exc
    except Exception as exc:
        logger.exception("restoring snapshot %s into %s", restore.get("snapshot"), volume)
        raise RestoreError(
            f"The notebook's files could not be restored ({type(exc).__name__})."
        ) from exc
    finally:
        for download in opened:
            download.close()
    progress.end()
