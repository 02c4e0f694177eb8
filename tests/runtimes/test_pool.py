"""The Docker runtime's warm pool (issue 19) against the real engine and the real notebook
image: a warm Jupyter started before any session, then claimed for one."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import requests
import websocket
from docker.errors import NotFound

from apps.runtimes.base import Managed, PoolMiss, PoolSpec, Spec, WorkloadError
from apps.runtimes.docker import NETWORK, DockerRuntime
from apps.runtimes.pool import mounts_under, pool_command
from tests.conftest import service_missing

JUPYTER = pool_command()


@pytest.fixture
def pool(docker_client, settings, tmp_path):
    """A runtime whose pool folder is this test's; everything the test made is removed
    after it (its containers, volumes, and the pool folder's mounts)."""
    settings.LATTICE_POOL_DIR = tmp_path / "pool"
    runtime = DockerRuntime(docker_client)
    if not runtime.pool_supported():
        service_missing("this host cannot keep warm containers (needs root beside the engine)")
    made: dict[str, list[str]] = {"containers": [], "volumes": []}
    yield runtime, made
    for name in made["containers"]:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name))
            runtime.remove_orphan(
                Managed(name=name, running=False, labels={}, state={"name": name})
            )
    for volume in made["volumes"]:
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(volume).remove(force=True)
    for point in mounts_under(tmp_path):
        subprocess.run(["umount", "-l", point], check=False)


def pool_spec(image: str, name: str, token: str) -> PoolSpec:
    return PoolSpec(
        name=name,
        image=image,
        command=JUPYTER,
        token=token,
        vcpus=1,
        memory_bytes=1024**3,
        pids_limit=256,
        labels={"kind": "pool"},
    )


def session_spec(image: str, name: str, *, notebook: str, storage: str, **kwargs) -> Spec:
    return Spec(
        name=name,
        image=image,
        command=[*JUPYTER, "--ServerApp.base_url=/nb/77/"],
        vcpus=1,
        memory_bytes=1024**3,
        pids_limit=256,
        volumes={notebook: "/notebooks", storage: "/storage"},
        labels={"kind": "notebook", "team": "7", "session": "9"},
        **kwargs,
    )


def wait_ready(runtime: DockerRuntime, state: dict, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not runtime.pool_ready(state):
        assert time.monotonic() < deadline, list(runtime.logs(state))[-20:]
        time.sleep(0.1)


def kernel_says(base: str, token: str, code: str) -> str:
    """What ``code`` prints in a new kernel of the Jupyter at ``base`` (its websocket)."""
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{base}api/kernels", headers=headers, json={}, timeout=30).json()
    ws = websocket.create_connection(
        f"{base.replace('http', 'ws', 1)}api/kernels/{kernel['id']}/channels",
        header=[f"Authorization: token {token}"],
        timeout=60,
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "t",
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False},
                    "channel": "shell",
                }
            )
        )
        out = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out
        return out
    finally:
        ws.close()
        requests.delete(f"{base}api/kernels/{kernel['id']}", headers=headers, timeout=30)


def terminal_says(base: str, token: str, command: str, expect: str) -> str:
    """The output of ``command`` typed into a new terminal, up to ``expect`` (or 30 s)."""
    headers = {"Authorization": f"token {token}"}
    term = requests.post(f"{base}api/terminals", headers=headers, timeout=30).json()
    ws = websocket.create_connection(
        f"{base.replace('http', 'ws', 1)}terminals/websocket/{term['name']}",
        header=[f"Authorization: token {token}"],
        timeout=30,
    )
    out = ""
    try:
        ws.send(json.dumps(["stdin", f"{command}\r"]))
        deadline = time.monotonic() + 30
        while expect not in out and time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message[0] == "stdout":
                out += message[1]
    finally:
        ws.close()
        requests.delete(f"{base}api/terminals/{term['name']}", headers=headers, timeout=30)
    return out


