"""An upload interrupted in this process: Ctrl-C leaves it resumable; a chunk the server
refuses for a while (429, with Retry-After) is sent again after waiting; one it keeps
refusing stops the upload with one clear error, and the same call later goes on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from rest_framework import exceptions

from lattice import transfer
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
CHUNK = 64 * KIB
CHUNKS = 12  # of the folder below


def _folder(root: Path) -> Path:
    write_random(root / "one.bin", 8 * CHUNK, 1)
    write_random(root / "two.bin", 4 * CHUNK - 5, 2)
    return root


def _held(server: Server) -> set[tuple[str, int]]:
    from apps.datasets.models import UploadChunk

    return set(UploadChunk.objects.for_team(server.team).values_list("blob__sha256", "index"))


def _settled(server: Server) -> set[tuple[str, int]]:
    """What the server holds once the interrupted run's last chunks have landed."""
    before: set[tuple[str, int]] = {("", -1)}
    while (now := _held(server)) != before:
        before = now
        time.sleep(0.5)
    return now


def _state_files(server: Server) -> list[Path]:
    return sorted((server.state / "lattice" / "uploads").glob("*.json"))


def test_ctrl_c_leaves_the_upload_to_resume(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "data")

    def interrupt(report: TransferProgress) -> None:
        if report.phase == "sending" and report.chunks_sent >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.datasets.upload("data", folder, workers=1, progress=interrupt)

    held = _settled(server)
    assert 1 <= len(held) < CHUNKS
    assert len(_state_files(server)) == 1
    chunk_puts.reset()

    version = client.datasets.upload("data", folder)

    assert version.number == 1
    assert set(chunk_puts.calls).isdisjoint(held)
    assert len(chunk_puts.calls) == CHUNKS - len(held)
    assert _state_files(server) == []


def test_a_throttled_chunk_is_sent_again_after_retry_after(
    client: lattice.Client,
    server: Server,
    chunk_puts: ChunkPuts,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from apps.datasets.api import views

    counted = views.chunk_receive
    refused: list[float] = []
    accepted: list[float] = []

    def throttled_once(**kwargs: Any) -> Any:
        if not refused:
            refused.append(time.monotonic())
            raise exceptions.Throttled(wait=1)
        accepted.append(time.monotonic())
        return counted(**kwargs)

    monkeypatch.setattr(views, "chunk_receive", throttled_once)

    version = client.datasets.upload("data", _folder(tmp_path / "data"), workers=1)

    assert version.number == 1
    assert len(refused) == 1
    # Every chunk reached the chunk service once, after the one refusal in front of it.
    assert len(chunk_puts.calls) == len(set(chunk_puts.calls)) == CHUNKS
    # The next try waited out the server's Retry-After (the backoff alone is under 0.8 s).
    assert accepted[0] - refused[0] >= 0.95


def test_a_chunk_refused_every_time_stops_the_upload_resumably(
    client: lattice.Client,
    server: Server,
    chunk_puts: ChunkPuts,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from apps.datasets.api import views

    folder = _folder(tmp_path / "data")
    counted = views.chunk_receive

    def unavailable(**kwargs: Any) -> Any:
        raise exceptions.Throttled(wait=0)

    monkeypatch.setattr(views, "chunk_receive", unavailable)
    monkeypatch.setattr(transfer.upload, "BACKOFF_SECONDS", 0.01)

    with pytest.raises(transfer.TransferError, match="failed 6 times") as stopped:
        client.datasets.upload("data", folder, workers=1)

    assert "run the same upload again" in str(stopped.value)
    assert stopped.value.status == 429
    assert len(_state_files(server)) == 1
    monkeypatch.setattr(views, "chunk_receive", counted)
    assert client.datasets.upload("data", folder).number == 1
    assert _state_files(server) == []


def test_a_model_push_interrupted_resumes_at_its_own_upload(
    client: lattice.Client, server: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "model")

    def interrupt(report: TransferProgress) -> None:
        if report.phase == "sending" and report.chunks_sent >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.models.push("ranker", folder, workers=1, progress=interrupt)
    held = _settled(server)
    chunk_puts.reset()
    seen: list[TransferProgress] = []

    version = client.models.push("ranker", folder, alias="staging", progress=seen.append)

    assert (version.number, version.status) == (1, "ready")
    assert "staging" in version.raw["aliases"]
    assert set(chunk_puts.calls).isdisjoint(held)
    assert len(chunk_puts.calls) == CHUNKS - len(held)
    assert [p for p in seen if p.phase == "sending"][-1].chunks_skipped == len(held)
    assert _state_files(server) == []


def test_a_chunk_the_server_fails_on_is_sent_again(
    client: lattice.Client,
    server: Server,
    chunk_puts: ChunkPuts,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from apps.datasets.api import views

    counted = views.chunk_receive
    failed: list[tuple[str, int]] = []

    def fails_once(**kwargs: Any) -> Any:
        if not failed:
            failed.append((kwargs["sha256"], kwargs["index"]))
            raise RuntimeError("storage hiccup")  # a 500
        return counted(**kwargs)

    monkeypatch.setattr(views, "chunk_receive", fails_once)

    version = client.datasets.upload("data", _folder(tmp_path / "data"), workers=2)

    assert version.number == 1
    assert failed[0] in chunk_puts.calls  # sent again, and kept this time
    assert len(set(chunk_puts.calls)) == CHUNKS
