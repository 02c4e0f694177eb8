"""The controller with the real built-in model server: its replicas placed and started by
the agent, the model version's files mounted at /model from the blob store, ready only when
serve.py's health route says READY; a setup() that raises fails its revision with the
error while the previous one keeps serving.

On the process runtime (serve.py as a local process: quick) and on real Docker (the model
server's image serving the iris example). Celery runs eagerly: a reconcile returns once the
agent's start has ended (ready or failed). The gateway's routes_changed and in_flight are
monkeypatched (tests.deployments.control_helpers: the gateway's module is another helper's).
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from apps.core import stream
from apps.deployments.models import Deployment, DeploymentEvent, Replica, Revision
from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.runtimes import select
from tests.deployments.control_helpers import (
    add_revision,
    make_deployment,
    reconcile,
    replicas_of,
    traffic,
)
from tests.model_fixtures import make_model_version

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db(transaction=True)

S = Replica.Status

SLOW_SETUP = b"""
import time

def setup():
    time.sleep(1.5)

def predict(x=1):
    return {"doubled": 2 * x}
"""

RAISING_SETUP = b"""
def setup():
    raise RuntimeError("weights.bin is missing from the upload")

def predict(**inputs):
    return inputs
"""


def health(endpoint: str) -> dict[str, Any]:
    return dict(httpx.get(f"{endpoint}/health-check", timeout=5).json())


def builtin(version: Any, **spec: Any) -> dict[str, Any]:
    return {
        "serving": Revision.Serving.BUILTIN,
        "image": "",
        "health_path": "",
        "model_version": version,
        "startup_timeout": 60,
        **spec,
    }


def room() -> dict[str, Any]:
    """This machine's inventory, with room for a rollout's surge (old and new replicas at
    once) whatever its own CPU count: the containers are small and mostly idle."""
    return {**collect(), "cpu_count": 16, "memory_bytes": 64 * 1024**3}


@pytest.fixture
def process_host(settings, tmp_path, catalogue, served_media, cache, gateway_calls):
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "runtime"
    select._runtime.cache_clear()
    stream.reset_for_tests()
    yield host_ensure_local(name="local", inventory=room(), runtime="process")
    runtime = select.host_runtime()
    for managed in runtime.list_managed():
        runtime.stop(managed.state, timeout=3)
    select._runtime.cache_clear()
    shutil.rmtree(tmp_path / "runtime", ignore_errors=True)


def test_a_replica_of_the_model_server_is_ready_only_after_setup(acme, alice, process_host):
    version = make_model_version(acme, alice, "Doubler", {"predict.py": SLOW_SETUP})

    deployment = make_deployment(acme, alice, "Doubler", **builtin(version))

    [replica] = replicas_of(deployment)
    assert replica.status == S.READY, replica.status_message
    assert health(replica.endpoint)["status"] == "READY"
    answer = httpx.post(f"{replica.endpoint}/predict", json={"x": 21}, timeout=5)
    assert answer.json() == {"output": {"doubled": 42}}
    # It was loading (setup() ran 1.5 s) before it was ready, and took traffic only then.
    published = [
        m["status"] for m in stream.stream_after(deployment.stream, 0) if m.get("type") == "replica"
    ]
    assert published.index("loading") < published.index("ready")
    assert traffic(deployment) == {replica.revision_id: 100}
    assert deployment.status == Deployment.Status.READY
    # Its output goes to the deployment's stream, as a notebook's does (shipped by a thread).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = [
            line
            for m in stream.stream_after(deployment.stream, 0)
            if m.get("type") == "logs"
            for line in m["lines"]
        ]
        if any("setup" in line for line in logs):
            break
        time.sleep(0.1)
    assert any("setup" in line for line in logs), logs


def test_a_setup_that_raises_fails_its_revision_and_the_old_one_serves_on(
    acme, alice, process_host
):
    good = make_model_version(acme, alice, "Doubler", {"predict.py": SLOW_SETUP})
    bad = make_model_version(acme, alice, "Doubler", {"predict.py": RAISING_SETUP})
    deployment = make_deployment(acme, alice, "Doubler", **builtin(good))
    [old] = replicas_of(deployment)
    r2 = add_revision(deployment, reason="changed", **builtin(bad))

    deployment = reconcile(deployment)

    r2.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert "SETUP_FAILED" in r2.status_message
    assert "weights.bin is missing from the upload" in r2.status_message
    assert traffic(deployment) == {old.revision_id: 100}
    assert "weights.bin is missing" in deployment.status_message
    failed = DeploymentEvent.objects.for_team(acme).get(
        deployment=deployment, kind="rollout_failed"
    )
    assert "r1 keeps serving" in failed.message
    old.refresh_from_db()
    assert old.status == S.READY
    answer = httpx.post(f"{old.endpoint}/predict", json={"x": 2}, timeout=5)
    assert answer.json() == {"output": {"doubled": 4}}
    [new] = replicas_of(deployment, revision=r2)
    assert new.status in (S.FAILED, S.STOPPED)
    assert new.ended_at is not None


# --- on real Docker, the model server's image and the iris example ----------------------


@pytest.fixture
def docker_host(
    settings, docker_client, model_server_image, catalogue, served_media, cache, gateway_calls
):
    from tests.notebook_fixtures import remove_installation_workloads

    settings.LATTICE_RUNTIME = "docker"
    settings.LATTICE_MODEL_SERVER_IMAGE = model_server_image
    select._runtime.cache_clear()
    stream.reset_for_tests()
    yield host_ensure_local(name="local", inventory=room(), runtime="docker")
    remove_installation_workloads(docker_client)
    select._runtime.cache_clear()


def iris_files(model_server_image: str, docker_client: Any, tmp_path: Path) -> dict[str, bytes]:
    from tests.runtimes.test_model_server_image import train_iris

    folder = train_iris(model_server_image, docker_client, tmp_path / "trained")
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.docker
def test_the_iris_model_deploys_on_docker_and_a_failing_setup_is_rolled_back(
    acme, alice, docker_host, docker_client, model_server_image, tmp_path
):
    from tests.runtimes.test_model_server_image import SETOSA

    iris = make_model_version(
        acme, alice, "Iris", iris_files(model_server_image, docker_client, tmp_path)
    )

    deployment = make_deployment(acme, alice, "Iris", **builtin(iris, startup_timeout=120))

    [replica] = replicas_of(deployment)
    assert replica.status == S.READY, replica.status_message
    assert health(replica.endpoint)["status"] == "READY"
    answer = httpx.post(f"{replica.endpoint}/predict", json=SETOSA, timeout=10)
    assert answer.json()["output"]["species"] == "setosa"
    container = docker_client.containers.get(replica.runtime_state["container_id"])
    assert container.labels["lattice.deployment"] == str(deployment.pk)
    assert traffic(deployment) == {replica.revision_id: 100}

    broken = make_model_version(acme, alice, "Iris", {"predict.py": RAISING_SETUP})
    r2 = add_revision(deployment, reason="changed", **builtin(broken, startup_timeout=120))
    deployment = reconcile(deployment)

    r2.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert "weights.bin is missing from the upload" in r2.status_message
    assert traffic(deployment) == {replica.revision_id: 100}
    replica.refresh_from_db()
    assert replica.status == S.READY
    again = httpx.post(f"{replica.endpoint}/predict", json=SETOSA, timeout=10)
    assert again.json()["output"]["species"] == "setosa"
    [new] = replicas_of(deployment, revision=r2)
    assert new.ended_at is not None
    assert "weights.bin is missing" in new.status_message


@pytest.mark.docker
def test_a_killed_replica_container_is_found_lost_and_replaced_on_docker(
    acme,
    alice,
    docker_host,
    docker_client,
    model_server_image,
    tmp_path,
    gateway_calls,
    settings,
    monkeypatch,
):
    from apps.machines import agent
    from apps.machines.agent import agent_report
    from apps.machines.tasks import reconcile as machines_reconcile

    settings.LATTICE_RECONCILE_GRACE = 0
    iris = make_model_version(
        acme, alice, "Iris", iris_files(model_server_image, docker_client, tmp_path)
    )
    deployment = make_deployment(
        acme, alice, "Iris", **builtin(iris, min_replicas=2, max_replicas=2, startup_timeout=120)
    )
    killed, kept = replicas_of(deployment, S.READY)
    monkeypatch.setattr(agent, "collect", room)  # its reports keep the room for a surge
    told = len(gateway_calls.routes_changed)

    docker_client.containers.get(killed.runtime_state["container_id"]).kill()
    for _ in range(2):  # two reports without it, and the machines reconciler gives up on it
        agent_report(docker_host.name)
        machines_reconcile()
    deployment = reconcile(deployment)

    killed.refresh_from_db()
    assert killed.status == S.LOST
    kept.refresh_from_db()
    assert kept.status == S.READY  # the other one served on
    ready = replicas_of(deployment, S.READY)
    assert len(ready) == 2
    assert killed.pk not in {r.pk for r in ready}
    assert health(ready[-1].endpoint)["status"] == "READY"
    assert len(gateway_calls.routes_changed) > told
    assert deployment.status == Deployment.Status.READY


LOADING_SETUP = b"""
import time

