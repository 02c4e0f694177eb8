"""Bytes in and out of the storage (django-storages: a local folder or S3), in bounded
pieces: memory stays flat whatever the size of a file or a chunk."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, cast

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from apps.core.streamed_body import SCOPE_KEY

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from django.http import HttpRequest

PIECE = 1024 * 1024


class SizeError(ValueError):
    pass


class HashError(ValueError):
    """Bytes that do not hash to what was expected; the message is their SHA-256."""


class _Spooled(File):
    """A finished temporary file. FileSystemStorage moves it into place instead of copying."""

    def temporary_file_path(self) -> str:
        return str(getattr(self.file, "name", ""))


def _temporary() -> IO[bytes]:
    folder = settings.FILE_UPLOAD_TEMP_DIR or None
    return tempfile.NamedTemporaryFile(prefix="lattice-", dir=folder, delete=False)


@contextmanager
def spooled(pieces: Iterable[bytes], *, expected_size: int) -> Iterator[tuple[IO[bytes], str]]:
    """``pieces`` written to a temporary file, rewound; with their SHA-256. The file is
    gone after the block. Raises SizeError when they do not add up to ``expected_size``."""
    digest = hashlib.sha256()
    size = 0
    spool = _temporary()
    try:
        for piece in pieces:
            size += len(piece)
            if size > expected_size:
                raise SizeError(f"more than the {expected_size} bytes expected")
            digest.update(piece)
            spool.write(piece)
        spool.flush()
        if size != expected_size:
            raise SizeError(f"{size} bytes instead of {expected_size}")
        spool.seek(0)
        yield spool, digest.hexdigest()
    finally:
        spool.close()
        Path(spool.name).unlink(missing_ok=True)


def write_stream(
    key: str, pieces: Iterable[bytes], *, expected_size: int, sha256: str | None = None
) -> str:
    """Store ``pieces`` at ``key`` (replacing it); return their SHA-256.

    Raises SizeError, storing nothing, when they do not add up to ``expected_size``, and
    HashError, storing nothing, when ``sha256`` is given and they do not hash to it. With
    ``sha256`` the key is content-addressed: bytes already there are those, and stay.
    """
    with spooled(pieces, expected_size=expected_size) as (spool, digest):
        if sha256 is not None and digest != sha256:
            raise HashError(digest)
        if default_storage.exists(key):
            if sha256 is not None:
                return digest
            default_storage.delete(key)
        saved = default_storage.save(key, _Spooled(spool, name=Path(key).name))
        if saved != key:  # another writer won the same name: ours is a duplicate
            default_storage.delete(saved)
    return digest


def hash_stored(key: str, *, expected_size: int) -> str:
    """The SHA-256 of what is stored at ``key``, read once; SizeError if the size differs."""
    digest = hashlib.sha256()
    size = 0
    for piece in open_pieces(key):
        size += len(piece)
        digest.update(piece)
    if size != expected_size:
        raise SizeError(f"{size} bytes instead of {expected_size}")
    return digest.hexdigest()


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_pieces(stream: Readable, length: int) -> Iterator[bytes]:
    """Up to ``length`` bytes of ``stream``, a piece at a time."""
    left = length
    while left > 0:
        piece = stream.read(min(PIECE, left))
        if not piece:
            return
        left -= len(piece)
        yield piece
    # One byte more than declared is a lie about the length: read it so it is noticed.
    extra = stream.read(1)
    if extra:
        yield extra


def request_pieces(request: HttpRequest, length: int) -> Iterable[bytes]:
    """A PUT's body, ``length`` bytes, a piece at a time: as the ASGI app streams it to the
    view (config/asgi.py STREAMED_PUTS), or read from Django's request where it was not
    streamed (WSGI, the test client). Never parsed, never whole in memory."""
    streamed = getattr(request, "scope", {}).get(SCOPE_KEY)
    if streamed is not None:
        return cast("Iterable[bytes]", streamed)
    return read_pieces(request, length)


def open_pieces(key: str) -> Iterator[bytes]:
    with default_storage.open(key, "rb") as stored:
        while piece := stored.read(PIECE):
            yield piece


def delete(key: str) -> None:
    """Remove ``key``; a key that is not there is fine (both backends say nothing)."""
    default_storage.delete(key)


def local_path(key: str) -> Path | None:
    """The file behind ``key`` when storage is a local folder, else None."""
    try:
        return Path(default_storage.path(key))
    except NotImplementedError:  # S3 and other remote storages
        return None


def pwrite_pieces(path: Path, offset: int, pieces: Iterable[bytes], *, expected_size: int) -> str:
    """Write ``pieces`` into ``path`` at ``offset`` (the file is made if needed), hashing them
    on the way: one pass, no copy. Returns their SHA-256; SizeError if they do not add up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for piece in pieces:
            if size + len(piece) > expected_size:
                raise SizeError(f"more than the {expected_size} bytes expected")
            digest.update(piece)
            os.pwrite(fd, piece, offset + size)
            size += len(piece)
    finally:
        os.close(fd)
    if size != expected_size:
        raise SizeError(f"{size} bytes instead of {expected_size}")
    return digest.hexdigest()


def hash_file(path: Path, *, offset: int = 0, length: int | None = None) -> str:
    """The SHA-256 of ``length`` bytes of ``path`` from ``offset`` (all of it by default)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        stream.seek(offset)
        left = length
        while left is None or left > 0:
            piece = stream.read(PIECE if left is None else min(PIECE, left))
            if not piece:
                break
            digest.update(piece)
            if left is not None:
                left -= len(piece)
    return digest.hexdigest()
