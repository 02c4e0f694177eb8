"""bench/start_latency: click-to-ready of a notebook through Lattice, against plain `docker run`.

A real setup in one process run: PostgreSQL (DATABASE_URL, required; a
throw-away database ``lattice_bench_start`` is made and dropped), Redis
(REDIS_URL, required; its database 13 is used and flushed) as Celery broker,
cache and channel layer, an embedded Celery worker thread consuming "control"
and "host.local" (apps.core.worker.embedded_worker), and host "local"
registered with the Docker runtime (inventory from collect(), CPU and memory
raised so that 20 cpu-small notebooks fit). Settings: config.settings.local.

Measured per start, all in the same run, alternating (order rotated each round):

- Lattice: t0 just before the start (an HTTP POST to
  /api/v1/teams/<slug>/notebooks/<id>/start/ through the web server when that route
  exists, else apps.notebooks.services.notebook_start, which is what the view
  calls), t1 when the session's status is "running" AND Jupyter answers
  /nb/<id>/api/status with the session's token (DB and HTTP polled every 10 ms).
  The agent's runtime is wrapped to note when runtime.start was called and when
  Jupyter first answered (same 10 ms poll): the container's own start-to-ready.
  Lattice's overhead = click-to-ready - that, per start.
- Docker runtime direct (the first version of this bench): DockerRuntime.start
  of the same command, limits and a volume, until Jupyter answers.
- Plain: docker SDK containers.run of the same image and the same Jupyter
  command line (base_url and all) with a volume at /notebooks, until Jupyter answers.

Goals: ratio of medians Lattice / plain <= 1.15; Lattice's own overhead p50 <= 150 ms.
Then N (20) notebooks started at once on the one host, and N plain containers
at once: all running? p50 / p95 click-to-ready. Everything made here is
stopped and removed at the end (containers, volumes, the database).

    eval "$(bash scripts/services.sh 2>/dev/null)"
    .venv/bin/python bench/start_latency.py [--runs 7] [--concurrent 20] [--worker-concurrency 24]

Prints a table, then one line of JSON (the figures) at the end of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# LATTICE_BENCH_ROOT runs this bench against another checkout's code (a "before" run:
# LATTICE_BENCH_ROOT=/work/wt/base /work/wt/base/.venv/bin/python bench/start_latency.py).
ROOT = Path(os.environ.get("LATTICE_BENCH_ROOT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))


def _option(name: str, default: str) -> str:
    """``--name VALUE`` from the command line, read before Django is set up."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def _require_services() -> None:
    missing = [v for v in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(v)]
    if missing or not os.environ["DATABASE_URL"].startswith("postgres"):
        sys.exit(
            f"bench needs PostgreSQL and Redis: set {', '.join(missing) or 'DATABASE_URL'} "
            '(eval "$(bash scripts/services.sh 2>/dev/null)")'
        )


def redis_db_url(url: str, db: int) -> str:
    """``url`` with its database number replaced: the bench's keys stay apart from others'."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def configure(redis_db: int) -> None:
    """Environment for this process and its web server, before Django reads its settings."""
    _require_services()
    os.environ["REDIS_URL"] = redis_db_url(os.environ["REDIS_URL"], redis_db)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LATTICE_LOG_LEVEL", "WARNING")
    os.environ["LATTICE_RUNTIME"] = "docker"
    import django

    django.setup()


if __name__ == "__main__":
    configure(int(_option("--redis-db", "13")))

import docker  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

GIB = 1024**3


# --- the setup both benchmarks share --------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_database(name: str) -> str:
    """A fresh, migrated database ``name`` on DATABASE_URL's server; this process now uses it."""
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    from apps.notebooks.models import Notebook, NotebookSession

    # Workload names are nb-<notebook>-s<session>; start far from ids a test run may use.
    base = random.randint(1, 900) * 1_000_000  # noqa: S311 - not a secret
    with connection.cursor() as cursor:
        for model in (Notebook, NotebookSession):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [model._meta.db_table, base],
            )
    return name


def drop_database(name: str) -> None:
    from django.db import connections

    connections.close_all()
    try:
        connection.creation.destroy_test_db(
            os.environ["DATABASE_URL"].rsplit("/", 1)[-1], verbosity=0
        )
    except Exception as exc:
        print(f"(could not drop database {name}: {exc})", file=sys.stderr)


