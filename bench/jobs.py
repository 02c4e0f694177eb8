"""bench/jobs: "Run" to the first log line of a job, against a raw `docker run` of the same
image and command to its first output line.

A real setup in one process run, as bench/start_latency.py's: PostgreSQL (DATABASE_URL,
required; a throw-away database ``lattice_bench_jobs`` is made and dropped), Redis
(REDIS_URL, required; its database 12 is used and flushed) as Celery broker, cache, channel
layer and the streams' buffer, the web server as in production (uvicorn, a subprocess) for
the API, an embedded Celery worker thread consuming "control", the inbox and
"host.local" (the control plane and the local host's agent), host "local" on the Docker
runtime. Settings: config.settings.local, a fresh LATTICE_INSTALLATION (everything made
here carries it, and only that is removed at the end).

Measured, alternating (the order rotated each round), n = ``--runs`` each:

- Lattice: t0 just before the API's run POST (/api/v1/teams/<team>/jobs/<id>/run/ with a
  ``lat_`` token; apps.jobs.services.job_run, which that view calls, while the route is
  missing); t1 when the run's stream (apps.core.stream: the buffer every viewer of the run
  page replays) first holds a "logs" message, read every ``--poll-ms`` (5) ms; also the
  time to the first line the job's command itself printed (after the runner's own
  "lattice: run N starting"). The run is then waited for until it ends (succeeded), so each
  start meets an idle host.
- Raw: ``docker run --rm <image> sh -c <command>`` (the Docker CLI) of the same image and
  command until its first line on stdout; then until it exits.
- Docker runtime direct: apps.runtimes.docker.DockerRuntime.start (what the host's agent
  calls) of the same image and command with cpu-small's limits and two fresh volumes, until
  the first line of its followed logs; then until it exits. Lattice minus this is the
  control plane's share (placing, dispatch, the agent, the log shipper, the stream).

The job: no source (no copy of a notebook, no Git fetch), the Scientific Python template
(the image Lattice's jobs run here), cpu-small, no outputs (nothing saved after), the
command ``--command``.
The client's own CPU is printed too: the measuring thread's CPU time per start (the POST
and the stream polling; for the raw side, the thread and the `docker` CLI process it ran),
and, apart, the whole bench process's CPU over the Lattice starts (the worker, the agent
and its log shipper run in it).

    eval "$(bash scripts/services.sh 2>/dev/null)"
    bash images/build-template.sh scipy
    .venv/bin/python bench/jobs.py [--runs 10] [--command "..."] [--poll-ms 5]

Prints a table, then one line of JSON (the figures) at the end of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

REDIS_DB = 12
DATABASE = "lattice_bench_jobs"
# The run's status messages (its stream's "run" frames) named as the report's phases.
PHASES = {
    "Queued.": "queued",
    "Waiting for a machine.": "placing",
    "Placed on local.": "placed",
    "The container is up.": "container_up",
    "Running.": "running",
}
COMMAND = "python -c \"print('hello from the job', flush=True)\""
GIB = 1024**3


def configure() -> str:
    """Environment for this process and its web server, before Django reads its settings;
    the installation name everything made here carries."""
    import start_latency as base

    base._require_services()
    os.environ["REDIS_URL"] = base.redis_db_url(os.environ["REDIS_URL"], REDIS_DB)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LATTICE_LOG_LEVEL", "WARNING")
    os.environ["LATTICE_RUNTIME"] = "docker"
    installation = f"bench-jobs-{uuid.uuid4().hex[:8]}"
    os.environ["LATTICE_INSTALLATION"] = installation
    import django

    django.setup()
    return installation


def far_ids() -> None:
    """Runs and attempts numbered far from a test run's: the workloads (jb-<attempt>) and
    the run's volumes (lattice-jb-run-<run>-*) are named after them on a shared engine."""
    from django.db import connection

    from apps.jobs.models import Attempt, Run

    start = random.randint(1, 900) * 1_000_000  # noqa: S311 - not a secret
    with connection.cursor() as cursor:
        for model in (Run, Attempt):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [model._meta.db_table, start],
            )


