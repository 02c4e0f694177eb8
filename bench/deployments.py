"""Issue 16's four deployment figures, each against its raw baseline in the same run, on real
processes: the web tier (config.asgi under uvicorn as in production, a subprocess: the
gateway), PostgreSQL (a throw-away ``lattice_bench_deploy``), Redis (database 11, flushed),
an embedded Celery worker in this process (the default, inbox and host queues: the
controller's tasks and the local host's agent, which starts replicas on real Docker from
the model server's local image with the model version's files bound at /model), and a
thread running the controller's beat pass (``deployments.scale``) every
LATTICE_DEPLOYMENT_SCALE_EVERY seconds. Deployments are made through the services as a
person makes them (protected; every request carries a ``lat_`` token with
deployments:invoke) and called at ``<slug>--<team>.localhost`` on the web tier.

1. **Gateway overhead**: bench/deployments_gateway.py, run as it is (its own database),
   against the model server called directly, 64 clients. Goals: p50 <= 2 ms added, p99 <=
   10 ms added, throughput >= 0.8x direct.
2. **Rollout**: 32 clients send 10,000 requests; after the first second the deployment is
   changed to another model version (a new revision). Failed requests (a status other than
   200, or a broken connection) are counted (goal 0), with the rollout's duration (the
   change to traffic on the new revision, and to the old replica stopped).
3. **Cold start from zero**: the deployment (min 0) is scaled to zero (its idle time is
   set past instead of waited for), then one request is timed to its answer; against a raw
   ``docker run`` of the same image and command with the same model folder bound at /model
   until its health route says READY. Alternating; medians; goal <= 1.2x.
4. **Autoscale**: a predict that sleeps 50 ms, target 8 in flight per replica, 1..4
   replicas; 1 client, then 32, then 1 again: the times to the 4 replicas ready and back
   to 1 after the load, and the 5xx (goal 0) and other non-200 answers throughout.

The controller's timings come from the environment, set here unless already set (the web
tier and the worker read the same): LATTICE_DEPLOYMENT_SCALE_EVERY=1,
LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER=10, LATTICE_DEPLOYMENT_DRAIN_SECONDS=5,
LATTICE_MODEL_SERVER_CONCURRENCY=32 (so one replica does not answer 429 to 32 clients).

    .venv/bin/python bench/deployments.py [--figures gateway rollout cold autoscale]
        [--cold-runs 3] [--rollout-requests 10000]

Prints a table per figure, then one line of JSON (every figure) at the end of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
REDIS_DB = 11
DATABASE = "lattice_bench_deploy"
SETTINGS_FROM_ENV = {
    "LATTICE_DEPLOYMENT_SCALE_EVERY": "1",
    "LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER": "10",
    "LATTICE_DEPLOYMENT_DRAIN_SECONDS": "5",
    "LATTICE_MODEL_SERVER_CONCURRENCY": "32",
}
PREDICT = """import time

def setup():
    time.sleep({setup})

def predict(text='', sleep=0.0):
    if sleep:
        time.sleep(float(sleep))
    return {{'echo': text, 'v': {version}}}
"""


def configure(work: Path) -> None:
    import start_latency as base

    base._require_services()
    os.environ["REDIS_URL"] = base.redis_db_url(os.environ["REDIS_URL"], REDIS_DB)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LATTICE_LOG_LEVEL", "WARNING")
    os.environ["LATTICE_RUNTIME"] = "docker"
    os.environ["LATTICE_MEDIA_ROOT"] = str(work / "media")
    os.environ["LATTICE_DATASET_CACHE"] = str(work / "cache")
    os.environ["LATTICE_INSTALLATION"] = f"bench-deploy-{uuid.uuid4().hex[:8]}"
    for name, value in SETTINGS_FROM_ENV.items():
        os.environ.setdefault(name, value)
    import django

    django.setup()


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# --- the clients: raw keep-alive HTTP/1.1 on asyncio streams ------------------------------


class Load:
    """Counts of one load: statuses (or "broken" for a connection that failed), latencies,
    the model version that answered, and when each answer came."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.versions: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.sent = 0
        self.stop = False


