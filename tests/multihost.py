"""Two real hosts on this machine: a second Docker engine of the test run's own beside the
machine's, and a host agent process (``manage.py agent``) for each engine, with the control
plane (a worker thread on the control queue and the inbox, over Redis) and the web tier (the
ASGI server: save tickets, blob links) in the test process.

The second engine (``second_engine``, once per session: a few seconds, plus loading the
notebook images into it) is a dockerd with its own data root, exec root, pidfile, unix socket,
containerd (the one dockerd starts under its exec root) and bridge (made here with ``ip
link``, on an address range no route of this machine uses), run with ``--iptables=false
--ip-forward=false --ip-masq=false`` and its own (empty) config file: it changes no rule,
setting or file of the machine's engine at /var/run/docker.sock, whose containers and networks
other runs use. Workloads' ports are published by Docker's userland proxy on the bridge's
addresses: host A (the machine's engine) on ``.2``, host B (the second engine) on ``.1``,
each its LATTICE_WORKLOAD_ADDRESS as a real host's private address is. At the end of the
session the second engine is stopped, the iptables rules its agent added for its network are
removed, its bridge deleted and its folders removed (never through a mount left behind).

The agents are real processes with ``DOCKER_HOST`` aimed at their engine, joined with real
join tokens (``join_token_create``) by the session's first test that asks for ``two_hosts``,
each with its own Redis user (its broker URL) and nothing of the trusted tier; each consumes
only its own queue. They run for the whole session (an agent start is ~15 s on two cores):
the database is emptied after each test, and with it the hosts' rows, which the next test
puts back as the join left them (``TwoHosts.ready_for_test``). Team ``/storage`` is served
from one folder both reach (LATTICE_SHARED_STORAGE), as on real hosts with NFS.

The second engine's dockerd has a fake of NVIDIA's container toolkit hook on its PATH
(``SecondEngine.fake_hook``), so Docker serves device requests for GPUs by UUID there as on a
GPU host, and host B's agent reports the two H100s of tests/fixtures/gpu/h100-80gb-x2-derived
(LATTICE_AGENT_GPU_INVENTORY): GPU notebooks are placed, allocated and started on host B (no
GPU is really there: what a process could do with one is not simulated).

Needs root, dockerd, iproute2 and iptables (scripts/services.sh installs them); without them
the tests are skipped, or fail under LATTICE_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import service_missing
from tests.notebook_fixtures import remove_installation_workloads

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
MAIN_ENGINE = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
ENGINE_START_TIMEOUT = 60.0
AGENT_READY_TIMEOUT = 90.0
# How often the agents report (seconds): a host's silence shows within a few of these.
REPORT_EVERY = 1.0
# The GPUs host B's agent reports (LATTICE_AGENT_GPU_INVENTORY): two H100s that are not there,
# which its engine's fake NVIDIA hook lets containers ask for by UUID (SecondEngine).
GPU_INVENTORY_B = ROOT / "tests" / "fixtures" / "gpu" / "h100-80gb-x2-derived" / "nvml.json"
NVIDIA_HOOK = "nvidia-container-runtime-hook"


def wait_until(condition: Callable[[], Any], timeout: float, step: float = 0.25) -> Any:
    """``condition()``'s first true answer within ``timeout`` seconds, else its last."""
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(step)


def _free_range() -> int:
    """N such that no address or route of this machine is in 10.N.0.0/16."""
    used = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    used += subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    choices = [n for n in range(200, 250) if f"10.{n}." not in used]
    if not choices:
        service_missing("no free 10.N.0.0/16 range for a second Docker engine's bridge")
    return secrets.choice(choices)


