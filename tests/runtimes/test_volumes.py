"""read_volume / restore_volume (issue 20's snapshots): a notebook volume's files, on real
Docker (both ways: at the volume's Mountpoint, as root beside the engine, and through a
helper container's archive) and on local processes (a folder).

The same round trip each way: files with their modes, nested folders, an empty file and an
empty volume; links in a volume are skipped when read and never followed (the file outside
stays as it was); a restore over a volume that holds files leaves only the restored ones;
a path with '..' is refused; everything restored in a container's volume belongs to uid and
gid 1000.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import uuid
from functools import partial
from pathlib import Path

import pytest
from django.conf import settings
from docker.errors import NotFound

from apps.runtimes.base import FolderError, RestoreFile, WorkloadError
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.fake import FakeRuntime
from apps.runtimes.process import LocalProcessRuntime

BIG = os.urandom(3 * 1024 * 1024 + 17)  # more than every buffer on the way
FILES = {
    "train.py": (b"print('hi')\n", 0o644),
    "run.sh": (b"#!/bin/sh\necho run\n", 0o755),
    "secret/key.txt": (b"k" * 40, 0o600),
    "data/deep/er/model.bin": (BIG, 0o644),
    "empty.txt": (b"", 0o644),
}


def restore_files(files):
    return [
        RestoreFile(path, len(data), mode, partial(io.BytesIO, data))
        for path, (data, mode) in files.items()
    ]


def read_back(runtime, name):
    """path -> (bytes, mode) of each file; path -> kind of each skipped entry; stamps."""
    found, skipped, stamps = {}, {}, {}
    for entry in runtime.read_volume(name):
        if entry.file is None:
            skipped[entry.path] = entry.skipped or f"same as {entry.same_as}"
            continue
        found[entry.path] = (entry.file.read(), entry.mode)
        stamps[entry.path] = entry.stamp
    return found, skipped, stamps


def restore(runtime, name, files):
    told: list[int] = []
    runtime.restore_volume(
        name,
        restore_files(files),
        labels={"installation": settings.LATTICE_INSTALLATION},
        progress=told.append,
    )
    return sum(told)


# --- Docker --------------------------------------------------------------------------------------


@pytest.fixture(params=["direct", "helper"])
def docker_volume(request, docker_client, busybox_image):
    if request.param == "direct" and os.geteuid() != 0:
        from tests.conftest import service_missing

        service_missing("reading a volume at its Mountpoint needs root beside the engine")
    runtime = DockerRuntime(docker_client)
    runtime.direct_volumes = request.param == "direct"
    runtime.helper_image = busybox_image
    name = f"lattice-test-vol-{uuid.uuid4().hex[:8]}"
    yield runtime, name, request.param
    with contextlib.suppress(NotFound):
        docker_client.volumes.get(name).remove(force=True)


def mountpoint(docker_client, name) -> Path:
    return Path(docker_client.volumes.get(name).attrs["Mountpoint"])


def test_docker_round_trip(docker_volume, docker_client):
    runtime, name, way = docker_volume
    told = restore(runtime, name, FILES)
    assert told == sum(len(data) for data, _ in FILES.values())
    volume = docker_client.volumes.get(name)
    assert volume.attrs["Labels"]["lattice.installation"] == settings.LATTICE_INSTALLATION
    found, skipped, stamps = read_back(runtime, name)
    assert found == FILES
    assert skipped == {}
    if way == "direct":
        assert all(stamps.values())  # stamps without reading: what the snapshot cache uses
    else:
        assert not any(stamps.values())  # an archive cannot tell: every file is read
    # Owned by the workload user, every file and folder, the volume's root too.
    root = mountpoint(docker_client, name)
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (1000, 1000), path
    assert stat.S_IMODE((root / "data" / "deep").lstat().st_mode) == 0o755


def test_docker_reads_and_restores_an_empty_volume(docker_volume):
    runtime, name, _ = docker_volume
    restore(runtime, name, {})
    assert read_back(runtime, name) == ({}, {}, {})


def test_docker_restore_over_a_volume_leaves_only_the_restored_files(docker_volume):
    runtime, name, _ = docker_volume
    restore(runtime, name, {"old/a.txt": (b"old", 0o644), "keep.txt": (b"before", 0o644)})
    restore(runtime, name, {"keep.txt": (b"after", 0o600), "new/b.txt": (b"new", 0o644)})
    found, _, _ = read_back(runtime, name)
    assert found == {"keep.txt": (b"after", 0o600), "new/b.txt": (b"new", 0o644)}


def test_docker_links_are_skipped_never_followed(docker_volume, docker_client, tmp_path):
    runtime, name, _ = docker_volume
    if os.geteuid() != 0:
        from tests.conftest import service_missing

        service_missing("planting links in a volume needs root beside the engine")
    restore(runtime, name, {"real.txt": (b"real", 0o644)})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"keep me")
    root = mountpoint(docker_client, name)
    (root / "to-file").symlink_to(outside / "precious.txt")
    (root / "to-folder").symlink_to(outside)
    found, skipped, _ = read_back(runtime, name)
    assert found == {"real.txt": (b"real", 0o644)}
    assert skipped == {"to-file": "link", "to-folder": "link"}
    # A restore empties the volume: the links go, what they point to stays.
    restore(runtime, name, {"a.txt": (b"a", 0o644)})
    assert read_back(runtime, name)[0] == {"a.txt": (b"a", 0o644)}
    assert (outside / "precious.txt").read_bytes() == b"keep me"
    assert not (root / "to-folder").exists()


def test_docker_refuses_a_path_out_of_the_volume(docker_volume, docker_client):
    runtime, name, _ = docker_volume
    for path in ("../escape.txt", "a/../../escape.txt", "/etc/evil"):
        with pytest.raises(WorkloadError):
            restore(runtime, name, {path: (b"x", 0o644)})
    parent = mountpoint(docker_client, name).parent
    assert not (parent / "escape.txt").exists()


def test_docker_refuses_a_stream_of_another_size(docker_volume):
    runtime, name, _ = docker_volume
    short = RestoreFile("a.bin", 10, 0o644, lambda: io.BytesIO(b"12345"))
    with pytest.raises(WorkloadError, match="size"):
        runtime.restore_volume(name, [short], labels={})


def test_docker_read_of_a_missing_volume(docker_volume):
    runtime, name, _ = docker_volume
    with pytest.raises(FolderError) as raised:
        list(runtime.read_volume(name))
    assert raised.value.code == "missing"


# --- Local processes -----------------------------------------------------------------------------


@pytest.fixture
def process_runtime(tmp_path):
    return LocalProcessRuntime(tmp_path / "runtime")


def test_process_round_trip(process_runtime):
    told = restore(process_runtime, "vol-a", FILES)
    assert told == sum(len(data) for data, _ in FILES.values())
    found, skipped, stamps = read_back(process_runtime, "vol-a")
    assert found == FILES
    assert skipped == {}
    assert all(stamps.values())


def test_process_stamp_changes_with_the_file(process_runtime, tmp_path):
    restore(process_runtime, "vol-a", {"a.txt": (b"one", 0o644)})
    before = read_back(process_runtime, "vol-a")[2]["a.txt"]
    (tmp_path / "runtime" / "volumes" / "vol-a" / "a.txt").write_bytes(b"two")
    assert read_back(process_runtime, "vol-a")[2]["a.txt"] != before


def test_process_empty_volume_and_restore_over_files(process_runtime):
    restore(process_runtime, "vol-b", {})
    assert read_back(process_runtime, "vol-b") == ({}, {}, {})
    restore(process_runtime, "vol-b", {"x/old.txt": (b"old", 0o644)})
    restore(process_runtime, "vol-b", {"new.txt": (b"new", 0o755)})
    assert read_back(process_runtime, "vol-b")[0] == {"new.txt": (b"new", 0o755)}


def test_process_links_are_skipped_never_followed(process_runtime, tmp_path):
    restore(process_runtime, "vol-c", {"real.txt": (b"real", 0o644)})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"keep me")
    root = tmp_path / "runtime" / "volumes" / "vol-c"
    (root / "to-file").symlink_to(outside / "precious.txt")
    (root / "to-folder").symlink_to(outside)
    os.mkfifo(root / "pipe")
    found, skipped, _ = read_back(process_runtime, "vol-c")
    assert found == {"real.txt": (b"real", 0o644)}
    assert skipped == {"to-file": "link", "to-folder": "link", "pipe": "fifo"}
    restore(process_runtime, "vol-c", {})
    assert list(root.iterdir()) == []
    assert (outside / "precious.txt").read_bytes() == b"keep me"


def test_process_refuses_a_path_out_of_the_volume(process_runtime, tmp_path):
    with pytest.raises(WorkloadError):
        restore(process_runtime, "vol-d", {"../../escape.txt": (b"x", 0o644)})
    assert not list(tmp_path.rglob("escape.txt"))


def test_process_read_of_a_missing_volume(process_runtime):
    with pytest.raises(FolderError):
        list(process_runtime.read_volume("never-made"))


def test_process_hash_of_what_is_read_matches(process_runtime):
    restore(process_runtime, "vol-e", {"big.bin": (BIG, 0o644)})
    data = read_back(process_runtime, "vol-e")[0]["big.bin"][0]
    assert hashlib.sha256(data).digest() == hashlib.sha256(BIG).digest()


# --- The fake ------------------------------------------------------------------------------------


def test_fake_round_trip_and_failure():
    FakeRuntime.reset()
    runtime = FakeRuntime()
    restore(runtime, "vol", FILES)
    assert read_back(runtime, "vol")[0] == FILES
    assert runtime.volume_exists("vol")
    FakeRuntime.restore_fails = "The disk is full."
    with pytest.raises(WorkloadError, match="disk is full"):
        restore(runtime, "vol", FILES)
    FakeRuntime.reset()
