"""The production layout of docker-compose.yml, run as local processes for the suite.

``production_layout`` (module scope) reads docker-compose.yml itself, each time it starts a
service: the service's ``command``, ``environment``, ``env_file`` (a ``.env`` the fixture
writes), ``ports`` and ``volumes``, with Compose's interpolation (tests/platform/compose.py).
There is no second copy of the command lines here: edit the compose file and what runs
changes. It runs, as processes of this machine (no image registry here, so no images):

- ``migrate`` (once, the one-shot service), then ``web`` (uvicorn, production settings),
  ``worker`` (the control worker: queues control and inbox), ``beat`` (the database
  scheduler) and ``agent`` (``manage.py agent`` with agent settings, driving this machine's
  Docker engine through /var/run/docker.sock);
- against the suite's PostgreSQL (a database of its own, ``<suite database>_layout``, made
  and dropped here), the suite's Redis (a database number of its own: the suite's plus 8,
  flushed before and after; the agent gets its own broker user on it, made by
  ``manage.py create_join_token`` as an operator makes it, never REDIS_URL) and the suite's
  S3 (moto's ThreadedMotoServer, its own: the suite's checked fake S3 of
  tests/blob_fixtures.py checks only presigned URLs that sign a bare path, not the
  checksummed part uploads a dataset upload makes) with ``LATTICE_STORAGE=s3`` as compose
  sets it; the bucket is made as minio-init makes it.

What is translated, and only that (``Layout.spec``): the compose services' host names
(``postgres``, ``redis``, ``minio``) to their 127.0.0.1 addresses (and Redis's database
number); container paths to folders under a temporary folder (a named volume's target to a
folder of that volume's name, ``/tmp`` to one of the service's own; a bind mount's target
to its source); the published port (``ports``) for the container port in the command,
``--host 0.0.0.0`` to the published address; ``python``/``celery``/``uvicorn`` to this
environment's. Added: ``LATTICE_INSTALLATION`` to every service, the test run's with
``-layout`` (compose's agent has no env_file and would derive one of its own; with it, the
layout's workloads carry a label of their own, so neither the suite's clean-ups and
reconcilers nor the layout's touch the other's), the agent's short report interval
(``EXTRA``), and the agent's ``LATTICE_POOL_DIR`` in the layout's folder (in its container
its var folder is the image's; here the default would be this checkout's), released at the
end. The .env it writes (``_dotenv``) sets short reconcile and offline intervals,
the locally built scipy image as ``LATTICE_IMAGE_SCIPY`` and no HTTPS redirect (no proxy).

The API for tests, and for the fault suite that builds on it::

    layout.url                  # the web's base URL (http://127.0.0.1:<port>)
    layout.processes            # {"web": Popen, "worker": ..., "beat": ..., "agent": ...}
    layout.stop(name)           # SIGTERM, waits for it to exit (SIGKILL after a grace)
    layout.kill(name)           # SIGKILL, at once
    layout.start(name)          # start it again (re-reads the compose file), waits until up
    layout.running(name)        # is its process alive
    layout.wait_up(name)        # web: /readyz answers; worker/beat: their log says so;
                                # agent: its alive file exists and its host is ready
    layout.log(name)            # its log so far (every start appends to one file)
    layout.spec(name)           # (argv, env) it would run, read from the compose file now
    layout.healthcheck(name)    # its compose health check (CMD), run now
    layout.manage(*args)        # `python manage.py ...` with the web service's environment
    layout.sql(query, params)   # rows from the layout's own database (observing only)
    layout.host_name            # the agent's host (LATTICE_LOCAL_HOST_NAME)
    layout.services             # the long-running services' names, further hosts' included
    layout.start_seconds        # what the fixture's start cost, and layout.timings its steps

Every log is printed under a test's failure report (``pytest_runtest_makereport`` below),
and kept in ``<pytest's temporary folder>/layout*/logs/<service>.log`` (each start of a
service appends to its file, after a ``--- start <argv>`` line).

Further hosts (``Layout.extra_hosts``, the fault suite's): "a further GPU host runs only the
agent" (the compose file's header), so a further host is compose's ``agent`` service run
under a name of its own (``agent-b``) with a .env of its own (its host name, join token and
broker URL, made by ``create_join_token --host --address`` as for the first), its own volume
folders, and ``DOCKER_HOST``/``LATTICE_WORKLOAD_ADDRESS`` of its engine. ``run_layout`` is
the bring-up both fixtures share; where PostgreSQL and Redis are is its caller's choice.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import service_missing
from tests.platform import compose

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
# Started in this order (all at once, then waited for); migrate runs before them, once.
SERVICES = ("web", "worker", "beat", "agent")
# Not compose's: what the suite adds. Short intervals, so a test sees beat's passes and the
# agent's reports in seconds; the agent's installation label (compose's agent has no
# env_file, so it would derive one of its own).
EXTRA: dict[str, dict[str, str]] = {
    "agent": {"LATTICE_AGENT_REPORT_EVERY": "1"},
}
# What this process's environment must not lend the services: they get compose's.
_NOT_INHERITED = ("DJANGO_", "LATTICE_", "DATABASE_", "REDIS_", "AWS_", "CELERY_", "PYTEST_")
_STOP_GRACE = 10.0
# The S3 service's credentials (compose: MINIO_ROOT_USER and MINIO_ROOT_PASSWORD).
S3_ACCESS_KEY = "AKIALATTICELAYOUT01"
S3_SECRET_KEY = secrets.token_urlsafe(30)
_UP_TIMEOUT = 90.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ExtraHost:
    """A further host: compose's ``agent`` service with a .env of its own (see the module)."""

    host_name: str
    address: str  # its LATTICE_WORKLOAD_ADDRESS (create_join_token --address)
    docker_host: str  # its engine (DOCKER_HOST)
    # Its process's own environment beyond compose's (LATTICE_AGENT_GPU_INVENTORY: the GPUs
    # a GPU host's agent reads through NVML, here from a file).
    environment: dict[str, str] = field(default_factory=dict)
    # Its .env's own lines (join token, broker URL), filled in by the bring-up.
    dotenv: dict[str, str] = field(default_factory=dict)


