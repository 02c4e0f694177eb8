"""The agent's pieces for workloads run to their end (a job's attempt): the runtimes' exit
status that tells a vanished container from an exit, ``agent_start`` with ``"until":
"exit"`` (ready at once, then "exited" with its status), ``copy_volume`` (a snapshot, once),
``managed_report`` listing an exited workload with its status, and ``agent_stop``'s grace
(SIGTERM, the grace, SIGKILL)."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import pytest
from docker.errors import NotFound

from apps.machines import agent
from apps.runtimes import select
from apps.runtimes.base import Spec
from apps.runtimes.docker import DockerRuntime
from tests.helpers import wait_for


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """What the agent says (workload, event, data), instead of sending it signed."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        agent, "_send", lambda _host, name, event, **data: events.append((name, event, data))
    )
    return events


@pytest.fixture
def process_runtime(settings: Any, tmp_path: Any) -> Any:
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "runtime"
    select._runtime.cache_clear()
    runtime = select.host_runtime()
    yield runtime
    for managed in runtime.list_managed():
        runtime.stop(managed.state, timeout=2)
    select._runtime.cache_clear()


def job_spec(name: str, script: str, image: str = "unused", **fields: Any) -> Spec:
    return Spec(
        name=name,
        image=image,
        command=["sh", "-c", script],
        labels={"until": "exit", "stream": f"job-run-{name}"},
        **fields,
    )


def events_of(said: list[tuple[str, str, dict[str, Any]]], name: str) -> list[str]:
    return [event for workload, event, _ in said if workload == name]


def test_until_exit_says_ready_at_once_then_exited_with_the_real_status(
    process_runtime, said, monkeypatch
):
    monkeypatch.setattr(agent, "ship_logs", lambda *_args, **_kwargs: None)
    agent.agent_start(
        "local", agent.spec_to_task(job_spec("jb-901", "sleep 0.5; exit 7")), {"until": "exit"}
    )
    assert events_of(said, "jb-901") == ["started", "ready"]
    assert said[1][2]["phase"] == "running"
    assert wait_for(lambda: "exited" in events_of(said, "jb-901"), timeout=10)
    [exited] = [data for _, event, data in said if event == "exited"]
    assert exited["exit_code"] == 7
    assert isinstance(exited["finished_at"], float)
    # Said once: the watcher is done.
    time.sleep(1.5)
    assert events_of(said, "jb-901") == ["started", "ready", "exited"]


def test_the_process_runtimes_status_outlives_its_reaping_and_a_stranger_vanishes(
    process_runtime,
):
    state = process_runtime.start(job_spec("jb-902", "exit 4"))
    assert wait_for(lambda: not process_runtime.exit_status(state).running, timeout=10)
    # Asked again (the child was reaped by the first answer): the same status.
    assert process_runtime.exit_status(state).code == 4
    assert process_runtime.exit_status(state).code == 4
    assert process_runtime.poll(state) == 4
    # A workload whose process is gone and left no status is vanished, not "exit 0".
    (process_runtime.root / "workloads" / "jb-902" / "exit-status").unlink()
    gone = {**state, "pid": 2**22 + 1}
    assert process_runtime.exit_status(gone).vanished


def test_managed_report_lists_an_exited_workload_with_its_status_and_tells_it(
    process_runtime, said
):
    state = process_runtime.start(job_spec("jb-903", "exit 0"))
    assert wait_for(lambda: not process_runtime.exit_status(state).running, timeout=10)
    workloads = agent.managed_report("local")
    [report] = [w for w in workloads if w["name"] == "jb-903"]
    assert report["running"] is False
    assert report["exited"] is True
    assert report["exit_code"] == 0
    # Told as an event too, after the report: an agent that restarted lost the watcher
    # that would have.
    agent.tell_exits("local", workloads)
    assert ("jb-903", "exited") in [(w, e) for w, e, _ in said]


