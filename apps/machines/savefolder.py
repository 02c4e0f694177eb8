"""Saving a folder of a workload (a running notebook's, an exited job's) as a version: the
host's side.

The control plane sends ``agent.save_folder`` with a single-use, short-lived ticket and the
address to use it at (``ticket_url``). The agent holds no database or storage credentials:
it reads the folder through its runtime (``Runtime.read_folder``) and speaks HTTP to the
web tier with ``Authorization: Ticket <ticket>``::

    POST <ticket_url>/progress  {"phase": "reading"|"sending", "done": n, "total": n}
    POST <ticket_url>/manifest  {"files": [{"path", "size", "sha256"}], "skipped": [path]}
         -> {"state": "existing", "version": n}  (the same content is a version already)
         -> {"state": "upload", "chunk_size": n, "missing": {sha256: [chunk index]}}
    POST <ticket_url>/blobs/<sha256>/chunks/<i>/target  {"sha256": chunk_sha}
         -> {"method", "url", "headers"}: where the chunk's bytes go
    POST <ticket_url>/complete  -> {"version": n}
    POST <ticket_url>/fail  {"code": "changed", "path": "..."}

A failure is told as a code (FAILURE_CODES), never in the host's words: hosts are not
trusted, and the server says what a code means in its own.

What is read comes from a callable, once per pass (``save_entries``): a workload's folder
(``Runtime.read_folder``) or a notebook volume's files (``Runtime.read_volume``: a
snapshot, apps.machines.snapshot, whose manifest's files carry their "mode" too, and
whose host remembers the SHA-256 of files unchanged since it last hashed them).

Pass 1 reads and hashes every file and sends the manifest. Pass 2, when the server wants
bytes, reads the folder again: the chunks it lacks go out a few at a time from worker
threads (memory holds at most IN_FLIGHT chunks and the one being read), and every file is
hashed again as a whole: one that differs from pass 1 was changed while it was being
saved (or removed: vanished), and the save fails, naming it. A network error or a 5xx is
tried again with a backoff; a chunk the server says arrived damaged (code
"chunk_damaged") is sent again, a few times; any other 4xx stops the save (the server has
already recorded why).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings

from apps.runtimes.base import NOTEBOOKS_PATH, FolderError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from apps.runtimes.base import FolderEntry, Readable, Runtime

    # What a save reads, once per pass: the folder's entries (read_folder, read_volume).
    Entries = Callable[[], Iterable[FolderEntry]]

logger = logging.getLogger(__name__)

# Chunks sent at once (each a thread, each holding one chunk's bytes until it is sent).
IN_FLIGHT = 4
# Reads from the folder, in bytes.
READ_BYTES = 1024 * 1024
# Progress is told at most this often (seconds).
PROGRESS_EVERY = 0.5
# A request that fails on the network or with a 5xx is tried this many times in all.
ATTEMPTS = 4
BACKOFF = 0.5

# A chunk the server refused with this code arrived damaged (its SHA-256 did not match):
# it is sent again, at most CHUNK_SENDS times in all. Any other 4xx ends the save.
CHUNK_DAMAGED = "chunk_damaged"
CHUNK_SENDS = 3


class SaveRefusedError(Exception):
    """The server answered 4xx: the save is over, and it knows why."""

    def __init__(self, status: int, detail: str, code: str = "") -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.code = status, detail, code


# What the host may tell the server when it gives up (the server words each).
CHANGED = "changed"  # a file differs from what pass 1 read (path: the file)
VANISHED = "vanished"  # a file pass 1 read is gone (path: the file)
DAMAGED = "damaged"  # a chunk arrived damaged every time it was sent
HOST_ERROR = "host_error"  # anything else: the agent's log says what
# And FolderError's codes: not_running, missing, link, not_folder, outside, unreadable.


class _ChangedError(Exception):
    def __init__(self, path: str, code: str = CHANGED) -> None:
        super().__init__(path)
        self.path, self.code = path, code


@dataclass(frozen=True)
class Listed:
    path: str
    size: int
    sha256: str
    # A snapshot's (``modes``): its permission bits, sent in the manifest; and the stamp
    # pass 1 saw (FolderEntry.stamp: "" when the runtime cannot tell).
    mode: int | None = None
    stamp: str = ""

    def manifest(self) -> dict[str, Any]:
        listed: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.mode is not None:
            listed["mode"] = self.mode
        return listed


class Hashes(Protocol):
    """What a host remembers of the files it hashed (apps.machines.snapshot.StampCache):
    the SHA-256 of ``path`` when its stamp is the one it had then, else None; and each
    file hashed now, to remember."""

    def known(self, path: str, stamp: str) -> str | None: ...

    def hashed(self, path: str, stamp: str, sha256: str) -> None: ...


class SaveClient:
    """The protocol's HTTP side: ``ticket_url``'s steps, each tried again on a network
    error or a 5xx, and the chunk uploads to wherever the server says."""

    def __init__(
        self,
        ticket_url: str,
        ticket: str,
        *,
        http: httpx.Client | None = None,
        backoff: float | None = None,
    ) -> None:
        self.base = ticket_url.rstrip("/") + "/"
        self.auth = {"Authorization": f"Ticket {ticket}"}
        if backoff is None:
            backoff = float(getattr(settings, "LATTICE_SAVE_RETRY_BACKOFF", BACKOFF))
        self.backoff = backoff
        self.http = http or httpx.Client(
            timeout=httpx.Timeout(60.0, connect=10.0),
            limits=httpx.Limits(max_connections=IN_FLIGHT + 2),
        )

    def close(self) -> None:
        self.http.close()

    def post(self, step: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._send("POST", self.base + step, headers=self.auth, json=body or {})
        return dict(response.json()) if response.content else {}

    def put_chunk(self, target: dict[str, Any], pieces: list[bytes]) -> None:
        """Send a chunk's bytes where ``target`` says: our own ticket goes only to Lattice."""
        url = urljoin(self.base, str(target["url"]))
        headers = {str(k): str(v) for k, v in (target.get("headers") or {}).items()}
        if urlsplit(url).netloc == urlsplit(self.base).netloc:
            headers.update(self.auth)
        headers["Content-Length"] = str(sum(len(piece) for piece in pieces))
        self._send(str(target.get("method", "PUT")), url, headers=headers, pieces=pieces)

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        json: dict[str, Any] | None = None,
        pieces: list[bytes] | None = None,
    ) -> httpx.Response:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self.http.request(
                    method,
                    url,
                    headers=headers,
                    json=json,
                    # Handed over piece by piece: the chunk is never copied into one buffer.
                    content=iter(pieces) if pieces is not None else None,
                )
            except httpx.TransportError as exc:
                if attempt == ATTEMPTS:
                    raise
                logger.warning("save: %s %s failed (%s); trying again", method, url, exc)
            else:
                if response.status_code < 400:  # noqa: PLR2004
                    return response
                if response.status_code < 500:  # noqa: PLR2004
                    raise _refusal(response)
                if attempt == ATTEMPTS:
                    response.raise_for_status()
                logger.warning("save: %s %s answered %s", method, url, response.status_code)
            time.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")


