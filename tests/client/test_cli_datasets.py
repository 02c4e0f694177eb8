"""``lattice datasets upload|versions|download`` through the SDK against a real server: the
version made holds the folder, and a download writes the same files."""

from __future__ import annotations

import json

import pytest

from tests.client.cli_helpers import lattice
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024  # the server's chunk size in this module (tests.dataset_fixtures.media)


def test_upload_then_versions_then_download(asgi_live_server, alice, acme, media, tmp_path):
    _, token = make_token(alice)
    env = {
        "url": asgi_live_server,
        "token": token,
        "config": tmp_path / "cfg" / "c",
        "team": "acme",
    }
    folder = tmp_path / "cats"
    (folder / "pics").mkdir(parents=True)
    files = {"labels.csv": b"tom,cat\n", "pics/a.bin": bytes(range(256)) * 1000}
    for name, data in files.items():
        (folder / name).write_bytes(data)

    upload = lattice(
        "datasets", "upload", "cats", str(folder), "-m", "First", "--workers", "2", **env
    )

    assert upload.exit_code == 0, upload.stderr
    assert upload.stdout == ""
    assert "cats version 1 (ready): sent 250.0 KiB in 5 chunks." in upload.stderr

    versions = lattice("datasets", "versions", "cats", "--json", **env)

    assert versions.exit_code == 0, versions.stderr
    [version] = json.loads(versions.stdout)
    assert (version["number"], version["message"], version["file_count"]) == (1, "First", 2)

    dest = tmp_path / "out"
    download = lattice("datasets", "download", "cats", str(dest), **env)

    assert download.exit_code == 0, download.stderr
    assert {
        p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()
    } == files
