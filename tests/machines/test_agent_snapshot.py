"""agent.snapshot, end to end: a notebook volume's files saved through the save protocol.

The real pieces: the web tier as a live server (apps.models.hostsaves and the upload
services behind it), the agent's side (apps.machines.snapshot.run_snapshot, what the
``agent.snapshot`` task runs, with its stamp cache in a real file) and real runtimes: a
local process runtime's volume folder, and Docker's volumes (at the Mountpoint and
through a helper container). The server is the existing save-ticket machinery, a save of
target "files" (``save_begin_to`` without a dataset): the notebook snapshot's own ticket
(source "snapshot", no person behind it) is another helper's (snapserver) and not on this
branch; the protocol the host speaks is the same.

The broker: an agent's own broker user (the real Redis ACL) may publish agent.snapshot
on its own queue, which is how a stop's snapshot leaves the stop task.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import uuid
from functools import partial
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.files.storage import default_storage
from docker.errors import NotFound
from kombu import Queue

from apps.datasets.models import Blob, blob_key
from apps.machines import agent, savefolder, snapshot
from apps.machines.broker import host_broker_user_remove, host_broker_user_set
from apps.machines.models import host_queue
from apps.machines.snapshot import StampCache, run_snapshot
from apps.models import hooks as model_hooks
from apps.models.models import SaveTicket
from apps.models.services.saves import save_begin_to, ticket_url
from apps.runtimes.base import RestoreFile
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.process import LocalProcessRuntime
from config.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024  # the server's chunk size here (tests.dataset_fixtures.media)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(live_server, settings, media):
    """The web tier, and a stand-in for what the notebooks app will keep of a snapshot's
    files (snapserver's files_saved/files_held dispatch is not on this branch): the blobs
    each save stored are held by the team, as a ready snapshot's are."""
    settings.LATTICE_INTERNAL_URL = live_server.url
    kept: set[int] = set()

    def keep(ticket, manifest, blobs):
        kept.update(blob.pk for blob in blobs.values())

    def holding(team):
        return Blob.objects.filter(pk__in=list(kept)).values("pk")

    with model_hooks.files_saved.override(keep), model_hooks.files_held.override(holding):
        yield live_server


@pytest.fixture
def not_racy(monkeypatch):
    """Files written by the test just now count as settled (see snapshot.RACY_SECONDS)."""
    monkeypatch.setattr(snapshot, "RACY_SECONDS", 0.0)


class Counting:
    """A runtime whose read_volume counts the bytes read of each file, per pass."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.passes: list[dict[str, int]] = []

    def read_volume(self, name):
        counts: dict[str, int] = {}
        self.passes.append(counts)
        for entry in self.runtime.read_volume(name):
            if entry.file is not None:
                entry = type(entry)(  # noqa: PLW2901
                    entry.path,
                    entry.size,
                    _Counted(entry.file, counts, entry.path),
                    mode=entry.mode,
                    stamp=entry.stamp,
                )
            yield entry


class _Counted:
    def __init__(self, file, counts, path):
        self.file, self.counts, self.path = file, counts, path

    def read(self, size=-1, /):
        data = self.file.read(size)
        self.counts[self.path] = self.counts.get(self.path, 0) + len(data)
        return data


@pytest.fixture
def spoken(monkeypatch):
    """What the host said to the server: (step, body) of each POST."""
    said: list[tuple[str, dict[str, Any]]] = []
    post = savefolder.SaveClient.post

    def recorded(self, step, body=None):
        said.append((step, body or {}))
        return post(self, step, body)

    monkeypatch.setattr(savefolder.SaveClient, "post", recorded)
    return said


def files_ticket(team, actor) -> tuple[SaveTicket, str, str]:
    ticket, token = save_begin_to(
        team=team,
        actor=actor,
        folder="",
        root="/notebooks",
        source="snapshot",
        source_id=None,
        source_label="Snapshot of a notebook volume",
    )
    return ticket, ticket_url(ticket), token


def sent_blobs(said) -> set[str]:
    return {step.split("/")[1] for step, _ in said if step.startswith("blobs/")}


def manifest(said) -> dict[str, dict[str, Any]]:
    body = next(body for step, body in said if step == "manifest")
    return {f["path"]: f for f in body["files"]}


def stored(sha256: str) -> str:
    with default_storage.open(blob_key(sha256), "rb") as handle:
        return sha(handle.read())


def make_files(count: int) -> dict[str, bytes]:
    files = {f"data/part-{i:03}.bin": os.urandom(20_000 + i) for i in range(count - 2)}
    files["run.sh"] = b"#!/bin/sh\necho hi\n"
    files["big/model.bin"] = os.urandom(3 * CHUNK + 11)
    return files


# --- Local processes: a volume is a folder -------------------------------------------------------


@pytest.fixture
def process_volume(tmp_path, request):
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    files = make_files(getattr(request, "param", 20))
    root = tmp_path / "runtime" / "volumes" / "vol-snap"
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / "run.sh").chmod(0o755)
    (root / "escape").symlink_to("/etc")
    return runtime, root, files


def test_a_snapshot_saves_every_file_with_its_mode(
    server, spoken, not_racy, process_volume, acme, alice, tmp_path
):
    runtime, _, files = process_volume
    ticket, url, token = files_ticket(acme, alice)

    answer = run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")

    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.READY, (answer, ticket.failure)
    listed = manifest(spoken)
    assert set(listed) == set(files)
    assert listed["run.sh"]["mode"] == 0o755
    assert listed["big/model.bin"]["mode"] == 0o644
    for path, data in files.items():
        assert listed[path]["sha256"] == sha(data)
        assert stored(sha(data)) == sha(data)
    assert next(body for step, body in spoken if step == "manifest")["skipped"] == ["escape"]
    # The host's stamp cache: its own file, mode 0600, every file remembered.
    (cache_file,) = (tmp_path / "stamps").iterdir()
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert set(json.loads(cache_file.read_text())["files"]) == set(files)


@pytest.mark.parametrize("process_volume", [100], indirect=True)
def test_a_second_snapshot_sends_and_hashes_only_what_changed(
    server, spoken, not_racy, process_volume, acme, alice, tmp_path
):
    runtime, root, files = process_volume
    counting: Any = Counting(runtime)
    _, url, token = files_ticket(acme, alice)
    run_snapshot(counting, "vol-snap", url, token, cache_dir=tmp_path / "stamps")
    first_pass = counting.passes[0]
    assert sum(first_pass.values()) == sum(len(d) for d in files.values())  # all hashed once

    changed = "data/part-042.bin"  # 1 file of 100
    (root / changed).write_bytes(b"new bytes")
    spoken.clear()
    counting.passes.clear()
    ticket, url, token = files_ticket(acme, alice)

    run_snapshot(counting, "vol-snap", url, token, cache_dir=tmp_path / "stamps")

    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.READY, ticket.failure
    pass1, pass2 = counting.passes
    # Pass 1 read only the changed file; pass 2 only what had to go.
    assert pass1 == {changed: len(b"new bytes")}
    assert pass2 == {changed: len(b"new bytes")}
    assert sent_blobs(spoken) == {sha(b"new bytes")}
    assert manifest(spoken)[changed]["sha256"] == sha(b"new bytes")
    assert manifest(spoken)["big/model.bin"]["sha256"] == sha(files["big/model.bin"])


def test_a_file_written_just_before_is_hashed_again_next_time(
    server, process_volume, acme, alice, tmp_path
):
    """Racy files: a stamp taken in the same clock tick as a write may not show it."""
    runtime, _, files = process_volume
    counting: Any = Counting(runtime)
    _, url, token = files_ticket(acme, alice)
    run_snapshot(counting, "vol-snap", url, token, cache_dir=tmp_path / "stamps")
    counting.passes.clear()
    _, url, token = files_ticket(acme, alice)
    run_snapshot(counting, "vol-snap", url, token, cache_dir=tmp_path / "stamps")
    assert sum(counting.passes[0].values()) == sum(len(d) for d in files.values())


def test_a_file_changed_between_the_passes_fails_the_snapshot(
    server, not_racy, process_volume, acme, alice, tmp_path, monkeypatch
):
    runtime, root, _ = process_volume
    _, url, token = files_ticket(acme, alice)
    run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")
    # A file whose blob the server has (so pass 2 would not read it) is written between
    # the passes: its stamp says so.
    (root / "data" / "part-007.bin").write_bytes(b"fresh")
    reads = {"n": 0}
    read_volume = runtime.read_volume

    def between(name):
        reads["n"] += 1
        if reads["n"] == 2:
            (root / "data" / "part-003.bin").write_bytes(b"written meanwhile")
        return read_volume(name)

    monkeypatch.setattr(runtime, "read_volume", between)
    ticket, url, token = files_ticket(acme, alice)

    answer = run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")

    assert answer == {"failed": "changed", "path": "data/part-003.bin"}
    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.FAILED
    assert "data/part-003.bin" in ticket.failure


def test_a_missing_volume_fails_with_its_code(server, acme, alice, tmp_path):
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    ticket, url, token = files_ticket(acme, alice)
    assert run_snapshot(runtime, "never", url, token, cache_dir=tmp_path / "s") == {
        "failed": "missing",
        "path": "",
    }
    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.FAILED


def test_a_damaged_cache_file_is_not_believed(tmp_path):
    (tmp_path / "x").mkdir()
    cache = StampCache.load(tmp_path / "x", "vol")
    cache.kept = {"a": ["1-2-3-4", "f" * 64]}
    cache.save()
    (cache_file,) = (tmp_path / "x").iterdir()
    cache_file.write_text("{not json")
    assert StampCache.load(tmp_path / "x", "vol").known("a", "1-2-3-4") is None


# --- Docker --------------------------------------------------------------------------------------


@pytest.fixture(params=["direct", "helper"])
def docker_volume(request, docker_client, busybox_image):
    if request.param == "direct" and os.geteuid() != 0:
        from tests.conftest import service_missing

        service_missing("reading a volume at its Mountpoint needs root beside the engine")
    runtime = DockerRuntime(docker_client)
    runtime.direct_volumes = request.param == "direct"
    runtime.helper_image = busybox_image
    name = f"lattice-test-snap-{uuid.uuid4().hex[:8]}"
    files = {"a.txt": (b"alpha\n", 0o644), "bin/go": (b"#!/bin/sh\n", 0o755)}
    files["big.bin"] = (os.urandom(2 * CHUNK + 3), 0o600)
    runtime.restore_volume(
        name,
        [RestoreFile(p, len(d), m, partial(io.BytesIO, d)) for p, (d, m) in files.items()],
        labels={"installation": settings.LATTICE_INSTALLATION},
    )
    yield runtime, name, files, request.param
    with contextlib.suppress(NotFound):
        docker_client.volumes.get(name).remove(force=True)


def test_a_docker_volume_snapshot(server, spoken, not_racy, docker_volume, acme, alice, tmp_path):
    runtime, name, files, way = docker_volume
    counting: Any = Counting(runtime)
    ticket, url, token = files_ticket(acme, alice)

    run_snapshot(counting, name, url, token, cache_dir=tmp_path / "stamps")

    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.READY, ticket.failure
    listed = manifest(spoken)
    assert {p: (f["sha256"], f["mode"]) for p, f in listed.items()} == {
        p: (sha(d), m) for p, (d, m) in files.items()
    }
    # Again: at the Mountpoint nothing is read (stamps); through an archive everything is.
    counting.passes.clear()
    spoken.clear()
    ticket, url, token = files_ticket(acme, alice)
    run_snapshot(counting, name, url, token, cache_dir=tmp_path / "stamps")
    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.READY, ticket.failure
    assert sent_blobs(spoken) == set()
    read_in_pass1 = sum(counting.passes[0].values())
    assert read_in_pass1 == (0 if way == "direct" else sum(len(d) for d, _ in files.values()))


# --- After a stop --------------------------------------------------------------------------------


def test_a_stop_with_a_snapshot_queues_it_on_the_hosts_own_queue_after_stopped(
    monkeypatch, tmp_path
):
    said: list[str] = []
    queued: list[tuple[tuple[Any, ...], str]] = []
    monkeypatch.setattr(agent, "_send", lambda _host, _name, event, **_data: said.append(event))
    monkeypatch.setattr(agent, "host_runtime", lambda: LocalProcessRuntime(tmp_path / "rt"))

    def apply_async(args, queue):
        queued.append((tuple(args), queue))
        said.append("queued")

    monkeypatch.setattr(agent.agent_snapshot, "apply_async", apply_async)
    snap = {"volume": "vol-x", "ticket_url": "http://lattice/t/1", "ticket": "secret"}

    agent.agent_stop("gpu-1", "nb-1", {"name": "nb-1"}, None, None, snap)

    assert said == ["stopped", "queued"]
    assert queued == [(("gpu-1", "vol-x", "http://lattice/t/1", "secret"), "host.gpu-1")]


@pytest.fixture
def host_user(redis_url, monkeypatch):
    monkeypatch.setitem(celery_app.conf, "broker_url", redis_url)
    name = f"snap-{uuid.uuid4().hex[:8]}"
    url = host_broker_user_set(name)
    yield name, url
    host_broker_user_remove(name)
    with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
        client.delete(host_queue(name))


def test_the_hosts_own_broker_user_may_queue_a_snapshot_for_itself(host_user, redis_url):
    """What _queue_snapshot does, as the agent's Celery is configured (its queue used
    undeclared, no ack emulation), with the host's own Redis user and its ACL."""
    from celery import Celery

    from apps.machines.broker import AGENT_TRANSPORT_OPTIONS

    name, url = host_user
    app = Celery("agent-test", broker=url, set_as_current=False)
    app.conf.broker_transport_options = dict(AGENT_TRANSPORT_OPTIONS)
    app.conf.task_queues = [Queue(host_queue(name), no_declare=True)]
    try:
        app.send_task(
            "agent.snapshot", args=[name, "vol", "http://x/", "t"], queue=host_queue(name)
        )
    finally:
        app.close()
    with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
        raw = client.rpop(host_queue(name))
    assert raw is not None
    message = json.loads(bytes(raw))  # type: ignore[arg-type]
    assert message["headers"]["task"] == "agent.snapshot"