def cpu_seconds() -> float:
    """This process's CPU time (user + system), every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def api_available() -> bool:
    from django.urls import Resolver404, resolve

    try:
        resolve("/api/v1/teams/t/jobs/1/run/")
    except Resolver404:
        return False
    return True


class Raw:
    """``docker run --rm`` of the image and command, through the Docker CLI."""

    def __init__(self, image: str, command: str, installation: str) -> None:
        self.image, self.command, self.installation = image, command, installation
        self.names: list[str] = []

    def once(self) -> dict[str, float]:
        name = f"lattice-bench-jobs-raw-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        cpu = time.thread_time()
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                "docker",
                "run",
                "--rm",
                "--name",
                name,
                "--label",
                f"lattice.bench={self.installation}",
                self.image,
                "sh",
                "-c",
                self.command,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None  # noqa: S101 - piped above
        first = process.stdout.readline()
        line_at = time.perf_counter()
        process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        ended = time.perf_counter()
        if process.returncode != 0 or not first:
            raise RuntimeError(f"docker run exited {process.returncode}: {first!r}")
        return {
            "first_line": line_at - started,
            "command_line": line_at - started,
            "ended": ended - started,
            "client_cpu": time.thread_time() - cpu + usage.ru_utime + usage.ru_stime,
        }

    def cleanup(self, client: Any) -> None:
        import docker

        for name in self.names:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                client.containers.get(name).remove(force=True)


class Direct:
    """The Docker runtime called directly (what the agent calls): the same image, command,
    cpu-small's limits and two fresh volumes (the run's /workspace and /outputs), until
    the first line its logs follow, then until it exits; container and volumes removed."""

    def __init__(self, image: str, command: str, installation: str) -> None:
        from apps.runtimes.docker import DockerRuntime

        self.runtime = DockerRuntime()
        self.image, self.command, self.installation = image, command, installation

    def once(self) -> dict[str, float]:
        from apps.runtimes.base import Spec

        name = f"bench-jobs-direct-{uuid.uuid4().hex[:8]}"
        volumes = {f"lattice-{name}-ws": "/workspace", f"lattice-{name}-out": "/outputs"}
        spec = Spec(
            name=name,
            image=self.image,
            command=["sh", "-c", self.command],
            vcpus=2,
            memory_bytes=8 * GIB,
            volumes=volumes,
            labels={"installation": self.installation, "until": "exit"},
        )
        cpu = time.thread_time()
        started = time.perf_counter()
        state = self.runtime.start(spec)
        up = time.perf_counter()
        first = next(iter(self.runtime.logs(state, follow=True)), None)
        line_at = time.perf_counter()
        while self.runtime.poll(state) is None:
            time.sleep(0.01)
        ended = time.perf_counter()
        client_cpu = time.thread_time() - cpu
        self.runtime.stop(state, timeout=1)
        for volume in volumes:
            self.runtime.remove_volume(volume)
        if first is None:
            raise RuntimeError("the runtime's logs ended without a line")
        return {
            "first_line": line_at - started,
            "started": up - started,
            "ended": ended - started,
            "client_cpu": client_cpu,
        }


class Lattice:
    """A job's runs through Lattice: the API (or the service), the worker, the agent,
    Docker, the log shipper and the stream, all real."""

    def __init__(self, user: Any, team: Any, job: Any, api: Any, poll: float) -> None:
        self.user, self.team, self.job, self.api, self.poll = user, team, job, api, poll
        self.token = ""
        if api is not None:
            from apps.accounts.models import TOKEN_SCOPES
            from apps.accounts.tokens import token_create

            _, self.token = token_create(
                user=user, name="bench", scopes=list(TOKEN_SCOPES), expires_in_days=None
            )

    def click(self) -> Any:
        """What the Run button does: the API's run POST (or the service it calls); the run."""
        from apps.jobs.models import Run

        if self.api is None:
            from apps.jobs.services import job_run

            return job_run(team=self.team, actor=self.user, job=self.job)
        request = urllib.request.Request(  # noqa: S310 - our own server on loopback
            f"{self.api.url}/api/v1/teams/{self.team.slug}/jobs/{self.job.pk}/run/",
            method="POST",
            data=b"{}",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            response.read()
        return Run.objects.for_team(self.team).filter(job=self.job).latest("pk")

    def once(self, marker: str) -> dict[str, float]:
        from apps.core.stream import stream_after
        from apps.jobs.models import Run

        cpu = time.thread_time()
        wall = time.time()
        started = time.perf_counter()
        run = self.click()
        posted = time.perf_counter()
        first_line = command_line = None
        phases: dict[str, float] = {}
        seen = 0
        deadline = time.monotonic() + 120
        while command_line is None:
            if time.monotonic() > deadline:
                run.refresh_from_db()
                raise TimeoutError(f"no log line in 120 s: {run.status} {run.status_message}")
            for message in stream_after(run.stream, seen):
                seen = message["seq"]
                if message.get("type") != "logs":
                    continue
                now = time.perf_counter()
                first_line = first_line or now
                if any(marker in line for line in message["lines"]):
                    command_line = now
            time.sleep(self.poll)
        client_cpu = time.thread_time() - cpu
        while True:
            run.refresh_from_db()
            if run.status not in (
                Run.Status.QUEUED,
                Run.Status.PLACING,
                Run.Status.STARTING,
                Run.Status.RUNNING,
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run.number} still {run.status} after 120 s: {said(run)}")
            time.sleep(0.02)
        if run.status != Run.Status.SUCCEEDED:
            raise RuntimeError(f"run {run.number} {run.status}: {run.status_message}")
        for message in stream_after(run.stream, 0):
            if message.get("type") == "run":
                # The server's own time of each change (same machine, same clock).
                at = datetime.fromisoformat(message["at"]).timestamp() - wall
                phases.setdefault(PHASES.get(message["message"], message["status"]), at)
        assert first_line is not None  # noqa: S101 - set before command_line
        return {
            "first_line": first_line - started,
            "command_line": command_line - started,
            "ended": time.perf_counter() - started,
            "client_cpu": client_cpu,
            "posted": posted - started,
            **{f"at_{name}": at for name, at in phases.items()},
        }


def said(run: Any) -> str:
    """The run's message, its attempts and its stream (for a failure's message)."""
    from apps.core.stream import stream_after
    from apps.jobs.models import Attempt

    attempts = [
        f"{a.workload} {a.status} {a.end_reason} exit {a.exit_code}"
        for a in Attempt.objects.for_team(run.team_id).filter(run=run)
    ]
    return f"{run.status_message!r}; attempts {attempts}; stream {stream_after(run.stream, 0)}"


def make_job(user: Any, team: Any, command: str) -> Any:
    from apps.jobs.services import job_create

    return job_create(
        team=team,
        actor=user,
        name="Bench job",
        command=command,
        machine_type="cpu-small",
        template="scipy",
        output="none",
        timeout_seconds=600,
    )


def cleanup(client: Any, installation: str, raw: Raw | None) -> None:
    """Remove what this run made: containers and volumes of this installation only."""
    import docker

    label = f"lattice.installation={installation}"
    for container in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    for volume in client.volumes.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)
    if raw is not None:
        raw.cleanup(client)


