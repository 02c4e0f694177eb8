"""Shared volumes (a team's /storage) served from LATTICE_SHARED_STORAGE: one folder every host
mounts, given to Docker as a local volume that binds it, used as is by the process runtime.
(Two real hosts reading one another's file: tests/machines/test_two_hosts.py.)"""

from __future__ import annotations

import contextlib
import os
import time
import uuid

import pytest
from docker.errors import NotFound

from apps.runtimes.base import Spec, WorkloadError, shared_folder
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.process import LocalProcessRuntime


def spec(volume: str, *, shared: bool = True, name: str = "w-1") -> Spec:
    return Spec(
        name=name,
        image="unused",
        command=["true"],
        volumes={volume: "/storage"},
        shared_volumes=[volume] if shared else [],
        labels={"installation": "test-shared-storage"},
    )


def test_without_the_setting_every_volume_is_the_hosts_own(settings, tmp_path):
    settings.LATTICE_SHARED_STORAGE = ""
    assert shared_folder(spec("lattice-team-1"), "lattice-team-1") is None


def test_a_shared_volume_is_its_folder_there_made_for_the_workloads_user(settings, tmp_path):
    settings.LATTICE_SHARED_STORAGE = str(tmp_path)

    folder = shared_folder(spec("lattice-team-1"), "lattice-team-1")

    assert folder == tmp_path / "lattice-team-1"
    assert folder.is_dir()
    if os.geteuid() == 0:
        assert (folder.stat().st_uid, folder.stat().st_gid) == (1000, 1000)
    # A volume not listed as shared stays the host's own.
    assert shared_folder(spec("lattice-nb-1", shared=False), "lattice-nb-1") is None


@pytest.mark.parametrize("volume", ["../etc", "a/b", ".hidden", ""])
def test_a_shared_volume_name_never_leaves_the_folder(settings, tmp_path, volume):
    settings.LATTICE_SHARED_STORAGE = str(tmp_path / "shared")
    (tmp_path / "shared").mkdir()

    with pytest.raises(WorkloadError, match="not a volume name"):
        shared_folder(spec(volume), volume)


def test_a_missing_shared_folder_is_said_not_made(settings, tmp_path):
    settings.LATTICE_SHARED_STORAGE = str(tmp_path / "not-mounted")

    with pytest.raises(WorkloadError, match="not a folder on this host"):
        shared_folder(spec("lattice-team-1"), "lattice-team-1")
    assert not (tmp_path / "not-mounted").exists()


def test_the_process_runtime_runs_in_the_shared_folder(settings, tmp_path):
    settings.LATTICE_SHARED_STORAGE = str(tmp_path / "shared")
    (tmp_path / "shared").mkdir()
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    workload = Spec(
        name="w-shared",
        image="",
        command=["sh", "-c", "echo written > {mount:/storage}/note.txt; sleep 30"],
        volumes={"lattice-team-9": "/storage"},
        shared_volumes=["lattice-team-9"],
    )

    state = runtime.start(workload)
    try:
        note = tmp_path / "shared" / "lattice-team-9" / "note.txt"
        deadline = time.monotonic() + 10
        while not note.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert note.read_text() == "written\n"
        assert not (tmp_path / "runtime" / "volumes" / "lattice-team-9").exists()
    finally:
        runtime.stop(state)


@pytest.fixture
def volume_name(docker_client):
    name = f"lattice-team-test-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(NotFound):
        docker_client.volumes.get(name).remove(force=True)


def test_docker_binds_the_shared_folder_as_a_local_volume(
    settings, tmp_path, docker_client, volume_name
):
    settings.LATTICE_SHARED_STORAGE = str(tmp_path)
    runtime = DockerRuntime(docker_client)

    mounts = runtime._volumes(spec(volume_name))
    runtime._volumes(spec(volume_name))  # again: the volume it made is the shared one

    assert mounts == {volume_name: {"bind": "/storage", "mode": "rw"}}
    volume = docker_client.volumes.get(volume_name)
    assert volume.attrs["Driver"] == "local"
    assert volume.attrs["Options"] == {
        "type": "none",
        "o": "bind",
        "device": str(tmp_path / volume_name),
    }
    assert volume.attrs["Labels"]["lattice.installation"] == "test-shared-storage"


def test_docker_refuses_a_team_volume_of_its_own_made_before_the_setting(
    settings, tmp_path, docker_client, volume_name
):
    docker_client.volumes.create(volume_name, labels={"lattice.managed": "true"})
    settings.LATTICE_SHARED_STORAGE = str(tmp_path)

    with pytest.raises(WorkloadError, match="is not the shared folder"):
        DockerRuntime(docker_client)._volumes(spec(volume_name))
