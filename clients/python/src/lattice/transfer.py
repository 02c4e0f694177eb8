"""The upload and download engine datasets and models share.

Uploads follow the server's resumable blob protocol (docs/datasets.md, "Uploading (API)"):

1. ``build_manifest`` walks the folder: relative POSIX paths, sizes and SHA-256s. Hashes are
   cached per file (size, mtime_ns, inode) under the state folder, so a rerun does not read
   hundreds of MiB again. Nothing is skipped silently: a link pointing outside the folder, a
   broken link, a FIFO, socket or device is refused, naming it.
2. ``Uploader.run`` starts the upload (or resumes the one a state file names: same server,
   team, purpose, slug and manifest), sends only the chunks the server lists as missing from
   ``workers`` threads, each read from disk at its offset a piece at a time, once to hash it and
   again as it is sent (memory: one piece, 1 MiB, per worker; see ``ChunkBody``), and
   completes it. The state file (``$XDG_STATE_HOME/lattice/uploads/``, 0600) is written right
   after the start and removed once the upload is complete, so a crash, Ctrl-C or a dropped
   connection leaves a rerun able to go on without resending what the server holds.

Downloads stream a version's tar and extract it file by file through ``SafeExtractor``:
regular files only, no path leaving the destination, each written to a temporary name and
renamed once whole (and its SHA-256 checked when the server listed it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import random
import secrets
import stat
import tarfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import httpx

from lattice.errors import (
    BadRequest,
    ConnectionFailed,
    LatticeError,
    NotFound,
    RateLimited,
    ServerError,
)
from lattice.types import TransferProgress

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from lattice.http import Transport

# How often a chunk is tried before the upload stops (resumable) with the last error.
CHUNK_ATTEMPTS = 6
# Sending threads at most: each holds one piece of a chunk (SEND_PIECE) in memory.
MAX_WORKERS = 64
BACKOFF_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 15.0
CHUNK_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
# Assembling and checking the new blobs happens inside the complete call.
COMPLETE_TIMEOUT = httpx.Timeout(900.0, connect=10.0)
HASH_PIECE = 8 * 1024 * 1024
DOWNLOAD_PIECE = 1024 * 1024
# A chunk is read from its file and sent this much at a time.
SEND_PIECE = 1024 * 1024
# Progress from hashing is reported at most this often (seconds); the hash cache saved too.
REPORT_EVERY = 0.2
SAVE_CACHE_EVERY = 10.0


class TransferError(LatticeError):
    """The client refused or could not go on (a file it cannot send, an unsafe archive)."""


# --- the state folder ------------------------------------------------------------------------


def state_dir() -> Path:
    """``$XDG_STATE_HOME/lattice`` (default ``~/.local/state/lattice``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lattice"


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path``, mode 0600, atomically (a temp file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(data, stream)
            stream.flush()
            os.fsync(stream.fileno())
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- the manifest ----------------------------------------------------------------------------


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
    a link loop and a special file (FIFO, socket, device) are refused with a TransferError."""
    root = Path(root)
    try:
        top = root.stat()
    except FileNotFoundError:
        raise TransferError(f"{root}: no such file or folder.", code="not_found") from None
    if stat.S_ISREG(top.st_mode):
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
        loaded = _read_json(self.path)
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
    _call(progress, report)
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
    _call(progress, replace(report, done_bytes=total, files_done=len(listed)))
    return entries


# --- uploads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadTarget:
    """What an upload makes and where its routes are (paths relative to /api/v1).

    ``start``: where the manifest is POSTed; ``uploads``: the prefix of the upload's own
    routes (``/teams/<t>/uploads`` for datasets, ``/teams/<t>/model-uploads`` for models);
    ``extra``: more fields for the start's body (a model version's format, say)."""

    server: str
    team: str
    purpose: str
    slug: str
    start: str
    uploads: str
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    sha256: str
    index: int
    local: Path
    offset: int
    length: int


@dataclass
class UploadOutcome:
    """What the server answered at the end: the complete call's body (the version), or the
    start's when nothing had to be made (``existing``)."""

    body: dict[str, Any]
    upload_id: int | None
    existing: bool = False
    chunks_sent: int = 0
    chunks_skipped: int = 0
    resumed: bool = False


def check_workers(workers: int) -> None:
    """Refuse a number of sending threads that cannot work, before anything is hashed."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise TransferError(
            f"workers must be a whole number from 1 to {MAX_WORKERS}, not {workers!r}.",
            code="invalid",
        )


class Uploader:
    """One upload of ``files`` to ``target`` through ``transport``; ``run`` does it all."""

    def __init__(
        self,
        transport: Transport,
        target: UploadTarget,
        files: list[FileEntry],
        *,
        workers: int = 4,
        allow_identical: bool = False,
        progress: Callable[[TransferProgress], None] | None = None,
        state_folder: Path | None = None,
    ) -> None:
        check_workers(workers)
        self.transport = transport
        self.target = target
        self.files = files
        self.workers = workers
        self.allow_identical = allow_identical
        self.progress = progress
        self.digest = manifest_digest(files)
        key = json.dumps(
            [target.server, target.team, target.purpose, target.slug, self.digest],
            separators=(",", ":"),
        )
        name = hashlib.sha256(key.encode()).hexdigest()[:40]
        self.state_path = (state_folder or state_dir()) / "uploads" / f"{name}.json"
        self.total_bytes = sum(f.size for f in files)

    # The whole upload ------------------------------------------------------------------------

    def run(self) -> UploadOutcome:
        body, resumed = self._resume()
        if body is None:
            body = self._start()
            if body.get("existing"):  # a model version that holds exactly these files
                self._report("done", body, [], sent=0)
                return UploadOutcome(body=body, upload_id=None, existing=True)
            resumed = False
        upload_id = int(body["id"])
        if body.get("status") == "complete":
            # The last run completed it, then stopped before forgetting it: its version.
            self._forget()
            return UploadOutcome(body=body, upload_id=upload_id, resumed=True)
        sent = self._send_missing(body)
        made = self._complete(upload_id)
        self._forget()
        self._forget_older()
        return UploadOutcome(
            body=made,
            upload_id=upload_id,
            chunks_sent=sent,
            chunks_skipped=self._chunks_total(int(body["chunk_size"])) - sent,
            resumed=resumed,
        )

    # Start or resume -------------------------------------------------------------------------

    def _resume(self) -> tuple[dict[str, Any] | None, bool]:
        """The open upload the state file names, as the server lists it now; None to start."""
        saved = _read_json(self.state_path)
        if not saved or saved.get("digest") != self.digest or not saved.get("upload_id"):
            return None, False
        try:
            body = self.transport.json("GET", f"{self.target.uploads}/{saved['upload_id']}/")
        except NotFound:
            self._forget()
            return None, False
        status = body.get("status")
        if status == "open":
            return body, True
        if status == "complete" and body.get("version") is not None:
            return body, True
        self._forget()
        return None, False

    def _start(self) -> dict[str, Any]:
        payload = {
            "message": self.target.message,
            "files": [f.api() for f in self.files],
            **self.target.extra,
        }
        body: dict[str, Any] = self.transport.json(
            "POST", self.target.start, json=payload, timeout=COMPLETE_TIMEOUT
        )
        if not body.get("existing"):
            write_private(
                self.state_path,
                {
                    "server": self.target.server,
                    "team": self.target.team,
                    "purpose": self.target.purpose,
                    "slug": self.target.slug,
                    "digest": self.digest,
                    "upload_id": body["id"],
                    "started_at": time.time(),
                },
            )
        return body

    def _forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    def _forget_older(self) -> None:
        """Once a version is made, the state of uploads of other manifests to the same
        dataset or model (a folder that changed after an interruption) is of no more use."""
        mine = [self.target.server, self.target.team, self.target.purpose, self.target.slug]
        for path in self.state_path.parent.glob("*.json"):
            saved = _read_json(path) or {}
            ours = [saved.get(k) for k in ("server", "team", "purpose", "slug")] == mine
            if ours and saved.get("digest") != self.digest:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # The chunks ------------------------------------------------------------------------------

    def _chunks_total(self, chunk_size: int) -> int:
        return sum(-(-f.size // chunk_size) for f in self.files)

    def plan(self, body: dict[str, Any]) -> list[Chunk]:
        """The chunks the upload's answer lists as missing, each located in a local file."""
        size = int(body["chunk_size"])
        by_sha = {f.sha256: f for f in self.files}
        chunks = []
        for blob in body.get("blobs", []):
            entry = by_sha.get(blob["sha256"])
            if entry is None:
                raise TransferError(
                    f"The server asks for a file this upload does not have ({blob['sha256']})."
                )
            for index in blob.get("missing", []):
                offset = index * size
                length = min(size, entry.size - offset)
                chunks.append(Chunk(blob["sha256"], int(index), entry.local, offset, length))
        return chunks

    def _report(
        self, phase: str, body: dict[str, Any], plan: list[Chunk], *, sent: int, sent_bytes: int = 0
    ) -> None:
        if self.progress is None:
            return
        size = int(body.get("chunk_size") or 1)
        chunks_total = self._chunks_total(size)
        skipped_bytes = self.total_bytes - sum(c.length for c in plan)
        self.progress(
            TransferProgress(
                phase=phase,
                total_bytes=self.total_bytes,
                done_bytes=skipped_bytes + sent_bytes,
                sent_bytes=sent_bytes,
                skipped_bytes=skipped_bytes,
                chunks_total=chunks_total,
                chunks_sent=sent,
                chunks_skipped=chunks_total - len(plan),
                files_total=len(self.files),
                files_done=len(self.files) if phase == "done" else 0,
                upload_id=body.get("id"),
            )
        )

    def _send_missing(self, body: dict[str, Any]) -> int:
        """PUT every missing chunk; the number sent."""
        plan = self.plan(body)
        self._check_unchanged()
        self._report("sending", body, plan, sent=0)
        if not plan:
            return 0
        upload_id = int(body["id"])
        direct = bool(body.get("direct"))
        todo: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        for chunk in plan:
            todo.put(chunk)
        workers = min(self.workers, len(plan))
        for _ in range(workers):
            todo.put(None)
        done: queue.SimpleQueue[Chunk | BaseException] = queue.SimpleQueue()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=self._worker,
                args=(todo, done, stop, upload_id, direct),
                name=f"lattice-upload-{n}",
                daemon=True,
            )
            for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        try:
            self._collect(body, plan, done, threads)
        except BaseException:
            # Ctrl-C or a chunk that failed for good: the others stop after the chunk they
            # are on; the state file stays, so a rerun resumes.
            stop.set()
            raise
        for thread in threads:
            thread.join(timeout=5)
        self._check_unchanged()
        return len(plan)

    def _worker(
        self,
        todo: queue.SimpleQueue[Chunk | None],
        done: queue.SimpleQueue[Chunk | BaseException],
        stop: threading.Event,
        upload_id: int,
        direct: bool,
    ) -> None:
        """One sending thread: chunks from ``todo`` until None (or ``stop``), each
        acknowledged in ``done``; what stopped it handed to ``done`` too."""
        files: dict[Path, int] = {}
        transport = self.transport.clone()
        try:
            while not stop.is_set() and (chunk := todo.get()) is not None:
                self._send(
                    transport, chunk, upload_id=upload_id, direct=direct, files=files, stop=stop
                )
                done.put(chunk)
        except BaseException as exc:  # handed to the main thread, which raises it
            done.put(exc)
        finally:
            transport.close()
            for fd in files.values():
                os.close(fd)

    def _collect(
        self,
        body: dict[str, Any],
        plan: list[Chunk],
        done: queue.SimpleQueue[Chunk | BaseException],
        threads: list[threading.Thread],
    ) -> None:
        """Wait (in the main thread, so Ctrl-C is felt at once) for every chunk of ``plan``
        to be acknowledged, reporting progress; the first worker's failure is raised."""
        sent = sent_bytes = 0
        last = 0.0
        while sent < len(plan):
            try:
                item = done.get(timeout=0.2)
            except queue.Empty:
                if not any(t.is_alive() for t in threads):
                    raise TransferError("The upload's workers stopped.") from None
                continue
            sent += 1
            sent_bytes += _acknowledged(item).length
            now = time.monotonic()
            if now - last > REPORT_EVERY or sent == len(plan):
                last = now
                self._report("sending", body, plan, sent=sent, sent_bytes=sent_bytes)

    def _send(
        self,
        transport: Transport,
        chunk: Chunk,
        *,
        upload_id: int,
        direct: bool,
        files: dict[Path, int],
        stop: threading.Event,
    ) -> None:
        if chunk.local not in files:
            files[chunk.local] = os.open(chunk.local, os.O_RDONLY)
        route = f"{self.target.uploads}/{upload_id}/blobs/{chunk.sha256}/chunks/{chunk.index}/"
        for attempt in range(1, CHUNK_ATTEMPTS + 1):
            # Read (and hash) again at each try: the bytes a damaged try sent are not kept.
            body = ChunkBody(files[chunk.local], chunk)
            checksum = body.sha256()
            try:
                self._put_once(transport, route, body, checksum, direct=direct)
            except (ConnectionFailed, ServerError, RateLimited, BadRequest) as exc:
                if isinstance(exc, BadRequest) and exc.code != "chunk_damaged":
                    raise
                if attempt == CHUNK_ATTEMPTS or stop.is_set():
                    raise TransferError(
                        f"A chunk of {chunk.local} failed {attempt} times ({exc}); run the "
                        "same upload again to resume it.",
                        code=exc.code,
                        status=exc.status,
                    ) from exc
                wait = min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1))
                wait *= 0.5 + random.random()  # noqa: S311 (jitter, not a secret)
                if isinstance(exc, RateLimited) and exc.retry_after:
                    wait = max(wait, exc.retry_after)
                stop.wait(wait)
            else:
                return

    def _put_once(
        self, transport: Transport, route: str, data: ChunkBody, checksum: str, *, direct: bool
    ) -> None:
        """One try at one chunk: to Lattice, or (``direct``) to the URL its target names."""
        if not direct:
            _put_lattice(transport, route, data, checksum)
            return
        where = transport.json("POST", f"{route}target/", json={"sha256": checksum})
        if str(where.get("url", "")).startswith(transport.base_url):
            _put_lattice(transport, str(where["url"]), data, checksum)
            return
        # A presigned URL of another host: sent without the token, with its headers.
        transport.external(
            where.get("method", "PUT"),
            where["url"],
            content=data,
            headers={**(where.get("headers") or {}), "Content-Length": str(data.length)},
            timeout=CHUNK_TIMEOUT,
        )

    def _check_unchanged(self) -> None:
        """Refuse to send (or complete) when a file changed after it was hashed: the chunks
        would not make the content the manifest promised."""
        for entry in self.files:
            try:
                info = entry.local.stat()
            except OSError:
                raise TransferError(f"{entry.local} is gone since it was hashed.") from None
            if (info.st_size, info.st_mtime_ns) != (entry.size, entry.mtime_ns):
                raise TransferError(
                    f"{entry.local} changed since it was hashed: run the upload again."
                )

    # Complete --------------------------------------------------------------------------------

    def _complete(self, upload_id: int) -> dict[str, Any]:
        if self.progress is not None:
            self.progress(
                TransferProgress(
                    phase="completing",
                    total_bytes=self.total_bytes,
                    done_bytes=self.total_bytes,
                    files_total=len(self.files),
                    upload_id=upload_id,
                )
            )
        # A 409 "identical_version" (a Conflict with the server's message) is raised as it
        # is: the upload stays open, and the same call with allow_identical makes it.
        made: dict[str, Any] = self.transport.json(
            "POST",
            f"{self.target.uploads}/{upload_id}/complete/",
            json={"allow_identical": self.allow_identical},
            timeout=COMPLETE_TIMEOUT,
        )
        if self.progress is not None:
            self.progress(
                TransferProgress(
                    phase="done",
                    total_bytes=self.total_bytes,
                    done_bytes=self.total_bytes,
                    files_total=len(self.files),
                    files_done=len(self.files),
                    upload_id=upload_id,
                    version=made.get("number"),
                )
            )
        return made