def main() -> None:  # noqa: PLR0915 - one straight story
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--command", default=COMMAND)
    parser.add_argument(
        "--marker",
        default="hello from the job",
        help="text of the command's own first line (the default command prints it)",
    )
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--via", choices=("auto", "api", "service"), default="auto")
    args = parser.parse_args()
    installation = configure()

    import docker
    import start_latency as base
    from django.conf import settings

    from apps.core.broker import INBOX_QUEUE
    from apps.core.worker import embedded_worker
    from apps.machines.inventory import collect
    from apps.machines.models import host_queue
    from apps.machines.services import host_ensure_local
    from apps.notebooks.templates import image_for
    from apps.runtimes.images import docker_image_exists

    image = image_for("scipy")
    if not docker_image_exists(image):
        sys.exit(f"the image {image} is missing: bash images/build-template.sh scipy")
    client = docker.from_env()
    base.bench_database(DATABASE)
    far_ids()
    via = "api" if args.via == "api" or (args.via == "auto" and api_available()) else "service"
    web = base.WebServer(DATABASE) if via == "api" else None
    raw = Raw(image, args.command, installation)
    direct = Direct(image, args.command, installation)
    results: dict[str, Any] = {
        "image": image,
        "command": args.command,
        "via": via,
        "runs": args.runs,
        "poll_ms": args.poll_ms,
        "load_before": os.getloadavg()[0],
    }
    try:
        inventory = {**collect(), "cpu_count": 8, "memory_bytes": 32 * GIB, "gpus": []}
        host_ensure_local(name="local", inventory=inventory, runtime="docker")
        user, team, _ = base.make_people()
        job = make_job(user, team, args.command)
        lattice = Lattice(user, team, job, web, args.poll_ms / 1000)
        queues = [settings.CELERY_TASK_DEFAULT_QUEUE, INBOX_QUEUE, host_queue("local")]
        with embedded_worker(queues=queues, concurrency=8):
            # One of each first, unmeasured: page cache, bytecode, connections warm up.
            lattice.once(args.marker)
            raw.once()
            direct.once()
            arms: dict[str, list[dict[str, float]]] = {"lattice": [], "raw": [], "direct": []}
            steps = {"raw": raw.once, "direct": direct.once}
            names = ["lattice", "raw", "direct"]
            process_cpu = 0.0
            for round_ in range(args.runs):
                for arm in names[round_ % 3 :] + names[: round_ % 3]:
                    if arm != "lattice":
                        arms[arm].append(steps[arm]())
                        continue
                    before = cpu_seconds()
                    arms["lattice"].append(lattice.once(args.marker))
                    process_cpu += cpu_seconds() - before
            results.update(arms)
            results["process_cpu_per_lattice_run_s"] = process_cpu / args.runs
            results["load_after"] = os.getloadavg()[0]
    finally:
        cleanup(client, installation, raw)
        if web is not None:
            web.close()
        base.drop_database(DATABASE)
    report(results)


