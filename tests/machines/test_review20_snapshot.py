"""Review of issue 20's host side (docs/reviews/issue20-host-side.md): agent.snapshot's
run_snapshot against the live web tier, and the agent's report beside a Docker volume
helper. Each test was a finding (a strict xfail until it was fixed).

R3/R4 run through the real server: a notebook's snapshot taken (``snapshot_take``: its
system save ticket, no person behind it) and kept as SnapshotFile rows by the notebooks
app (the review's first version used a person's "files" ticket and a stand-in for what
the notebooks app keeps, as tests/machines/test_agent_snapshot.py still does: the real
snapshot ticket replaces them), then restored from the snapshot's restore plan (per-object
read links served by the same live server) into another volume, byte for byte.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from docker.errors import NotFound

from apps.machines import agent
from apps.machines.snapshot import restore_snapshot, run_snapshot
from apps.notebooks import snapshots
from apps.notebooks.models import NotebookSnapshot, SnapshotFile
from apps.runtimes.base import RestoreFile
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.process import LocalProcessRuntime
from tests.machines.test_agent_snapshot import (  # noqa: F401 - fixtures
    manifest,
    not_racy,
    spoken,
)
from tests.notebooks.snapshot_helpers import hosted, snapshot_tasks

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db(transaction=True)
CHUNK = 64 * 1024  # the server's chunk size here (tests.dataset_fixtures.media)


@pytest.fixture
def snapshot_server(live_server, settings, media, monkeypatch, catalogue):
    """The web tier as it runs (no stand-in for the notebooks app), answering the save
    protocol and the blob read links; agent.snapshot tasks kept, not sent."""
    settings.LATTICE_INTERNAL_URL = live_server.url
    return snapshot_tasks(monkeypatch)


# The web tier and the host's words.
live = pytest.mark.usefixtures("snapshot_server", "not_racy", "spoken")


def taken(team, actor, queued):
    """A notebook's snapshot as the server takes it: its row, the save's address and ticket
    (what agent.snapshot is given)."""
    notebook = hosted(team, actor)
    snapshot = snapshots.snapshot_take(notebook=notebook, reason=NotebookSnapshot.Reason.MANUAL)
    assert snapshot is not None
    (_host, _volume, url, token), _queue = queued[-1]
    return snapshot, url, token


def names_of(folder: Path) -> set[bytes]:
    """Every file's path under ``folder``, as bytes, relative."""
    return {os.fsencode(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def at(folder: Path, name: bytes) -> Path:
    """The path of ``name`` (bytes, any) in ``folder``: os.fsdecode keeps every byte."""
    return folder / os.fsdecode(name)


def round_trip(runtime, root, tmp_path, team, actor, queued):
    """Snapshot the volume "vol-snap" through the server, restore it into "vol-back" from
    the restore plan: the snapshot (READY) and the restored folder (bytes)."""
    snapshot, url, token = taken(team, actor, queued)
    run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")
    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.READY, snapshot.failure
    plan = snapshots.snapshot_restore_plan(
        snapshot, volume="vol-back", lifetime=timedelta(minutes=5)
    )
    restore_snapshot(
        runtime,
        plan,
        volumes={"vol-back": "/notebooks"},
        labels={},
        send=lambda *_args, **_kwargs: None,
    )
    return snapshot, tmp_path / "runtime" / "volumes" / "vol-back"


@pytest.fixture
def volume(tmp_path):
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    root = tmp_path / "runtime" / "volumes" / "vol-snap"
    root.mkdir(parents=True)
    (root / "train.py").write_bytes(b"print('hi')\n")
    return runtime, root


@live
def test_r4_a_name_that_is_not_utf8_does_not_fail_the_snapshot(
    volume, acme, alice, tmp_path, snapshot_server
):
    runtime, root = volume
    handle = os.open(os.fsencode(root) + b"/caf\xe9.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(handle, b"latin-1 name\n")
    os.close(handle)
    snapshot, url, token = taken(acme, alice, snapshot_server)

    run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")

    snapshot.refresh_from_db()
    # Saved under some name, or skipped and said so: either way train.py is saved.
    assert snapshot.state == NotebookSnapshot.State.READY, snapshot.failure


# Names Linux takes and a notebook's user may well have (a Windows zip's paths, a file
# saved as "notes.", Python's "aux.py", a repository's README beside its readme).
ODD_NAMES = [
    ["notes\\draft.txt"],
    ["aux.py"],
    ["draft."],
    ["line\nbreak.txt"],
    ["README.md", "readme.md"],
]


@live
@pytest.mark.parametrize("names", ODD_NAMES, ids=repr)
def test_r3_one_odd_name_does_not_fail_the_snapshot(
    volume, acme, alice, tmp_path, names, request, snapshot_server
):
    said = request.getfixturevalue("spoken")
    runtime, root = volume
    for name in names:
        (root / name).write_bytes(b"a name Linux takes\n")
    snapshot, url, token = taken(acme, alice, snapshot_server)

    run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")

    snapshot.refresh_from_db()
    # The odd name saved or skipped (and said so): either way train.py is saved.
    assert snapshot.state == NotebookSnapshot.State.READY, snapshot.failure
    assert "train.py" in manifest(said)


# Each name a POSIX file system takes, as bytes: kept exactly through a snapshot and its
# restore (R3/R4's fix: a snapshot's names are POSIX names, not portable ones).
KEPT_AS_THEY_ARE = [
    [b"notes\\draft.txt"],
    [b"C:\\Users\\me\\notes.txt"],
    [b"aux.py", b"con.txt", b"NUL"],
    [b"draft.", b"trailing "],
    [b"line\nbreak.txt", b"bell\x07.txt", b"tab\tname"],
    [b"README.md", b"readme.md", b"Readme.MD"],
    ["cafe\u0301.txt".encode(), "caf\u00e9.txt".encode()],  # NFD beside NFC: two files
    ["evil\u202etxt.exe".encode()],
    [b"caf\xe9.txt", b"\xff\xfe/inner\x80.bin"],  # not UTF-8
    # The escape's own characters in a name, and beside a byte that is not UTF-8.
    ["\U0010ff7f\U0010ffe9.txt".encode(), b"x\xe9" + "\U0010ffe9".encode()],
]


@live
@pytest.mark.parametrize("names", KEPT_AS_THEY_ARE, ids=repr)
def test_a_posix_name_comes_back_byte_for_byte(
    volume, acme, alice, tmp_path, names, snapshot_server
):
    runtime, root = volume
    written = {b"train.py": b"print('hi')\n"}
    for index, name in enumerate(names):
        path = at(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"file %d\n" % index
        path.write_bytes(data)
        written[name] = data

    snapshot, back = round_trip(runtime, root, tmp_path, acme, alice, snapshot_server)

    assert snapshot.file_count == len(written)
    assert SnapshotFile.objects.for_team(acme.pk).filter(snapshot=snapshot).count() == len(written)
    assert names_of(back) == set(written)
    for name, data in written.items():
        assert at(back, name).read_bytes() == data


def test_r5_a_volume_helper_is_not_reported_as_a_workload(
    docker_client, busybox_image, monkeypatch
):
    runtime = DockerRuntime(docker_client)
    runtime.direct_volumes = False  # the way an agent that is not root takes
    runtime.helper_image = busybox_image
    monkeypatch.setattr(agent, "host_runtime", lambda: runtime)
    name = f"lattice-test-rev20-{uuid.uuid4().hex[:8]}"
    data = {f"part-{i}.bin": os.urandom(1024) for i in range(3)}
    runtime.restore_volume(
        name,
        [RestoreFile(p, len(d), 0o644, partial(io.BytesIO, d)) for p, d in data.items()],
        labels={"installation": settings.LATTICE_INSTALLATION},
    )
    before = {c.id for c in docker_client.containers.list(all=True)}
    reading: Any = runtime.read_volume(name)  # a generator: closed below
    try:
        next(reading)  # a snapshot under way: its helper container exists
        (helper,) = [c for c in docker_client.containers.list(all=True) if c.id not in before]
        # What the agent tells the control plane, as the reconciler judges it
        # (apps.machines.tasks._ours: this installation's, not starting).
        reported = [
            w["name"]
            for w in agent.managed_report("host-rev20")
            if w["labels"].get("lattice.installation") == settings.LATTICE_INSTALLATION
            and not w.get("starting")
        ]
        orphans = [n for n in reported if n == helper.name]
        # No placement knows it: the reconciler orders its removal.
        for orphan in orphans:
            agent.agent_remove_orphan("host-rev20", orphan)
        try:
            helper.reload()
        except NotFound:
            pytest.fail(f"the snapshot's helper {helper.name} was removed as an orphan")
        assert orphans == []
    finally:
        reading.close()
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(name).remove(force=True)