@dataclass
class Layout:
    """The running layout (see the module's docstring)."""

    folder: Path
    dotenv: dict[str, str]
    addresses: dict[str, str]
    redis_db: int
    database: str
    database_url: str
    compose_file: Path = COMPOSE_FILE
    installation: str = ""
    start_seconds: float = 0.0
    # How long each step of the fixture's start took (seconds), for the report.
    timings: dict[str, float] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    # Host a's LATTICE_WORKLOAD_ADDRESS when not 127.0.0.1 (create_join_token's default).
    agent_address: str = ""
    # Further hosts, by service name ("agent-b"): compose's agent service each.
    extra_hosts: dict[str, ExtraHost] = field(default_factory=dict)

    # --- what runs -----------------------------------------------------------------------

    @property
    def host_name(self) -> str:
        return self.dotenv["LATTICE_LOCAL_HOST_NAME"]

    @property
    def services(self) -> tuple[str, ...]:
        return (*SERVICES, *self.extra_hosts)

    def is_agent(self, name: str) -> bool:
        return name == "agent" or name in self.extra_hosts

    def host_name_of(self, name: str) -> str:
        """The host agent service ``name`` runs as."""
        extra = self.extra_hosts.get(name)
        return extra.host_name if extra is not None else self.host_name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dotenv['LATTICE_HTTP_PORT']}"

    def spec(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The argv and environment service ``name`` runs with, from the compose file as it
        is now, translated to this machine."""
        extra = self.extra_hosts.get(name)
        # A further host runs compose's agent with its own .env and its own volumes.
        dotenv = {**self.dotenv, **self.dotenv_of(name)} if extra else self.dotenv
        volumes = self.folder / "hosts" / name / "volumes" if extra else self.folder / "volumes"
        kind = "agent" if extra else name
        services = compose.load(self.compose_file, dotenv)["services"]
        service = services[kind]
        own = self.folder / "services" / name
        paths: dict[str, str] = {}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith(("/", ".")):
                paths[target] = source
            else:
                paths[target] = str(volumes / source)
        env: dict[str, str] = {}
        if service.get("env_file"):
            env.update(dotenv)
        env.update(_environment(service.get("environment")))
        env = {key: self._translate(value, paths) for key, value in env.items()}
        env.update(EXTRA.get(kind, {}))
        env["LATTICE_INSTALLATION"] = self.installation
        if kind == "agent":
            # In its container the agent's var folder is the image's, not this checkout's:
            # here a folder of its own, so the warm pool's shared mount it makes as root
            # never lands in the checkout (where a developer's `make dev` keeps its pool).
            env["LATTICE_POOL_DIR"] = str(self.pool_dir_of(name))
            if extra is not None:
                # Its engine: on its machine, the socket compose mounts.
                env["DOCKER_HOST"] = extra.docker_host
                env["LATTICE_WORKLOAD_ADDRESS"] = extra.address
                env.update(extra.environment)
            elif self.agent_address:
                env["LATTICE_WORKLOAD_ADDRESS"] = self.agent_address
        # A container's own /tmp, where its command writes (beat's pidfile).
        in_command = {**paths, "/tmp": str(own / "tmp")}  # noqa: S108
        argv = [self._translate(arg, in_command) for arg in service["command"]]
        for port in service.get("ports", []):
            address, published, inside = str(port).rsplit(":", 2)
            argv = _replace_option(argv, "--port", inside, published)
            argv = _replace_option(argv, "--host", "0.0.0.0", address)  # noqa: S104
        program = argv[0]
        argv[0] = sys.executable if program == "python" else str(BIN / program)
        return argv, env

    def _translate(self, value: str, paths: dict[str, str]) -> str:
        parts = urlsplit(value)
        if parts.scheme and parts.hostname in self.addresses:
            userinfo, _, _ = parts.netloc.rpartition("@")
            address = self.addresses[parts.hostname]
            path = f"/{self.redis_db}" if parts.scheme.startswith("redis") else parts.path
            netloc = f"{userinfo}@{address}" if userinfo else address
            return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))
        for target in sorted(paths, key=len, reverse=True):
            if value == target or value.startswith(target + "/"):
                return paths[target] + value[len(target) :]
        return value

    def _process_env(self, env: dict[str, str]) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        return {**base, **env}

    # --- processes -------------------------------------------------------------------------

    def run_once(self, name: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one-shot service ``name`` (migrate) to its end; fails the test if it fails."""
        argv, env = self.spec(name)
        (self.folder / "services" / name / "tmp").mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            argv,
            cwd=ROOT,
            env=self._process_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self._log_path(name).write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            pytest.fail(f"{name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        """``python manage.py <args>`` as ``docker compose run --rm web`` runs it: the web
        service's environment; its output."""
        _, web_env = self.spec("web")
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self._process_env({**web_env, **(env or {})}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"manage.py {' '.join(args[:1])} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        """Service ``name``'s compose health check (a ``CMD`` one), run with its environment."""
        test = compose.load(self.compose_file, self.dotenv)["services"][name]["healthcheck"]["test"]
        if test[0] != "CMD":
            raise ValueError(f"{name}'s health check is {test[0]}, not CMD")
        _, env = self.spec(name)
        program = test[1]
        command = [sys.executable if program == "python" else str(BIN / program), *test[2:]]
        return subprocess.run(
            command,
            cwd=ROOT,
            env=self._process_env(env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, name: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start service ``name`` (reading the compose file now); wait until it is up."""
        if self.running(name):
            raise RuntimeError(f"{name} is already running")
        argv, env = self.spec(name)
        (self.folder / "services" / name / "tmp").mkdir(parents=True, exist_ok=True)
        for path in env.values():
            if path.startswith(str(self.folder / "volumes")):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        log = self._log_path(name).open("ab")
        log.write(f"\n--- start {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self._process_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop/kill reach its children
        )
        log.close()
        self.processes[name] = process
        self.started_at[name] = time.time()
        if wait:
            self.wait_up(name)
        return process

    def running(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def stop(self, name: str, grace: float = _STOP_GRACE) -> int | None:
        """SIGTERM to ``name`` (a warm shutdown), SIGKILL after ``grace``; its exit code."""
        process = self.processes.get(name)
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                return self.kill(name)
        self._reap_group(process)
        return process.returncode

    def kill(self, name: str) -> int | None:
        """SIGKILL to ``name`` and every process it started, at once; its exit code."""
        process = self.processes.get(name)
        if process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return process.returncode

    def _reap_group(self, process: subprocess.Popen[bytes]) -> None:
        # Celery's pool children may outlive their parent by a moment: none stays.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    @property
    def pool_dir(self) -> Path:
        """The agent's warm-pool folder (LATTICE_POOL_DIR): the layout's own."""
        return self.pool_dir_of("agent")

    def pool_dir_of(self, name: str) -> Path:
        if name in self.extra_hosts:
            return self.folder / "hosts" / name / "agent-var" / "pool"
        return self.folder / "agent-var" / "pool"

    def dotenv_of(self, name: str) -> dict[str, str]:
        """A further host's own .env lines: its host name, join token, broker URL, cache."""
        extra = self.extra_hosts[name]
        return {
            "LATTICE_LOCAL_HOST_NAME": extra.host_name,
            "LATTICE_DATASET_CACHE": str(self.folder / "hosts" / name / "dataset-cache"),
            **extra.dotenv,
        }

    def close(self) -> None:
        """Stop every service: all asked at once (SIGTERM), then each waited for; then the
        agent's warm-pool mount is released (it outlives the agent, as on a real host)."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for name in self.processes:
            mark = time.monotonic()
            self.stop(name)
            self.timings[f"stop {name}"] = time.monotonic() - mark
        from apps.runtimes.pool import Slots

        for name in self.services:
            if self.is_agent(name):
                with contextlib.suppress(Exception):
                    Slots(self.pool_dir_of(name)).release()

    # --- being up ----------------------------------------------------------------------------

    def wait_up(self, name: str, timeout: float = _UP_TIMEOUT) -> None:
        checks: dict[str, Callable[[], bool]] = {
            "web": self._web_up,
            "worker": lambda: " ready." in self._log_since_start("worker"),
            "beat": lambda: "beat: Starting..." in self._log_since_start("beat"),
        }
        check = (lambda: self._agent_up(name)) if self.is_agent(name) else checks[name]
        deadline = time.monotonic() + timeout
        while not check():
            if not self.running(name):
                pytest.fail(f"{name} exited ({self.processes[name].returncode}):\n{self.log(name)}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not up after {timeout:.0f}s:\n{self.log(name)[-6000:]}")
            time.sleep(0.1)

    def _web_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _agent_up(self, name: str = "agent") -> bool:
        _, env = self.spec(name)
        alive = Path(env["LATTICE_AGENT_ALIVE_FILE"])
        if not alive.exists() or alive.stat().st_mtime < self.started_at[name]:
            return False
        try:
            rows = self.sql(
                "SELECT status FROM machines_host WHERE name = %s", [self.host_name_of(name)]
            )
        except Exception:  # the database is down (the fault suite restarts it)
            return False
        return rows == [("ready",)]

    # --- looking at it -------------------------------------------------------------------------

    def _log_path(self, name: str) -> Path:
        path = self.folder / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, name: str) -> str:
        path = self._log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def _log_since_start(self, name: str) -> str:
        return self.log(name).rpartition("\n--- start ")[2]

    def logs(self) -> str:
        return "\n".join(
            f"===== {name} =====\n{self.log(name)[-8000:]}"
            for name in ("migrate", *self.services)
            if self.log(name)
        )

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return list(conn.execute(query, params).fetchall())


def _environment(value: Any) -> dict[str, str]:
    """A service's ``environment``, a mapping or a list of NAME=value."""
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in value)


def _replace_option(argv: list[str], option: str, old: str, new: str) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == option and out[i + 1] == old:
            out[i + 1] = new
    return out


# --- the fixture -------------------------------------------------------------------------------


def _suite_database() -> dict[str, str]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        service_missing("the production layout needs PostgreSQL: set DATABASE_URL=postgres://...")
    return {k: str(db.get(k) or "") for k in ("HOST", "PORT", "USER", "PASSWORD", "NAME")}


def _admin_connect(db: dict[str, str]) -> Any:
    import psycopg

    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or "5432",
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )


def _drop_database(db: dict[str, str], name: str) -> None:
    with _admin_connect(db) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _dotenv(
    *, db: dict[str, str], database: str, bucket: str, folder: Path, scipy_image: str
) -> dict[str, str]:
    """The .env an operator fills in from .env.example, for this machine."""
    port = str(free_port())
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "http://127.0.0.1",
        # No TLS proxy in front of it here.
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "LATTICE_USER_CONTENT_DOMAIN": "layout-usercontent.test",
        "LATTICE_HTTP_PORT": port,
        # Where hosts reach the web tier (save and snapshot tickets, blob links): as an
        # operator sets it (.env.example), the web's published address here.
        "LATTICE_INTERNAL_URL": f"http://127.0.0.1:{port}",
        "LATTICE_LOCAL_HOST_NAME": f"layout-{uuid.uuid4().hex[:8]}",
        "POSTGRES_USER": db["USER"],
        "POSTGRES_PASSWORD": db["PASSWORD"],
        "POSTGRES_DB": database,
        "MINIO_ROOT_USER": S3_ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": S3_SECRET_KEY,
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_REGION_NAME": "us-east-1",
        "LATTICE_MEDIA_ROOT": str(folder / "media"),
        "LATTICE_STATIC_ROOT": str(folder / "static"),
        "LATTICE_DATASET_CACHE": str(folder / "dataset-cache"),
        "LATTICE_POOL_DIR": str(folder / "pool"),
        # The image a registry would hold, built here (tests/conftest.py scipy_image).
        "LATTICE_LOCAL_IMAGES": "false",
        "LATTICE_IMAGE_SCIPY": scipy_image,
        "LATTICE_RECONCILE_EVERY": "1",
        "LATTICE_HOST_OFFLINE_AFTER": "5",
        "LATTICE_EMAIL_DELIVERY_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "EMAIL_URL": "consolemail://",
    }


@pytest.fixture(scope="module")
def production_layout(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    docker_client: Any,
    scipy_image: str,
) -> Iterator[Layout]:
    """docker-compose.yml's web, worker, beat and agent, running (see the module)."""
    from django.conf import settings

    db = _suite_database()
    suite_redis = urlsplit(redis_url)
    with run_layout(
        folder=tmp_path_factory.mktemp("layout"),
        db=db,
        database=f"{db['NAME'].removeprefix('test_')}_layout"[:63],
        redis_address=suite_redis.netloc.rpartition("@")[2] or "127.0.0.1:6379",
        redis_netloc=suite_redis.netloc,
        redis_db=(int((suite_redis.path or "/0").strip("/") or 0) + 8) % 16,
        # The test run's installation, and the layout's own within it: the suite's
        # reconcilers and clean-ups never take its workloads for theirs, nor it theirs.
        installation=f"{settings.LATTICE_INSTALLATION}-layout",
        scipy_image=scipy_image,
        docker_clients=[docker_client],
    ) as layout:
        yield layout


@contextlib.contextmanager
def run_layout(
    *,
    folder: Path,
    db: dict[str, str],
    database: str,
    redis_address: str,
    redis_db: int,
    installation: str,
    scipy_image: str,
    docker_clients: list[Any],
    agent_address: str = "",
    extra_hosts: dict[str, ExtraHost] | None = None,
    began: float | None = None,
    redis_netloc: str = "",
    dotenv: dict[str, str] | None = None,
) -> Iterator[Layout]:
    """The layout, up (the bring-up both fixtures share): its S3 (moto) and bucket, its own
    database ``database`` on the PostgreSQL server ``db`` (HOST, PORT, USER, PASSWORD: made
    here, dropped at the end), database ``redis_db`` of the Redis at ``redis_address``
    (flushed before and after), its agents' workloads removed from ``docker_clients`` at the
    end (by the installation label), their broker users removed."""
    import boto3
    import redis
    from moto.server import ThreadedMotoServer

    began = time.monotonic() if began is None else began
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    s3_server = "http://{}:{}".format(*moto.get_host_and_port())
    s3 = urlsplit(s3_server)
    bucket = f"layout-{secrets.token_hex(4)}"
    pg_address = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or '5432'}"
    dotenv = {
        **_dotenv(db=db, database=database, bucket=bucket, folder=folder, scipy_image=scipy_image),
        **(dotenv or {}),  # the caller's own settings (the fault layout's intervals)
    }
    layout = Layout(
        folder=folder,
        dotenv=dotenv,
        addresses={"postgres": pg_address, "redis": redis_address, "minio": s3.netloc},
        redis_db=redis_db,
        database=database,
        database_url=f"postgres://{db['USER']}:{db['PASSWORD']}@{pg_address}/{database}",
        installation=installation,
        agent_address=agent_address,
        extra_hosts=dict(extra_hosts or {}),
    )
    trusted = redis.Redis.from_url(
        f"redis://{redis_netloc or redis_address}/{redis_db}", socket_connect_timeout=2
    )
    _drop_database(db, database)
    with _admin_connect(db) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    trusted.flushdb()
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    layout.timings["prepare"] = time.monotonic() - began
    try:
        _bring_up(layout)
        layout.start_seconds = time.monotonic() - began
        yield layout
    finally:
        layout.close()
        mark = time.monotonic()
        for client in docker_clients:
            with contextlib.suppress(Exception):  # an engine a test left dead
                _remove_workloads(client, layout.installation)
        layout.timings["remove workloads"] = time.monotonic() - mark
        with contextlib.suppress(redis.RedisError):
            for name in layout.services:
                if layout.is_agent(name):
                    user = f"lattice-host-{layout.host_name_of(name)}"
                    trusted.execute_command("ACL", "DELUSER", user)
            trusted.flushdb()
        trusted.close()
        mark = time.monotonic()
        with contextlib.suppress(Exception):  # a server a test left stopped
            _drop_database(db, database)
        layout.timings["drop database"] = time.monotonic() - mark
        # The logs stay (pytest keeps the last runs' temporary folders); the rest goes.
        for path in folder.iterdir():
            if path.name != "logs":
                shutil.rmtree(path, ignore_errors=True)
        moto.stop()


def _bring_up(layout: Layout) -> None:
    """migrate, then the trusted tier and (once the operator made their credentials, for
    every host at once) the agents; waits until each is up."""
    from concurrent.futures import ThreadPoolExecutor

    mark = time.monotonic()
    layout.run_once("migrate")
    layout.timings["migrate"] = time.monotonic() - mark
    mark = time.monotonic()
    # The trusted tier does not wait for the agents' credentials: started meanwhile.
    for name in SERVICES[:-1]:
        layout.start(name, wait=False)
    agents = [name for name in layout.services if layout.is_agent(name)]
    # The operator's step before an agent's first start (docker-compose.yml's header).
    with ThreadPoolExecutor(len(agents)) as pool:
        made = list(pool.map(lambda name: layout.manage(*_join_args(layout, name)), agents))
    layout.timings["join tokens"] = time.monotonic() - mark
    for name, said in zip(agents, made, strict=True):
        own = layout.dotenv if name == "agent" else layout.extra_hosts[name].dotenv
        for line in said.splitlines():
            if line.startswith("join token: "):
                own["LATTICE_AGENT_JOIN_TOKEN"] = line.removeprefix("join token: ")
            elif line.startswith("LATTICE_AGENT_BROKER_URL="):
                own["LATTICE_AGENT_BROKER_URL"] = line.split("=", 1)[1]
        layout.start(name, wait=False)
    for name in layout.services:
        layout.wait_up(name)
        layout.timings[name] = time.monotonic() - mark


def _join_args(layout: Layout, name: str) -> list[str]:
    """``create_join_token`` for agent service ``name``'s host, as an operator runs it."""
    address = layout.extra_hosts[name].address if name in layout.extra_hosts else ""
    address = address or layout.agent_address
    args = ["create_join_token", "--host", layout.host_name_of(name)]
    return [*args, "--address", address] if address else args


def _remove_workloads(docker_client: Any, installation: str) -> None:
    """The containers and volumes that carry the layout's installation label, only those."""
    from docker.errors import APIError

    label = {"label": [f"lattice.installation={installation}"]}
    for container in docker_client.containers.list(all=True, sparse=True, filters=label):
        with contextlib.suppress(APIError):
            container.remove(force=True)
    for volume in docker_client.volumes.list(filters=label):
        with contextlib.suppress(APIError):
            volume.remove(force=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the layout shows every process's log."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    layout = getattr(item, "funcargs", {}).get("production_layout")
    if report.failed and isinstance(layout, Layout):
        report.sections.append(("production layout logs", layout.logs()))