@dataclass
class SecondEngine:
    """A dockerd of this test run's own (see the module docstring)."""

    root: Path  # data root and its log
    run: Path  # exec root, socket, pidfile (short: a unix socket path has 107 bytes at most)
    bridge: str
    range_n: int
    process: subprocess.Popen[bytes] | None = None
    client: Any = None
    start_seconds: float = 0.0
    load_seconds: float = 0.0
    # The machine's engine's docker0 as it was (MainBridge), put back should it vanish.
    main_bridge: MainBridge | None = None
    # Start dockerd with a fake of NVIDIA's container toolkit on its PATH (``fake_hook``).
    fake_nvidia_hook: bool = False

    def fake_hook(self) -> Path:
        """A stand-in for ``nvidia-container-runtime-hook``, in this engine's own folder.

        Docker (moby 20.10.24, the version here: daemon/nvidia_linux.go; later versions in
        daemon/devices_nvidia_linux.go) registers its "nvidia"
        device driver, the one that serves a device request with capabilities [["gpu"]], only
        when that hook is on dockerd's PATH at its start; for such a request it then sets
        NVIDIA_VISIBLE_DEVICES to the request's device ids and adds the hook as an OCI
        prestart hook (``hook prestart``, the container's state on stdin). The real hook
        mounts the GPUs' device nodes and driver libraries; this one reads its stdin and
        says yes, so a machine without GPUs starts containers that ask for GPUs by UUID, as
        a GPU host's engine does (what the container can do with them is not simulated)."""
        folder = self.root / "nvidia-bin"
        folder.mkdir(exist_ok=True)
        hook = folder / NVIDIA_HOOK
        hook.write_text(
            "#!/bin/sh\n# a fake NVIDIA container toolkit hook (tests/multihost.py)\n"
            "cat >/dev/null\nexit 0\n"
        )
        hook.chmod(0o755)
        return folder

    @property
    def url(self) -> str:
        return f"unix://{self.run / 'docker.sock'}"

    @property
    def address(self) -> str:
        """Host B's workload address: the bridge's own."""
        return f"10.{self.range_n}.255.1"

    @property
    def main_address(self) -> str:
        """Host A's (the machine's engine) workload address: a second one on the bridge."""
        return f"10.{self.range_n}.255.2"

    def make_bridge(self) -> None:
        ip = ["ip"]
        subprocess.run([*ip, "link", "add", self.bridge, "type", "bridge"], check=True)
        for address in (self.address, self.main_address):
            subprocess.run([*ip, "addr", "add", f"{address}/24", "dev", self.bridge], check=True)
        subprocess.run([*ip, "link", "set", self.bridge, "up"], check=True)

    def start(self) -> None:
        import docker

        self.run.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.root / "daemon.json"
        config.write_text("{}\n")  # never /etc/docker/daemon.json: that is the main engine's
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        if self.fake_nvidia_hook:
            env["PATH"] = f"{self.fake_hook()}{os.pathsep}{env.get('PATH', os.defpath)}"
        started = time.monotonic()
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            [
                shutil.which("dockerd") or "dockerd",
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.run / "exec"),
                "--pidfile",
                str(self.run / "docker.pid"),
                "--host",
                self.url,
                "--config-file",
                str(config),
                "--bridge",
                self.bridge,
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--default-address-pool",
                f"base=10.{self.range_n}.0.0/17,size=24",
                # Not for what it says: without it, a dockerd that has address pools
                # deletes the link named "docker0" (the machine's engine's bridge, whatever
                # its own --bridge) at every start after its first on this data root, when
                # it clears the stale default network it kept (moby 20.10
                # daemon/daemon_unix.go initNetworkController: "Clear stale bridge network",
                # removeDefaultBridgeInterface() when DefaultAddressPools and not
                # LiveRestoreEnabled). See MainBridge.
                "--live-restore",
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.client = None

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                return True
            try:
                if self.client is None:  # the client asks the engine's version when made
                    self.client = docker.DockerClient(base_url=self.url, timeout=30)
                return bool(self.client.ping())
            except Exception:
                return False

        wait_until(answers, ENGINE_START_TIMEOUT)
        if self.process.poll() is not None or not answers() or self.client is None:
            tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
            self.stop()
            service_missing(f"the second Docker engine did not start:\n{tail}")
        self.start_seconds = time.monotonic() - started

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Power off: SIGKILL to its containers' processes, its containerd and shims, and
        dockerd itself, as a machine that lost its power (nothing is told, nothing cleaned)."""
        pids = [*self._container_pids(), *self._own_processes()]
        if self.process is not None:
            pids.append(self.process.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)

    def _container_pids(self) -> list[int]:
        """Its running containers' first processes (none if it does not answer)."""
        pids = []
        with contextlib.suppress(Exception):
            for container in self.client.containers.list():
                pid = int(container.attrs.get("State", {}).get("Pid") or 0)
                if pid:
                    pids.append(pid)
        return pids

    def _own_processes(self) -> list[int]:
        """This engine's containerd and shims: processes naming its exec root."""
        marker = str(self.run / "exec").encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found

    def stop(self) -> None:
        # With --live-restore its containers outlive it: their processes are ended too.
        pids = self._container_pids()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in [*pids, *self._own_processes()]:  # containers, a containerd left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Its bridge and folders, once it is stopped: mounts left below them are unmounted
        first, and a folder that still holds one is left where it is."""
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        from apps.runtimes.pool import mounts_under

        for folder in (self.run, self.root):
            for point in mounts_under(folder.resolve()):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
            if not mounts_under(folder.resolve()):
                shutil.rmtree(folder, ignore_errors=True)


def _isolation_rules_of(engine: SecondEngine, address: str) -> list[list[str]]:
    """The iptables rules an agent on ``engine`` adds for its workloads' network."""
    from apps.runtimes.docker import NETWORK, DockerRuntime, allow_rules, isolation_rules

    try:
        engine.client.networks.get(NETWORK)
    except Exception:
        return []
    runtime = DockerRuntime(engine.client, address=address)
    return [*isolation_rules(runtime), *allow_rules(runtime)]


