"""Uploading a folder with the SDK against a real server: the version holds exactly the
folder's files, and a second upload with one file changed sends only that file's chunks."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from lattice.errors import Conflict
from tests.client.transfer_fixtures import (
    ChunkPuts,
    Server,
    chunk_puts,
    client,
    server,
    write_random,
)

if TYPE_CHECKING:
    from pathlib import Path

    import lattice
    from lattice.types import TransferProgress

__all__ = ["chunk_puts", "client", "server"]

pytestmark = pytest.mark.django_db(transaction=True)

KIB = 1024
CHUNK = 64 * KIB  # the server's chunk size in this module (tests.dataset_fixtures.media)


def _folder(root: Path) -> dict[str, bytes]:
    files = {
        "a.bin": write_random(root / "a.bin", 200 * KIB, 1),  # 4 chunks
        "nested/deeper/b.bin": write_random(root / "nested/deeper/b.bin", 70 * KIB, 2),
        "nested/c.txt": write_random(root / "nested/c.txt", 10, 3),
        "empty.txt": b"",
    }
    (root / "empty.txt").write_bytes(b"")
    return files


def _server_files(server: Server, number: int) -> dict[str, tuple[int, str]]:
    from apps.datasets.models import VersionFile

    rows = VersionFile.objects.for_team(server.team).filter(
        version__dataset__slug="photos", version__number=number
    )
    return {row.path: (row.size, row.blob.sha256) for row in rows.select_related("blob")}


def _chunk_rows(server: Server, upload_id: int) -> int:
    from apps.datasets.models import UploadChunk

    return UploadChunk.objects.for_team(server.team).filter(blob__upload_id=upload_id).count()


def test_a_folder_becomes_a_version_with_exactly_its_files(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    files = _folder(tmp_path / "photos")
    seen: list[TransferProgress] = []

    version = client.datasets.upload(
        "photos", tmp_path / "photos", message="first", progress=seen.append
    )

    assert (version.number, version.status, version.message) == (1, "ready", "first")
    assert _server_files(server, 1) == {
        path: (len(data), hashlib.sha256(data).hexdigest()) for path, data in files.items()
    }
    phases = [p.phase for p in seen]
    assert phases[0] == "hashing"
    assert phases[-2:] == ["completing", "done"]
    assert "sending" in phases
    last_sending = [p for p in seen if p.phase == "sending"][-1]
    # 200 KiB: 4 chunks, 70 KiB: 2, 10 bytes: 1, the empty file none.
    assert (last_sending.chunks_total, last_sending.chunks_sent, last_sending.chunks_skipped) == (
        7,
        7,
        0,
    )
    assert len(chunk_puts.calls) == 7
    assert not list((server.state / "lattice" / "uploads").glob("*.json"))  # forgotten once done


def test_a_second_upload_sends_only_the_changed_files_chunks(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    _folder(root)
    client.datasets.upload("photos", root)
    changed = write_random(root / "nested/deeper/b.bin", 70 * KIB, 99)
    chunk_puts.reset()
    seen: list[TransferProgress] = []

    version = client.datasets.upload("photos", root, progress=seen.append)

    assert version.number == 2
    new_sha = hashlib.sha256(changed).hexdigest()
    assert sorted(chunk_puts.calls) == [(new_sha, 0), (new_sha, 1)]
    last_sending = [p for p in seen if p.phase == "sending"][-1]
    assert (last_sending.chunks_sent, last_sending.chunks_skipped) == (2, 5)
    assert last_sending.skipped_bytes == 200 * KIB + 10
    assert last_sending.sent_bytes == 70 * KIB
    assert _chunk_rows(server, int(last_sending.upload_id or 0)) == 2
    assert _server_files(server, 2)["nested/deeper/b.bin"] == (70 * KIB, new_sha)


def test_the_same_files_again_are_refused_unless_allowed(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    _folder(root)
    client.datasets.upload("photos", root)
    chunk_puts.reset()

    with pytest.raises(Conflict) as refused:
        client.datasets.upload("photos", root)

    assert refused.value.code == "identical_version"
    assert "identical to v1" in refused.value.message
    assert chunk_puts.calls == []
    version = client.datasets.upload("photos", root, allow_identical=True)
    assert version.number == 2
    assert [v.number for v in client.datasets.versions("photos")] == [1, 2]