def test_copy_volume_takes_a_snapshot_into_the_workspace_once(process_runtime, said, monkeypatch):
    monkeypatch.setattr(agent, "ship_logs", lambda *_args, **_kwargs: None)
    volumes = process_runtime.root / "volumes"
    (volumes / "nb-source").mkdir(parents=True)
    (volumes / "nb-source" / "train.py").write_text("print('v1')\n")
    spec = job_spec(
        "jb-904",
        "cat train.py",
        volumes={"ws-904": "/workspace", "out-904": "/outputs"},
    )
    agent.agent_start(
        "local", agent.spec_to_task(spec), {"until": "exit", "copy_volume": "nb-source"}
    )
    assert (volumes / "ws-904" / "train.py").read_text() == "print('v1')\n"
    assert wait_for(lambda: "exited" in events_of(said, "jb-904"), timeout=10)
    log = (process_runtime.root / "workloads" / "jb-904" / "output.log").read_text()
    assert "print('v1')" in log  # it ran in its workspace
    # The notebook changes; a retry on this host keeps the snapshot the first attempt took.
    (volumes / "nb-source" / "train.py").write_text("print('v2')\n")
    agent.agent_start(
        "local", agent.spec_to_task(spec), {"until": "exit", "copy_volume": "nb-source"}
    )
    assert (volumes / "ws-904" / "train.py").read_text() == "print('v1')\n"


@pytest.fixture
def docker_runtime(docker_client, busybox_image):
    runtime = DockerRuntime(docker_client)
    made: list[str] = []
    yield runtime, made
    for name in made:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)


def busybox_job(image: str, name: str, script: str) -> Spec:
    return Spec(
        name=name,
        image=image,
        command=["/bin/busybox", "sh", "-c", script],
        vcpus=0.5,
        memory_bytes=64 * 1024**2,
        pids_limit=64,
        user="0:0",
        labels={"until": "exit"},
    )


@pytest.mark.docker
def test_docker_tells_an_exit_from_a_container_removed_behind_our_back(
    docker_runtime, busybox_image, docker_client
):
    runtime, made = docker_runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    state = runtime.start(busybox_job(busybox_image, name, "sleep 0.5; exit 3"))
    assert runtime.exit_status(state).running
    assert wait_for(lambda: not runtime.exit_status(state).running, timeout=20)
    status = runtime.exit_status(state)
    assert status.code == 3
    assert not status.vanished
    assert status.finished_at is not None
    assert abs(status.finished_at - time.time()) < 60

    docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
    status = runtime.exit_status(state)
    assert status.vanished
    assert status.code is None
    # What poll says of it (JupyterHub's "0 if unknown") is why jobs do not read poll.
    assert runtime.poll(state) == 0


@pytest.mark.docker
def test_agent_stop_gives_sigterm_then_the_grace_then_sigkill(
    docker_runtime, busybox_image, docker_client, said, settings, monkeypatch
):
    runtime, made = docker_runtime
    monkeypatch.setattr(agent, "host_runtime", lambda: runtime)
    polite, stubborn = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    made += [polite, stubborn]
    trap = "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.2; done"
    runtime.start(busybox_job(busybox_image, polite, trap))
    deaf = "trap '' TERM; while true; do sleep 0.2; done"
    runtime.start(busybox_job(busybox_image, stubborn, deaf))
    time.sleep(0.5)

    began = time.monotonic()
    agent.agent_stop("local", polite, None, None, grace=5)
    # The trap ran and it ended well within its grace.
    assert time.monotonic() - began < 4
    began = time.monotonic()
    agent.agent_stop("local", stubborn, None, None, grace=2)
    # SIGTERM was ignored: SIGKILL after the grace, not before.
    assert 2 <= time.monotonic() - began < 10
    for name in (polite, stubborn):
        assert runtime.exit_status({"name": name}).vanished  # stopped and removed
    assert events_of(said, polite) == ["stopped"]