@dataclass
class MainBridge:
    """The machine's engine's default bridge (docker0) as it was before the second engine.

    docker0 used to vanish from the machine when the dead-host test started the second
    engine again, so the machine's engine could start no container on its default network
    afterwards ("could not find bridge docker0"). The cause (issue 20): a dockerd started
    with ``--default-address-pool`` and without ``--live-restore`` deletes the link named
    docker0 (moby's ``bridge.DefaultBridgeName``, whatever its own ``--bridge``) when, at a
    start after its first on the same data root, it clears the default network it kept
    (moby 20.10 daemon/daemon_unix.go initNetworkController, "Clear stale bridge network"
    -> removeDefaultBridgeInterface). Shown in a network namespace of its own with a
    dummy docker0 (``ip -ts monitor link``: "Deleted docker0" between "releasing IPv4
    pools from network bridge" and the new default network); the second engine now runs
    with ``--live-restore``, which skips it. This guard stays, as a tripwire: should it put
    docker0 back, the warning says so (the machine's engine is other runs' too)."""

    addresses: list[str]

    @classmethod
    def found(cls) -> MainBridge | None:
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", "docker0"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode != 0:
            return None
        return cls([line.split()[3] for line in shown.stdout.splitlines() if "inet" in line])

    def put_back(self) -> None:
        if Path("/sys/class/net/docker0").exists():
            return
        warnings.warn(
            "docker0 vanished during the two-host tests: put back", RuntimeWarning, stacklevel=1
        )
        subprocess.run(["ip", "link", "add", "docker0", "type", "bridge"], check=False)
        for address in self.addresses:
            subprocess.run(["ip", "addr", "add", address, "dev", "docker0"], check=False)
        subprocess.run(["ip", "link", "set", "docker0", "up"], check=False)


@pytest.fixture(scope="session")
def second_engine(docker_client: Any, notebook_image: str, scipy_image: str) -> Iterator[Any]:
    """A second Docker engine, with the notebook and Scientific Python images loaded into it
    from the machine's engine (``docker save | docker load``: no registry here)."""
    if os.geteuid() != 0:
        service_missing("a second Docker engine needs root (dockerd, ip link)")
    for tool in ("dockerd", "ip", "iptables", "docker"):
        if shutil.which(tool) is None:
            service_missing(f"a second Docker engine needs {tool} (scripts/services.sh)")
    tag = uuid.uuid4().hex[:8]
    engine = SecondEngine(
        root=Path(tempfile.mkdtemp(prefix=f"lattice-engine-{tag}-", dir="/var/tmp")),
        run=Path(f"/run/lat-{tag}"),
        bridge=f"latb{tag[:8]}",
        range_n=_free_range(),
        fake_nvidia_hook=True,
    )
    try:
        engine.make_bridge()
    except subprocess.CalledProcessError as exc:
        engine.remove()
        service_missing(f"could not make a bridge for the second Docker engine: {exc}")
    main_bridge = MainBridge.found()
    engine.main_bridge = main_bridge
    try:
        engine.start()
        _load_images(engine, [notebook_image, scipy_image])
        print(  # noqa: T201 - the figures the closing note quotes
            f"\nsecond engine: started in {engine.start_seconds:.1f}s, "
            f"images loaded in {engine.load_seconds:.1f}s"
        )
        yield engine
    finally:
        _tear_down(engine)
        if main_bridge is not None:
            main_bridge.put_back()