def _put_lattice(transport: Transport, route: str, data: ChunkBody, checksum: str) -> None:
    transport.request(
        "PUT",
        route,
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(data.length),
            "X-Chunk-SHA256": checksum,
        },
        timeout=CHUNK_TIMEOUT,
    )


class ChunkBody:
    """A chunk's bytes as a request body read from its file a piece at a time, each time it
    is iterated (so a request sent again sends it whole again); sent with its Content-Length.

    Not one ``bytes`` object: httpcore sends a bytes body with ``buffer = buffer[n:]`` after
    every partial socket write, copying a 32 MiB chunk over and over (bench/httpx_body.py),
    which took a 4-thread upload to 755 MiB RSS. Read from disk in pieces, each thread holds
    about one piece; the page cache makes the second read (after hashing) cheap."""

    def __init__(self, fd: int, chunk: Chunk) -> None:
        self.fd = fd
        self.local = chunk.local
        self.offset = chunk.offset
        self.length = chunk.length

    def __iter__(self) -> Iterator[bytes]:
        done = 0
        while done < self.length:
            piece = os.pread(self.fd, min(SEND_PIECE, self.length - done), self.offset + done)
            if not piece:
                raise TransferError(f"{self.local} is shorter than when it was hashed.")
            done += len(piece)
            yield piece

    def sha256(self) -> str:
        """The SHA-256 of the chunk's bytes as the file holds them now."""
        hasher = hashlib.sha256()
        for piece in self:
            hasher.update(piece)
        return hasher.hexdigest()


