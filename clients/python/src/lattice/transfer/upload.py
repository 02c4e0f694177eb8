"""Uploads: the resumable blob protocol (see the package's docstring)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from lattice.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    LatticeError,
    NotFound,
    RateLimited,
    ServerError,
)
from lattice.transfer.chunks import Chunk, ChunkBody, put_chunk
from lattice.transfer.manifest import FileEntry, manifest_digest
from lattice.transfer.state import (
    REPORT_EVERY,
    TransferError,
    read_json,
    state_dir,
    write_private,
)
from lattice.types import TransferProgress

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from lattice.http import Transport

# How often a chunk is tried before the upload stops (resumable) with the last error.
CHUNK_ATTEMPTS = 6
# Sending threads at most: each holds one piece of a chunk (SEND_PIECE) in memory.
MAX_WORKERS = 64
BACKOFF_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 15.0
# Assembling and checking the new blobs happens inside the complete call.
COMPLETE_TIMEOUT = httpx.Timeout(900.0, connect=10.0)


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
            self._abandon_older()
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
        self._abandon_older()
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
        saved = read_json(self.state_path)
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

    def _abandon_older(self) -> None:
        """The state files of uploads of other manifests to the same dataset or model (the
        folder changed after an interruption) are of no more use once this upload starts
        anew or is complete: each such upload is abandoned on the server (DELETE), so that
        its chunks do not wait a week for the housekeeping, and its state file removed. One
        the server could not be asked about (unreachable) keeps its file for the next run."""
        mine = [self.target.server, self.target.team, self.target.purpose, self.target.slug]
        for path in self.state_path.parent.glob("*.json"):
            saved = read_json(path) or {}
            ours = [saved.get(k) for k in ("server", "team", "purpose", "slug")] == mine
            if not ours or saved.get("digest") == self.digest:
                continue
            if saved.get("upload_id"):
                try:
                    self.transport.request(
                        "DELETE", f"{self.target.uploads}/{int(saved['upload_id'])}/"
                    )
                except (NotFound, Conflict):
                    pass  # gone already, or completed after all: nothing to abandon
                except LatticeError:
                    continue
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
                put_chunk(transport, route, body, checksum, direct=direct)
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


def _acknowledged(item: Chunk | BaseException) -> Chunk:
    """A worker's report: the chunk it sent, or (raised here) what stopped it."""
    if isinstance(item, BaseException):
        raise item
    return item
