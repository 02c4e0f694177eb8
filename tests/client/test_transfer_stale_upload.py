"""A rerun on files changed since an interrupted upload starts a fresh upload and abandons
the old one on the server (DELETE): it is marked abandoned and the chunks it received go at
once, instead of waiting a week for the housekeeping; no state file is left behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

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


def test_the_upload_of_files_since_changed_is_abandoned(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    from apps.datasets import storage
    from apps.datasets.models import Upload, UploadChunk
    from apps.datasets.services.received import part_key

    def received(upload: Upload) -> list[Path]:
        """The part files on disk holding what ``upload`` received."""
        sent = UploadChunk.objects.for_team(server.team).filter(blob__upload=upload)
        shas = set(sent.values_list("blob__sha256", flat=True))
        paths = [storage.local_path(part_key(upload.pk, sha)) for sha in shas]
        return [path for path in paths if path is not None and path.exists()]

    folder = tmp_path / "data"
    write_random(folder / "one.bin", 8 * CHUNK, 1)
    write_random(folder / "two.bin", 4 * CHUNK, 2)

    def interrupt(report: TransferProgress) -> None:
        if report.phase == "sending" and report.chunks_sent >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.datasets.upload("data", folder, workers=1, progress=interrupt)
    [old] = Upload.objects.for_team(server.team).filter(status=Upload.Status.OPEN)
    assert received(old)

    write_random(folder / "two.bin", 4 * CHUNK, 3)  # changed: a different manifest
    version = client.datasets.upload("data", folder)

    old.refresh_from_db()
    assert old.status == Upload.Status.ABANDONED
    assert UploadChunk.objects.for_team(server.team).filter(blob__upload=old).exists()
    assert received(old) == []  # the rows stay (the record); the bytes are gone
    made = Upload.objects.for_team(server.team).get(status=Upload.Status.COMPLETE)
    assert made.pk != old.pk
    assert version.number == 1
    assert list((server.state / "lattice" / "uploads").glob("*.json")) == []
