"""lattice datasets download into a folder that holds files already: a local file with other
bytes than the version's (a person's edits) is never replaced unasked: the download is refused,
naming it, and `--overwrite` replaces it; the same bytes are no conflict (review finding R10)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.client.cli_helpers import lattice as run_cli
from tests.client.sdk_fixtures import token_of

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.django_db(transaction=True)
def test_download_never_replaces_a_different_local_file_unasked(
    asgi_live_server: str, alice: Any, acme: Any, media: Any, tmp_path: Path
) -> None:
    env: dict[str, Any] = {
        "url": asgi_live_server,
        "token": token_of(alice),
        "team": "acme",
        "config": tmp_path / "cfg" / "c",
    }
    folder = tmp_path / "cats"
    folder.mkdir()
    (folder / "labels.csv").write_bytes(b"tom,cat\n")
    assert run_cli("datasets", "upload", "cats", str(folder), **env).exit_code == 0
    work = tmp_path / "work"
    work.mkdir()
    (work / "labels.csv").write_bytes(b"tom,cat\nfelix,cat\n")  # edited here, not uploaded

    ran = run_cli("datasets", "download", "cats", str(work), **env)

    # Refused (one line, non-zero), or asked: never the edits gone without a word.
    assert (work / "labels.csv").read_bytes() == b"tom,cat\nfelix,cat\n", ran.stderr
    assert ran.exit_code != 0
    assert "--overwrite" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr

    # Asked for, the version's bytes replace them; the same bytes again are no conflict.
    assert run_cli("datasets", "download", "cats", str(work), "--overwrite", **env).exit_code == 0
    assert (work / "labels.csv").read_bytes() == b"tom,cat\n"
    again = run_cli("datasets", "download", "cats", str(work), **env)
    assert again.exit_code == 0, again.stderr