def request_bytes(host: str, token: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def exchange(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, bytes, bool]:
    """One request on a kept-alive connection: (status, body, whether the server closes)."""
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, closes = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            closes = True
    return status, await reader.readexactly(length), closes


async def client(port: int, request: bytes, load: Load, budget: list[int] | None) -> None:
    """Sends ``request`` until ``load.stop`` (or the shared ``budget`` is spent), opening
    its connection again after a failure."""
    connection = None
    while not load.stop:
        if budget is not None:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        load.sent += 1
        began = time.perf_counter()
        try:
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            status, body, closes = await asyncio.wait_for(exchange(connection, request), 180)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
        ) as exc:
            load.statuses["broken"] += 1
            load.errors.append((time.time(), f"broken: {exc!r}"))
            if connection is not None:
                connection[1].close()
            connection = None
            continue
        load.latencies.append(time.perf_counter() - began)
        load.statuses[str(status)] += 1
        if status == 200:
            load.versions[int(json.loads(body)["output"]["v"])] += 1
        else:
            load.errors.append((time.time(), f"{status}: {body[:200]!r}"))
        if closes:
            connection[1].close()
            connection = None
    if connection is not None:
        connection[1].close()


def client_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


# --- the stack -----------------------------------------------------------------------------


class Stack:
    """The web tier, the worker and the controller's beat, a host, a team, a token."""

    def __init__(self, work: Path, image: str) -> None:
        import start_latency as base
        from django.conf import settings
        from django.db import connection

        from apps.accounts.models import INVOKE_SCOPE
        from apps.accounts.tokens import token_create
        from apps.core.broker import INBOX_QUEUE
        from apps.core.worker import embedded_worker
        from apps.machines.inventory import collect
        from apps.machines.models import host_queue
        from apps.machines.services import host_ensure_local

        self.work = work
        self.image = image
        settings.LATTICE_MODEL_SERVER_IMAGE = image
        os.environ["LATTICE_MODEL_SERVER_IMAGE"] = image
        base.bench_database(DATABASE)
        from apps.deployments.models import Replica

        # Replicas' workloads are dp-<replica>: start far from ids a test run on the same
        # Docker engine may use (a container of that name there is another Lattice's).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [Replica._meta.db_table, random.randint(1, 900) * 1_000_000],  # noqa: S311
            )
        self.web = base.WebServer(DATABASE)
        settings.LATTICE_INTERNAL_URL = self.web.url  # hosts read the model's blobs there
        inventory = {**collect(), "cpu_count": 16, "memory_bytes": 64 * 1024**3, "gpus": []}
        host_ensure_local(name="local", inventory=inventory, runtime="docker")
        self.user, self.team, self.machine = base.make_people()
        _, self.token = token_create(
            user=self.user, name="bench", scopes=[INVOKE_SCOPE], team=self.team
        )
        queues = [settings.CELERY_TASK_DEFAULT_QUEUE, INBOX_QUEUE, host_queue("local")]
        self._worker = embedded_worker(queues=queues, concurrency=16)
        self._worker.__enter__()
        self._beat_stop = threading.Event()
        self._beat = threading.Thread(target=self._beat_loop, daemon=True)
        self._beat.start()

    def _beat_loop(self) -> None:
        from django.conf import settings
        from django.db import connections

        from apps.deployments.tasks import deployment_scale

        every = settings.LATTICE_DEPLOYMENT_SCALE_EVERY
        while not self._beat_stop.wait(every):
            try:
                deployment_scale()
            except Exception as exc:
                print(f"(beat pass failed: {exc!r})", file=sys.stderr)
            finally:
                connections.close_all()

    def version(self, number: int, setup: float = 0.0) -> Any:
        from tests.model_fixtures import make_model_version

        files = {"predict.py": PREDICT.format(version=number, setup=setup).encode()}
        return make_model_version(self.team, self.user, "Bench echo", files)

    def spec(self, version: Any, **fields: Any) -> Any:
        from apps.deployments.services import RevisionSpec

        return RevisionSpec(
            machine_type=self.machine, model_version=version, startup_timeout=120, **fields
        )

    def deploy(self, name: str, spec: Any) -> Any:
        from apps.deployments.services import deployment_create, deployment_update

        deployment = deployment_create(
            team=self.team, actor=self.user, name=name, auth_mode="protected", spec=spec
        )
        # No per-caller limit: the bench's one token is every client (the default is 600 a
        # minute, which its load passes in a second).
        return deployment_update(
            team=self.team, actor=self.user, deployment=deployment, rate_limit_per_minute=0
        )

    def change(self, deployment: Any, spec: Any) -> Any:
        from apps.deployments.services import deployment_change

        return deployment_change(team=self.team, actor=self.user, deployment=deployment, spec=spec)

    def host_of(self, deployment: Any) -> str:
        return f"{deployment.slug}--{self.team.slug}.localhost"

    def request(self, deployment: Any, body: dict[str, Any]) -> bytes:
        return request_bytes(self.host_of(deployment), self.token, body)

    def ready(self, deployment: Any, revision: Any = None) -> list[Any]:
        from apps.deployments.models import Replica

        query = Replica.objects.for_team(self.team).filter(
            deployment=deployment, status=Replica.Status.READY
        )
        if revision is not None:
            query = query.filter(revision=revision)
        return list(query)

    def active(self, deployment: Any, revision: Any = None) -> int:
        from apps.deployments.models import ACTIVE_REPLICA_STATUSES, Replica

        query = Replica.objects.for_team(self.team).filter(
            deployment=deployment, status__in=ACTIVE_REPLICA_STATUSES
        )
        if revision is not None:
            query = query.filter(revision=revision)
        return query.count()

    def traffic(self, deployment: Any) -> dict[str, int]:
        deployment.refresh_from_db()
        return dict(deployment.traffic or {})

    def wait(self, what: str, check: Any, timeout: float = 180.0) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if check():
                return time.monotonic() - began
            time.sleep(0.1)
        raise RuntimeError(f"{what}: not within {timeout:.0f} s")

    def close(self) -> None:
        import docker
        import start_latency as base
        from django.conf import settings

        self._beat_stop.set()
        self._beat.join(10)
        with contextlib.suppress(Exception):
            self._worker.__exit__(None, None, None)
        client = docker.from_env()
        ours = f"lattice.installation={settings.LATTICE_INSTALLATION}"
        for container in client.containers.list(all=True, filters={"label": ours}):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        for volume in client.volumes.list(filters={"label": ours}):
            with contextlib.suppress(Exception):
                volume.remove(force=True)
        self.web.close()
        base.drop_database(DATABASE)


