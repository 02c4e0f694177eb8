"""Review of issue 20's host side (docs/reviews/issue20-host-side.md): read_volume and
restore_volume on real files (apps.runtimes.volumefiles, what the process runtime and
Docker's direct way share). Each test is a finding: it fails today (xfail, strict).
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
from functools import partial
from pathlib import Path

import pytest
from django.conf import settings
from docker.errors import NotFound

from apps.runtimes.base import RestoreFile
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.process import LocalProcessRuntime


@pytest.fixture
def runtime(tmp_path):
    return LocalProcessRuntime(tmp_path / "runtime")


def volume_folder(tmp_path, name):
    folder = tmp_path / "runtime" / "volumes" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def few_descriptors():
    """The open-file limit a host's agent commonly runs under (systemd's and many
    containers' soft default, 1024), lowered so that 256 descriptors are left free (on top
    of what this test process holds open already: a whole suite's run holds many) so the
    test stays small. Yields how many are free."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = sum(1 for _ in Path("/proc/self/fd").iterdir())
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(held + 256, hard), hard))
    yield 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_r1_a_restore_with_more_folders_than_open_files_allowed(runtime, tmp_path, few_descriptors):
    # 400 folders of one small file each: a git checkout's .git/objects alone has 256.
    files = [
        RestoreFile(f"pkg/mod{i:03}/__init__.py", 2, 0o644, partial(io.BytesIO, b"#\n"))
        for i in range(few_descriptors + 144)
    ]
    runtime.restore_volume("vol-many", files, labels={})
    found = {e.path for e in runtime.read_volume("vol-many") if e.file is not None}
    assert len(found) == len(files)


def deep_tree(top, depth):
    """``depth`` nested folders "d" under ``top`` (made by descriptor: a path that long is
    past PATH_MAX), a file "deep.txt" at the bottom."""
    handle = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=handle)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=handle)
            os.close(handle)
            handle = inner
        made = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=handle)
        os.write(made, b"bottom\n")
        os.close(made)
    finally:
        os.close(handle)


def names_in(folder):
    """The names in ``folder`` (a path or an open descriptor), sorted."""
    with os.scandir(folder) as found:
        return sorted(entry.name for entry in found)


def remove_deep(top):
    """Remove what deep_tree made (and anything a restore left beside it), without
    recursion: shutil.rmtree recurses once per level too."""
    chain = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while "d" in names_in(chain[-1]):
            chain.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=chain[-1]))
        while chain:
            handle = chain.pop()
            for name in names_in(handle):
                if name != "d":
                    os.unlink(name, dir_fd=handle)
            if chain:
                os.rmdir("d", dir_fd=chain[-1])
            os.close(handle)
    finally:
        for handle in chain:
            os.close(handle)


@pytest.fixture
def deep(tmp_path):
    top = volume_folder(tmp_path, "vol-deep")
    deep_tree(top, 1200)
    yield top
    remove_deep(top)


def test_r2_a_deep_folder_is_read(runtime, deep):
    (deep / "top.txt").write_bytes(b"top\n")
    paths = [e.path for e in runtime.read_volume("vol-deep") if e.file is not None]
    assert "top.txt" in paths
    assert any(p.endswith("/deep.txt") for p in paths)


def test_r2_a_restore_over_a_deep_folder(runtime, deep):
    runtime.restore_volume(
        "vol-deep", [RestoreFile("a.txt", 1, 0o644, partial(io.BytesIO, b"a"))], labels={}
    )
    assert names_in(deep) == ["a.txt"]


def test_r3_what_read_volume_gives_restore_volume_takes(runtime, tmp_path):
    top = volume_folder(tmp_path, "vol-a")
    (top / "ok.txt").write_bytes(b"ok\n")
    (top / "C:\\Users\\me\\notes.txt").write_bytes(b"from a Windows zip\n")
    # Each file read as the walk gives it (its handle closes when the walk moves on).
    files = [
        RestoreFile(e.path, e.size, e.mode, partial(io.BytesIO, e.file.read()))
        for e in runtime.read_volume("vol-a")
        if e.file is not None
    ]
    assert len(files) == 2
    runtime.restore_volume("vol-b", files, labels={})
    restored = volume_folder(tmp_path, "vol-b")
    assert names_in(restored) == names_in(top)


def test_r6_a_helper_restore_beside_a_stopped_container(docker_client, busybox_image):
    runtime = DockerRuntime(docker_client)
    runtime.direct_volumes = False
    runtime.helper_image = busybox_image
    name = f"lattice-test-rev20-{os.urandom(4).hex()}"
    labels = {"installation": settings.LATTICE_INSTALLATION}
    old = [RestoreFile("old.txt", 3, 0o644, partial(io.BytesIO, b"old"))]
    runtime.restore_volume(name, old, labels=labels)
    # The workload's container from before, stopped (start replaces it only after the
    # restore, apps.machines.agent.agent_start).
    stopped = docker_client.containers.create(
        busybox_image,
        ["true"],
        volumes={name: {"bind": "/workspace", "mode": "rw"}},
        labels={"lattice.managed": "true", "lattice.installation": settings.LATTICE_INSTALLATION},
    )
    try:
        new = [RestoreFile("new.txt", 3, 0o644, partial(io.BytesIO, b"new"))]
        runtime.restore_volume(name, new, labels=labels)
        found = {e.path for e in runtime.read_volume(name) if e.file is not None}
        assert found == {"new.txt"}
    finally:
        stopped.remove(force=True)
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(name).remove(force=True)


# Names a POSIX file system takes (os.fsdecode's: the bytes that are not UTF-8 as
# surrogates), as read_volume gives them and restore_volume takes them on either way of
# Docker's: at the Mountpoint and through the helper's tar (R3/R4).
POSIX_NAMES = [
    "notes\\draft.txt",
    "aux.py",
    "draft.",
    "line\nbreak.txt",
    "README.md",
    "readme.md",
    "cafe\u0301.txt",
    os.fsdecode(b"caf\xe9.txt"),
    os.fsdecode(b"\xff/inner\x80.bin"),
]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "helper"])
def test_docker_keeps_every_posix_name(docker_client, busybox_image, direct):
    runtime = DockerRuntime(docker_client)
    runtime.direct_volumes = direct
    runtime.helper_image = busybox_image
    name = f"lattice-test-rev20-{os.urandom(4).hex()}"
    labels = {"installation": settings.LATTICE_INSTALLATION}
    data = {path: f"{index}\n".encode() for index, path in enumerate(POSIX_NAMES)}
    try:
        runtime.restore_volume(
            name,
            [
                RestoreFile(p, len(d), 0o644, partial(io.BytesIO, d))
                for p, d in sorted(data.items())
            ],
            labels=labels,
        )
        found = {e.path: e.file.read() for e in runtime.read_volume(name) if e.file is not None}
        assert found == data
    finally:
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(name).remove(force=True)
