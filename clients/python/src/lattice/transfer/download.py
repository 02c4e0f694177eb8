"""Downloads: a version's tar streamed and extracted file by file, safely."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import tarfile
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from lattice.transfer.chunks import CHUNK_TIMEOUT
from lattice.transfer.state import REPORT_EVERY, TransferError, notify
from lattice.types import TransferProgress

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lattice.http import Transport

DOWNLOAD_PIECE = 1024 * 1024


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

    notify(progress, report)
    extractor = SafeExtractor(Path(dest), expected=listed, on_bytes=on_bytes)
    with transport.stream("GET", archive_route, timeout=CHUNK_TIMEOUT) as response:
        extractor.extract(_StreamReader(response.iter_bytes(DOWNLOAD_PIECE)))
    notify(
        progress,
        replace(report, phase="done", done_bytes=total, files_done=len(extractor.written)),
    )
    return Path(dest)
