"""A client killed mid-upload resumes: the rerun sends only what the server lacks.

The killed client is a process of its own (a few lines of SDK, SIGKILLed once the server
holds enough of its chunks); the rerun is this process's SDK. Chunk PUTs are counted on the
server (its chunk service wrapped: tests.client.transfer_fixtures.chunk_puts), and what it
held before the rerun is read from its UploadChunk rows: no chunk among those may be PUT
again. A file changed between the runs makes a different manifest, so a fresh upload (not
the old one completed with the new bytes)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.client.transfer_fixtures import (
    MIB,
    ChunkPuts,
    Server,
    chunk_puts,
    client,
    server,
    write_big,
    write_random,
)
from tests.helpers import wait_for

if TYPE_CHECKING:
    from pathlib import Path

    import lattice
    from lattice.types import TransferProgress

__all__ = ["chunk_puts", "client", "server"]

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 1 * MIB  # the server's chunk size here (tests.dataset_fixtures.media)
KILL_AFTER = 40  # chunks the server holds when the first client is killed

UPLOADER = """
import sys, lattice
client = lattice.Client(url=sys.argv[1], team="acme")
client.datasets.upload("big", sys.argv[2], workers=3)
"""


def _held(server: Server) -> set[tuple[str, int]]:
    from apps.datasets.models import UploadChunk

    rows = UploadChunk.objects.for_team(server.team).values_list("blob__sha256", "index")
    return set(rows)


def _killed_midway(server: Server, folder: Path) -> set[tuple[str, int]]:
    """Run an uploading process, SIGKILL it once the server holds KILL_AFTER chunks; the
    chunks the server holds once it has settled."""
    env = {**os.environ, "LATTICE_TOKEN": server.token}
    process = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, server.url, str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for(lambda: len(_held(server)) >= KILL_AFTER, timeout=120), (
            "the first client never got going"
        )
        assert process.poll() is None, "the first client finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # A chunk the server was reading when the client died fails and is not kept: settle.
    before: set[tuple[str, int]] = set()
    while (now := _held(server)) != before:
        before = now
        time.sleep(0.5)
    return now


def _state_files(server: Server) -> list[Path]:
    return sorted((server.state / "lattice" / "uploads").glob("*.json"))


def test_a_killed_upload_resumes_without_resending_what_the_server_holds(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    write_big(folder / "part-1.bin", 70 * MIB, 1)
    write_big(folder / "shards/part-2.bin", 50 * MIB + 123, 2)
    write_random(folder / "README", 2000, 3)
    total_chunks = 70 + 51 + 1

    held = _killed_midway(server, folder)
    assert KILL_AFTER <= len(held) < total_chunks
    [state] = _state_files(server)
    upload_id = json.loads(state.read_text())["upload_id"]
    assert oct(state.stat().st_mode & 0o777) == "0o600"

    chunk_puts.reset()
    seen: list[TransferProgress] = []
    started = time.monotonic()
    version = client.datasets.upload("big", folder, workers=4, progress=seen.append)
    elapsed = time.monotonic() - started

    resent = set(chunk_puts.calls) & held
    assert resent == set(), f"{len(resent)} chunks the server held were PUT again"
    assert len(chunk_puts.calls) == total_chunks - len(held)
    sending = [p for p in seen if p.phase == "sending"]
    assert {p.upload_id for p in sending} == {upload_id}  # the same upload, resumed
    assert (sending[-1].chunks_skipped, sending[-1].chunks_sent) == (
        len(held),
        total_chunks - len(held),
    )
    assert version.number == 1
    assert version.raw["file_count"] == 3
    assert _state_files(server) == []
    sent_mib = sending[-1].sent_bytes / MIB
    logging.getLogger(__name__).warning(
        "resumed: %.0f MiB in %.1fs, %.1f MiB/s", sent_mib, elapsed, sent_mib / elapsed
    )


def test_a_file_changed_between_runs_makes_a_fresh_upload(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    write_big(folder / "part-1.bin", 60 * MIB, 1)
    write_big(folder / "part-2.bin", 40 * MIB, 2)
    _killed_midway(server, folder)
    [state] = _state_files(server)
    first_upload = json.loads(state.read_text())["upload_id"]

    damaged = bytearray((folder / "part-2.bin").read_bytes())
    damaged[5 * MIB] ^= 0xFF
    (folder / "part-2.bin").write_bytes(bytes(damaged))
    seen: list[TransferProgress] = []
    version = client.datasets.upload("big", folder, progress=seen.append)

    assert {p.upload_id for p in seen if p.phase == "sending"} != {first_upload}
    from apps.datasets.models import VersionFile

    stored = VersionFile.objects.for_team(server.team).get(
        version__dataset__slug="big", version__number=version.number, path="part-2.bin"
    )
    assert stored.blob.sha256 == hashlib.sha256(damaged).hexdigest()
    assert _state_files(server) == []