def _refusal(response: httpx.Response) -> SaveRefusedError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return SaveRefusedError(
        response.status_code,
        str(body.get("detail") or response.text[:200]),
        str(body.get("code") or ""),
    )


class _Progress:
    """Tells the server how far a phase has come: at most every PROGRESS_EVERY seconds,
    and once at its end."""

    def __init__(self, client: SaveClient, phase: str, total: int) -> None:
        self.client, self.phase, self.total = client, phase, total
        self.done = 0
        self.told_at = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        if time.monotonic() - self.told_at >= PROGRESS_EVERY:
            self.tell()

    def tell(self) -> None:
        self.told_at = time.monotonic()
        self.client.post("progress", {"phase": self.phase, "done": self.done, "total": self.total})


def save_folder(
    runtime: Runtime,
    state: dict[str, Any],
    folder: str,
    client: SaveClient,
    *,
    root: str = NOTEBOOKS_PATH,
) -> dict[str, Any]:
    """Save ``folder`` (under the workload's ``root``: /notebooks, a job's /outputs) through
    ``client``; the server's last answer (its version), or {"failed": reason} when this side
    gave up and said so. Raises SaveRefusedError when the server stopped it."""
    return save_entries(lambda: runtime.read_folder(state, folder, root=root), client)


def save_entries(
    read: Entries,
    client: SaveClient,
    *,
    modes: bool = False,
    hashes: Hashes | None = None,
) -> dict[str, Any]:
    """Save what ``read()`` gives (called once per pass) through ``client``, as save_folder
    says. With ``modes`` the manifest's files carry their "mode". With ``hashes`` (a
    snapshot's stamp cache): pass 1 does not read a file whose stamp is one it knows the
    SHA-256 of, and tells it of each file it hashed; pass 2 reads only the files whose
    chunks must go, and takes a file it does not read as unchanged when its stamp is still
    the one pass 1 saw (a stamp changes with any write: size, mtime, inode, ctime), reading
    and hashing it again only when it has no stamp."""
    try:
        files, skipped = _listing(read, client, modes=modes, hashes=hashes)
    except FolderError as exc:
        return _fail(client, exc.code)
    answer = client.post(
        "manifest",
        {"files": [f.manifest() for f in files], "skipped": skipped},
    )
    if answer.get("state") != "upload":
        return answer
    missing = {sha: set(indexes) for sha, indexes in (answer.get("missing") or {}).items()}
    try:
        _send_missing(
            read,
            client,
            files=files,
            missing=missing,
            chunk_size=int(answer["chunk_size"]),
            trust_stamps=hashes is not None,
        )
    except _ChangedError as exc:
        return _fail(client, exc.code, exc.path)
    except SaveRefusedError as exc:
        if exc.code != CHUNK_DAMAGED:
            raise
        # Damaged CHUNK_SENDS times over: the server kept the save open for a resend.
        return _fail(client, DAMAGED)
    except FolderError as exc:
        return _fail(client, exc.code)
    return client.post("complete")


