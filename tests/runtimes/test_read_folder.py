"""read_folder: a running notebook's folder, streamed, on real Docker and local processes.

Both runtimes read the same tree: two files (one larger than every buffer on the way), a
hard link to one of them, a link out of the folder, a fifo and a folder reached through a
link. The files come back with their bytes; the rest is listed as skipped, never followed;
paths that leave the notebook folder are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tarfile
import time
import tracemalloc
import uuid
from types import SimpleNamespace

import pytest
from docker.errors import NotFound

from apps.runtimes.base import FolderError, Spec, folder_path
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.fake import FakeRuntime
from apps.runtimes.process import LocalProcessRuntime

BIG = os.urandom(3 * 1024 * 1024 + 17)  # more than Docker's 2 MB chunks and our 1 MiB buffer
SMALL = b"weights: 0.5\n"


def read_all(runtime, state, folder):
    """path -> (size, sha256) of each file, path -> kind of each skipped entry."""
    files: dict[str, tuple[int, str]] = {}
    skipped: dict[str, str] = {}
    for entry in runtime.read_folder(state, folder):
        if entry.same_as:  # a hard link to a file given before: the same bytes
            files[entry.path] = files[entry.same_as]
            continue
        if entry.file is None:
            skipped[entry.path] = entry.skipped
            continue
        digest = hashlib.sha256()
        while block := entry.file.read(1024 * 1024):
            digest.update(block)
        files[entry.path] = (entry.size, digest.hexdigest())
    return files, skipped


def expected():
    return {
        "model.bin": (len(BIG), hashlib.sha256(BIG).hexdigest()),
        "hard.bin": (len(BIG), hashlib.sha256(BIG).hexdigest()),
        "sub/config.yaml": (len(SMALL), hashlib.sha256(SMALL).hexdigest()),
    }


def assert_reads_the_tree(runtime, state):
    files, skipped = read_all(runtime, state, "models/run1")
    assert files == expected()
    assert skipped == {"escape": "link", "pipe": "fifo"}

    # The whole /notebooks folder, and the same folder written another way.
    whole, _ = read_all(runtime, state, "")
    assert whole["models/run1/model.bin"] == expected()["model.bin"]
    assert read_all(runtime, state, "./models//run1/")[0] == files

    # Each refusal has its code: what the save protocol sends the server instead of words.
    for hostile, code in (
        ("../../etc", "outside"),
        ("/etc", "outside"),
        ("models/../../etc", "outside"),
        ("models/link", "link"),
        ("models/link/sub", "link"),
        ("nothing-here", "missing"),
        ("models/run1/model.bin", "not_folder"),
    ):
        with pytest.raises(FolderError) as refused:
            list(runtime.read_folder(state, hostile))
        assert refused.value.code == code, hostile


def assert_memory_stays_flat(runtime, state):
    tracemalloc.start()
    try:
        files, _ = read_all(runtime, state, "big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files["blob"][0] == 48 * 1024 * 1024
    # A few buffers (Docker's 2 MB chunks, 1 MiB reads), never the 48 MiB file.
    assert peak < 12 * 1024 * 1024, peak


def test_folder_path_refuses_what_leaves_the_folder():
    assert folder_path("models/./run1/") == "models/run1"
    assert folder_path("") == ""
    for hostile in ("..", "a/../..", "/notebooks", "a\x00b", "a\\..\\b"):
        with pytest.raises(FolderError):
            folder_path(hostile)


def _tree_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ("models", "models/run1", "models/run1/sub", "big"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
            tar.addfile(info)
        for name, data in (("models/run1/model.bin", BIG), ("models/run1/sub/config.yaml", SMALL)):
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid = len(data), 1000, 1000
            tar.addfile(info, io.BytesIO(data))
        for name, target in (("models/run1/escape", "/etc"), ("models/link", "run1")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        info = tarfile.TarInfo("models/run1/hard.bin")
        info.type, info.linkname = tarfile.LNKTYPE, "models/run1/model.bin"
        tar.addfile(info)
        info = tarfile.TarInfo("models/run1/pipe")
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
        info = tarfile.TarInfo("big/blob")
        info.size = 48 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    return out.getvalue()


@pytest.fixture
def docker_notebook(busybox_image, docker_client):
    runtime = DockerRuntime(docker_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    volume = f"lattice-test-{name}"
    spec = Spec(
        name=name,
        image=busybox_image,
        command=["/bin/busybox", "sleep", "600"],
        memory_bytes=64 * 1024**2,
        volumes={volume: "/notebooks"},
        labels={"team": "acme"},
    )
    state = runtime.start(spec)
    # Written by the engine (as root) into the running container's volume.
    assert docker_client.api.put_archive(state["container_id"], "/notebooks", _tree_tar())
    yield runtime, state
    with contextlib.suppress(NotFound):
        docker_client.containers.get(state["container_id"]).remove(force=True)
    with contextlib.suppress(NotFound):
        docker_client.volumes.get(volume).remove(force=True)


def test_docker_reads_the_folder_of_a_running_container(docker_notebook):
    assert_reads_the_tree(*docker_notebook)
    # Docker's archive gives the second name of a file as a hard link to the first.
    runtime, state = docker_notebook
    links = {e.path: e.same_as for e in runtime.read_folder(state, "models/run1") if e.same_as}
    assert links == {"model.bin": "hard.bin"}


class _PublicOnly:
    """docker-py's APIClient with its private names (``_url``, ``_raise_for_status``...)
    out of reach: what the runtime may rely on across docker-py releases."""

    def __init__(self, wrapped):
        self.wrapped = wrapped

    def __getattr__(self, name):
        assert not name.startswith("_"), f"the runtime used docker-py's private {name}"
        return getattr(self.wrapped, name)


def test_docker_reads_a_folder_through_docker_pys_public_calls_only(docker_notebook):
    runtime, state = docker_notebook
    real = runtime.client
    runtime.client = SimpleNamespace(containers=real.containers, api=_PublicOnly(real.api))

    files, _ = read_all(runtime, state, "models/run1")
    assert files == expected()
    with pytest.raises(FolderError) as refused:
        list(runtime.read_folder(state, "models/link/sub"))
    assert refused.value.code == "link"


def test_docker_reads_a_large_file_without_holding_it(docker_notebook):
    assert_memory_stays_flat(*docker_notebook)


def test_docker_refuses_a_stopped_notebook(docker_notebook):
    runtime, state = docker_notebook
    runtime.stop(state, timeout=1)
    with pytest.raises(FolderError, match="not running"):
        list(runtime.read_folder(state, "models"))


@pytest.fixture
def process_notebook(tmp_path):
    runtime = LocalProcessRuntime(tmp_path)
    spec = Spec(
        name="nb-1",
        image="",
        command=[sys.executable, "-c", "import time; time.sleep(600)"],
        volumes={"vol-abc": "/notebooks"},
    )
    state = runtime.start(spec)
    root = tmp_path / "volumes" / "vol-abc"
    (root / "models" / "run1" / "sub").mkdir(parents=True)
    (root / "models" / "run1" / "model.bin").write_bytes(BIG)
    (root / "models" / "run1" / "sub" / "config.yaml").write_bytes(SMALL)
    (root / "models" / "run1" / "hard.bin").hardlink_to(root / "models" / "run1" / "model.bin")
    (root / "models" / "run1" / "escape").symlink_to("/etc")
    (root / "models" / "link").symlink_to("run1")
    os.mkfifo(root / "models" / "run1" / "pipe")
    (root / "big").mkdir()
    with (root / "big" / "blob").open("wb") as handle:
        handle.truncate(48 * 1024 * 1024)
    yield runtime, state
    runtime.stop(state, timeout=3)


def test_the_process_runtime_reads_the_notebook_folder_on_disk(process_notebook):
    assert_reads_the_tree(*process_notebook)


def test_the_process_runtime_reads_a_large_file_without_holding_it(process_notebook):
    assert_memory_stays_flat(*process_notebook)


def test_the_process_runtime_reads_no_more_than_the_size_it_listed(process_notebook, tmp_path):
    runtime, state = process_notebook
    grown = tmp_path / "volumes" / "vol-abc" / "models" / "run1" / "sub" / "config.yaml"
    entries = runtime.read_folder(state, "models/run1/sub")
    entry = next(entries)
    with grown.open("ab") as handle:
        handle.write(b"appended while read\n")
    assert entry.file.read() == SMALL


def test_the_fake_reads_what_it_was_given():
    FakeRuntime.reset()
    runtime = FakeRuntime()
    state = runtime.start(Spec(name="nb-9", image="x", command=[]))
    FakeRuntime.files["nb-9"] = {"out/a.txt": b"a", "out/l": None, "other/b": b"b"}
    try:
        files, skipped = read_all(runtime, state, "out")
        assert files == {"a.txt": (1, hashlib.sha256(b"a").hexdigest())}
        assert skipped == {"l": "link"}
    finally:
        FakeRuntime.reset()


# --- an exited job's /outputs (read_folder's root) ----------------------------------------------


def read_outputs(runtime, state, folder=""):
    files = {}
    for entry in runtime.read_folder(state, folder, root="/outputs"):
        files[entry.path] = entry.file.read() if entry.file is not None else entry.skipped
    return files


def test_docker_reads_an_exited_containers_outputs(busybox_image, docker_client):
    runtime = DockerRuntime(docker_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    volume = f"lattice-test-{name}-out"
    spec = Spec(
        name=name,
        image=busybox_image,
        command=[
            "/bin/busybox",
            "sh",
            "-c",
            "mkdir -p /outputs/sub && echo hello > /outputs/a.txt && echo deep > /outputs/sub/b",
        ],
        memory_bytes=64 * 1024**2,
        user="0:0",
        volumes={volume: "/outputs"},
        labels={"team": "acme"},
    )
    state = runtime.start(spec)
    try:
        for _ in range(100):
            if runtime.poll(state) is not None:
                break
            time.sleep(0.1)
        assert runtime.poll(state) == 0
        assert read_outputs(runtime, state) == {"a.txt": b"hello\n", "sub/b": b"deep\n"}
        assert read_outputs(runtime, state, "sub") == {"b": b"deep\n"}
        # /notebooks stays a running notebook's only; other roots are refused.
        with pytest.raises(FolderError, match="not running"):
            list(runtime.read_folder(state, ""))
        with pytest.raises(FolderError) as refused:
            list(runtime.read_folder(state, "", root="/etc"))
        assert refused.value.code == "outside"
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(state["container_id"]).remove(force=True)
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(volume).remove(force=True)
    with pytest.raises(FolderError) as gone:
        list(runtime.read_folder(state, "", root="/outputs"))
    assert gone.value.code == "not_running"


def test_the_process_runtime_reads_an_exited_processs_outputs(tmp_path):
    runtime = LocalProcessRuntime(tmp_path)
    script = (
        "import os; os.makedirs('{mount:/outputs}/sub'); "
        "open('{mount:/outputs}/sub/r', 'w').write('x')"
    )
    state = runtime.start(
        Spec(
            name="jb-1",
            image="",
            command=[sys.executable, "-c", script],
            volumes={"vol-out": "/outputs", "vol-ws": "/workspace"},
        )
    )
    for _ in range(100):
        if runtime.poll(state) is not None:
            break
        time.sleep(0.1)
    assert read_outputs(runtime, state) == {"sub/r": b"x"}
    with pytest.raises(FolderError) as missing:
        list(runtime.read_folder(state, "nothing", root="/outputs"))
    assert missing.value.code == "missing"


def test_the_fake_reads_an_exited_workloads_outputs():
    FakeRuntime.reset()
    runtime = FakeRuntime()
    state = runtime.start(Spec(name="jb-9", image="x", command=[]))
    FakeRuntime.folders[("jb-9", "/outputs")] = {"m.bin": b"m"}
    try:
        runtime.stop(state)
        assert read_outputs(runtime, state) == {"m.bin": b"m"}
    finally:
        FakeRuntime.reset()