def _acknowledged(item: Chunk | BaseException) -> Chunk:
    """A worker's report: the chunk it sent, or (raised here) what stopped it."""
    if isinstance(item, BaseException):
        raise item
    return item


def _call(progress: Callable[[TransferProgress], None] | None, report: TransferProgress) -> None:
    if progress is not None:
        progress(report)


# --- downloads -------------------------------------------------------------------------------


class _StreamReader:
    """A read-only file object over an iterator of bytes (a streamed response), for tarfile's
    stream mode."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces
        self.buffer = b""
        self.offset = 0  # where the unread bytes of ``buffer`` begin
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) - self.offset < size:
            try:
                piece = next(self.pieces)
            except StopIteration:
                break
            self.buffer = self.buffer[self.offset :] + piece
            self.offset = 0
        end = len(self.buffer) if size < 0 else min(len(self.buffer), self.offset + size)
        data = self.buffer[self.offset : end]
        self.offset = end
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position


def safe_member_path(name: str, strip_top: bool = True) -> PurePosixPath:
    """The path a tar member's ``name`` stands for under the destination, without the
    archive's one top folder; a TransferError for a name that would leave the destination."""
    if "\\" in name or "\0" in name or name.startswith("/"):
        raise TransferError(f"The archive holds an unsafe path: {name!r}.", code="unsafe_archive")
    parts = tuple(name.split("/"))  # as written: PurePosixPath would drop "." parts
    if any(part in ("..", ".", "") for part in parts):
        raise TransferError(f"The archive holds an unsafe path: {name!r}.", code="unsafe_archive")
    if strip_top:
        parts = parts[1:]
    if not parts:
        raise TransferError(f"The archive holds an unsafe path: {name!r}.", code="unsafe_archive")
    return PurePosixPath(*parts)