def _fail(client: SaveClient, code: str, path: str = "") -> dict[str, Any]:
    client.post("fail", {"code": code, "path": path})
    return {"failed": code, "path": path}


def _listing(
    read: Entries, client: SaveClient, *, modes: bool, hashes: Hashes | None
) -> tuple[list[Listed], list[str]]:
    """Pass 1: every regular file's size and SHA-256 (known already, or read); the paths
    skipped."""
    files: list[Listed] = []
    skipped: list[str] = []
    progress = _Progress(client, "reading", 0)
    for entry in read():
        mode = entry.mode if modes else None
        if entry.same_as:
            earlier = next((f for f in reversed(files) if f.path == entry.same_as), None)
            if earlier is None:
                skipped.append(entry.path)
            else:
                files.append(Listed(entry.path, earlier.size, earlier.sha256, mode))
            continue
        if entry.file is None:
            skipped.append(entry.path)
            continue
        known = hashes.known(entry.path, entry.stamp) if hashes and entry.stamp else None
        if known is not None:
            files.append(Listed(entry.path, entry.size, known, mode, entry.stamp))
            continue
        digest = hashlib.sha256()
        size = 0
        for block in _blocks(entry.file):
            digest.update(block)
            size += len(block)
            progress.add(len(block))
        files.append(Listed(entry.path, size, digest.hexdigest(), mode, entry.stamp))
        if hashes is not None and entry.stamp and size == entry.size:
            hashes.hashed(entry.path, entry.stamp, digest.hexdigest())
    progress.total = progress.done
    progress.tell()
    return files, skipped


def _blocks(file: Readable) -> Iterator[bytes]:
    while block := file.read(READ_BYTES):
        yield block


class _Sender:
    """Chunks out on IN_FLIGHT threads; the reader waits for a free slot before it reads the
    next chunk that must go, so memory holds at most IN_FLIGHT chunks plus one."""

    def __init__(self, client: SaveClient) -> None:
        self.client = client
        self.pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="save-chunk")
        self.slots = threading.Semaphore(IN_FLIGHT)
        self.futures: list[Future[None]] = []

    def send(self, sha256: str, index: int, pieces: list[bytes]) -> None:
        self.check()
        future = self.pool.submit(self._send, sha256, index, pieces)
        future.add_done_callback(lambda _: self.slots.release())
        self.futures.append(future)

    def wait_for_slot(self) -> None:
        self.slots.acquire()

    def _send(self, sha256: str, index: int, pieces: list[bytes]) -> None:
        # Hashed here, on the sender's thread (hashlib lets go of the GIL): the reader goes
        # on hashing the whole file meanwhile, on another core.
        chunk_sha = hashlib.sha256()
        for piece in pieces:
            chunk_sha.update(piece)
        for send in range(1, CHUNK_SENDS + 1):
            target = self.client.post(
                f"blobs/{sha256}/chunks/{index}/target", {"sha256": chunk_sha.hexdigest()}
            )
            try:
                self.client.put_chunk(target, pieces)
            except SaveRefusedError as exc:
                if exc.code != CHUNK_DAMAGED or send == CHUNK_SENDS:
                    raise
                logger.warning(
                    "save: chunk %s of %s arrived damaged; sending it again", index, sha256
                )
            else:
                return

    def check(self) -> None:
        """Raise what a finished send raised (a refusal stops the save at once)."""
        for future in [f for f in self.futures if f.done()]:
            self.futures.remove(future)
            future.result()

    def finish(self) -> None:
        for future in self.futures:
            future.result()
        self.futures.clear()

    def close(self) -> None:
        for future in self.futures:
            future.cancel()
        self.pool.shutdown(wait=True)