# --- 1. the gateway's overhead ------------------------------------------------------------


def figure_gateway(args: argparse.Namespace) -> dict[str, Any]:
    """bench/deployments_gateway.py as it is (its own database and Redis database 12)."""
    load = load_average()
    env = {**os.environ, "REDIS_URL": os.environ["REDIS_URL"]}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "deployments_gateway.py"), "--clients", "64"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        return {"error": result.stderr[-2000:], "load_average_1m": load}
    print(result.stdout.rsplit("\n", 2)[0])
    figures = dict(json.loads(result.stdout.strip().splitlines()[-1]))
    figures["load_average_1m_before"] = load
    return figures


# --- 2. a rollout under load --------------------------------------------------------------


def figure_rollout(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from apps.deployments.models import Revision

    v1, v2 = stack.version(1), stack.version(2)
    deployment = stack.deploy("Rollout", stack.spec(v1))
    stack.wait("r1 ready", lambda: stack.traffic(deployment))
    request = stack.request(deployment, {"text": "hello"})
    load, budget = Load(), [args.rollout_requests]
    times: dict[str, float] = {}
    load_before = load_average()

    def change() -> None:
        from django.db import connections

        try:
            times["change"] = time.monotonic()
            r2 = stack.change(deployment, stack.spec(v2))
            stack.wait("r2 in traffic", lambda: stack.traffic(deployment) == {str(r2.pk): 100})
            times["traffic"] = time.monotonic()
            r1 = Revision.objects.for_team(stack.team).get(deployment=deployment, number=1)
            stack.wait("r1 stopped", lambda: stack.active(deployment, r1) == 0)
            times["old_stopped"] = time.monotonic()
        finally:
            connections.close_all()

    async def run() -> float:
        cpu = client_cpu()
        began = time.monotonic()
        clients = [
            asyncio.create_task(client(stack.web.port, request, load, budget)) for _ in range(32)
        ]
        await asyncio.sleep(1.0)
        changing = asyncio.create_task(asyncio.to_thread(change))
        await asyncio.gather(*clients)
        times["load_end"] = time.monotonic()
        await changing
        times["began"] = began
        return client_cpu() - cpu

    cpu = asyncio.run(run())
    wall = times["load_end"] - times["began"]
    failed = sum(n for status, n in load.statuses.items() if status != "200")
    figures = {
        "requests": sum(load.statuses.values()),
        "failed": failed,
        "statuses": dict(load.statuses),
        "answered_by_version": {f"v{k}": n for k, n in sorted(load.versions.items())},
        "first_errors": [e for _, e in load.errors[:5]],
        "rollout_to_traffic_s": times["traffic"] - times["change"],
        "rollout_to_old_stopped_s": times["old_stopped"] - times["change"],
        "rollout_within_load": times["old_stopped"] <= times["load_end"],
        "load_wall_s": wall,
        "rps": sum(load.statuses.values()) / wall,
        "p50_ms": 1000 * statistics.median(load.latencies),
        "p99_ms": 1000 * sorted(load.latencies)[int(0.99 * len(load.latencies))],
        "client_cpu_pct": 100 * cpu / wall,
        "load_average_1m": [load_before, load_average()],
    }
    print(
        f"rollout under 32 clients: {figures['requests']} requests in {wall:.1f} s "
        f"({figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.1f} ms, p99 "
        f"{figures['p99_ms']:.1f} ms), failed {failed} (goal 0) {dict(load.statuses)}; "
        f"answered by {figures['answered_by_version']}; rollout: change -> traffic on r2 "
        f"{figures['rollout_to_traffic_s']:.1f} s, -> r1 stopped "
        f"{figures['rollout_to_old_stopped_s']:.1f} s"
        f"{'' if figures['rollout_within_load'] else ' (ended after the load)'}; client CPU "
        f"{figures['client_cpu_pct']:.0f}%; load average {figures['load_average_1m']}"
    )
    return figures


# --- 3. cold start from zero --------------------------------------------------------------


def scale_to_zero(stack: Stack, deployment: Any) -> None:
    """The deployment's idle time set past (instead of waited for), then wait until the
    controller's beat pass has stopped its replica."""
    from apps.deployments.models import Deployment, Revision

    long_ago = stack_now() - timedelta(hours=1)
    Deployment.objects.for_team(stack.team).filter(pk=deployment.pk).update(
        last_request_at=long_ago, wake_requested_at=None
    )
    Revision.objects.for_team(stack.team).filter(deployment=deployment).update(ready_at=long_ago)
    stack.wait("scaled to zero", lambda: stack.active(deployment) == 0)


def stack_now() -> Any:
    from django.utils import timezone

    return timezone.now()


def raw_docker_run(image: str, model: Path) -> float:
    """``docker run`` of the image with the model folder bound at /model, the model
    server's command, until its health route says READY: seconds."""
    import docker
    import httpx

    client = docker.from_env()
    began = time.perf_counter()
    container = client.containers.run(
        image,
        [
            "python3",
            "/opt/lattice/serve.py",
            "--host",
            "0.0.0.0",  # noqa: S104 - inside the container
            "--port",
            "8080",
            "--model",
            "/model",
            "--concurrency",
            os.environ["LATTICE_MODEL_SERVER_CONCURRENCY"],
        ],
        detach=True,
        volumes={str(model): {"bind": "/model", "mode": "ro"}},
        labels={"lattice.bench": "deployments"},
    )
    try:
        address = ""
        while time.perf_counter() - began < 120:
            if not address:
                container.reload()
                address = container.attrs["NetworkSettings"]["IPAddress"]
            if address:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    answer = httpx.get(f"http://{address}:8080/health-check", timeout=2)
                    if answer.json().get("status") == "READY":
                        return time.perf_counter() - began
            time.sleep(0.02)
        raise RuntimeError("the raw container was not READY within 120 s")
    finally:
        container.remove(force=True)


class Trace:
    """When this process's tasks were queued, began and ended, and the agent's two slow
    steps (the model's folder, the container's start): the cold start's profile."""

    def __init__(self) -> None:
        from celery.signals import before_task_publish, task_postrun, task_prerun

        from apps.machines import agent
        from apps.runtimes.docker import DockerRuntime

        self.marks: list[tuple[float, str]] = []
        self.on = False

        def mark(what: str) -> None:
            if self.on:
                self.marks.append((time.time(), what))

        before_task_publish.connect(lambda sender=None, **_: mark(f"queued {sender}"), weak=False)
        task_prerun.connect(lambda task=None, **_: mark(f"began {task.name}"), weak=False)
        task_postrun.connect(lambda task=None, **_: mark(f"ended {task.name}"), weak=False)

        def timed(owner: Any, name: str) -> None:
            original = getattr(owner, name)

            def wrapper(*a: Any, **kw: Any) -> Any:
                mark(f"began {name}")
                try:
                    return original(*a, **kw)
                finally:
                    mark(f"ended {name}")

            setattr(owner, name, wrapper)

        timed(agent, "with_datasets")
        timed(DockerRuntime, "start")

    def since(self, sent: float) -> list[str]:
        return [f"{at - sent:6.3f} {what}" for at, what in self.marks if at >= sent]


def figure_cold(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from apps.deployments.models import Replica

    v1 = stack.version(1, setup=args.cold_setup)
    deployment = stack.deploy(
        "Cold", stack.spec(v1, min_replicas=0, max_replicas=1, scale_to_zero_after=60)
    )
    stack.wait("cold r1 ready", lambda: stack.traffic(deployment) and stack.ready(deployment))
    model = stack.work / "model"
    model.mkdir(exist_ok=True)
    (model / "predict.py").write_text(PREDICT.format(version=1, setup=args.cold_setup))
    request = stack.request(deployment, {"text": "wake"})
    steps: list[dict[str, float]] = []
    trace, traces = Trace(), []

    def lattice_once() -> float:
        scale_to_zero(stack, deployment)
        time.sleep(1.0)  # the routes have seen it go

        async def one() -> tuple[float, int]:
            connection = await asyncio.open_connection("127.0.0.1", stack.web.port)
            began = time.perf_counter()
            status, _, _ = await exchange(connection, request)
            seconds = time.perf_counter() - began
            connection[1].close()
            return seconds, status

        sent = time.time()
        trace.marks.clear()
        trace.on = True
        seconds, status = asyncio.run(one())
        trace.on = False
        traces.append(trace.since(sent))
        if status != 200:
            raise RuntimeError(f"the cold request answered {status}")
        # Where the time went, from the newest replica's own times (this machine's clock).
        replica = Replica.objects.for_team(stack.team).filter(deployment=deployment).first()
        if replica is not None and replica.started_at and replica.ready_at:
            steps.append(
                {
                    "to_replica_made": replica.requested_at.timestamp() - sent,
                    "to_container_started": replica.started_at.timestamp() - sent,
                    "to_ready": replica.ready_at.timestamp() - sent,
                    "to_answer": seconds,
                }
            )
        return seconds

    lattice_once()  # unmeasured: the first start builds the model's folder in the cache
    raw_docker_run(stack.image, model)
    runs: dict[str, list[float]] = {"lattice": [], "docker_run": []}
    loads = []
    for round_ in range(args.cold_runs):
        arms = [
            ("lattice", lattice_once),
            ("docker_run", lambda: raw_docker_run(stack.image, model)),
        ]
        for name, step in arms if round_ % 2 == 0 else arms[::-1]:
            loads.append(load_average())
            runs[name].append(step())
    lattice, raw = statistics.median(runs["lattice"]), statistics.median(runs["docker_run"])
    figures = {
        "lattice_s": runs["lattice"],
        "docker_run_s": runs["docker_run"],
        "lattice_median_s": lattice,
        "docker_run_median_s": raw,
        "ratio": lattice / raw,
        "setup_s": args.cold_setup,
        # Median seconds after the request was sent: the replica made (the wake and the
        # controller's pass), its container started (placement, the agent's start), ready
        # (the model server said READY and the agent's event was taken), the answer.
        "lattice_steps_median_s": {
            key: round(statistics.median(s[key] for s in steps[1:] or steps), 3)
            for key in (steps[0] if steps else {})
        },
        "load_average_1m": [min(loads), max(loads)],
        "lattice_last_trace": traces[-1] if traces else [],
    }
    print(
        f"cold start from zero (setup() {args.cold_setup:g} s): request -> answer "
        f"{lattice:.2f} s (median of "
        f"{', '.join(f'{s:.2f}' for s in runs['lattice'])}) vs docker run -> READY {raw:.2f} s "
        f"({', '.join(f'{s:.2f}' for s in runs['docker_run'])}): {lattice / raw:.2f}x "
        f"(goal <= 1.2); load average {figures['load_average_1m']}; Lattice's steps "
        f"{figures['lattice_steps_median_s']}"
    )
    print("the last cold start, seconds after the request was sent:")
    print("\n".join(f"  {line}" for line in figures["lattice_last_trace"]))
    return figures


# --- 4. autoscale on a load step ----------------------------------------------------------


def figure_autoscale(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    v1 = stack.version(1)
    deployment = stack.deploy(
        "Autoscale",
        stack.spec(
            v1, min_replicas=1, max_replicas=4, target_in_flight=8, scale_to_zero_after=None
        ),
    )
    stack.wait("autoscale r1 ready", lambda: stack.traffic(deployment) and stack.ready(deployment))
    request = stack.request(deployment, {"text": "step", "sleep": 0.05})
    timeline: list[tuple[float, int, int]] = []
    watching = threading.Event()

    def watch() -> None:
        from django.db import connections

        while not watching.is_set():
            timeline.append(
                (time.monotonic(), len(stack.ready(deployment)), stack.active(deployment))
            )
            time.sleep(0.2)
        connections.close_all()

    watcher = threading.Thread(target=watch, daemon=True)
    marks: dict[str, float] = {}
    load_one, load_step, load_after = Load(), Load(), Load()
    loads = [load_average()]

    def ready_now() -> int:
        return timeline[-1][1] if timeline else 0

    async def run() -> float:
        cpu = client_cpu()
        watcher.start()
        one = asyncio.create_task(client(stack.web.port, request, load_one, None))
        await asyncio.sleep(args.step_before)
        marks["step"] = time.monotonic()
        many = [
            asyncio.create_task(client(stack.web.port, request, load_step, None)) for _ in range(31)
        ]
        while ready_now() < 4 and time.monotonic() - marks["step"] < 120:
            await asyncio.sleep(0.1)
        marks["up"] = time.monotonic()
        loads.append(load_average())
        await asyncio.sleep(args.step_hold)
        load_step.stop = True
        await asyncio.gather(*many)
        marks["after"] = time.monotonic()
        while (ready_now() > 1 or timeline[-1][2] > 1) and time.monotonic() - marks["after"] < 120:
            await asyncio.sleep(0.1)
        marks["down"] = time.monotonic()
        await asyncio.sleep(2)
        load_one.stop = True
        await one
        loads.append(load_average())
        return client_cpu() - cpu

    cpu = asyncio.run(run())
    watching.set()
    watcher.join(5)
    statuses = load_one.statuses + load_step.statuses + load_after.statuses
    five = sum(n for s, n in statuses.items() if s.startswith("5") or s == "broken")
    peak = max(ready for _, ready, _ in timeline)
    wall = marks["down"] + 2 - marks["step"] + args.step_before
    in_step = load_step.latencies
    figures = {
        "to_needed_replicas_s": marks["up"] - marks["step"] if peak >= 4 else None,
        "back_to_min_s": marks["down"] - marks["after"],
        "scale_down_after_s": float(os.environ["LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER"]),
        "peak_ready_replicas": peak,
        "requests": sum(statuses.values()),
        "server_errors": five,
        "statuses": dict(statuses),
        "first_errors": [e for _, e in (load_one.errors + load_step.errors)[:5]],
        "step_p50_ms": 1000 * statistics.median(in_step) if in_step else None,
        "step_p99_ms": 1000 * sorted(in_step)[int(0.99 * len(in_step))] if in_step else None,
        "client_cpu_pct": 100 * cpu / wall,
        "load_average_1m": loads,
        "ready_timeline": [
            (round(t - marks["step"], 1), ready, active)
            for t, ready, active in timeline
            if not timeline.index((t, ready, active)) % 5
        ],
    }
    to = figures["to_needed_replicas_s"]
    print(
        f"autoscale 1 -> 32 clients (predict 50 ms, target 8 in flight, 1..4 replicas): "
        f"4 replicas ready after {'never' if to is None else f'{to:.1f} s'}, back to 1 "
        f"{figures['back_to_min_s']:.1f} s after the load (scale-down window "
        f"{figures['scale_down_after_s']:.0f} s); 5xx or broken {five} (goal 0) of "
        f"{figures['requests']} {dict(statuses)}; during the step p50 "
        f"{figures['step_p50_ms']:.0f} ms p99 {figures['step_p99_ms']:.0f} ms; load average "
        f"{loads}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=("gateway", "rollout", "cold", "autoscale"),
        default=["gateway", "rollout", "cold", "autoscale"],
    )
    parser.add_argument("--cold-runs", type=int, default=3)
    # The model's setup() (loading its weights) in seconds, in both arms of the cold start.
    parser.add_argument("--cold-setup", type=float, default=0.0)
    parser.add_argument("--rollout-requests", type=int, default=10_000)
    parser.add_argument("--step-before", type=float, default=5.0)
    parser.add_argument("--step-hold", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[str, Any] = {"cores": os.cpu_count(), "settings": {}}
    if "gateway" in args.figures:
        results["gateway"] = figure_gateway(args)
    rest = [f for f in args.figures if f != "gateway"]
    if not rest:
        print(json.dumps(results))
        return
    work = Path(tempfile.mkdtemp(prefix="lattice-bench-deploy-"))
    configure(work)
    from apps.runtimes.images import docker_image_exists

    image = subprocess.run(
        ["bash", str(ROOT / "images" / "model-server" / "build-local.sh")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    if not docker_image_exists(image):
        sys.exit(f"the model server's image {image} is missing")
    results["image"] = image
    results["settings"] = {name: os.environ[name] for name in SETTINGS_FROM_ENV}
    stack = Stack(work, image)
    try:
        for name, figure in (
            ("rollout", figure_rollout),
            ("cold", figure_cold),
            ("autoscale", figure_autoscale),
        ):
            if name in rest:
                try:
                    results[name] = figure(stack, args)
                except Exception as exc:
                    results[name] = {"error": repr(exc)}
                    print(f"{name}: failed: {exc!r}", file=sys.stderr)
    finally:
        stack.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
