"""agent.start with ``restore``: a notebook snapshot's files put back into its volume before
the workload starts (issue 20).

Real pieces: the agent's task (apps.machines.agent.agent_start), the web tier's blob view
over HTTP (tests.blob_fixtures: the signed per-object read links a host gets), the blobs
in a local-folder storage, and real runtimes: local processes, and Docker (the volume
written at its Mountpoint and through a helper container). The workload itself looks
for the files as it starts: they are there before it runs. A blob whose bytes are not
the snapshot's, or a link the storage refuses, fails the start with a message that says
which file; progress is told as "restoring" with bytes done of the total.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import uuid
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from docker.errors import NotFound

from apps.datasets.blob_urls import read_url
from apps.datasets.models import blob_key
from apps.machines import agent
from apps.runtimes import select
from apps.runtimes.base import Spec
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.fake import FakeRuntime
from tests.dataset_fixtures import put_bytes
from tests.helpers import wait_for

FILES = {
    "hello.txt": (b"hello from the snapshot\n", 0o644),
    "run.sh": (b"#!/bin/sh\necho ran\n", 0o755),
    "deep/er/weights.bin": (os.urandom(2 * 1024 * 1024 + 5), 0o600),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def restore_option(volume: str, files=FILES) -> dict[str, Any]:
    listed = []
    for path, (data, mode) in files.items():
        put_bytes(data)
        listed.append(
            {
                "path": path,
                "size": len(data),
                "sha256": sha(data),
                "mode": mode,
                "url": read_url(sha(data), seconds=600),
            }
        )
    total = sum(len(data) for data, _ in files.values())
    return {"snapshot": 7, "volume": volume, "total": total, "files": listed}


@pytest.fixture
def said(monkeypatch):
    events: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        agent, "_send", lambda _host, name, event, **data: events.append((name, event, data))
    )
    monkeypatch.setattr(agent, "ship_logs", lambda *_args, **_kwargs: None)
    return events


def events_of(said, name):
    return [event for workload, event, _ in said if workload == name]


def assert_progress(said, name, total):
    told = [data for workload, event, data in said if workload == name and event == "progress"]
    restoring = [d for d in told if d.get("phase") == "restoring"]
    assert restoring[0] == {"phase": "restoring", "done": 0, "total": total}
    assert restoring[-1] == {"phase": "restoring", "done": total, "total": total}
    # At most every half second, plus the first and the last: a small restore says little.
    assert len(restoring) <= 4
    events = events_of(said, name)
    assert events.index("started") > max(
        i for i, (w, e, d) in enumerate(said) if w == name and d.get("phase") == "restoring"
    )


# --- Local processes -----------------------------------------------------------------------------


@pytest.fixture
def process_runtime(settings, tmp_path):
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "runtime"
    select._runtime.cache_clear()
    runtime = select.host_runtime()
    yield runtime
    for managed in runtime.list_managed():
        runtime.stop(managed.state, timeout=2)
    select._runtime.cache_clear()


def checking_spec(name: str, volume: str, command: list[str], image: str = "unused") -> Spec:
    return Spec(
        name=name,
        image=image,
        command=command,
        volumes={volume: "/notebooks"},
        labels={"until": "exit", "installation": settings.LATTICE_INSTALLATION},
        memory_bytes=64 * 1024**2,
    )


# The workload's first act: copy what it finds (nothing when the files are not there yet).
CHECK = "cat hello.txt > seen.txt && test -x run.sh && test -f deep/er/weights.bin"


def test_the_files_are_there_before_the_process_starts(process_runtime, said, served_media):
    name, volume = f"nb-r{uuid.uuid4().hex[:6]}", "vol-restore"
    old = process_runtime.root / "volumes" / volume
    old.mkdir(parents=True)
    (old / "stale.txt").write_bytes(b"from before")
    option = restore_option(volume)

    agent.agent_start(
        "local",
        agent.spec_to_task(checking_spec(name, volume, ["sh", "-c", CHECK])),
        {"until": "exit", "restore": option},
    )

    assert wait_for(lambda: "exited" in events_of(said, name), timeout=20), said
    [exited] = [d for w, e, d in said if w == name and e == "exited"]
    assert exited["exit_code"] == 0
    assert (old / "seen.txt").read_bytes() == FILES["hello.txt"][0]
    assert not (old / "stale.txt").exists()  # the volume holds the snapshot, nothing else
    assert (old / "deep" / "er" / "weights.bin").stat().st_mode & 0o777 == 0o600
    assert_progress(said, name, option["total"])


def test_a_tampered_blob_fails_the_start(process_runtime, said, served_media):
    name, volume = f"nb-t{uuid.uuid4().hex[:6]}", "vol-tampered"
    real = os.urandom(1000)
    default_storage.save(blob_key(sha(real)), ContentFile(os.urandom(1000)))  # not its bytes
    files = {"ok.txt": (b"fine\n", 0o644), "data/evil.bin": (real, 0o644)}
    option = restore_option(volume, files)

    agent.agent_start(
        "local",
        agent.spec_to_task(checking_spec(name, volume, ["sh", "-c", "true"])),
        {"until": "exit", "restore": option},
    )

    assert events_of(said, name)[-1] == "failed"
    assert "started" not in events_of(said, name)
    [failed] = [d for w, e, d in said if w == name and e == "failed"]
    assert "evil.bin" in failed["message"]
    assert "not what the snapshot says" in failed["message"]


def test_a_refused_link_fails_the_start(process_runtime, said, served_media):
    name, volume = f"nb-l{uuid.uuid4().hex[:6]}", "vol-refused"
    option = restore_option(volume, {"a.txt": (b"a", 0o644)})
    option["files"][0]["url"] = option["files"][0]["url"].replace("signature=", "signature=x")

    agent.agent_start(
        "local",
        agent.spec_to_task(checking_spec(name, volume, ["sh", "-c", "true"])),
        {"until": "exit", "restore": option},
    )

    [failed] = [d for w, e, d in said if w == name and e == "failed"]
    assert "a.txt" in failed["message"]
    assert "started" not in events_of(said, name)


def test_a_snapshot_for_another_volume_fails_the_start(process_runtime, said, served_media):
    name = f"nb-v{uuid.uuid4().hex[:6]}"
    option = restore_option("someone-elses", {"a.txt": (b"a", 0o644)})
    agent.agent_start(
        "local",
        agent.spec_to_task(checking_spec(name, "vol-mine", ["sh", "-c", "true"])),
        {"until": "exit", "restore": option},
    )
    [failed] = [d for w, e, d in said if w == name and e == "failed"]
    assert "does not mount" in failed["message"]


def test_a_restore_that_fails_on_the_host_fails_the_start(said, served_media, monkeypatch):
    FakeRuntime.reset()
    FakeRuntime.restore_fails = "The disk is full."
    monkeypatch.setattr(agent, "host_runtime", FakeRuntime)
    name = f"nb-f{uuid.uuid4().hex[:6]}"
    option = restore_option("vol-f")
    try:
        agent.agent_start(
            "local",
            agent.spec_to_task(checking_spec(name, "vol-f", ["x"])),
            {"until": "exit", "restore": option},
        )
    finally:
        FakeRuntime.reset()
    [failed] = [d for w, e, d in said if w == name and e == "failed"]
    assert "disk is full" in failed["message"]


# --- Docker --------------------------------------------------------------------------------------


@pytest.fixture(params=["direct", "helper"])
def docker_runtime(request, docker_client, busybox_image, monkeypatch):
    if request.param == "direct" and os.geteuid() != 0:
        from tests.conftest import service_missing

        service_missing("writing a volume at its Mountpoint needs root beside the engine")
    runtime = DockerRuntime(docker_client)
    runtime.direct_volumes = request.param == "direct"
    runtime.helper_image = busybox_image
    monkeypatch.setattr(agent, "host_runtime", lambda: runtime)
    made: list[tuple[str, str]] = []
    yield runtime, made
    for name, volume in made:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(runtime.container_name(name)).remove(force=True)
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(volume).remove(force=True)


def test_the_files_are_there_before_the_container_starts(
    docker_runtime, said, served_media, busybox_image
):
    runtime, made = docker_runtime
    name = f"t-r{uuid.uuid4().hex[:6]}"
    volume = f"lattice-test-restore-{name}"
    made.append((name, volume))
    option = restore_option(volume)
    busybox = "/bin/busybox"
    script = (
        f"cd /notebooks && {busybox} cat hello.txt > seen.txt && {busybox} test -x run.sh"
        f" && {busybox} test -f deep/er/weights.bin"
    )
    spec = checking_spec(name, volume, [busybox, "sh", "-c", script], image=busybox_image)

    agent.agent_start("local", agent.spec_to_task(spec), {"until": "exit", "restore": option})

    assert wait_for(lambda: "exited" in events_of(said, name), timeout=30), said
    [exited] = [d for w, e, d in said if w == name and e == "exited"]
    # The workload (uid 1000) read the files and wrote beside them: its own volume.
    assert exited["exit_code"] == 0
    found = {e.path: e.file.read() for e in runtime.read_volume(volume) if e.file is not None}
    assert found["seen.txt"] == FILES["hello.txt"][0]
    assert found["deep/er/weights.bin"] == FILES["deep/er/weights.bin"][0]
    assert_progress(said, name, option["total"])


def test_jupyter_serves_the_restored_files_from_its_first_answer(
    docker_client, notebook_image, said, served_media, monkeypatch
):
    """A real notebook: Jupyter in the notebook image, the volume written through a helper
    container of that same image (the default), restored before the container exists."""
    runtime = DockerRuntime(docker_client)
    runtime.direct_volumes = False
    monkeypatch.setattr(agent, "host_runtime", lambda: runtime)
    token = secrets.token_hex(16)
    name = f"nb-{uuid.uuid4().hex[:8]}"
    volume = f"lattice-test-{name}"
    spec = Spec(
        name=name,
        image=notebook_image,
        command=[
            "jupyter",
            "server",
            "--ip=0.0.0.0",
            "--port={port}",
            "--no-browser",
            "--ServerApp.root_dir=/notebooks",
        ],
        env={"JUPYTER_TOKEN": token},
        memory_bytes=1024**3,
        volumes={volume: "/notebooks"},
        labels={"installation": settings.LATTICE_INSTALLATION},
    )
    option = restore_option(volume)
    try:
        agent.agent_start(
            "local",
            agent.spec_to_task(spec),
            {
                "ready_path": "/api/status",
                "ready_token_env": "JUPYTER_TOKEN",
                "ready_timeout": 120,
                "restore": option,
            },
        )
        assert events_of(said, name)[-1] == "ready", said
        [ready] = [d for w, e, d in said if w == name and e == "ready"]
        response = httpx.get(
            f"{ready['endpoint']}/api/contents/deep/er",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        )
        assert [f["name"] for f in response.json()["content"]] == ["weights.bin"]
        response = httpx.get(
            f"{ready['endpoint']}/api/contents/hello.txt",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        )
        assert response.json()["content"] == FILES["hello.txt"][0].decode()
        assert_progress(said, name, option["total"])
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(volume).remove(force=True)


def test_restore_progress_is_told_at_most_every_half_second_and_at_the_end(monkeypatch):
    from apps.machines import snapshot

    now = [0.0]
    monkeypatch.setattr(snapshot.time, "monotonic", lambda: now[0])
    told: list[tuple[int, int]] = []
    progress = snapshot._Progress(100, lambda _e, **d: told.append((d["done"], d["total"])))
    for _ in range(10):
        now[0] += 0.25
        progress(10)
    progress.end()
    assert told == [(20, 100), (40, 100), (60, 100), (80, 100), (100, 100), (100, 100)]
