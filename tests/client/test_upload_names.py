"""A folder the server would refuse is refused before anything is hashed or made: a file name
that is not UTF-8 (or holds a control character) is named in one clear line, and an empty
folder makes no dataset (REVIEW18 R8)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from lattice.transfer import TransferError, list_files
from tests.client.cli_helpers import lattice as run_cli
from tests.client.sdk_fixtures import token_of

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.django_db(transaction=True)
def test_a_name_that_is_not_utf8_is_named_in_one_clear_line(
    asgi_live_server: str, alice: Any, acme: Any, media: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "latin1"
    folder.mkdir()
    (folder / "ok.csv").write_bytes(b"a,b\n")
    with open(os.fsencode(folder) + b"/caf\xe9.csv", "wb") as handle:  # noqa: PTH123
        handle.write(b"1,2\n")

    ran = run_cli(
        "datasets",
        "upload",
        "latin1",
        str(folder),
        url=asgi_live_server,
        token=token_of(alice),
        team="acme",
        config=tmp_path / "cfg" / "c",
    )

    assert ran.exit_code != 0
    assert "Error;" not in ran.stderr, ran.stderr  # not a bug's line
    assert "caf" in ran.stderr, ran.stderr  # the file it cannot send


def test_a_name_with_a_control_character_is_refused_before_hashing(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ok.csv").write_bytes(b"a")
    (folder / "bad\x07.csv").write_bytes(b"b")

    with pytest.raises(TransferError) as refused:
        list_files(folder)

    assert "U+0007" in str(refused.value)
    assert "bad\\x07.csv" in str(refused.value)


@pytest.mark.django_db(transaction=True)
def test_an_empty_folder_is_refused_and_makes_no_dataset(
    asgi_live_server: str, alice: Any, acme: Any, tmp_path: Path
) -> None:
    from apps.datasets.models import Dataset

    folder = tmp_path / "nothing"
    folder.mkdir()

    ran = run_cli(
        "datasets",
        "upload",
        "nothing",
        str(folder),
        url=asgi_live_server,
        token=token_of(alice),
        team="acme",
        config=tmp_path / "cfg" / "c",
    )

    assert ran.exit_code != 0
    assert "no files" in ran.stderr, ran.stderr
    assert not Dataset.objects.for_team(acme).exists()
