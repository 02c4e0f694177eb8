"""The manifest the SDK builds from a folder: paths, sizes, SHA-256s; links and special files
said out loud, never skipped; hashes cached by (path, size, mtime, inode)."""

from __future__ import annotations

import hashlib
import os
import socket
from typing import TYPE_CHECKING

import pytest

from lattice.transfer import TransferError, build_manifest, check_workers, manifest_digest

if TYPE_CHECKING:
    from pathlib import Path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_it_lists_every_file_with_posix_paths_sizes_and_hashes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "deep.txt").write_bytes(b"deep")
    (root / "top.txt").write_bytes(b"top")
    (root / "empty").write_bytes(b"")

    files = build_manifest(root, cache_dir=tmp_path / "state")

    assert [f.api() for f in files] == [
        {"path": "a/b/deep.txt", "size": 4, "sha256": _sha(b"deep")},
        {"path": "empty", "size": 0, "sha256": _sha(b"")},
        {"path": "top.txt", "size": 3, "sha256": _sha(b"top")},
    ]


def test_one_file_is_a_manifest_of_its_name(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")

    [entry] = build_manifest(tmp_path / "model.pt", cache_dir=tmp_path / "state")

    assert (entry.path, entry.size) == ("model.pt", 7)


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    (root / "real" / "x.bin").write_bytes(b"x")
    (root / "alias.bin").symlink_to(root / "real" / "x.bin")
    (root / "linked-folder").symlink_to("real")

    paths = [f.path for f in build_manifest(root, cache_dir=tmp_path / "state")]

    assert paths == ["alias.bin", "linked-folder/x.bin", "real/x.bin"]


def test_a_link_leaving_the_folder_is_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "secret").write_bytes(b"not yours")
    (root / "leak").symlink_to(tmp_path / "secret")

    with pytest.raises(TransferError, match=r"leak: a link to .*outside") as refused:
        build_manifest(root, cache_dir=tmp_path / "state")
    assert refused.value.code == "link_outside"


def test_a_broken_link_and_a_loop_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "gone").symlink_to(root / "nothing")
    with pytest.raises(TransferError, match="broken link"):
        build_manifest(root, cache_dir=tmp_path / "state")
    (root / "gone").unlink()
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(root)
    with pytest.raises(TransferError, match="link loop"):
        build_manifest(root, cache_dir=tmp_path / "state")


def test_special_files_are_refused_not_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(TransferError, match="pipe: a special file") as refused:
        build_manifest(root, cache_dir=tmp_path / "state")
    assert refused.value.code == "special_file"
    (root / "pipe").unlink()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(root / "sock"))
        with pytest.raises(TransferError, match="sock: a special file"):
            build_manifest(root, cache_dir=tmp_path / "state")


def test_a_file_already_hashed_is_not_read_again(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    path = root / "big.bin"
    path.write_bytes(b"A" * 1000)
    first = build_manifest(root, cache_dir=tmp_path / "state")
    stamp = path.stat()
    # Other bytes, the same size, inode and mtime: only a cache hit keeps the old hash.
    with path.open("r+b") as stream:
        stream.write(b"B" * 1000)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))

    again = build_manifest(root, cache_dir=tmp_path / "state")
    path.touch()  # a new mtime: hashed again
    fresh = build_manifest(root, cache_dir=tmp_path / "state")

    assert again[0].sha256 == first[0].sha256 == _sha(b"A" * 1000)
    assert fresh[0].sha256 == _sha(b"B" * 1000)
    assert manifest_digest(fresh) != manifest_digest(first)


@pytest.mark.parametrize("workers", [0, -1, 65, True, 2.5])
def test_a_number_of_workers_that_cannot_work_is_refused_in_words(workers: object) -> None:
    with pytest.raises(TransferError, match="workers must be a whole number from 1 to 64"):
        check_workers(workers)  # type: ignore[arg-type]
