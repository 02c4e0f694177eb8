"""Readiness never lies, and faults, end to end: the real gateway (config.asgi under
uvicorn), the real controller, the agent's starts on the host (threads, as a host's agent
runs them), the built-in model server (the process runtime: serve.py as local processes;
on real Docker: its image), while clients keep calling the endpoint.

Nothing of Lattice is replaced: routes_changed and in_flight are the gateway's own. The
test plays beat (it calls the controller's reconcile, as beat would every 2 s).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from apps.core import stream
from apps.deployments import controller, replicas
from apps.deployments.models import Deployment, DeploymentEvent, Replica, Revision
from apps.machines.agent import agent_start
from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.runtimes import select
from tests.deployments.control_helpers import add_revision, replicas_of, traffic
from tests.model_fixtures import make_model_version

pytestmark = pytest.mark.django_db(transaction=True)

S = Replica.Status


def model(tag: str, *, setup: str = "pass") -> dict[str, bytes]:
    """A predict.py whose answers say which version served them."""
    return {
        "predict.py": (
            "import time\n\n"
            f"def setup():\n    {setup}\n\n"
            f"def predict(x=1):\n    return {{'version': {tag!r}, 'doubled': 2 * x}}\n"
        ).encode()
    }


def room() -> dict[str, Any]:
    """This machine's inventory with room for a rollout's surge."""
    return {**collect(), "cpu_count": 16, "memory_bytes": 64 * 1024**3}


def builtin(version: Any, **spec: Any) -> dict[str, Any]:
    return {
        "serving": Revision.Serving.BUILTIN,
        "image": "",
        "health_path": "",
        "model_version": version,
        "startup_timeout": 90,
        **spec,
    }


@pytest.fixture
def on_the_host(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The agent's starts run in threads, as on a host: a reconcile returns at once and
    the replica goes through its states while the test watches (and the clients call)."""
    threads: list[threading.Thread] = []

    class _OnTheHost:
        @staticmethod
        def apply_async(args: tuple[Any, ...], **_: Any) -> None:
            thread = threading.Thread(target=agent_start, args=args, daemon=True)
            threads.append(thread)
            thread.start()

    monkeypatch.setattr(replicas, "agent_start", _OnTheHost)
    return threads


@pytest.fixture
def process_host(settings, tmp_path, catalogue, served_media, cache, on_the_host):
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "runtime"
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 3
    select._runtime.cache_clear()
    stream.reset_for_tests()
    yield host_ensure_local(name="local", inventory=room(), runtime="process")
    runtime = select.host_runtime()
    for managed in runtime.list_managed():
        runtime.stop(managed.state, timeout=3)
    select._runtime.cache_clear()
    shutil.rmtree(tmp_path / "runtime", ignore_errors=True)


def deploy(team: Any, actor: Any, name: str, **spec: Any) -> Deployment:
    """A public deployment and its first revision, reconciled once (its start queued)."""
    deployment = Deployment.objects.for_team(team).create(
        team=team,
        name=name,
        slug=name.lower(),
        created_by=actor,
        auth_mode="public",
        rate_limit_per_minute=0,
    )
    add_revision(deployment, reason="created", **spec)
    controller.deployment_reconcile(deployment)
    deployment.refresh_from_db()
    return deployment