def test_fill_claim_serves_the_session_and_stop_removes_everything(  # noqa: PLR0915
    pool, notebook_image, docker_client, tmp_path
):
    runtime, made = pool
    suffix = uuid.uuid4().hex[:8]
    pool_name, name = f"pool-t{suffix}", f"nb-t{suffix}"
    notebook, storage = f"lattice-test-nb-{suffix}", f"lattice-test-st-{suffix}"
    made["containers"] += [pool_name, name]
    made["volumes"] += [notebook, storage]
    pool_token, token = secrets.token_hex(16), secrets.token_hex(16)

    state = runtime.pool_fill(pool_spec(notebook_image, pool_name, pool_token))
    assert runtime.pool_fill(pool_spec(notebook_image, pool_name, pool_token)) == state
    wait_ready(runtime, state)
    assert [m.name for m in runtime.pool_list()] == [pool_name]
    assert all(m.name != pool_name for m in runtime.list_managed())  # not a workload yet
    warm = f"http://127.0.0.1:{state['port']}/"
    assert requests.get(f"{warm}api/status", params={"token": pool_token}, timeout=10).ok

    # The notebook's volume has a file already; a dataset folder of this host.
    docker_client.volumes.create(notebook)
    mountpoint = Path(docker_client.volumes.get(notebook).attrs["Mountpoint"])
    (mountpoint / "before.txt").write_text("from an earlier session")
    # As an earlier session's start left it: the notebook user's (Docker's first mount).
    for path in (mountpoint, mountpoint / "before.txt"):
        os.chown(path, 1000, 1000)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "data.csv").write_text("a,b\n1,2\n")
    datasets = [{"name": "iris", "version_id": 1, "key": "k", "source": str(dataset)}]
    env = {"JUPYTER_TOKEN": token, "TEAM_SECRET": "s3cret-" + suffix}

    # A claim that does not fit (a volume where a warm container has no mount point) misses
    # and leaves the warm container as it was.
    wrong = session_spec(notebook_image, name, notebook=notebook, storage=storage, env=env)
    wrong = replace(wrong, volumes={notebook: "/workspace"})
    with pytest.raises(PoolMiss):
        runtime.pool_claim(state, wrong)
    # One whose dataset is not on this host misses after mounting the volumes: all undone.
    missing = [{"name": "iris", "version_id": 1, "key": "k", "source": str(tmp_path / "no")}]
    spec = session_spec(notebook_image, name, notebook=notebook, storage=storage, env=env)
    with pytest.raises(PoolMiss):
        runtime.pool_claim(state, replace(spec, datasets=missing))
    assert mounts_under(tmp_path / "pool" / pool_name) == []
    assert [m.name for m in runtime.pool_list()] == [pool_name]
    assert requests.get(f"{warm}api/status", params={"token": pool_token}, timeout=10).ok

    spec = replace(spec, datasets=datasets)
    claimed = runtime.pool_claim(state, spec)
    assert claimed["name"] == name
    assert claimed["container_id"] == state["container_id"]
    base = f"http://127.0.0.1:{claimed['port']}/nb/77/"
    auth = {"Authorization": f"token {token}"}

    # Jupyter answers the session's token under the session's base URL, and refuses the pool's.
    assert requests.get(f"{base}api/status", headers=auth, timeout=10).status_code == 200
    refused = requests.get(f"{base}api/status", params={"token": pool_token}, timeout=10)
    assert refused.status_code == 403
    assert runtime.endpoint(claimed) is not None

    # The volume's files are there, and what is written goes back to the volume.
    listing = requests.get(f"{base}api/contents/", headers=auth, timeout=10).json()
    names = {item["name"] for item in listing["content"]}
    assert {"before.txt", "datasets", "storage", "README-lattice.md"} <= names
    put = requests.put(
        f"{base}api/contents/after.txt",
        headers=auth,
        json={"type": "file", "format": "text", "content": "written in the session"},
        timeout=10,
    )
    assert put.status_code == 201
    assert (mountpoint / "after.txt").read_text() == "written in the session"

    # The volume as read_folder reads it (saving the folder as a model version).
    assert "after.txt" in {entry.path for entry in runtime.read_folder(claimed, "")}
    # The slot's name cannot be filled again while its claimed session runs.
    with pytest.raises(WorkloadError):
        runtime.pool_fill(pool_spec(notebook_image, pool_name, pool_token))

    # The dataset is there, read-only even for root in the container.
    container = docker_client.containers.get(claimed["container_id"])
    read = container.exec_run(["cat", "/datasets/iris/data.csv"])
    assert read.output == b"a,b\n1,2\n"
    write = container.exec_run(["touch", "/datasets/iris/new"], user="0")
    assert write.exit_code != 0
    assert b"Read-only file system" in write.output

    # A new kernel and a new terminal have the session's environment.
    assert (
        kernel_says(base, token, "import os; print(os.environ['TEAM_SECRET'])").strip()
        == (env["TEAM_SECRET"])
    )
    assert env["TEAM_SECRET"] in terminal_says(base, token, "echo $TEAM_SECRET", env["TEAM_SECRET"])

    # The same isolation and limits as start's container for the same spec.
    reference = runtime.create(replace(spec, name=f"ref-{suffix}"))
    made["containers"].append(f"ref-{suffix}")
    try:
        ours, theirs = container.attrs["HostConfig"], reference.attrs["HostConfig"]
        for key in (
            "NetworkMode",
            "CapDrop",
            "SecurityOpt",
            "Privileged",
            "Init",
            "NanoCpus",
            "Memory",
            "MemorySwap",
            "PidsLimit",
            "PortBindings",
            "DeviceRequests",
        ):
            assert ours[key] == theirs[key], key
        assert container.attrs["Config"]["User"] == reference.attrs["Config"]["User"]
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {NETWORK}
    finally:
        reference.remove(force=True)

    # The host's view: the session's workload (a new runtime, as after an agent restart).
    again = DockerRuntime(docker_client)
    managed = {m.name: m for m in again.list_managed()}
    assert managed[name].labels == spec.all_labels()
    assert managed[name].datasets == (str(dataset),)
    assert all(m.name != pool_name for m in again.pool_list())
    assert again.start(spec)["container_id"] == claimed["container_id"]  # idempotent

    # Stop: the container goes, its mounts and slot folder too; the volume's files stay.
    again.stop(claimed, timeout=5)
    with pytest.raises(NotFound):
        docker_client.containers.get(claimed["container_id"])
    assert mounts_under(tmp_path / "pool" / pool_name) == []
    assert not (tmp_path / "pool" / pool_name).exists()
    assert (mountpoint / "after.txt").exists()
    assert dataset.joinpath("data.csv").exists()