def setup():
    time.sleep(4)

def predict(x=1):
    return {"doubled": 2 * x}
"""


def test_no_traffic_while_the_model_loads_only_once_it_says_ready(
    acme, alice, process_host, monkeypatch
):
    """The agent's start runs in a thread here (as on a host), so the test watches the
    replica while setup() runs: loading, its health route STARTING, no traffic; then READY
    and traffic at once."""
    import threading

    from apps.deployments import replicas
    from apps.machines.agent import agent_start

    threads: list[threading.Thread] = []

    class _OnTheHost:
        @staticmethod
        def apply_async(args: tuple[Any, ...], **_: Any) -> None:
            thread = threading.Thread(target=agent_start, args=args, daemon=True)
            threads.append(thread)
            thread.start()

    monkeypatch.setattr(replicas, "agent_start", _OnTheHost)
    version = make_model_version(acme, alice, "Slow", {"predict.py": LOADING_SETUP})

    deployment = make_deployment(acme, alice, "Slow", **builtin(version))

    seen_loading = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [replica] = replicas_of(deployment)
        if replica.status == S.READY:
            break
        if replica.status == S.LOADING:
            seen_loading = True
            assert traffic(deployment) == {}
            deployment.refresh_from_db()
            assert deployment.status == Deployment.Status.DEPLOYING
        time.sleep(0.1)
    for thread in threads:
        thread.join(10)
    assert seen_loading
    replica.refresh_from_db()
    assert replica.status == S.READY
    assert replica.ready_at is not None
    assert replica.started_at is not None
    assert (replica.ready_at - replica.started_at).total_seconds() >= 3.5  # setup() ran first
    assert health(replica.endpoint)["status"] == "READY"
    assert traffic(deployment) == {replica.revision_id: 100}
