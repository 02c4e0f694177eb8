"""The SDK's archive extractor: regular files only, nothing outside the destination, and
a file is under its real name only once it is whole and its SHA-256 matches."""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import TYPE_CHECKING

import pytest

from lattice.transfer import SafeExtractor, TransferError

if TYPE_CHECKING:
    from pathlib import Path


def _tar(*members: tuple[str, bytes | None, bytes]) -> io.BytesIO:
    """A tar of (name, type, data) members: type None for a regular file."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind is None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                info.type = kind
                info.linkname = data.decode()
                archive.addfile(info)
    out.seek(0)
    return out


def _everything(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_it_writes_the_files_under_the_archives_folder(tmp_path: Path) -> None:
    archive = _tar(("set-v1/a.txt", None, b"a"), ("set-v1/d/b.txt", None, b"bb"))

    SafeExtractor(tmp_path / "out").extract(archive)

    assert (tmp_path / "out" / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "out" / "d" / "b.txt").read_bytes() == b"bb"


@pytest.mark.parametrize(
    "name",
    [
        "set-v1/../../escaped.txt",
        "/etc/escaped.txt",
        "set-v1/./x",
        "../escaped.txt",
        "set-v1\\..\\x",
    ],
)
def test_a_path_leaving_the_destination_is_refused(tmp_path: Path, name: str) -> None:
    archive = _tar((name, None, b"evil"))

    with pytest.raises(TransferError, match="unsafe path") as refused:
        SafeExtractor(tmp_path / "out").extract(archive)

    assert refused.value.code == "unsafe_archive"
    assert _everything(tmp_path) == ["out"]


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE])
def test_links_and_special_members_are_refused(tmp_path: Path, kind: bytes) -> None:
    archive = _tar(("set-v1/link", kind, b"/etc/passwd"))

    with pytest.raises(TransferError, match="not a regular file"):
        SafeExtractor(tmp_path / "out").extract(archive)

    assert _everything(tmp_path) == ["out"]


def test_a_member_outside_the_archives_one_folder_is_refused(tmp_path: Path) -> None:
    archive = _tar(("set-v1/a.txt", None, b"a"), ("other/b.txt", None, b"b"))

    with pytest.raises(TransferError, match="outside its folder"):
        SafeExtractor(tmp_path / "out").extract(archive)


def test_a_folder_that_is_a_link_out_of_the_destination_is_not_written_through(
    tmp_path: Path,
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "d").symlink_to(tmp_path / "elsewhere")
    archive = _tar(("set-v1/d/x.txt", None, b"x"))

    with pytest.raises(TransferError, match="leads outside"):
        SafeExtractor(tmp_path / "out").extract(archive)

    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_bytes_that_do_not_match_leave_no_file_under_its_name(tmp_path: Path) -> None:
    expected = {"a.txt": (4, hashlib.sha256(b"good").hexdigest())}
    archive = _tar(("set-v1/a.txt", None, b"evil"))

    with pytest.raises(TransferError, match="do not match") as refused:
        SafeExtractor(tmp_path / "out", expected=expected).extract(archive)

    assert refused.value.code == "damaged_download"
    assert _everything(tmp_path / "out") == []


def test_an_interrupted_stream_leaves_no_half_file(tmp_path: Path) -> None:
    whole = _tar(("set-v1/done.txt", None, b"d" * 10), ("set-v1/big.bin", None, b"x" * 100_000))
    cut = io.BytesIO(whole.getvalue()[:60_000])  # ends inside big.bin

    with pytest.raises(tarfile.ReadError):
        SafeExtractor(tmp_path / "out").extract(cut)

    assert _everything(tmp_path / "out") == ["done.txt"]
