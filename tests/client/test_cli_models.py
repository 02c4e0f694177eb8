"""``lattice models push|versions|alias set|alias rm`` through the SDK against a real server."""

from __future__ import annotations

import json

import pytest

from tests.client.cli_helpers import lattice
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024  # the server's chunk size in this module (tests.dataset_fixtures.media)


def test_push_then_alias(asgi_live_server, alice, acme, media, tmp_path):
    _, token = make_token(alice)
    env = {
        "url": asgi_live_server,
        "token": token,
        "config": tmp_path / "cfg" / "c",
        "team": "acme",
    }
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x01" * 1000)
    (folder / "config.json").write_text('{"layers": 2}')

    pushed = lattice(
        "models", "push", "resnet", str(folder), "-m", "First", "--alias", "staging", **env
    )

    assert pushed.exit_code == 0, pushed.stderr
    assert "resnet version 1 (ready, alias staging)" in pushed.stderr

    made = lattice("models", "alias", "set", "resnet", "production", "1", **env)
    versions = lattice("models", "versions", "resnet", **env)

    assert made.exit_code == 0, made.stderr
    assert versions.exit_code == 0, versions.stderr
    header, row = versions.stdout.splitlines()[:2]
    assert header.split()[:3] == ["VERSION", "STATUS", "ALIASES"]
    assert row.split()[:2] == ["1", "ready"]
    assert "production" in row
    assert "staging" in row

    removed = lattice("models", "alias", "rm", "resnet", "staging", **env)
    listed = lattice("models", "versions", "resnet", "--json", **env)

    assert removed.exit_code == 0, removed.stderr
    assert sorted(json.loads(listed.stdout)[0]["aliases"]) == ["production"]
