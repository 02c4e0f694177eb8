"""``fault_layout``: the production layout (tests/platform/layout.py) on servers of its own,
with a second host, for the fault suite.

What runs, for the whole session:

- PostgreSQL and Redis of its own (tests/faults/servers.py), so a test may stop, kill or
  restart them and touch nothing else on this machine; the layout's services reach them as
  compose's do (``postgres:5432`` and ``redis:6379/0`` translated to their addresses);
- compose's ``web``, ``worker``, ``beat`` and ``agent`` (host a, on the machine's Docker
  engine) and ``agent-b`` (host b: compose's ``agent`` service again, as "a further GPU host
  runs only the agent", with a .env of its own and ``DOCKER_HOST`` the second engine's,
  tests/multihost.py), each host joined with credentials from ``manage.py
  create_join_token --host --address`` as an operator makes them;
- workload addresses as tests/multihost.py's two hosts have them: host b the second engine's
  bridge address, host a a second address on that bridge (the machine's engine publishes
  its workloads' ports there), both reachable from the web;
- S3: moto, as the production layout's.

Its workloads carry the installation label ``<the test run's>-faults``: neither the suite's
clean-ups, the production layout's, nor the two-host tests' touch them, nor it theirs. At
the end: the services stopped, its workloads removed from both engines, the servers stopped
and their folders removed.

The API (tests/faults/__init__'s brief)::

    fault_layout.url, .installation, .hosts {"a": name, "b": name}, .engines {"a", "b"}
    fault_layout.start/stop/kill/running/wait_up(name)   # web worker beat agent agent-b
    fault_layout.second_engine, .postgres, .redis        # .restart() .stop() .start() .kill()
    fault_layout.sql(query, params)                      # the layout's database
    fault_layout.api()                                   # httpx.Client, a member's token
    fault_layout.team_slug, .user_email
    fault_layout.healthy()      # start what is down; wait until all is up, both hosts ready
    fault_layout.start_notebook(on="b")                  # made and started; waits "running"
    fault_layout.start_gpu_notebook()                    # a GPU notebook, on host b

Host b is a GPU host: its agent reports the two H100s of tests/fixtures/gpu/
h100-80gb-x2-derived (LATTICE_AGENT_GPU_INVENTORY) and its engine has the fake NVIDIA hook
(tests/multihost.py), and the database has a machine type with one such GPU that fits this
box's cores (``GPU_TYPE``, made as an operator adds one: ``manage.py shell``), which only
host b offers, and a CPU type of one core (``CPU_TYPE``) so that a CPU notebook and a GPU
notebook fit host b together.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.multihost import GPU_INVENTORY_B
from tests.platform.layout import ExtraHost, Layout, run_layout

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.multihost import SecondEngine

HOST_KEYS = {"a": "agent", "b": "agent-b"}
# A machine type with one of host b's GPUs that fits this box's two cores (the catalogue's
# GPU types ask for 20 and more), made in the layout's database at its start.
GPU_TYPE = "faults-gpu-x1"
GPU_MODEL = "NVIDIA H100 80GB HBM3"
# A CPU machine type of one core (cpu-small asks for two: all of a host here), so a CPU
# notebook and a GPU notebook fit host b together.
CPU_TYPE = "faults-cpu-x1"
READY_TIMEOUT = 90.0
# The fault layout's own intervals, beyond the production layout's (reconcile every 1 s):
# - a host is offline after 15 s of silence (production: 90): longer than an agent's
#   restart here (6-7 s measured; compose restarts it at once), so an agent killed and
#   started again is not a host lost, while a dead host is still found well within 30 s;
# - a start that made no progress (its message lost with the agent that had taken it:
#   kombu without acks) is sent again after 5 s (production: 60).
INTERVALS = {"LATTICE_HOST_OFFLINE_AFTER": "15", "LATTICE_NOTEBOOK_REDISPATCH_AFTER": "5"}
DATABASE = "lattice"


@dataclass
class FaultLayout:
    """The running fault layout (see the module)."""

    layout: Layout
    second_engine: SecondEngine
    postgres: PrivatePostgres
    redis: PrivateRedis
    main_client: Any
    team_slug: str = ""
    user_email: str = ""
    token: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    # --- what it is -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.layout.url

    @property
    def installation(self) -> str:
        return self.layout.installation

    @property
    def hosts(self) -> dict[str, str]:
        return {key: self.layout.host_name_of(name) for key, name in HOST_KEYS.items()}

    @property
    def engines(self) -> dict[str, Any]:
        # The second engine's client is a new one at each of its starts.
        return {"a": self.main_client, "b": self.second_engine.client}

    @property
    def services(self) -> tuple[str, ...]:
        return self.layout.services

    # --- its processes (tests/platform/layout.py's) ----------------------------------------

    def start(self, name: str, *, wait: bool = True) -> Any:
        return self.layout.start(name, wait=wait)

    def stop(self, name: str) -> int | None:
        return self.layout.stop(name)

    def kill(self, name: str) -> int | None:
        return self.layout.kill(name)

    def running(self, name: str) -> bool:
        return self.layout.running(name)

    def wait_up(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        self.layout.wait_up(name, timeout=timeout)

    def log(self, name: str) -> str:
        return self.layout.log(name)

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.layout.sql(query, params)

    def manage(self, *args: str) -> str:
        return self.layout.manage(*args)

    # --- being whole again -------------------------------------------------------------------

    def healthy(self, timeout: float = READY_TIMEOUT) -> None:
        """Start whatever is down (servers, the second engine, processes), then wait until
        every process is up and both hosts are ready in the database."""
        for server in (self.postgres, self.redis):
            if not server.running():
                server.start()
        if not self.second_engine.running():
            self.second_engine.start()
        for name in self.services:
            if not self.running(name):
                self.start(name, wait=False)
        for name in self.services:
            self.wait_up(name, timeout=timeout)
        deadline = time.monotonic() + timeout
        while (statuses := self.host_statuses()) != {"a": "ready", "b": "ready"}:
            if time.monotonic() > deadline:
                logs = {n: self.log(n)[-3000:] for n in HOST_KEYS.values()}
                pytest.fail(f"hosts not ready within {timeout:.0f}s: {statuses}\n{logs}")
            time.sleep(0.25)

    def reset(self, timeout: float = 90.0) -> None:
        """Healthy, no host drained, and no notebook of the layout's team running or waiting
        (each stopped through the API): what a fault module starts from and leaves behind,
        so one module's notebooks never take the room another's need."""
        self.healthy()
        for key in HOST_KEYS:
            self.set_draining(key, False)
        live = "SELECT DISTINCT notebook_id FROM notebooks_notebooksession WHERE ended_at IS NULL"
        with self.api() as api:
            for (notebook,) in self.sql(live):
                api.post(f"/teams/{self.team_slug}/notebooks/{notebook}/stop/")
        deadline = time.monotonic() + timeout
        while left := self.sql(live):
            if time.monotonic() > deadline:
                pytest.fail(f"notebooks {left} still live {timeout:.0f}s after their stop")
            time.sleep(0.5)

    def host_statuses(self) -> dict[str, str]:
        names = self.hosts
        try:
            rows = dict(
                self.sql(
                    "SELECT name, status FROM machines_host WHERE name = ANY(%s)",
                    [list(names.values())],
                )
            )
        except Exception:  # its database is down
            return {}
        return {key: str(rows.get(name)) for key, name in names.items()}

    # --- the agents' broker users ------------------------------------------------------------

    def broker_users(self) -> list[str]:
        """The hosts' Redis users as ``ACL LIST`` shows them (passwords as their hashes)."""
        import redis

        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            rules = client.execute_command("ACL", "LIST")
        finally:
            client.close()
        return [rule for rule in rules if rule.startswith("user lattice-host-")]

    # --- the API -------------------------------------------------------------------------------

    def api(self) -> httpx.Client:
        """An API client with the bearer token of the team's member (its base: /api/v1)."""
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def set_draining(self, key: str, draining: bool) -> None:
        """Drain host ``key`` (no new placements there) or undrain it, as the admin does."""
        self.manage(
            "shell",
            "-c",
            "from apps.machines.models import Host\n"
            "from apps.machines.services import host_set_draining\n"
            f"host_set_draining(host=Host.objects.get(name={self.hosts[key]!r}),"
            f" draining={draining!r})\n",
        )

    @contextlib.contextmanager
    def pinned(self, key: str) -> Iterator[None]:
        """New placements go to host ``key`` only: the other host is drained meanwhile."""
        others = [other for other in HOST_KEYS if other != key]
        for other in others:
            self.set_draining(other, True)
        try:
            yield
        finally:
            for other in others:
                self.set_draining(other, False)

    def create_notebook(
        self, api: httpx.Client, name: str = "Fault", machine_type: str = CPU_TYPE
    ) -> int:
        made = api.post(
            f"/teams/{self.team_slug}/notebooks/",
            json={"name": name, "template": "scipy", "machine_type": machine_type},
        )
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    def notebook_status(self, api: httpx.Client, notebook: int) -> str:
        return str(api.get(f"/teams/{self.team_slug}/notebooks/{notebook}/").json()["status"])

    def start_notebook(
        self,
        api: httpx.Client | None = None,
        *,
        on: str | None = None,
        name: str = "Fault",
        wait: bool = True,
        timeout: float = 240.0,
        machine_type: str = CPU_TYPE,
    ) -> int:
        """A notebook made and started through the API (on host ``on`` when given: the other
        drained until it is placed); with ``wait``, until it is "running". Its id."""
        client = api or self.api()
        try:
            notebook = self.create_notebook(client, name, machine_type)
            with self.pinned(on) if on else contextlib.nullcontext():
                started = client.post(f"/teams/{self.team_slug}/notebooks/{notebook}/start/")
                assert started.status_code in {200, 202}, started.text
                if on:  # placed (its session has a host) before the drain ends
                    self._wait_placed(notebook, timeout)
            if wait:
                self.wait_notebook(client, notebook, "running", timeout)
            return notebook
        finally:
            if api is None:
                client.close()

    def start_gpu_notebook(
        self,
        api: httpx.Client | None = None,
        *,
        name: str = "GPU",
        wait: bool = True,
        timeout: float = 240.0,
    ) -> int:
        """A notebook of ``GPU_TYPE`` made and started through the API: only host b has GPUs,
        so it is placed there (no drain needed); with ``wait``, until it is "running"."""
        self.wait_gpus("b")
        return self.start_notebook(
            api, name=name, wait=wait, timeout=timeout, machine_type=GPU_TYPE
        )

    def gpus(self, key: str = "b") -> list[str]:
        """The GPU UUIDs the ledger has for host ``key``."""
        rows = self.sql(
            "SELECT g.uuid FROM machines_gpudevice g JOIN machines_host h ON h.id = g.host_id"
            " WHERE h.name = %s ORDER BY g.uuid",
            [self.hosts[key]],
        )
        return [str(row[0]) for row in rows]

    def wait_gpus(self, key: str = "b", timeout: float = 30.0) -> list[str]:
        """Host ``key``'s GPUs once its agent reported them (host b: two)."""
        deadline = time.monotonic() + timeout
        while len(found := self.gpus(key)) < 2:
            if time.monotonic() > deadline:
                pytest.fail(f"host {key} reported no GPUs within {timeout:.0f}s: {found}")
            time.sleep(0.25)
        return found

    def _wait_placed(self, notebook: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.notebook_host(notebook):
            if time.monotonic() > deadline:
                pytest.fail(f"notebook {notebook} not placed within {timeout:.0f}s")
            time.sleep(0.25)

    def notebook_host(self, notebook: int) -> str | None:
        """The host key ("a"/"b") of the notebook's latest session, if placed."""
        rows = self.sql(
            "SELECT h.name FROM notebooks_notebooksession s JOIN machines_host h"
            " ON h.id = s.host_id WHERE s.notebook_id = %s ORDER BY s.id DESC LIMIT 1",
            [notebook],
        )
        by_name = {name: key for key, name in self.hosts.items()}
        return by_name.get(rows[0][0]) if rows else None

    def wait_notebook(
        self, api: httpx.Client, notebook: int, status: str, timeout: float = 240.0
    ) -> None:
        deadline = time.monotonic() + timeout
        seen = ""
        while (seen := self.notebook_status(api, notebook)) != status:
            if seen == "failed" or time.monotonic() > deadline:
                events = api.get(f"/teams/{self.team_slug}/notebooks/{notebook}/events/").text
                pytest.fail(f"notebook {notebook} is {seen!r}, not {status!r}: {events[-3000:]}")
            time.sleep(0.25)

    def logs(self) -> str:
        servers = "\n".join(
            f"===== {s.name} (server) =====\n{s.log()[-4000:]}" for s in (self.postgres, self.redis)
        )
        return f"{self.layout.logs()}\n{servers}"


def _machine_types(layout: Layout) -> None:
    """``GPU_TYPE`` and ``CPU_TYPE`` in the layout's database, as an operator adds them."""
    layout.manage(
        "shell",
        "-c",
        "from decimal import Decimal\n"
        "from apps.machines.models import MachineType\n"
        f"MachineType.objects.update_or_create(slug={GPU_TYPE!r}, defaults=dict("
        f"name='Faults GPU x1', vcpus=1, memory_gib=1, disk_gib=1, gpu_model={GPU_MODEL!r},"
        " gpu_count=1, hourly_price=Decimal('1.00')))\n"
        f"MachineType.objects.update_or_create(slug={CPU_TYPE!r}, defaults=dict("
        "name='Faults CPU x1', vcpus=1, memory_gib=1, disk_gib=1,"
        " hourly_price=Decimal('0.10')))\n",
    )


def _member(layout: Layout) -> tuple[str, str, str]:
    """A member (owner) of a team and an API token of theirs, made in the layout's database
    with a management command: (email, team slug, token)."""
    email = f"faults-{secrets.token_hex(3)}@layout.test"
    made = layout.manage(
        "shell",
        "-c",
        "from apps.accounts.models import TOKEN_SCOPES, User\n"
        "from apps.accounts.tokens import token_create\n"
        "from apps.teams.services import team_create\n"
        f"user = User.objects.create_user(email={email!r}, password={secrets.token_urlsafe()!r})\n"
        "team = team_create(actor=user, name='Faults')\n"
        "_, plaintext = token_create(user=user, name='faults', team=team, expires_in_days=7,"
        " scopes=list(TOKEN_SCOPES))\n"
        "print(team.slug)\n"
        "print(plaintext)\n",
    )
    team, token = made.split()[-2:]
    return email, team, token


@pytest.fixture(scope="session")
def fault_layout(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: Any,
    second_engine: SecondEngine,
    scipy_image: str,
) -> Iterator[FaultLayout]:
    """The production layout with two hosts on servers of its own (see the module)."""
    import uuid

    from django.conf import settings

    began = time.monotonic()
    postgres = PrivatePostgres("lattice", secrets.token_urlsafe(16))
    redis = PrivateRedis()
    try:
        postgres.start()
        redis.start()
        servers = time.monotonic() - began
        extra = {
            "agent-b": ExtraHost(
                host_name=f"faults-b-{uuid.uuid4().hex[:6]}",
                address=second_engine.address,
                docker_host=second_engine.url,
                environment=(
                    {"LATTICE_AGENT_GPU_INVENTORY": str(GPU_INVENTORY_B)}
                    if second_engine.fake_nvidia_hook
                    else {}
                ),
            )
        }
        with run_layout(
            folder=tmp_path_factory.mktemp("faults"),
            db={**postgres.admin(), "NAME": DATABASE},
            database=DATABASE,
            redis_address=redis.address,
            redis_db=0,  # compose's REDIS_URL
            installation=f"{settings.LATTICE_INSTALLATION}-faults",
            scipy_image=scipy_image,
            docker_clients=[docker_client, second_engine.client],
            agent_address=second_engine.main_address,
            extra_hosts=extra,
            began=began,
            dotenv=INTERVALS,
        ) as layout:
            layout.timings["private servers"] = servers
            fault = FaultLayout(layout, second_engine, postgres, redis, docker_client)
            mark = time.monotonic()
            fault.user_email, fault.team_slug, fault.token = _member(layout)
            _machine_types(layout)
            layout.timings["member and token"] = time.monotonic() - mark
            layout.start_seconds = time.monotonic() - began
            fault.timings = layout.timings
            print(  # noqa: T201 - the start's cost, shown with -s
                f"\nfault layout started in {layout.start_seconds:.1f}s:",
                {k: round(v, 1) for k, v in layout.timings.items()},
            )
            yield fault
            # The clean-up needs its servers and the second engine: back if a test left them.
            for server in (postgres, redis):
                if not server.running():
                    server.start()
            if not second_engine.running():
                second_engine.start()
    finally:
        redis.remove()
        postgres.remove()
