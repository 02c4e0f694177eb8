"""One chunk of an upload: where it is, how it is read, hashed and PUT."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from lattice.transfer.state import TransferError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from lattice.http import Transport

CHUNK_TIMEOUT = httpx.Timeout(300.0, connect=10.0)

# A chunk is read from its file and sent this much at a time.
SEND_PIECE = 1024 * 1024


@dataclass(frozen=True)
class Chunk:
    sha256: str
    index: int
    local: Path
    offset: int
    length: int


def put_chunk(
    transport: Transport, route: str, data: ChunkBody, checksum: str, *, direct: bool
) -> None:
    """One try at one chunk: to Lattice, or (``direct``) to the URL its target names."""
    if not direct:
        put_lattice(transport, route, data, checksum)
        return
    where = transport.json("POST", f"{route}target/", json={"sha256": checksum})
    if transport.owns(str(where.get("url", ""))):
        put_lattice(transport, str(where["url"]), data, checksum)
        return
    # A presigned URL of another host: sent without the token, with its headers.
    transport.external(
        where.get("method", "PUT"),
        where["url"],
        content=data,
        headers={**(where.get("headers") or {}), "Content-Length": str(data.length)},
        timeout=CHUNK_TIMEOUT,
    )


def put_lattice(transport: Transport, route: str, data: ChunkBody, checksum: str) -> None:
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
