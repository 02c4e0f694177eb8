"""Review of issue 20's host side (docs/reviews/issue20-host-side.md): agent.snapshot's
run_snapshot against the live web tier (the existing save-ticket machinery, as
tests/machines/test_agent_snapshot.py uses it), and the agent's report beside a Docker
volume helper. Each test is a finding: it fails today (xfail, strict).
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from functools import partial
from typing import Any

import pytest
from django.conf import settings
from docker.errors import NotFound

from apps.machines import agent
from apps.machines.snapshot import run_snapshot
from apps.models.models import SaveTicket
from apps.runtimes.base import RestoreFile
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.process import LocalProcessRuntime
from tests.machines.test_agent_snapshot import (  # noqa: F401 - fixtures
    files_ticket,
    manifest,
    not_racy,
    server,
    spoken,
)

pytestmark = pytest.mark.django_db(transaction=True)
# The web tier and the host's words, as test_agent_snapshot has them (imported above).
live = pytest.mark.usefixtures("server", "not_racy", "spoken")


@pytest.fixture
def volume(tmp_path):
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    root = tmp_path / "runtime" / "volumes" / "vol-snap"
    root.mkdir(parents=True)
    (root / "train.py").write_bytes(b"print('hi')\n")
    return runtime, root


@pytest.mark.xfail(
    strict=True,
    reason="review20 R4: a file name that is not UTF-8 (unzip of a Latin-1 archive) makes "
    "the manifest unencodable: every snapshot of the volume fails as host_error",
)
@live
def test_r4_a_name_that_is_not_utf8_does_not_fail_the_snapshot(volume, acme, alice, tmp_path):
    runtime, root = volume
    handle = os.open(os.fsencode(root) + b"/caf\xe9.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(handle, b"latin-1 name\n")
    os.close(handle)
    ticket, url, token = files_ticket(acme, alice)

    run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")

    ticket.refresh_from_db()
    # Saved under some name, or skipped and said so: either way train.py is saved.
    assert ticket.result == SaveTicket.Result.READY, ticket.failure


# Names Linux takes and a notebook's user may well have (a Windows zip's paths, a file
# saved as "notes.", Python's "aux.py", a repository's README beside its readme).
ODD_NAMES = [
    ["notes\\draft.txt"],
    ["aux.py"],
    ["draft."],
    ["line\nbreak.txt"],
    ["README.md", "readme.md"],
]


@pytest.mark.xfail(
    strict=True,
    reason="review20 R3: the host lists every name Linux allows, and one the save "
    "protocol's path rules refuse fails the whole snapshot, every time: the volume's "
    "files can never be snapshotted, moved or restored",
)
@live
@pytest.mark.parametrize("names", ODD_NAMES, ids=repr)
def test_r3_one_odd_name_does_not_fail_the_snapshot(volume, acme, alice, tmp_path, names, request):
    said = request.getfixturevalue("spoken")
    runtime, root = volume
    for name in names:
        (root / name).write_bytes(b"a name Linux takes\n")
    ticket, url, token = files_ticket(acme, alice)

    run_snapshot(runtime, "vol-snap", url, token, cache_dir=tmp_path / "stamps")

    ticket.refresh_from_db()
    # The odd name saved or skipped (and said so): either way train.py is saved.
    assert ticket.result == SaveTicket.Result.READY, ticket.failure
    assert "train.py" in manifest(said)


@pytest.mark.xfail(
    strict=True,
    reason="review20 R5: a volume helper container carries lattice.managed and the "
    "installation label: the agent reports it as a workload, the reconciler's orphan "
    "sweep removes it mid-snapshot or mid-restore",
)
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