def _load_images(engine: SecondEngine, images: list[str]) -> None:
    """``images`` from the machine's engine into ``engine`` (docker save | docker load)."""
    started = time.monotonic()
    save = subprocess.Popen(
        ["docker", "-H", MAIN_ENGINE, "save", *images],
        stdout=subprocess.PIPE,
    )
    loaded = subprocess.run(
        ["docker", "-H", engine.url, "load", "-q"],
        stdin=save.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    if save.stdout is not None:
        save.stdout.close()
    if save.wait() != 0 or loaded.returncode != 0:
        service_missing(f"could not load the notebook images into it: {loaded.stderr}")
    engine.load_seconds = time.monotonic() - started


def _tear_down(engine: SecondEngine) -> None:
    """Its containers, the iptables rules its agent added, the engine and its folders."""
    rules: list[list[str]] = []
    if engine.running():
        rules = _isolation_rules_of(engine, engine.address)
        with contextlib.suppress(Exception):
            for container in engine.client.containers.list(all=True, sparse=True):
                container.remove(force=True)
    engine.stop()
    for rule in rules:
        while _iptables("-D", *rule):
            pass
    engine.remove()


def _iptables(*args: str) -> bool:
    return subprocess.run(["iptables", *args], capture_output=True, check=False).returncode == 0


@dataclass
class Agent:
    """One host's agent process (``manage.py agent``)."""

    name: str
    engine_url: str
    address: str
    folder: Path
    main_client: Any = None  # the machine's engine's client; else the second engine's
    engine: SecondEngine | None = None
    broker_url: str = ""
    join_token: str = ""
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    gpu_inventory: Path | None = None  # LATTICE_AGENT_GPU_INVENTORY: the GPUs it reports

    def env(self, shared: Path, installation: str) -> dict[str, str]:
        trusted = {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DOCKER_HOST"}
        env = {k: v for k, v in os.environ.items() if k not in trusted}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.agent",
            DOCKER_HOST=self.engine_url,
            LATTICE_AGENT_BROKER_URL=self.broker_url,
            LATTICE_AGENT_KEY_FILE=str(self.folder / "host.key"),
            LATTICE_AGENT_ALIVE_FILE=str(self.folder / "alive"),
            LATTICE_AGENT_REPORT_EVERY=str(REPORT_EVERY),
            LATTICE_AGENT_CONCURRENCY="8",
            LATTICE_RUNTIME="docker",
            LATTICE_WORKLOAD_ADDRESS=self.address,
            LATTICE_INSTALLATION=installation,
            LATTICE_SHARED_STORAGE=str(shared),
            LATTICE_POOL_DIR=str(self.folder / "pool"),
            LATTICE_DATASET_CACHE=str(self.folder / "datasets"),
            LATTICE_RUNTIME_DIR=str(self.folder / "runtime"),
        )
        if self.gpu_inventory is not None:
            env["LATTICE_AGENT_GPU_INVENTORY"] = str(self.gpu_inventory)
        return env

    @property
    def client(self) -> Any:
        """A Docker client of this host's engine (the second engine's is new at each start)."""
        return self.engine.client if self.engine is not None else self.main_client

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate(timeout=10)
        self.output.append(out or "")
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            out, _ = self.process.communicate(timeout=10)
            self.output.append(out or "")
            self.process = None

    def release(self) -> None:
        """The shared mount its warm pool folder is (made by the agent at its start)."""
        from apps.runtimes.pool import Slots

        Slots(self.folder / "pool").release()

    def said(self) -> str:
        return "".join(self.output)[-4000:]


class TwoHosts:
    """Hosts ``a`` (the machine's engine) and ``b`` (the second engine), each with its agent
    process; what a test does to them (kill, bring back) and how long they took."""

    def __init__(self, engine: SecondEngine, main_client: Any, folder: Path, shared: Path) -> None:
        from django.conf import settings

        tag = uuid.uuid4().hex[:6]
        self.engine = engine
        self.shared = shared
        self.installation = settings.LATTICE_INSTALLATION
        self.a = Agent(
            f"mh-a-{tag}", MAIN_ENGINE, engine.main_address, folder / "a", main_client=main_client
        )
        self.b = Agent(
            f"mh-b-{tag}",
            engine.url,
            engine.address,
            folder / "b",
            engine=engine,
            # Host B claims two GPUs where its engine can start containers that ask for them.
            gpu_inventory=GPU_INVENTORY_B if engine.fake_nvidia_hook else None,
        )
        self.timings: dict[str, float] = {}
        self.joined = False

    @property
    def agents(self) -> tuple[Agent, Agent]:
        return (self.a, self.b)

    def ready_for_test(self) -> None:
        """Both hosts ready for this test: joined (the session's first test), else known again
        to this test's database, which was emptied after the last test (the hosts' rows and
        used join tokens with it): their agents, keys and broker users are the session's, so
        the control plane's record of each host is put back as its join left it, and its
        agent's next report (within a second) fills in the rest. An agent a test killed is
        started again (its key kept: no join)."""
        from apps.machines.models import Host

        if not self.joined:
            self.join()
            self.joined = True
            return
        began = time.monotonic()
        for agent in self.agents:
            if not Host.objects.filter(name=agent.name).exists():
                Host.objects.create(
                    name=agent.name,
                    status=Host.Status.READY,
                    signing_key=(agent.folder / "host.key").read_text().strip(),
                    workload_address=agent.address,
                )
            if not agent.alive():
                self.start_agent(agent)
        self.wait_ready(*self.agents)
        self.timings["ready"] = time.monotonic() - began

    def join(self) -> None:
        """Both agents started with fresh join tokens, and both hosts ready."""
        from apps.machines.services import join_token_create

        started = time.monotonic()
        for agent in self.agents:
            credentials = join_token_create(
                actor=None, host_name=agent.name, workload_address=agent.address
            )
            assert credentials.broker_url, "the control plane made no broker user"
            agent.broker_url, agent.join_token = credentials.broker_url, credentials.join_token
            agent.folder.mkdir(parents=True, exist_ok=True)
            self.start_agent(agent, join=True)
        self.wait_ready(*self.agents)
        self.timings["join"] = time.monotonic() - started

    def start_agent(self, agent: Agent, *, join: bool = False) -> None:
        command = [sys.executable, "manage.py", "agent", "--host", agent.name]
        if join:
            command += ["--join-token", agent.join_token]
        agent.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=agent.env(self.shared, self.installation),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def host(self, agent: Agent) -> Any:
        from apps.machines.models import Host

        return Host.objects.filter(name=agent.name).first()

    def wait_ready(self, *agents: Agent, timeout: float = AGENT_READY_TIMEOUT) -> None:
        from apps.machines.models import Host

        def ready() -> bool:
            for agent in agents:
                if not agent.alive():
                    pytest.fail(f"agent {agent.name} exited:\n{_drain(agent)}", pytrace=False)
            return Host.objects.filter(
                name__in=[a.name for a in agents],
                status=Host.Status.READY,
                reported_at__isnull=False,
            ).count() == len(agents)

        if not wait_until(ready, timeout):
            said = {a.name: _drain(a) for a in agents}
            pytest.fail(f"hosts not ready within {timeout:.0f}s: {said}", pytrace=False)

    def stop(self) -> None:
        from apps.machines.broker import host_broker_user_remove

        began = time.monotonic()
        for agent in self.agents:  # both told at once, then waited for
            if agent.alive():
                assert agent.process is not None
                agent.process.terminate()
        for agent in self.agents:
            agent.stop()
            agent.release()
            host_broker_user_remove(agent.name)
        print(f"\nagents stopped in {time.monotonic() - began:.1f}s")  # noqa: T201


def _drain(agent: Agent) -> str:
    """What the agent said so far (it is stopped for that: a test that fails ends anyway)."""
    agent.stop()
    return agent.said()


@pytest.fixture
def control_plane(transactional_db: None, settings: Any, redis_url: str) -> Iterator[str]:
    """The control plane as deployed: Celery over Redis (the agents' broker users are made on
    it), a worker thread on the control queue and the inbox, and the ASGI web tier the agents
    reach (LATTICE_INTERNAL_URL: blob links, save tickets). Its base URL."""
    import redis

    from apps.core import stream
    from apps.core.broker import INBOX_QUEUE
    from apps.core.worker import embedded_worker
    from config.asgi import application
    from config.celery import app as celery_app
    from tests.asgi_server import serving

    conf = celery_app.conf
    saved = {k: conf.get(k) for k in ("broker_url", "broker_transport", "task_always_eager")}
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.REDIS_URL = redis_url
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1", "localhost"]
    conf["broker_url"] = redis_url
    conf["broker_transport"] = "apps.core.broker:Transport"
    conf["task_always_eager"] = False
    _reset_celery_connections(celery_app)
    stream.reset_for_tests()
    client = redis.Redis.from_url(redis_url)
    client.delete("control", INBOX_QUEUE)
    try:
        with serving(application, name="lattice-asgi", timeout_graceful_shutdown=3) as url:
            settings.LATTICE_INTERNAL_URL = url
            with embedded_worker(queues=["control", INBOX_QUEUE], concurrency=4):
                yield url
    finally:
        client.delete("control", INBOX_QUEUE)
        client.close()
        for key, value in saved.items():
            conf[key] = value
        _reset_celery_connections(celery_app)
        stream.reset_for_tests()


def _reset_celery_connections(app: Any) -> None:
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="session")
def shared_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder both hosts serve teams' /storage from (as an NFS mount on real hosts)."""
    folder = tmp_path_factory.mktemp("shared-storage")
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="session")
def _agent_pair(
    second_engine: SecondEngine,
    docker_client: Any,
    shared_storage: Path,
    tmp_path_factory: pytest.TempPathFactory,
    django_db_setup: None,
    django_db_blocker: Any,
) -> Iterator[TwoHosts]:
    """The two agents of the session (started by the first test that asks: see
    ``TwoHosts.ready_for_test``); stopped at its end, their broker users removed (their
    records are rows now: apps.machines.broker keeps them to make them again)."""
    hosts = TwoHosts(
        second_engine, docker_client, tmp_path_factory.mktemp("agents"), shared_storage
    )
    yield hosts
    with django_db_blocker.unblock():
        hosts.stop()


