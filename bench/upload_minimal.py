"""bench/upload's minimal server: the least an HTTP server can do with an upload's chunks.

An ASGI app (served by uvicorn with the production command line, bench/start_latency.py
WEB_COMMAND) that takes the same chunk PUTs as Lattice's upload API, at the same paths
(``.../blobs/<sha256>/chunks/<index>/``), and does with each body what Lattice's local
storage does, nothing more: write it, as it arrives, into ``<sha256>.part`` at the chunk's
offset (``index x UPLOAD_MINIMAL_CHUNK_BYTES``) under UPLOAD_MINIMAL_DIR, hash it on the
way, and answer 204 if the SHA-256 is X-Chunk-SHA256's (else 400). No database, no
authentication, no framework. Like Lattice (apps/core/streamed_body.py) it hashes and
writes off the event loop, in batches of about PIECE bytes, one batch at a time per request
while the next is received (hashlib and pwrite release the GIL, so 4 requests use both
cores; all on the loop, one request's hashing would stall the others' sockets). Any other
request: 204 (the bench's warm-up). What Lattice costs above this is its protocol's and
its framework's cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path
from typing import Any

FOLDER = Path(os.environ.get("UPLOAD_MINIMAL_DIR", "/var/tmp/upload-minimal"))  # noqa: S108
CHUNK = int(os.environ.get("UPLOAD_MINIMAL_CHUNK_BYTES", str(32 * 1024**2)))
CHUNK_PATH = re.compile(r"/blobs/([0-9a-f]{64})/chunks/(\d+)/$")
PIECE = 256 * 1024  # as apps/core/streamed_body.py batches a body


def write(fd: int, digest: Any, batch: list[bytes], offset: int) -> None:
    for body in batch:
        digest.update(body)
        os.pwrite(fd, body, offset)
        offset += len(body)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    found = CHUNK_PATH.search(scope["path"]) if scope["method"] == "PUT" else None
    status = 204
    if found:
        sha256, index = found.group(1), int(found.group(2))
        headers = dict(scope["headers"])
        digest = hashlib.sha256()
        FOLDER.mkdir(parents=True, exist_ok=True)
        fd = os.open(FOLDER / f"{sha256}.part", os.O_WRONLY | os.O_CREAT, 0o600)
        offset = index * CHUNK
        batch: list[bytes] = []
        size = 0
        pending: asyncio.Future[None] | None = None
        try:
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                batch.append(body)
                size += len(body)
                more = message.get("more_body", False)
                if size >= PIECE or not more:
                    if pending:
                        await pending
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(write, fd, digest, batch, offset)
                    )
                    offset += size
                    batch, size = [], 0
            if pending:
                await pending
        finally:
            if pending and not pending.done():
                await asyncio.wait([pending])
            os.close(fd)
        if digest.hexdigest() != headers.get(b"x-chunk-sha256", b"").decode():
            status = 400
    else:
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})
