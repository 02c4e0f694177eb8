"""Downloads with the SDK against a real server: a dataset version and a model version (by
alias) come back byte for byte, and nothing is left under a temporary name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.client.transfer_fixtures import client, server, tree, write_random

if TYPE_CHECKING:
    from pathlib import Path

    import lattice

__all__ = ["client", "server"]

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024


def _folder(root: Path) -> dict[str, bytes]:
    write_random(root / "weights.bin", 300 * 1024, 1)
    write_random(root / "config/params.json", 1000, 2)
    (root / "empty").write_bytes(b"")
    return tree(root)


def test_a_dataset_version_downloads_byte_identical(client: lattice.Client, tmp_path: Path) -> None:
    source = _folder(tmp_path / "up")
    client.datasets.upload("corpus", tmp_path / "up")
    write_random(tmp_path / "up" / "weights.bin", 10, 3)
    client.datasets.upload("corpus", tmp_path / "up")

    first = client.datasets.download("corpus", tmp_path / "v1", version=1)
    latest = client.datasets.download("corpus", tmp_path / "latest")

    assert tree(first) == source
    assert tree(latest) == tree(tmp_path / "up")
    assert not [p for p in (tmp_path / "v1").rglob("*") if p.name.endswith(".lattice-part")]


def test_a_model_pushed_with_an_alias_downloads_by_it(
    client: lattice.Client, tmp_path: Path
) -> None:
    source = _folder(tmp_path / "model")

    pushed = client.models.push("ranker", tmp_path / "model", message="v1", alias="production")
    assert pushed.number == 1
    assert client.models.get("ranker").raw["aliases"] == {"production": 1}
    write_random(tmp_path / "model" / "weights.bin", 1234, 4)
    second = client.models.push("ranker", tmp_path / "model")
    assert second.number == 2
    assert [v.number for v in client.models.versions("ranker")] == [2, 1]

    by_alias = client.models.download("ranker", tmp_path / "prod", version="production")
    latest = client.models.download("ranker", tmp_path / "latest")

    assert tree(by_alias) == source
    assert tree(latest) == tree(tmp_path / "model")
    client.models.delete_alias("ranker", "production")
    assert client.models.get("ranker").raw["aliases"] == {}
    again = client.models.push("ranker", tmp_path / "model")  # the same files: that version
    assert again.number == 2