@pytest.fixture
def two_hosts(
    control_plane: str,
    _agent_pair: TwoHosts,
    second_engine: SecondEngine,
    docker_client: Any,
    catalogue: dict[str, Any],
    settings: Any,
    shared_storage: Path,
    redis_url: str,
) -> Iterator[TwoHosts]:
    """Hosts a and b ready (their agents running: the session's, joined once), notebook ids
    far from other runs' (containers are named after them on the machine's engine), teams'
    /storage shared; at the end what is queued for the hosts dropped, and this run's
    containers and volumes removed from both engines."""
    import redis
    from django.db import connection

    if not second_engine.running():  # a test that killed it and failed before bringing it back
        second_engine.start()
    settings.LATTICE_SHARED_STORAGE = str(shared_storage)
    base = 800_000_000 + secrets.randbelow(100_000) * 1_000
    with connection.cursor() as cursor:
        for table in ("notebooks_notebook", "notebooks_notebooksession"):
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, base])
    hosts = _agent_pair
    try:
        hosts.ready_for_test()
        yield hosts
    finally:
        if not second_engine.running():
            second_engine.start()
        queues = redis.Redis.from_url(redis_url)
        queues.delete(*(f"host.{agent.name}" for agent in hosts.agents))
        queues.close()
        for client in (docker_client, second_engine.client):
            remove_installation_workloads(client)
        if second_engine.main_bridge is not None:
            second_engine.main_bridge.put_back()