def database_url(name: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def make_people(count: int = 1) -> tuple[Any, Any, Any]:
    """A user, a team they own, and the cpu-small machine type."""
    from apps.accounts.models import User
    from apps.machines.models import MachineType
    from apps.teams.services import team_create

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}@example.com", "x" * 16)
    team = team_create(actor=user, name=f"Bench {uuid.uuid4().hex[:6]}")
    return user, team, MachineType.objects.get(slug="cpu-small")


def session_cookie(user: Any) -> str:
    """A logged-in session for ``user`` in the database, as login() leaves it; its key."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key or ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The production web server's command line (Dockerfile CMD, docker-compose's web), less
# the address it binds: uvicorn with the websockets library's sans-I/O protocol, frames
# not compressed (compressing every viewer's log frames cost 10x the latency here).
WEB_COMMAND = [
    "uvicorn",
    "--ws",
    "websockets-sansio",
    "--ws-per-message-deflate",
    "false",
    "--lifespan",
    "off",
    "--no-access-log",
]


class WebServer:
    """config.asgi:application served as in production (WEB_COMMAND) in a subprocess, on the
    bench database and Redis; ``extra_env`` adds to (or overrides) its environment
    (bench/upload.py's storage)."""

    def __init__(self, database: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        # Kept after the run (its path is printed): what the web server said, errors included.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="lattice-bench-web-", suffix=".log", delete=False
        )
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": database_url(database),
            "REDIS_URL": settings.REDIS_URL,
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / WEB_COMMAND[0]),
                *WEB_COMMAND[1:],
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "config.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = Path(self.log.name).read_text()[-3000:]
                raise RuntimeError(f"the web server exited: {log}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("the web server did not listen within 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        print(f"web server log: {self.log.name}", file=sys.stderr)


# --- readiness and the wrapped runtime ------------------------------------------------------


def jupyter_answers(port: int, base_path: str, token: str) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{base_path}api/status",
        headers={"Authorization": f"token {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except (OSError, http.client.HTTPException):
        # Under load Docker's port forwarder sometimes answers before Jupyter does, oddly.
        return False


def wait_jupyter(port: int, base_path: str, token: str, timeout: float = 180.0) -> float:
    """Poll every 10 ms until Jupyter answers; the time it did (perf_counter)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if jupyter_answers(port, base_path, token):
            return time.perf_counter()
        time.sleep(0.01)
    raise TimeoutError("Jupyter did not answer in time")


def concrete(command: list[str]) -> list[str]:
    """The notebook command as the container sees it. ``{mount:/notebooks}`` is replaced
    here because no runtime replaces it (see the report: Jupyter exits without this)."""
    return [
        p.replace("{ip}", "0.0.0.0")  # noqa: S104 - inside the container
        .replace("{port}", "8888")
        .replace("{mount:/notebooks}", "/notebooks")
        for p in command
    ]


def _make_timed_runtime() -> Any:
    from apps.runtimes.docker import DockerRuntime

    class TimedDockerRuntime(DockerRuntime):
        """The Docker runtime, noting when start was called and when Jupyter first answered."""

        def __init__(self) -> None:
            super().__init__(docker.from_env(max_pool_size=64))
            self.timings: dict[str, dict[str, float]] = {}
            self.lock = threading.Lock()

        def start(self, spec: Any) -> dict[str, Any]:
            called = time.perf_counter()
            if any("{mount:" in p for p in spec.command):
                spec = replace(
                    spec,
                    command=[p.replace("{mount:/notebooks}", "/notebooks") for p in spec.command],
                )
            state = super().start(spec)
            record = {"runtime_start": called, "runtime_started": time.perf_counter()}
            with self.lock:
                self.timings[spec.name] = record
            base = next(
                p.split("=", 1)[1] for p in spec.command if p.startswith("--ServerApp.base_url=")
            )
            token = spec.env["JUPYTER_TOKEN"]

            def watch() -> None:
                with contextlib.suppress(TimeoutError):
                    record["own_ready"] = wait_jupyter(state["port"], base, token)

            threading.Thread(target=watch, daemon=True).start()
            return state

    return TimedDockerRuntime()


class Steps:
    """When each step of a start happened in this process (the worker and the agent run here,
    the web server does not), per workload name: the placement task began ("place"), the
    agent's start task began ("agent"), the agent said "ready" ("ready_sent"), the inbox
    task carrying it began and ended ("inbox", "inbox_done"). Celery's task signals and a
    wrap of the agent's event sender: the code measured is the code that runs."""

    def __init__(self) -> None:
        from celery.signals import task_postrun, task_prerun

        from apps.machines import agent

        self.at: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()
        task_prerun.connect(self._pre, weak=False)
        task_postrun.connect(self._post, weak=False)
        original = agent._send

        def send(host_name: str, name: str, event: str, **data: Any) -> None:
            if event == "ready":
                self.note(name, "ready_sent")
            original(host_name, name, event, **data)

        agent._send = send

    def note(self, workload: str, step: str) -> None:
        with self.lock:
            self.at.setdefault(workload, {}).setdefault(step, time.perf_counter())

    def _workload(self, task: Any, args: Any) -> tuple[str, str]:
        """(workload, step) of a task the split follows, else ("", "")."""
        name = getattr(task, "name", "")
        args = list(args or ())
        if name == "notebooks.session_place" and args:
            from apps.notebooks.models import NotebookSession

            row = NotebookSession.objects.unscoped().filter(pk=args[0]).first()
            return (row.workload, "place") if row else ("", "")
        if name == "agent.start" and len(args) > 1 and isinstance(args[1], dict):
            return str(args[1].get("name", "")), "agent"
        if name == "control.inbox" and args and isinstance(args[0], dict):
            body = args[0].get("body") or {}
            if body.get("event") == "ready":
                return str(body.get("workload", "")), "inbox"
        return "", ""

    def _pre(self, task: Any = None, args: Any = None, **_: Any) -> None:
        workload, step = self._workload(task, args)
        if workload:
            self.note(workload, step)

    def _post(self, task: Any = None, args: Any = None, **_: Any) -> None:
        workload, step = self._workload(task, args)
        if workload and step == "inbox":
            self.note(workload, "inbox_done")


STEPS: Steps | None = None


def split(
    clicked: float, ready: float, timing: dict[str, float], steps: dict[str, float]
) -> dict[str, float]:
    """Where one start's time went, in seconds, from click to the bench seeing it ready."""
    marks = [
        ("click_to_place_task", clicked, steps.get("place")),
        ("place_task_to_agent_task", steps.get("place"), steps.get("agent")),
        # Placed in the click's own transaction: no placement task ran.
        ("click_to_agent_task", clicked if "place" not in steps else None, steps.get("agent")),
        ("agent_task_to_runtime_start", steps.get("agent"), timing.get("runtime_start")),
        ("container_start_to_ready", timing.get("runtime_start"), timing.get("own_ready")),
        ("ready_to_agent_says_ready", timing.get("own_ready"), steps.get("ready_sent")),
        ("ready_sent_to_inbox_task", steps.get("ready_sent"), steps.get("inbox")),
        ("inbox_task", steps.get("inbox"), steps.get("inbox_done")),
        ("inbox_done_to_seen_running", steps.get("inbox_done"), ready),
    ]
    return {name: b - a for name, a, b in marks if a is not None and b is not None}


def own_timing(runtime: Any, workload: str) -> dict[str, float]:
    """The wrapped runtime's times for ``workload`` (its watcher may lag the agent a little)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        timing = runtime.timings.get(workload, {})
        if "own_ready" in timing:
            return timing
        time.sleep(0.005)
    return runtime.timings.get(workload, {})


# --- the three ways to start ----------------------------------------------------------------


class Lattice:
    """Notebooks started through Lattice: worker, agent, runtime, all real."""

    def __init__(self, user: Any, team: Any, machine: Any, api: WebServer | None) -> None:
        from apps.notebooks.services import notebook_create

        self.user, self.team, self.machine, self.api = user, team, machine, api
        self.create = notebook_create
        self.token = ""
        if api is not None:
            from apps.accounts.models import TOKEN_SCOPES
            from apps.accounts.tokens import token_create

            _, self.token = token_create(
                user=user, name="bench", scopes=list(TOKEN_SCOPES), expires_in_days=None
            )

    def notebook(self, name: str) -> Any:
        return self.create(
            team=self.team,
            actor=self.user,
            name=name,
            template="scipy",
            machine_type=self.machine,
        )

    def click(self, notebook: Any) -> None:
        """What the Start button does: the API's start endpoint, or the service it calls."""
        if self.api is None:
            from apps.notebooks.services import notebook_start

            notebook_start(team=self.team, actor=self.user, notebook=notebook)
            return
        request = urllib.request.Request(  # noqa: S310 - our own server on loopback
            f"{self.api.url}/api/v1/teams/{self.team.slug}/notebooks/{notebook.pk}/start/",
            method="POST",
            data=b"{}",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            response.read()

    def stop(self, notebook: Any) -> None:
        from apps.notebooks.services import notebook_stop

        notebook_stop(team=self.team, actor=self.user, notebook=notebook)


FAILURES: list[str] = []  # why starts did not reach running, for the report


def last_session_id() -> int:
    from apps.notebooks.models import NotebookSession

    return (
        NotebookSession.objects.unscoped().order_by("-pk").values_list("pk", flat=True).first() or 0
    )


def wait_running(
    notebooks: list[Any], clicked: dict[int, float], after: int, timeout: float = 300.0
) -> dict[int, tuple[float, dict[str, Any]]]:
    """Poll the database every 10 ms (one query for all) and each running one's Jupyter through
    its own port; per notebook id, the time both said ready and the session row."""
    from apps.notebooks.models import Notebook, NotebookSession, Status

    ids = [n.pk for n in notebooks]
    base = {n.pk: f"/nb/{n.pk}/" for n in notebooks}
    done: dict[int, tuple[float, dict[str, Any]]] = {}
    failed: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while len(done) + len(failed) < len(ids) and time.monotonic() < deadline:
        if time.monotonic() > deadline - 1:
            FAILURES.append(
                f"{len(ids) - len(done) - len(failed)} not running within {timeout:.0f} s"
            )
        rows = NotebookSession.objects.unscoped().filter(
            pk__gt=after,
            notebook_id__in=[i for i in ids if i not in done and i not in failed and i in clicked],
        )
        for row in rows.values(
            "id", "notebook_id", "status", "runtime_state", "jupyter_token", "ended_at"
        ):
            nb = row["notebook_id"]
            if row["ended_at"] is not None:
                if nb in clicked and row["status"] in (Status.FAILED, Status.LOST):
                    failed[nb] = Notebook.objects.unscoped().get(pk=nb).status_message
                    FAILURES.append(f"{row['status']}: {failed[nb]}")
                continue
            port = (row["runtime_state"] or {}).get("port")
            if (
                row["status"] == Status.RUNNING
                and port
                and jupyter_answers(port, base[nb], row["jupyter_token"])
            ):
                done[nb] = (time.perf_counter(), row)
        time.sleep(0.01)
    return done


def wait_ended(notebooks: list[Any], timeout: float = 120.0) -> None:
    from apps.notebooks.models import NotebookSession

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            not NotebookSession.objects.unscoped()
            .filter(notebook__in=notebooks, ended_at__isnull=True)
            .exists()
        ):
            return
        time.sleep(0.05)
    raise TimeoutError("sessions did not end in time")


class Plain:
    """`docker run` of the same image and command, through the Docker SDK."""

    def __init__(self, client: docker.DockerClient, image: str, command: list[str]) -> None:
        self.client, self.image, self.command = client, image, command
        self.volume = f"lattice-bench-plain-{uuid.uuid4().hex[:8]}"
        client.volumes.create(self.volume, labels={"lattice.bench": "start_latency"})
        self.names: list[str] = []

    def run(self) -> tuple[float, Any]:
        """One start until ready: (seconds, the container); remove the container after."""
        token = secrets.token_hex(24)
        name = f"lattice-bench-plain-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        started = time.perf_counter()
        container = self.client.containers.run(
            self.image,
            self.command,
            detach=True,
            name=name,
            environment={"JUPYTER_TOKEN": token},
            ports={"8888/tcp": ("127.0.0.1", None)},
            volumes={self.volume: {"bind": "/notebooks", "mode": "rw"}},
            labels={"lattice.bench": "start_latency"},
        )
        container.reload()
        port = int(container.ports["8888/tcp"][0]["HostPort"])
        ready = wait_jupyter(port, self.base_path, token)
        return ready - started, container

    @property
    def base_path(self) -> str:
        return next(p.split("=", 1)[1] for p in self.command if "base_url=" in p)

    def cleanup(self) -> None:
        for name in self.names:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(name).remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(self.volume).remove(force=True)


class Direct:
    """The Docker runtime called directly (the first version of this bench)."""

    def __init__(self, image: str, command: list[str]) -> None:
        from apps.runtimes.docker import DockerRuntime

        self.runtime = DockerRuntime()
        self.image, self.command = image, command
        self.volume = f"lattice-bench-direct-{uuid.uuid4().hex[:8]}"

    def run(self) -> float:
        from apps.runtimes.base import Spec

        token = secrets.token_hex(24)
        spec = Spec(
            name=f"bench-direct-{uuid.uuid4().hex[:8]}",
            image=self.image,
            command=self.command,
            env={"JUPYTER_TOKEN": token},
            vcpus=2,
            memory_bytes=8 * GIB,
            volumes={self.volume: "/notebooks"},
        )
        base = next(p.split("=", 1)[1] for p in self.command if "base_url=" in p)
        started = time.perf_counter()
        state = self.runtime.start(spec)
        ready = wait_jupyter(state["port"], base, token)
        self.runtime.stop(state, timeout=5)
        return ready - started

    def cleanup(self) -> None:
        self.runtime.remove_volume(self.volume)


def api_available() -> bool:
    from django.urls import Resolver404, resolve

    try:
        resolve("/api/v1/teams/t/notebooks/1/start/")
    except Resolver404:
        return False
    return True


# --- the benchmark --------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def summary(values: list[float]) -> str:
    return (
        f"p50 {ms(statistics.median(values)):7.0f} ms  p95 {ms(percentile(values, 0.95)):7.0f} ms"
        f"  min {ms(min(values)):6.0f}  max {ms(max(values)):6.0f}"
    )


def default_agent_concurrency() -> int:
    """What `manage.py agent` runs with here: chosen from the cores where the code under test
    does so (apps.machines.agent.agent_concurrency), else its fixed default, 4."""
    from apps.machines import agent

    choose = getattr(agent, "agent_concurrency", None)
    return int(choose()) if choose is not None else 4


class _Finished(Exception):  # noqa: N818 - not an error: the run asked for ends here
    """The run asked for (--pool, or --concurrent 0) is done: report what it has."""


def main() -> None:  # noqa: PLR0915 - one straight story
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument(
        "--worker-concurrency", type=int, default=24, help="the control worker's threads"
    )
    parser.add_argument(
        "--agent-concurrency",
        type=int,
        default=default_agent_concurrency(),
        help="the agent's threads (default: what the agent chooses on this host)",
    )
    # Two benches on one server (helpers, CI jobs) each need their own database and Redis db.
    parser.add_argument("--database", default="lattice_bench_start")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument(
        "--via",
        choices=("auto", "api", "service"),
        default="auto",
        help="how to click Start: the HTTP API through the web server, or the service "
        "(auto: the API)",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="instead: keep a warm pool of N on the host for the image and machine type, and "
        "time click -> ready from it against plain docker run + ready (--runs rounds)",
    )
    args = parser.parse_args()

    from apps.core.broker import INBOX_QUEUE
    from apps.core.worker import embedded_worker
    from apps.machines import agent
    from apps.machines.inventory import collect
    from apps.machines.models import host_queue
    from apps.machines.services import host_ensure_local
    from apps.notebooks.lifecycle.spec import jupyter_command
    from apps.notebooks.templates import image_for
    from apps.runtimes.images import docker_image_exists

    # What Lattice's scipy notebooks run (registry-free: the Scientific Python template's
    # image), so both sides run the same image and no start times its build.
    image = image_for("scipy")
    if not docker_image_exists(image):
        sys.exit(f"the image {image} is missing: bash images/build-template.sh scipy")
    client = docker.from_env(max_pool_size=64)
    database = bench_database(args.database)
    runtime = _make_timed_runtime()
    global STEPS  # noqa: PLW0603 - one bench run, one set of marks
    STEPS = Steps()
    agent.host_runtime = lambda: runtime  # the agent's tasks run this process's wrapped runtime
    via = "api" if args.via == "api" or (args.via == "auto" and api_available()) else "service"
    web = WebServer(database) if via == "api" else None
    made: list[Any] = []
    plain = direct = None
    results: dict[str, Any] = {"image": image, "via": via, "runs": args.runs}
    try:
        inventory = {
            **collect(),
            "cpu_count": 2 * args.concurrent + 8,
            "memory_bytes": (8 * args.concurrent + 16) * GIB,
            "gpus": [],
        }
        host_ensure_local(name="local", inventory=inventory, runtime="docker")
        user, team, machine = make_people()
        lattice = Lattice(user, team, machine, web)
        # Two workers, as in production: the control worker (control, inbox) and the host's
        # agent (its queue), each with its own threads.
        queues = [settings.CELERY_TASK_DEFAULT_QUEUE, INBOX_QUEUE]
        results["agent_concurrency"] = args.agent_concurrency
        with (
            embedded_worker(queues=queues, concurrency=args.worker_concurrency),
            embedded_worker(queues=[host_queue("local")], concurrency=args.agent_concurrency),
        ):
            notebook = lattice.notebook("Bench sequential")
            made.append(notebook)

            class _S:  # jupyter_command needs only the notebook id
                notebook_id = notebook.pk
                base_path = f"/nb/{notebook.pk}/"

            command = concrete(jupyter_command(_S()))  # type: ignore[arg-type]
            plain = Plain(client, image, command)
            direct = Direct(image, command)

            def lattice_once() -> dict[str, Any]:
                after = last_session_id()
                clicked = time.perf_counter()
                lattice.click(notebook)
                ready, row = wait_running([notebook], {notebook.pk: clicked}, after)[notebook.pk]
                timing = own_timing(runtime, f"nb-{notebook.pk}-s{row['id']}")
                lattice.stop(notebook)
                wait_ended([notebook])
                own = timing["own_ready"] - timing["runtime_start"]
                workload = f"nb-{notebook.pk}-s{row['id']}"
                steps = STEPS.at.get(workload, {}) if STEPS is not None else {}
                return {
                    "split": split(clicked, ready, timing, steps),
                    "total": ready - clicked,
                    "own": own,
                    "overhead": (ready - clicked) - own,
                    "to_runtime": timing["runtime_start"] - clicked,
                    "after_ready": ready - timing["own_ready"],
                }

            def plain_once() -> float:
                seconds, container = plain.run()
                container.remove(force=True)
                return seconds

            if args.pool:
                results["pool"] = pool_rounds(
                    args, lattice, notebook, machine, image, plain_once, runtime
                )
                report_pool(results)  # said now, before the cleanup
                raise _Finished  # noqa: TRY301 - leaves the with and try, then reports
            # One of each first, unmeasured: page cache and bytecode warm up, volumes exist.
            lattice_once()
            direct.run()
            plain_once()
            arms: dict[str, Any] = {"lattice": [], "direct": [], "plain": []}
            steps = [
                ("lattice", lattice_once),
                ("direct", direct.run),
                ("plain", plain_once),
            ]
            for round_ in range(args.runs):
                for name, step in steps[round_ % 3 :] + steps[: round_ % 3]:
                    arms[name].append(step())
            total = [r["total"] for r in arms["lattice"]]
            overhead = [r["overhead"] for r in arms["lattice"]]
            p_med = statistics.median(arms["plain"])
            results["sequential"] = {
                "plain_s": arms["plain"],
                "direct_s": arms["direct"],
                "lattice": arms["lattice"],
                "ratio_lattice_plain": statistics.median(total) / p_med,
                "ratio_direct_plain": statistics.median(arms["direct"]) / p_med,
                "overhead_p50_ms": ms(statistics.median(overhead)),
                "overhead_p95_ms": ms(percentile(overhead, 0.95)),
            }

            # Said now: a later failure (a broker that drops the worker) leaves these.
            report_sequential(results)
            if args.concurrent <= 0:
                raise _Finished  # noqa: TRY301 - leaves the with and try, then reports
            # N at once, all on the one host.
            many = [lattice.notebook(f"Bench concurrent {i}") for i in range(args.concurrent)]
            made.extend(many)
            clicked: dict[int, float] = {}
            barrier = threading.Barrier(len(many))
            errors: list[str] = []

            def click(nb: Any) -> None:
                from django.db import connections

                try:
                    barrier.wait()
                    clicked[nb.pk] = time.perf_counter()
                    lattice.click(nb)
                except Exception as exc:
                    errors.append(repr(exc))
                finally:
                    connections.close_all()

            threads = [threading.Thread(target=click, args=(nb,)) for nb in many]
            after = last_session_id()
            for thread in threads:
                thread.start()
            ready_at = wait_running(many, clicked, after)
            for thread in threads:
                thread.join()
            c_total = [ready_at[nb][0] - clicked[nb] for nb in ready_at]
            c_over = []
            c_split = []
            for nb, (ready, row) in ready_at.items():
                timing = own_timing(runtime, f"nb-{nb}-s{row['id']}")
                marks = STEPS.at.get(f"nb-{nb}-s{row['id']}", {}) if STEPS is not None else {}
                c_split.append(split(clicked[nb], ready, timing, marks))
                if "own_ready" in timing:
                    c_over.append(
                        (ready - clicked[nb]) - (timing["own_ready"] - timing["runtime_start"])
                    )
            for nb in many:
                lattice.stop(nb)

            # N plain containers at once.
            p_results: list[float] = []
            p_containers: list[Any] = []
            p_barrier = threading.Barrier(args.concurrent)

            def plain_at_once() -> None:
                p_barrier.wait()
                try:
                    seconds, container = plain.run()
                    p_results.append(seconds)
                    p_containers.append(container)
                except Exception as exc:
                    errors.append(repr(exc))

            wait_ended(many, timeout=180)
            p_threads = [threading.Thread(target=plain_at_once) for _ in range(args.concurrent)]
            for thread in p_threads:
                thread.start()
            for thread in p_threads:
                thread.join()
            for container in p_containers:
                container.remove(force=True)
            results["concurrent"] = {
                "n": args.concurrent,
                "lattice_running": len(ready_at),
                "lattice_s": c_total,
                "lattice_overhead_s": c_over,
                "lattice_split": c_split,
                "plain_ready": len(p_results),
                "plain_s": p_results,
                "errors": errors + FAILURES,
            }
    except _Finished:
        pass
    finally:
        cleanup(client, runtime, made, plain, direct)
        if web is not None:
            web.close()
        drop_database(database)
    if "concurrent" in results:
        report(results)


def pool_fill_wait(pool: Any, timeout: float = 300.0) -> float:
    """Replenish the pool (what the reconciler's pass does) until all of it is ready; seconds."""
    from apps.machines.models import PoolSlot
    from apps.machines.pool import pool_replenish

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        pool_replenish()
        ready = PoolSlot.objects.filter(pool=pool, status=PoolSlot.Status.READY).count()
        if ready >= pool.size:
            return time.monotonic() - began
        time.sleep(0.2)
    raise TimeoutError(f"the pool did not fill within {timeout:.0f} s")


def pool_rounds(
    args: Any, lattice: Any, notebook: Any, machine: Any, image: str, plain_once: Any, runtime: Any
) -> dict[str, Any]:
    """A warm pool of ``args.pool`` on the local host for (image, machine type); each round,
    once it is full again (outside the clock), a click -> ready from it, and a plain
    ``docker run`` + ready of the same image, the order flipped each round."""
    from apps.machines.models import Host, PoolSlot, WarmPool

    if not runtime.pool_supported():
        sys.exit("this host cannot keep a warm pool (needs root, Docker volumes on this fs)")
    host = Host.objects.get(name="local")
    pool = WarmPool.objects.create(host=host, machine_type=machine, image=image, size=args.pool)
    first_fill = pool_fill_wait(pool)
    print(f"warm pool of {args.pool} filled in {first_fill:.1f} s", flush=True)

    def pool_once() -> dict[str, Any]:
        pool_fill_wait(pool)
        after = last_session_id()
        clicked = time.perf_counter()
        lattice.click(notebook)
        ready, row = wait_running([notebook], {notebook.pk: clicked}, after)[notebook.pk]
        workload = f"nb-{notebook.pk}-s{row['id']}"
        claimed = PoolSlot.objects.filter(claimed_by=workload).exists()
        from_pool = bool((row["runtime_state"] or {}).get("pool"))
        lattice.stop(notebook)
        wait_ended([notebook])
        steps = STEPS.at.get(workload, {}) if STEPS is not None else {}
        agent_at = steps.get("agent")
        return {
            "total": ready - clicked,
            "claimed": claimed,
            "from_pool": from_pool,
            "click_to_agent_task": (agent_at - clicked) if agent_at else None,
        }

    pool_once()  # unmeasured: warms the path
    plain_once()
    arms: dict[str, list[Any]] = {"pool": [], "plain": []}
    steps = [("pool", pool_once), ("plain", plain_once)]
    for round_ in range(args.runs):
        for name, step in steps if round_ % 2 == 0 else steps[::-1]:
            arms[name].append(step())
    pool.size = 0
    pool.save(update_fields=["size"])
    with contextlib.suppress(TimeoutError):
        pool_replenish_until_empty(pool)
    return {"size": args.pool, "first_fill_s": first_fill, **arms}


def pool_replenish_until_empty(pool: Any, timeout: float = 60.0) -> None:
    """Size 0: the pass removes its containers (the bench leaves nothing behind)."""
    from apps.machines.models import PoolSlot
    from apps.machines.pool import pool_replenish

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool_replenish()
        if not PoolSlot.objects.filter(pool=pool).exclude(status=PoolSlot.Status.CLAIMED).exists():
            time.sleep(1)  # the agent's removal task
            return
        time.sleep(0.2)
    raise TimeoutError("pool slots left")


def report_pool(results: dict[str, Any]) -> None:
    pool = results["pool"]
    total = [r["total"] for r in pool["pool"]]
    print(
        f"image {results['image']}, warm pool of {pool['size']} on one host (first fill "
        f"{pool['first_fill_s']:.1f} s), {len(total)} rounds, alternating"
    )
    print(f"Lattice click-to-ready from the pool: {summary(total)}")
    print(f"  rounds (ms): {', '.join(str(round(ms(t))) for t in total)}")
    print(
        f"  claimed a slot {sum(r['claimed'] for r in pool['pool'])}/{len(total)}, "
        f"ran in the claimed container {sum(r['from_pool'] for r in pool['pool'])}/{len(total)}"
    )
    to_agent = [r["click_to_agent_task"] for r in pool["pool"] if r["click_to_agent_task"]]
    if to_agent:
        print(f"  click -> agent task:       {summary(to_agent)}")
    print(f"plain docker run + ready:     {summary(pool['plain'])}")
    print(f"  rounds (ms): {', '.join(str(round(ms(t))) for t in pool['plain'])}")
    ratio = statistics.median(total) / statistics.median(pool["plain"])
    print(f"ratio of medians pool / plain: {ratio:.3f}  (goal <= 0.3)")
    print(json.dumps(results, default=str))


def cleanup(client: Any, runtime: Any, notebooks: list[Any], plain: Any, direct: Any) -> None:
    """Remove what this run made: its workloads' containers, its volumes."""
    names = {f"lattice-{n}" for n in runtime.timings}
    for container in client.containers.list(all=True, filters={"label": "lattice.managed=true"}):
        if container.name in names or container.name.startswith("lattice-bench-direct-"):
            container.remove(force=True)
    volumes = {n.volume for n in notebooks}
    with contextlib.suppress(Exception):
        from apps.notebooks.models import TeamNotebookSettings

        volumes |= {
            s.storage_volume
            for s in TeamNotebookSettings.objects.unscoped().filter(
                team_id__in={n.team_id for n in notebooks}
            )
        }
    for volume in volumes:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.volumes.get(volume).remove(force=True)
    if plain is not None:
        plain.cleanup()
    if direct is not None:
        direct.cleanup()


def print_split(splits: list[dict[str, float]]) -> None:
    for step in splits[0] if splits else {}:
        values = [one[step] for one in splits if step in one]
        print(
            f"    {step:30s} {ms(statistics.median(values)):7.1f} "
            f"{ms(percentile(values, 0.95)):7.1f}"
        )


def report_sequential(results: dict[str, Any]) -> None:
    seq = results["sequential"]
    lattice = seq["lattice"]
    print(
        f"image {results['image']}, start via {results['via']}, {results['runs']} runs each, "
        f"alternating, one host, Docker, agent concurrency {results['agent_concurrency']}"
    )
    print(f"plain docker run + ready:     {summary(seq['plain_s'])}")
    print(f"Docker runtime direct:        {summary(seq['direct_s'])}")
    print(f"Lattice click-to-ready:       {summary([r['total'] for r in lattice])}")
    print(f"  of which container's own:   {summary([r['own'] for r in lattice])}")
    print(
        f"  Lattice overhead:           {summary([r['overhead'] for r in lattice])}"
        "   (goal p50 <= 150 ms)"
    )
    print(f"    click -> runtime.start:   {summary([r['to_runtime'] for r in lattice])}")
    print(f"    Jupyter up -> running:    {summary([r['after_ready'] for r in lattice])}")
    print("  the split, step by step (p50 / p95 ms):")
    print_split([r.get("split", {}) for r in lattice])
    print(f"ratio of medians Lattice / plain: {seq['ratio_lattice_plain']:.3f}  (goal <= 1.15)")
    print(f"ratio of medians direct / plain:  {seq['ratio_direct_plain']:.3f}", flush=True)


def report(results: dict[str, Any]) -> None:
    con = results["concurrent"]
    print(
        f"{con['n']} at once on one host: Lattice {con['lattice_running']}/{con['n']} running, "
        f"plain {con['plain_ready']}/{con['n']} ready"
    )
    if con["lattice_s"]:
        print(f"  Lattice click-to-ready:     {summary(con['lattice_s'])}")
    if con["lattice_overhead_s"]:
        print(f"  Lattice overhead:           {summary(con['lattice_overhead_s'])}")
    if con.get("lattice_split"):
        print("  the split, step by step (p50 / p95 ms):")
        print_split(con["lattice_split"])
    if con["plain_s"]:
        print(f"  plain docker run + ready:   {summary(con['plain_s'])}")
    if con["errors"]:
        print(f"  errors: {con['errors'][:3]}")
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
