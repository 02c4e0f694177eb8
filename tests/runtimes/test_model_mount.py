"""A model version mounted read-only at /model: a spec's dataset entry that says
``"path": "/model"``, built on the host by the agent like a dataset (once per content), then
bound read-only by Docker, or linked as ``model`` in a process's working folder (which
``{mount:/model}`` names). The process runtime runs the built-in model server on it."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from docker.errors import NotFound

from apps.machines.agent import spec_to_task, with_datasets
from apps.runtimes.base import Spec, WorkloadError, dataset_mounts, mount_path
from apps.runtimes.images import model_server_command
from apps.runtimes.process import LocalProcessRuntime
from tests.dataset_fixtures import spec_dataset

PREDICT = b"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
weights = {}


def setup():
    weights.update(json.loads((HERE / "weights.json").read_text()))


def predict(x):
    return {"y": weights["a"] * x + weights["b"]}
"""
FILES = {"predict.py": PREDICT, "weights.json": json.dumps({"a": 2, "b": 1}).encode()}


def model_mount(files: dict[str, bytes] = FILES) -> dict[str, Any]:
    return spec_dataset("model", files) | {"path": "/model"}


def test_a_mount_is_at_datasets_name_or_at_model_and_nowhere_else(tmp_path):
    assert mount_path({"name": "cats"}) == "/datasets/cats"
    assert mount_path({"name": "model", "path": "/model"}) == "/model"
    for path in ("/etc", "/model/../etc", "/datasets/cats", "", "/notebooks"):
        with pytest.raises(WorkloadError, match="mounted at /datasets/<name> or /model only"):
            mount_path({"name": "m", "path": path})
    with pytest.raises(WorkloadError, match="not a valid dataset folder name"):
        mount_path({"name": "../m", "path": "/model"})

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    twice = Spec(
        name="w",
        image="i",
        command=["x"],
        datasets=[
            {"name": "a", "source": str(one), "path": "/model"},
            {"name": "b", "source": str(two), "path": "/model"},
        ],
    )
    with pytest.raises(WorkloadError, match="Two datasets are mounted at /model"):
        dataset_mounts(twice)
    missing = Spec(name="w", image="i", command=["x"], datasets=[{"name": "m", "path": "/model"}])
    with pytest.raises(WorkloadError, match="The model version for /model is not on this host"):
        dataset_mounts(missing)


def test_the_agent_builds_the_model_folder_once_and_keeps_its_path(served_media, cache):
    spec = Spec(name="dp-1", image="i", command=["x"], datasets=[model_mount()])

    built = with_datasets(Spec(**spec_to_task(spec)), cache)

    (entry,) = built.datasets
    assert entry["path"] == "/model"
    assert entry["source"] == str(cache / spec.datasets[0]["key"])
    assert dataset_mounts(built) == [(entry["source"], "/model")]
    assert (cache / entry["key"] / "weights.json").read_bytes() == FILES["weights.json"]
    # A dataset without a path keeps its old shape: no "path" appears.
    plain = with_datasets(
        Spec(name="nb-1", image="i", command=["x"], datasets=[spec_dataset("cats", FILES)]), cache
    )
    assert "path" not in plain.datasets[0]


def test_the_process_runtime_serves_the_model_through_its_model_link(served_media, cache, tmp_path):
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    spec = with_datasets(
        Spec(
            name="dp-2",
            image="",
            command=model_server_command("process"),
            datasets=[model_mount()],
        ),
        cache,
        runtime=runtime,
    )
    state = runtime.start(spec)
    try:
        link = tmp_path / "runtime" / "workloads" / "dp-2" / "model"
        assert link.is_symlink()
        assert link.resolve() == cache / spec.datasets[0]["key"]
        # The agent's cache sees the folder in use (it evicts none that a workload mounts).
        assert runtime.list_managed()[0].datasets == (spec.datasets[0]["source"],)

        deadline = time.monotonic() + 15
        endpoint, status = None, None
        while status != "READY" and time.monotonic() < deadline:
            endpoint = runtime.endpoint(state)  # None until its port answers
            with contextlib.suppress(httpx.HTTPError):
                if endpoint is not None:
                    status = httpx.get(f"{endpoint}/health-check", timeout=2).json()["status"]
            time.sleep(0.05)
        assert status == "READY", list(runtime.logs(state))
        answer = httpx.post(f"{endpoint}/predict", json={"x": 3}, timeout=5)
        assert answer.json() == {"output": {"y": 7}}
    finally:
        runtime.stop(state, timeout=2)

    # Started again without a model: the link goes.
    runtime.start(Spec(name="dp-2", image="", command=["true"]))
    assert not link.is_symlink()


def test_a_file_called_model_in_the_working_folder_is_not_replaced(served_media, cache, tmp_path):
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    spec = with_datasets(
        Spec(name="dp-3", image="", command=["true"], datasets=[model_mount()]), cache
    )
    folder = tmp_path / "runtime" / "workloads" / "dp-3"
    folder.mkdir(parents=True)
    (folder / "model").write_text("mine")

    with pytest.raises(WorkloadError, match="a file called model"):
        runtime.start(spec)
    assert (folder / "model").read_text() == "mine"


@pytest.mark.docker
def test_a_container_sees_the_model_at_model_and_cannot_write_it(
    docker_client, busybox_image, served_media, cache
):
    from apps.runtimes.docker import DockerRuntime

    runtime = DockerRuntime(docker_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    spec = Spec(
        name=name,
        image=busybox_image,
        command=["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"],
        vcpus=0.5,
        memory_bytes=64 * 1024**2,
        pids_limit=64,
        labels={"team": "acme"},
        datasets=[model_mount()],
    )
    try:
        built = with_datasets(spec, cache)
        state = runtime.start(built)
        container = docker_client.containers.get(state["container_id"])

        read = container.exec_run(["/bin/busybox", "cat", "/model/weights.json"])
        assert read.output == FILES["weights.json"]
        written = container.exec_run(["/bin/busybox", "touch", "/model/new.txt"])
        assert "Read-only file system" in written.output.decode()
        as_root = container.exec_run(["/bin/busybox", "rm", "/model/predict.py"], user="0:0")
        assert "Read-only file system" in as_root.output.decode()
        (managed,) = [m for m in runtime.list_managed() if m.name == name]
        assert managed.datasets == (built.datasets[0]["source"],)
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