class SafeExtractor:
    """Writes a version's tar under ``dest``: regular files only, paths inside ``dest`` only,
    each file written to a temporary name and renamed once whole. ``expected`` (path ->
    (size, sha256)) checks each file's bytes as they are written."""

    def __init__(
        self,
        dest: Path,
        *,
        expected: dict[str, tuple[int, str]] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        strip_top: bool = True,
    ) -> None:
        self.dest = Path(dest)
        self.expected = expected
        self.on_bytes = on_bytes
        self.strip_top = strip_top
        self.written: list[str] = []

    def extract(self, stream: IO[bytes] | _StreamReader) -> list[str]:
        self.dest.mkdir(parents=True, exist_ok=True)
        real_dest = self.dest.resolve()
        top: str | None = None
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                if member.isdir():
                    continue
                if not member.isreg():
                    raise TransferError(
                        f"The archive holds {member.name!r}, which is not a regular file.",
                        code="unsafe_archive",
                    )
                relative = safe_member_path(member.name, self.strip_top)
                if self.strip_top:
                    top = top or PurePosixPath(member.name).parts[0]
                    if PurePosixPath(member.name).parts[0] != top:
                        raise TransferError(
                            f"The archive holds {member.name!r} outside its folder {top!r}.",
                            code="unsafe_archive",
                        )
                target = self._inside(real_dest, relative)
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover (a regular file always has one)
                    continue
                self._write(target, str(relative), source, member.size)
        if self.expected is not None:
            missing = sorted(set(self.expected) - set(self.written))
            if missing:
                raise TransferError(
                    f"The download ended without {len(missing)} of its files "
                    f"({missing[0]}, ...): run it again.",
                    code="incomplete_download",
                )
        return self.written

    def _inside(self, real_dest: Path, relative: PurePosixPath) -> Path:
        """Where ``relative`` goes, its folders made; refused when a folder already there
        is a link leading out of the destination."""
        target = self.dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        parent = target.parent.resolve()
        if parent != real_dest and real_dest not in parent.parents:
            raise TransferError(
                f"{target}: its folder leads outside {self.dest} (a link).",
                code="unsafe_archive",
            )
        return target

    def _check(self, name: str, size: int, digest: str) -> None:
        if self.expected is None:
            return
        want = self.expected.get(name)
        if want is None:
            raise TransferError(
                f"The archive holds {name!r}, which the version does not list.",
                code="unsafe_archive",
            )
        if want != (size, digest):
            raise TransferError(
                f"{name}: the bytes received do not match the version's SHA-256.",
                code="damaged_download",
            )

    def _write(self, target: Path, name: str, source: IO[bytes], size: int) -> None:
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.lattice-part")
        hasher = hashlib.sha256()
        try:
            with temp.open("xb") as out:
                while piece := source.read(DOWNLOAD_PIECE):
                    out.write(piece)
                    hasher.update(piece)
                    if self.on_bytes is not None:
                        self.on_bytes(len(piece))
            self._check(name, size, hasher.hexdigest())
            temp.replace(target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        self.written.append(name)


def download_archive(
    transport: Transport,
    archive_route: str,
    files_route: str,
    dest: str | Path,
    *,
    progress: Callable[[TransferProgress], None] | None = None,
) -> Path:
    """Stream ``archive_route`` (a version's tar) and extract it under ``dest``, each file
    checked against the size and SHA-256 ``files_route`` lists."""
    listed = {
        row["path"]: (int(row["size"]), str(row["sha256"]))
        for row in transport.paginated(files_route)
    }
    total = sum(size for size, _ in listed.values())
    report = TransferProgress(phase="receiving", total_bytes=total, files_total=len(listed))
    state = {"done": 0, "last": 0.0}

    def on_bytes(count: int) -> None:
        state["done"] += count
        now = time.monotonic()
        if progress is not None and now - state["last"] > REPORT_EVERY:
            state["last"] = now
            progress(replace(report, done_bytes=int(state["done"]), sent_bytes=0))

    _call(progress, report)
    extractor = SafeExtractor(Path(dest), expected=listed, on_bytes=on_bytes)
    with transport.stream("GET", archive_route, timeout=CHUNK_TIMEOUT) as response:
        extractor.extract(_StreamReader(response.iter_bytes(DOWNLOAD_PIECE)))
    _call(
        progress,
        replace(report, phase="done", done_bytes=total, files_done=len(extractor.written)),
    )
    return Path(dest)