def _send_missing(
    read: Entries,
    client: SaveClient,
    *,
    files: list[Listed],
    missing: dict[str, set[int]],
    chunk_size: int,
    trust_stamps: bool = False,
) -> None:
    """Pass 2: read the folder again, send the chunks the server lacks, and check every
    file is what pass 1 read. Raises _ChangedError with the first path that is not. With
    ``trust_stamps``, a file none of whose chunks must go is checked by its stamp alone
    (the one pass 1 saw), not read (save_entries)."""
    listed = {f.path: f for f in files}
    # What is sent, of what the server lacks: pass 2 reads (and checks) every file, but a
    # file the team holds already costs no sending, and the page says so.
    sizes = {f.sha256: f.size for f in files}
    to_send = sum(
        min(chunk_size, sizes[sha256] - index * chunk_size)
        for sha256, indexes in missing.items()
        if sha256 in sizes
        for index in indexes
    )
    progress = _Progress(client, "sending", to_send)
    sender = _Sender(client)
    seen: set[str] = set()
    try:
        for entry in read():
            was = listed.get(entry.path)
            if was is None:
                continue  # new since pass 1: not in this version
            if entry.same_as:
                # The same bytes as a file read (and checked) before it in this pass.
                if entry.same_as not in seen or listed[entry.same_as].sha256 != was.sha256:
                    raise _ChangedError(entry.path)
                seen.add(entry.path)
                continue
            if entry.file is None:
                raise _ChangedError(entry.path)  # a file then, a link or a fifo now
            seen.add(entry.path)
            wanted = missing.get(was.sha256, set())
            if trust_stamps and was.stamp and not wanted:
                if entry.stamp != was.stamp:
                    raise _ChangedError(entry.path)
                continue
            size, sha256 = _send_file(
                entry.file,
                was.sha256,
                wanted,
                chunk_size=chunk_size,
                sender=sender,
                progress=progress,
            )
            if size != was.size or sha256 != was.sha256:
                raise _ChangedError(entry.path)
        gone = sorted(set(listed) - seen)
        if gone:
            raise _ChangedError(gone[0], VANISHED)
        sender.finish()
    finally:
        sender.close()
    progress.tell()


def _send_file(
    file: Readable,
    blob: str,
    wanted: set[int],
    *,
    chunk_size: int,
    sender: _Sender,
    progress: _Progress,
) -> tuple[int, str]:
    """Read one file chunk by chunk, sending the ``wanted`` chunks of ``blob`` (taken out of
    ``wanted``: a content at two paths is sent once); its size and SHA-256 as read."""
    digest = hashlib.sha256()
    size = 0
    for index in itertools.count():
        sending = index in wanted
        if sending:
            sender.wait_for_slot()
        pieces = _read_chunk(file, chunk_size)
        count = sum(len(piece) for piece in pieces)
        for piece in pieces:
            digest.update(piece)
        size += count
        if sending and count:
            wanted.discard(index)
            sender.send(blob, index, pieces)
            progress.add(count)
        elif sending:
            sender.slots.release()  # the file ended early: pass 2 will say it changed
        if count < chunk_size:
            break
    return size, digest.hexdigest()


def _read_chunk(file: Readable, chunk_size: int) -> list[bytes]:
    """Up to ``chunk_size`` bytes of ``file``, in the pieces they were read in."""
    pieces: list[bytes] = []
    left = chunk_size
    while left > 0:
        piece = file.read(min(READ_BYTES, left))
        if not piece:
            break
        pieces.append(piece)
        left -= len(piece)
    return pieces


def run_save(
    runtime: Runtime,
    state: dict[str, Any],
    folder: str,
    ticket_url: str,
    ticket: str,
    *,
    root: str = NOTEBOOKS_PATH,
) -> dict[str, Any]:
    """The agent's task: ``save_folder`` with a client of its own (see run_client)."""
    return run_client(
        ticket_url,
        ticket,
        folder,
        lambda client: save_folder(runtime, state, folder, client, root=root),
    )


def run_client(
    ticket_url: str, ticket: str, what: str, save: Callable[[SaveClient], dict[str, Any]]
) -> dict[str, Any]:
    """``save`` with a client of its own for the ticket. A refusal ends it quietly (the
    server knows why); anything else is logged here and told to the server as a failure
    (its code: the server has the words)."""
    client = SaveClient(ticket_url, ticket)
    try:
        return save(client)
    except SaveRefusedError as exc:
        logger.info("save of %s stopped by the server: %s", what, exc.detail)
        return {"refused": exc.detail}
    except Exception:
        logger.exception("save of %s", what)
        with contextlib.suppress(Exception):
            return _fail(client, HOST_ERROR)
        return {"failed": "unreachable"}
    finally:
        client.close()
