"""An upload to a Lattice whose blobs are on S3 (moto): the SDK asks each chunk's target and
PUTs the bytes straight to the presigned URL with the headers given; Lattice's own chunk
route receives none, and the version downloads byte for byte."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import lattice
from tests.blob_fixtures import s3_default_storage
from tests.client.transfer_fixtures import (
    MIB,
    ChunkPuts,
    Server,
    chunk_puts,
    lattice_server,
    tree,
    write_big,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from apps.accounts.models import User
    from apps.teams.models import Team
    from lattice.types import TransferProgress

__all__ = ["chunk_puts"]

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 5 * MIB  # S3's smallest part but the last


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """Moto's S3 as it is (tests.datasets.test_s3: the checked fake S3 signs only paths)."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()


@pytest.fixture
def s3_lattice(
    asgi_live_server: str,
    acme: Team,
    alice: User,
    moto_url: str,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Server:
    settings.LATTICE_UPLOAD_CHUNK_BYTES = CHUNK
    s3_default_storage(settings, moto_url, access_key="test", secret_key="test")
    return lattice_server(asgi_live_server, acme, alice, tmp_path, monkeypatch)


def test_chunks_go_straight_to_s3_and_the_version_comes_back(
    s3_lattice: Server, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    write_big(folder / "big.bin", 2 * CHUNK + 1000, 1)
    write_big(folder / "small.bin", 100, 2)
    seen: list[TransferProgress] = []

    with lattice.Client(url=s3_lattice.url, token=s3_lattice.token, team="acme") as client:
        version = client.datasets.upload("on-s3", folder, progress=seen.append)
        back = client.datasets.download("on-s3", tmp_path / "back")

    assert version.number == 1
    assert chunk_puts.calls == []  # none through Lattice
    assert [p for p in seen if p.phase == "sending"][-1].chunks_sent == 4
    assert tree(back) == tree(folder)