def beat_until(deployment: Deployment, done: Any, *, timeout: float, every: float = 0.5) -> None:
    """Reconcile as beat does until ``done()`` holds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, [
            (r.pk, r.revision.number, r.status, r.status_message) for r in replicas_of(deployment)
        ]
        controller.deployment_reconcile(
            Deployment.objects.for_team(deployment.team_id).get(pk=deployment.pk)
        )
        time.sleep(every)


def call(server: str, deployment: Deployment, *, timeout: float = 30) -> httpx.Response:
    host = f"{deployment.slug}--{deployment.team.slug}.localhost"
    return httpx.post(f"{server}/predict", headers={"host": host}, json={"x": 21}, timeout=timeout)


@dataclass
class Clients:
    """Clients calling the endpoint through the gateway in a loop; every answer kept as
    (status, the version that answered or the body)."""

    server: str
    deployment: Deployment
    count: int = 4
    answers: list[tuple[int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _loop(self) -> None:
        host = f"{self.deployment.slug}--{self.deployment.team.slug}.localhost"
        with httpx.Client(headers={"host": host}, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(f"{self.server}/predict", json={"x": 21})
                except httpx.HTTPError as exc:
                    self.answers.append((0, repr(exc)))
                    continue
                try:
                    said = str(answer.json()["output"]["version"])
                except (ValueError, KeyError, TypeError):
                    said = answer.text[:200]
                self.answers.append((answer.status_code, said))

    def __enter__(self) -> Clients:
        for _ in range(self.count):
            thread = threading.Thread(target=self._loop, daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(40)

    def failures(self) -> list[tuple[int, str]]:
        return [a for a in self.answers if a[0] != 200]


# --- readiness never lies ---------------------------------------------------------------


SLEEP_20 = "time.sleep(20)"


def test_a_first_revision_holds_its_requests_while_setup_sleeps_20s_then_answers(
    acme, alice, process_host, asgi_live_server
):
    slow = make_model_version(acme, alice, "Slow", model("v1", setup=SLEEP_20))
    deployment = deploy(acme, alice, "Slow", **builtin(slow))
    held: list[httpx.Response] = []
    asked = time.monotonic()
    caller = threading.Thread(
        target=lambda: held.append(call(asgi_live_server, deployment, timeout=60)), daemon=True
    )
    caller.start()

    seen = set()
    while caller.is_alive() and time.monotonic() - asked < 60:
        [replica] = replicas_of(deployment)
        seen.add(replica.status)
        if replica.status == S.LOADING:
            assert traffic(deployment) == {}
            assert not held  # the request is held, not answered
        time.sleep(0.2)
    caller.join(5)

    assert S.LOADING in seen
    [answer] = held
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] == {"version": "v1", "doubled": 42}
    assert time.monotonic() - asked >= 19  # it waited for setup(), and was not refused
    [replica] = replicas_of(deployment)
    assert replica.status == S.READY
    assert replica.ready_at is not None
    assert replica.started_at is not None
    assert (replica.ready_at - replica.started_at).total_seconds() >= 19


def test_a_new_revision_loading_for_20s_takes_no_traffic_until_ready(
    acme, alice, process_host, asgi_live_server
):
    v1 = make_model_version(acme, alice, "Slow", model("v1"))
    v2 = make_model_version(acme, alice, "Slow", model("v2", setup=SLEEP_20))
    deployment = deploy(acme, alice, "Slow", **builtin(v1))
    beat_until(deployment, lambda: traffic(deployment) != {}, timeout=30)
    [old] = replicas_of(deployment, S.READY)

    with Clients(asgi_live_server, deployment) as clients:
        time.sleep(1)
        r2 = add_revision(deployment, reason="changed", **builtin(v2))
        controller.deployment_reconcile(deployment)
        loading_seen = 0
        while True:
            [new] = replicas_of(deployment, revision=r2)
            if new.status == S.LOADING:
                loading_seen += 1
                # Meanwhile every answer came from r1.
                assert {said for _, said in clients.answers} == {"v1"}, Counter(clients.answers)
            if new.status not in (S.PLACING, S.STARTING, S.LOADING):
                break
            time.sleep(0.5)
        loading_answers = len(clients.answers)
        beat_until(
            deployment,
            lambda: (
                traffic(deployment) == {r2.pk: 100}
                and not replicas_of(deployment, S.READY, S.DRAINING, revision=old.revision)
            ),
            timeout=30,
        )
        time.sleep(1)

    assert loading_seen >= 10  # watched for ~20 s (0.5 s apart)
    assert new.status == S.READY, new.status_message
    assert loading_answers > 20
    assert clients.failures() == []
    said = [s for _, s in clients.answers]
    assert set(said) == {"v1", "v2"}
    # After r1 drained (the last second of calls), only r2 answered.
    assert set(said[-clients.count * 3 :]) == {"v2"}


# --- a setup() that raises --------------------------------------------------------------


RAISES = 'raise RuntimeError("<script>alert(1)</script> weights.bin is missing")'


def test_a_setup_that_raises_leaves_the_old_revision_serving_and_says_why(
    acme, alice, process_host, asgi_live_server, client
):
    v1 = make_model_version(acme, alice, "Churn", model("v1"))
    bad = make_model_version(acme, alice, "Churn", model("bad", setup=RAISES))
    deployment = deploy(acme, alice, "Churn", **builtin(v1))
    beat_until(deployment, lambda: traffic(deployment) != {}, timeout=30)

    with Clients(asgi_live_server, deployment) as clients:
        time.sleep(1)
        r2 = add_revision(deployment, reason="changed", **builtin(bad))
        controller.deployment_reconcile(deployment)
        beat_until(
            deployment,
            lambda: Revision.objects.for_team(acme).get(pk=r2.pk).status == Revision.Status.FAILED,
            timeout=30,
        )
        time.sleep(1.5)

    assert len(clients.answers) > 20
    assert clients.failures() == []
    assert {said for _, said in clients.answers} == {"v1"}
    r2.refresh_from_db()
    assert "SETUP_FAILED" in r2.status_message
    assert "weights.bin is missing" in r2.status_message
    assert traffic(deployment) != {}
    assert r2.pk not in traffic(deployment)

    client.force_login(alice)
    detail = client.get(f"/api/v1/teams/acme/deployments/{deployment.slug}/").json()
    [failed] = [r for r in detail["revisions"] if r["number"] == r2.number]
    assert failed["status"] == Revision.Status.FAILED
    assert "SETUP_FAILED" in failed["status_message"]
    assert "<script>alert(1)</script> weights.bin" in failed["status_message"]
    page = client.get(f"/t/acme/deployments/{deployment.pk}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; weights.bin is missing" in page
    assert "<script>alert(1)" not in page
    assert (
        DeploymentEvent.objects.for_team(acme)
        .filter(deployment=deployment, kind="rollout_failed")
        .exists()
    )


# --- a replica's container killed behind Lattice's back ----------------------------------


@pytest.fixture
def docker_host(settings, docker_client, model_server_image, catalogue, served_media, cache):
    import os

    from django.db import connection

    from tests.notebook_fixtures import remove_installation_workloads

    settings.LATTICE_RUNTIME = "docker"
    settings.LATTICE_MODEL_SERVER_IMAGE = model_server_image
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 3
    # Containers are named dp-<replica id>: ids of this run's own, so that another test
    # run on the same Docker engine (its own database counting from 1) never names the same.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('deployments_replica', 'id'), %s)",
            [os.getpid() * 1000],
        )
    select._runtime.cache_clear()
    stream.reset_for_tests()
    yield host_ensure_local(name="local", inventory=room(), runtime="docker")
    remove_installation_workloads(docker_client)
    select._runtime.cache_clear()


WORKING = "time.sleep(0.02)"


@pytest.mark.docker
def test_a_killed_replica_container_under_load_moves_traffic_and_is_replaced(
    acme, alice, docker_host, docker_client, on_the_host, asgi_live_server, settings, monkeypatch
):
    from apps.machines import agent
    from apps.machines.agent import agent_report
    from apps.machines.tasks import reconcile as machines_reconcile

    settings.LATTICE_RECONCILE_GRACE = 0
    monkeypatch.setattr(agent, "collect", room)  # its reports keep the room for a surge
    version = make_model_version(acme, alice, "Twins", model("v1", setup=WORKING))
    deployment = deploy(acme, alice, "Twins", **builtin(version, min_replicas=2, max_replicas=2))
    beat_until(deployment, lambda: len(replicas_of(deployment, S.READY)) == 2, timeout=120)
    beat_until(deployment, lambda: traffic(deployment) != {}, timeout=30)
    killed, kept = replicas_of(deployment, S.READY)

    with Clients(asgi_live_server, deployment, count=6) as clients:
        time.sleep(2)
        before = len(clients.answers)
        docker_client.containers.get(killed.runtime_state["container_id"]).kill()
        time.sleep(2)  # the gateway alone, before Lattice knows
        after_kill = len(clients.answers)
        for _ in range(2):  # two reports without it: the machines reconciler gives up on it
            agent_report(docker_host.name)
            machines_reconcile()
        beat_until(
            deployment,
            lambda: (
                len(replicas_of(deployment, S.READY)) == 2
                and killed.pk not in {r.pk for r in replicas_of(deployment, S.READY)}
            ),
            timeout=120,
        )
        time.sleep(2)  # the replacement takes its share

    failures = clients.failures()
    assert before > 20
    assert after_kill - before > 20  # traffic went on to the other replica at once
    # No answer of the gateway failed: requests in flight on the killed replica, and those
    # sent to its port before Lattice knew it was gone, were answered nothing and went to
    # the other one. The one loss left: a request whose answer the replica had begun (its
    # head sent, serve.py writes head and body apart) when it was killed; its head went on
    # to the client, so the gateway can only break it off. At most those in flight there.
    broken = [f for f in failures if f[0] == 0 and "peer closed connection" in f[1]]
    assert failures == broken, Counter(failures)
    assert len(broken) <= clients.count, Counter(failures)
    killed.refresh_from_db()
    assert killed.status == S.LOST
    kept.refresh_from_db()
    assert kept.status == S.READY
    [replacement] = [r for r in replicas_of(deployment, S.READY) if r.pk != kept.pk]
    assert replacement.pk > killed.pk
    assert (
        DeploymentEvent.objects.for_team(acme)
        .filter(deployment=deployment, kind="replica_lost")
        .exists()
    )


# --- the agent killed ---------------------------------------------------------------------


@pytest.fixture
def queued(settings: Any) -> Any:
    """Tasks queued, not run inline, as in production; a control worker (the control queue
    and the inbox) runs throughout. The agent is a worker of its own on ``host.local`` (as
    ``manage.py agent`` is: a worker for its host's queue), started and stopped by the test."""
    from apps.core.broker import INBOX_QUEUE
    from apps.core.worker import embedded_worker
    from config.celery import app as celery_app

    was_eager = celery_app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.conf.task_always_eager = False
    try:
        with embedded_worker(queues=["control", INBOX_QUEUE], concurrency=4):
            yield lambda: embedded_worker(queues=["host.local"], concurrency=4)
    finally:
        celery_app.conf.task_always_eager = was_eager


def test_with_the_agent_dead_replicas_serve_on_and_on_its_return_nothing_starts_twice(
    acme, alice, settings, tmp_path, catalogue, served_media, cache, queued, asgi_live_server
):
    from apps.machines.agent import agent_report
    from apps.machines.tasks import reconcile as machines_reconcile

    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "runtime"
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 3
    settings.LATTICE_NOTEBOOK_REDISPATCH_AFTER = 1  # a start is sent again soon, if lost
    select._runtime.cache_clear()
    host = host_ensure_local(name="local", inventory=room(), runtime="process")
    runtime = select.host_runtime()
    try:
        v1 = make_model_version(acme, alice, "Steady", model("v1"))
        v2 = make_model_version(acme, alice, "Steady", model("v2", setup="time.sleep(2)"))
        with queued():  # the agent, alive
            deployment = deploy(acme, alice, "Steady", **builtin(v1))
            beat_until(deployment, lambda: traffic(deployment) != {}, timeout=60)
        # The agent is dead now: its worker is gone, nothing reports for the host.
        [old] = replicas_of(deployment, S.READY)
        with Clients(asgi_live_server, deployment) as clients:
            r2 = add_revision(deployment, reason="changed", **builtin(v2))
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:  # beat and the machines reconciler go on
                controller.deployment_reconcile(deployment)
                machines_reconcile()
                time.sleep(0.5)
            while_dead = list(clients.answers)
            [waiting] = replicas_of(deployment, revision=r2)
            assert waiting.status in (S.PLACING, S.STARTING)  # sent, never taken
            assert waiting.started_at is None

            with queued():  # the agent is back: its worker, and its reports
                beat_until(
                    deployment,
                    lambda: (
                        (agent_report(host.name) or True)
                        and traffic(deployment) == {r2.pk: 100}
                        and not replicas_of(
                            deployment, S.READY, S.DRAINING, S.STOPPING, revision=old.revision
                        )
                    ),
                    timeout=60,
                )
                agent_report(host.name)
                time.sleep(1)
                # This deployment's replicas only: the host's runtime folder may hold other
                # tests' workloads (notebooks) of the same run.
                ours = {r.workload for r in replicas_of(deployment)}
                running = [m.name for m in runtime.list_managed() if m.running and m.name in ours]

        assert len(while_dead) > 20
        assert {said for _, said in while_dead} == {"v1"}  # r1 served on, on its own
        assert clients.failures() == []
        all_replicas = replicas_of(deployment)
        assert len(all_replicas) == 2  # r1's and r2's: none made twice
        [new] = replicas_of(deployment, S.READY)
        assert new.revision_id == r2.pk
        assert new.pk == waiting.pk
        # On the host, one process for r2's replica, none left of r1's.
        assert running == [new.workload], running
        old.refresh_from_db()
        assert old.status == S.STOPPED
    finally:
        for managed in runtime.list_managed():
            runtime.stop(managed.state, timeout=3)
        select._runtime.cache_clear()
        shutil.rmtree(tmp_path / "runtime", ignore_errors=True)