def report(results: dict[str, Any]) -> None:
    from start_latency import summary

    lattice, raw, direct = results["lattice"], results["raw"], results["direct"]

    def column(rows: list[dict[str, float]], key: str) -> list[float]:
        return [row[key] for row in rows]

    print(
        f"image {results['image']}, command {results['command']!r}, run via {results['via']}, "
        f"{results['runs']} each, alternating; stream polled every {results['poll_ms']} ms; "
        f"load {results['load_before']:.1f} -> {results['load_after']:.1f}"
    )
    print(f"raw docker run -> first line:       {summary(column(raw, 'first_line'))}")
    print(f"Docker runtime direct -> 1st line:  {summary(column(direct, 'first_line'))}")
    print(f"  of which runtime.start:           {summary(column(direct, 'started'))}")
    print(f"Lattice Run -> first log line:      {summary(column(lattice, 'first_line'))}")
    print(f"Lattice Run -> command's first line: {summary(column(lattice, 'command_line'))}")
    print(f"raw docker run -> exited:           {summary(column(raw, 'ended'))}")
    print(f"Lattice Run -> run ended:           {summary(column(lattice, 'ended'))}")
    print("Lattice, where the time goes (the run's status changes, the server's clock):")
    print(f"  Run POST answered:                {summary(column(lattice, 'posted'))}")
    for name in ("queued", "placing", "placed", "container_up", "running", "succeeded"):
        values = [row[f"at_{name}"] for row in lattice if f"at_{name}" in row]
        if values:
            print(f"  {name + ':':32s}  {summary(values)}")
    ratio = statistics.median(column(lattice, "first_line")) / statistics.median(
        column(raw, "first_line")
    )
    print(f"ratio of medians (first line) Lattice / raw: {ratio:.2f}")
    print(
        f"client CPU per start: Lattice (POST + polling) {summary(column(lattice, 'client_cpu'))}"
    )
    print(f"client CPU per start: raw (thread + docker CLI) {summary(column(raw, 'client_cpu'))}")
    print(f"client CPU per start: runtime direct {summary(column(direct, 'client_cpu'))}")
    print(
        "bench process CPU per Lattice run (worker, agent, shipper, client): "
        f"{results['process_cpu_per_lattice_run_s'] * 1000:.0f} ms"
    )
    results["ratio_first_line"] = ratio
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