def test_pool_remove_removes_an_unclaimed_container_and_its_slot(
    pool, notebook_image, docker_client, tmp_path
):
    runtime, made = pool
    name = f"pool-t{uuid.uuid4().hex[:8]}"
    made["containers"].append(name)
    state = runtime.pool_fill(pool_spec(notebook_image, name, secrets.token_hex(16)))
    assert (tmp_path / "pool" / name).is_dir()
    runtime.pool_remove(state)
    with pytest.raises(NotFound):
        docker_client.containers.get(state["container_id"])
    assert not (tmp_path / "pool" / name).exists()
    assert runtime.pool_list() == [] or all(m.name != name for m in runtime.pool_list())


def test_a_host_that_cannot_mount_keeps_no_warm_containers(
    docker_client, settings, tmp_path, monkeypatch
):
    """Not root (or the engine's volumes out of sight): unsupported, and every pool call
    misses, so starts go the ordinary way."""
    settings.LATTICE_POOL_DIR = tmp_path / "pool"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runtime = DockerRuntime(docker_client)
    assert runtime.pool_supported() is False
    with pytest.raises(PoolMiss):
        runtime.pool_fill(pool_spec("unused:image", "pool-never", "t"))
    with pytest.raises(PoolMiss):
        runtime.pool_claim(
            {"name": "pool-never"}, session_spec("unused", "nb", notebook="a", storage="b")
        )
    assert not (tmp_path / "pool").exists()
