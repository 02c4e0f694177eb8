"""The deployments gateway's overhead: a replica called through Lattice's gateway against the
same replica called directly, same payload, 64 concurrent clients, alternating in one run.

The replica is the built-in model server (images/model-server/serve.py, a subprocess, on a
predict.py that echoes its input). The gateway is config.asgi:application under uvicorn as
in production (a subprocess: one worker, no access log, settings config.settings.local
with PostgreSQL and Redis, so routes and credentials are checked against Redis on every
request); the deployment is **protected** and every request carries a ``lat_`` token with
``deployments:invoke`` (the full auth path, cached as in production). The clients are one
process of asyncio tasks on raw keep-alive HTTP/1.1 connections (one per client, opened
before the clock starts), so the client's own CPU is small; it is reported, with the
gateway's and the replica's.

Figures: p50 and p99 latency each way and the difference ("added"), throughput each way
and the ratio (gateway / direct). Goals (issue 16): p50 <= 2 ms added, p99 <= 10 ms added,
throughput >= 0.8x direct.

Needs PostgreSQL (DATABASE_URL; a throw-away database lattice_bench_gateway) and Redis
(REDIS_URL; its database 12 is used, not flushed).

    .venv/bin/python bench/deployments_gateway.py [--clients 64] [--seconds 5] [--rounds 3]

Prints a table, then one line of JSON (the figures) at the end of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE = "lattice_bench_gateway"
REDIS_DB = 12
PREDICT = "def predict(text=''):\n    return {'echo': text}\n"
# --replica asyncio: a minimal keep-alive HTTP/1.1 server answering as the model server does
# (one write per answer, TCP_NODELAY as asyncio sets it), so the figures are the gateway's
# alone. The model server (http.server) writes head and body apart without TCP_NODELAY,
# and Nagle's algorithm with delayed ACKs adds about 40 ms to many of its answers.
ASYNCIO_REPLICA = r"""
import asyncio, json, sys

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length) or b"{}")
            out = json.dumps({"output": {"echo": body.get("text", "")}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()

asyncio.run(main())
"""
PAYLOAD = json.dumps({"text": "x" * 200}).encode()


def _url_with(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def configure() -> None:
    missing = [v for v in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(v)]
    if missing or not os.environ["DATABASE_URL"].startswith("postgres"):
        sys.exit("bench needs PostgreSQL and Redis: set DATABASE_URL and REDIS_URL")
    os.environ["REDIS_URL"] = _url_with(os.environ["REDIS_URL"], f"/{REDIS_DB}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LATTICE_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode})")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen within 60 s")


def setup_rows(replica_url: str) -> str:
    """A database with a protected deployment whose one ready replica is ``replica_url``;
    returns a member's token with deployments:invoke."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from apps.accounts.models import INVOKE_SCOPE, User
    from apps.accounts.tokens import token_create
    from apps.deployments.models import Deployment, Replica, Revision
    from apps.machines.models import MachineType
    from apps.teams.models import Membership, Role, Team

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = DATABASE
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    user = User.objects.create_user("bench@example.com", "bench-password-1")
    team = Team.objects.create(name="Bench", slug="benchteam")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    machine_type = MachineType.objects.first() or MachineType.objects.create(
        slug="bench", name="Bench", vcpus=1, memory_gib=1
    )
    deployment = Deployment.objects.create(
        team=team, name="Bench", slug="bench", auth_mode="protected", rate_limit_per_minute=0
    )
    revision = Revision.objects.create(
        team=team, deployment=deployment, number=1, machine_type=machine_type
    )
    Replica.objects.create(
        team=team,
        deployment=deployment,
        revision=revision,
        machine_type=machine_type,
        status=Replica.Status.READY,
        endpoint=replica_url,
        ready_at=timezone.now(),
    )
    deployment.traffic = {str(revision.pk): 100}
    deployment.save(update_fields=["traffic"])
    _, plaintext = token_create(user=user, name="bench", scopes=[INVOKE_SCOPE], team=team)
    return plaintext


def drop_database() -> None:
    from django.db import connection, connections

    connections.close_all()
    try:
        connection.creation.destroy_test_db(
            os.environ["DATABASE_URL"].rsplit("/", 1)[-1], verbosity=0
        )
    except Exception as exc:
        print(f"(could not drop database {DATABASE}: {exc})", file=sys.stderr)


# --- the clients --------------------------------------------------------------------------


async def _one_client(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    request: bytes,
    stop_at: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = connection
    try:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            if status != 200:
                errors.append(f"{status}")
    finally:
        writer.close()


async def _load(port: int, request: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` connections, opened before the clock starts, each sending ``request`` again
    and again for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    connections = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(clients))
    )
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    stop_at = began + seconds
    await asyncio.gather(
        *(_one_client(c, request, stop_at, latencies, errors) for c in connections)
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return {"latencies": latencies, "errors": errors, "wall": wall, "client_cpu": used}


def _request(host: str, token: str | None) -> bytes:
    lines = [
        "POST /predict HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(PAYLOAD)}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + PAYLOAD


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _replica_command(kind: str, port: int, work: Path, clients: int) -> list[str]:
    if kind == "asyncio":
        return [sys.executable, "-c", ASYNCIO_REPLICA, str(port)]
    return [
        sys.executable,
        str(ROOT / "images" / "model-server" / "serve.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        str(work),
        "--concurrency",
        str(clients * 2),
    ]


def _web_command(port: int) -> list[str]:
    """uvicorn as production runs it (one worker, no access log); BENCH_PROFILE=<file> runs
    it under cProfile."""
    profile = os.environ.get("BENCH_PROFILE")
    return [
        *([sys.executable, "-m", "cProfile", "-o", profile] if profile else []),
        str(ROOT / ".venv" / "bin" / "uvicorn"),
        "--lifespan",
        "off",
        "--no-access-log",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "config.asgi:application",
    ]


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """The table and the JSON line."""
    figures: dict[str, Any] = {
        "replica": args.replica,
        "clients": args.clients,
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }
    print(
        f"{'':8} {'requests':>9} {'wall':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} "
        f"{'client CPU':>10} {'web CPU':>8} {'replica CPU':>11}"
    )
    for name, total in results.items():
        count = len(total["latencies"])
        row = {
            "requests": count,
            "rps": count / total["wall"],
            "p50_ms": percentile(total["latencies"], 0.5) * 1000,
            "p99_ms": percentile(total["latencies"], 0.99) * 1000,
            "errors": len(total["errors"]),
            "error_statuses": dict(Counter(total["errors"])),
            "client_cpu_pct": 100 * total["client_cpu"] / total["wall"],
            "web_cpu_pct": 100 * total["web_cpu"] / total["wall"],
            "replica_cpu_pct": 100 * total["replica_cpu"] / total["wall"],
        }
        figures[name] = row
        print(
            f"{name:8} {count:9d} {total['wall']:6.1f}s {row['rps']:8.0f} "
            f"{row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
            f"{row['errors']:6d} {row['client_cpu_pct']:9.0f}% {row['web_cpu_pct']:7.0f}% "
            f"{row['replica_cpu_pct']:10.0f}%"
        )
    figures["p50_added_ms"] = figures["gateway"]["p50_ms"] - figures["direct"]["p50_ms"]
    figures["p99_added_ms"] = figures["gateway"]["p99_ms"] - figures["direct"]["p99_ms"]
    figures["throughput_ratio"] = figures["gateway"]["rps"] / figures["direct"]["rps"]
    print(
        f"added: p50 {figures['p50_added_ms']:.2f} ms (goal <= 2), p99 "
        f"{figures['p99_added_ms']:.2f} ms (goal <= 10); throughput "
        f"{figures['throughput_ratio']:.2f}x direct (goal >= 0.8)"
    )
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replica", choices=("model-server", "asyncio"), default="model-server")
    args = parser.parse_args()
    configure()

    work = Path(tempfile.mkdtemp(prefix="lattice-bench-gateway-"))
    (work / "predict.py").write_text(PREDICT)
    replica_port, web_port = free_port(), free_port()
    replica = subprocess.Popen(
        _replica_command(args.replica, replica_port, work, args.clients),
        stdout=subprocess.DEVNULL,
    )
    web = None
    try:
        wait_listening(replica_port, replica, "the model server")
        token = setup_rows(f"http://127.0.0.1:{replica_port}")
        log = (work / "web.log").open("wb")
        from django.db import connection

        env = {
            **os.environ,
            "DATABASE_URL": _url_with(
                os.environ["DATABASE_URL"], f"/{connection.settings_dict['NAME']}"
            ),
        }
        web = subprocess.Popen(
            _web_command(web_port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        wait_listening(web_port, web, "the web server")
        direct = _request(f"127.0.0.1:{replica_port}", None)
        through = _request("bench--benchteam.localhost", token)
        # Warm both paths with every client (the gateway's first request reads the route and
        # the token; its pool opens its connections to the replica).
        asyncio.run(_load(replica_port, direct, args.clients, 2.0))
        asyncio.run(_load(web_port, through, args.clients, 2.0))

        results: dict[str, dict[str, Any]] = {
            name: {
                "latencies": [],
                "errors": [],
                "wall": 0.0,
                "client_cpu": 0.0,
                "web_cpu": 0.0,
                "replica_cpu": 0.0,
            }
            for name in ("direct", "gateway")
        }
        for _ in range(args.rounds):
            for name, port, request in (
                ("direct", replica_port, direct),
                ("gateway", web_port, through),
            ):
                web_cpu, replica_cpu = _cpu_seconds(web.pid), _cpu_seconds(replica.pid)
                run = asyncio.run(_load(port, request, args.clients, args.seconds))
                total = results[name]
                total["latencies"] += run["latencies"]
                total["errors"] += run["errors"]
                total["wall"] += run["wall"]
                total["client_cpu"] += run["client_cpu"]
                total["web_cpu"] += _cpu_seconds(web.pid) - web_cpu
                total["replica_cpu"] += _cpu_seconds(replica.pid) - replica_cpu
    finally:
        if web is not None:
            web.send_signal(2)
            web.wait(10)
        replica.terminate()
        replica.wait(10)
        drop_database()

    report(results, args)


if __name__ == "__main__":
    main()
