"""bench/log_stream: a notebook's output, live, to many viewers: latency, loss, web server cost.

The real log path, end to end: a container (the notebook image's python)
prints RATE numbered lines a second for SECONDS, each line "<n> <time.time()>";
the agent's LogShipper (apps.machines.logship.ship_logs, as agent_start calls
it, for host "local") follows the Docker log and sends signed frames to the
inbox (Redis); a control worker subprocess (`celery worker --queues inbox`,
four threads, as compose runs it) checks each against the notebook session
placed on that host and publishes it with stream_publish_frame (Redis buffer +
channels_redis group); a web server subprocess (uvicorn, as in production) serving
config.asgi:application (settings config.settings.local, Redis channel layer)
runs NotebookStreamConsumer for each viewer; 100, then 500, websocket viewers
(the websockets client, in a few processes of their own) log in with a session
cookie. Each viewer counts missing and duplicate line numbers and the delivery
latency (receive time - the line's timestamp; every 50th line sampled). The web
process's CPU % and peak RSS come from psutil on the web server pid.

Goals: p95 latency <= 100 ms, 0 lines lost, 0 duplicates.

Viewers understand the server's batches (a JSON array of messages) and its "skipped"
notice (a viewer switched to tail): the lines such a viewer missed are counted as skipped,
apart from lost ones (missed with no word). Besides latency and loss, each run reports the
web process's CPU (average %, and ms of CPU per MB delivered to the viewers) and the bench
client's own CPU (its viewer processes together; near 100 % per process means the client,
not the server, is what limits the figures).

Needs PostgreSQL (DATABASE_URL; a throw-away database, --database, default
lattice_bench_logs), Redis (REDIS_URL; its database --redis-db, default 14, is used and
flushed), Docker and the notebook image (bash images/notebook/build-local.sh).

    eval "$(bash scripts/services.sh 2>/dev/null)"
    .venv/bin/python bench/log_stream.py [--runs 2000:500 20000:50 20000:500] [--seconds 10]
        [--redis-db 14] [--database lattice_bench_logs]

Prints a table, then one line of JSON (the figures) at the end of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SAMPLE_EVERY = 50
HISTOGRAM_MS = 60_000  # latencies are counted in 1 ms buckets up to a minute

PRODUCER = """
import sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
time.sleep(1.5)  # the shipper follows the log by then
total, n, write, start = int(rate * seconds), 0, sys.stdout.write, time.time()
while n < total:
    now = time.time()
    due = min(total, int((now - start) * rate) + 1)
    if due > n:
        write("".join(f"{i} {now:.6f}\\n" for i in range(n + 1, due + 1)))
        sys.stdout.flush()
        n = due
    else:
        time.sleep(0.0005)
"""


# --- the viewers (in processes of their own; no Django here) --------------------------------


class Viewer:
    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = bytearray(total + 2)
        self.count = 0
        self.duplicates = 0
        self.out_of_range = 0
        self.frames = 0
        self.gaps = 0
        self.skipped_notices = 0
        self.skipped_messages = 0
        self.bytes = 0
        self.other = 0
        self.histogram = [0] * (HISTOGRAM_MS + 1)
        self.error = ""

    def frame(self, lines: list[str], received: float) -> None:
        self.frames += 1
        numbered = [line for line in lines if line[:1].isdigit()]
        self.other += len(lines) - len(numbered)  # e.g. tini's warning on stderr
        if not numbered:
            return
        for line in numbered[::SAMPLE_EVERY]:
            latency = round((received - float(line.partition(" ")[2])) * 1000)
            self.histogram[min(max(latency, 0), HISTOGRAM_MS)] += 1
        first = int(numbered[0].partition(" ")[0])
        last = int(numbered[-1].partition(" ")[0])
        if (
            first >= 1
            and last <= self.total
            and last - first + 1 == len(numbered)
            and self.seen.find(1, first, last + 1) == -1
        ):
            self.seen[first : last + 1] = b"\x01" * len(numbered)  # the usual case, in one go
            self.count += len(numbered)
            return
        for line in numbered:
            n = int(line.partition(" ")[0])
            if not 1 <= n <= self.total:
                self.out_of_range += 1
            elif self.seen[n]:
                self.duplicates += 1
            else:
                self.seen[n] = 1
                self.count += 1


async def _view(
    url: str,
    headers: dict[str, str],
    origin: str,
    viewer: Viewer,
    connected: asyncio.Event,
    gate: asyncio.Semaphore,
    go: asyncio.Event,
    deadline: float,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    try:
        async with gate:
            ws = await connect(
                url,
                additional_headers=headers,
                origin=Origin(origin),
                max_size=None,
                ping_interval=None,
                open_timeout=120,
            )
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello", hello  # noqa: S101
        connected.set()
        async with ws:
            idle = None
            while viewer.count < viewer.total:
                timeout = max(0.1, deadline - time.time())
                if idle is not None:
                    timeout = min(timeout, idle)
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:
                    break
                received = time.time()
                viewer.bytes += len(raw)
                data = json.loads(raw)
                # Live messages come several at once as a JSON array of them.
                for message in data if isinstance(data, list) else [data]:
                    kind = message.get("type")
                    if kind == "logs":
                        viewer.frame(message["lines"], received)
                        idle = 10.0  # once lines flow, 10 s of silence means the end
                    elif kind == "gap":
                        viewer.gaps += 1
                    elif kind == "skipped":  # this viewer fell behind: told, not lost
                        viewer.skipped_notices += 1
                        viewer.skipped_messages += message["to"] - message["from"] + 1
    except Exception as exc:
        viewer.error = repr(exc)[:300]
        connected.set()


def viewers_process(
    url: str,
    cookie: str,
    origin: str,
    count: int,
    total: int,
    hard_seconds: float,
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    """``count`` viewers; says when all are connected, waits for the go, then reports totals."""

    async def run() -> dict[str, Any]:
        cpu_started = time.process_time()
        viewers = [Viewer(total) for _ in range(count)]
        events = [asyncio.Event() for _ in viewers]
        gate = asyncio.Semaphore(20)
        go = asyncio.Event()
        deadline = time.time() + hard_seconds
        tasks = [
            asyncio.create_task(
                _view(url, {"Cookie": f"sessionid={cookie}"}, origin, v, e, gate, go, deadline)
            )
            for v, e in zip(viewers, events, strict=True)
        ]
        for event in events:
            await event.wait()
        ready.put(sum(1 for v in viewers if not v.error))
        cpu_connected = time.process_time()
        await asyncio.gather(*tasks)
        cpu_done = time.process_time()
        histogram = [0] * (HISTOGRAM_MS + 1)
        for v in viewers:
            for i, c in enumerate(v.histogram):
                if c:
                    histogram[i] += c
        return {
            "viewers": count,
            "complete": sum(1 for v in viewers if v.count == total),
            "received": sum(v.count for v in viewers),
            "missing": sum(total - v.count for v in viewers),
            # Lines a viewer missed after being told it was switched to tail ("skipped"),
            # versus lines missed with no word: lost.
            "lost": sum(total - v.count for v in viewers if not v.skipped_notices),
            "skipped_lines": sum(total - v.count for v in viewers if v.skipped_notices),
            "tail_viewers": sum(1 for v in viewers if v.skipped_notices),
            "skipped_messages": sum(v.skipped_messages for v in viewers),
            "delivered_bytes": sum(v.bytes for v in viewers),
            "client_cpu_s": cpu_done - cpu_connected,
            "client_connect_cpu_s": cpu_connected - cpu_started,
            "duplicates": sum(v.duplicates for v in viewers),
            "out_of_range": sum(v.out_of_range for v in viewers),
            "frames": sum(v.frames for v in viewers),
            "gap_messages": sum(v.gaps for v in viewers),
            "errors": [v.error for v in viewers if v.error][:5],
            "error_count": sum(1 for v in viewers if v.error),
            "histogram": {i: c for i, c in enumerate(histogram) if c},
        }

    results.put(asyncio.run(run()))


# --- the bench ------------------------------------------------------------------------------


def histogram_percentile(histogram: dict[int, int], q: float) -> float:
    total = sum(histogram.values())
    if not total:
        return math.nan
    rank, seen = q * (total - 1), 0
    for ms, count in sorted(histogram.items()):
        seen += count
        if seen > rank:
            return float(ms)
    return float(max(histogram))


@contextlib.contextmanager
def control_worker(database: str) -> Any:
    """The control worker for the inbox, in a process of its own as in production."""
    import os
    import subprocess
    import tempfile

    import start_latency as common
    from django.conf import settings

    log = tempfile.NamedTemporaryFile(prefix="lattice-bench-worker-", suffix=".log", delete=False)  # noqa: SIM115
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": common.database_url(database),
        "REDIS_URL": settings.REDIS_URL,
        "LATTICE_LOG_LEVEL": "INFO",
    }
    command = ["celery", "-A", "config", "worker", "--queues", "inbox", "--pool", "threads"]
    command += ["--concurrency", "4", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    process = subprocess.Popen(
        [str(common.ROOT / ".venv" / "bin" / command[0]), *command[1:]],
        cwd=common.ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while " ready." not in Path(log.name).read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker did not start: {Path(log.name).read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield
    finally:
        import psutil

        with contextlib.suppress(psutil.Error):
            used = psutil.Process(process.pid).cpu_times()
            print(f"control worker CPU: {used.user + used.system:.1f} s", file=sys.stderr)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        print(f"control worker log: {log.name}", file=sys.stderr)


def placed_session(team: Any, machine: Any, notebook: Any, image: str) -> Any:
    """A running session of ``notebook`` placed on host "local": the control plane publishes
    only frames of workloads placed on the host that sends them."""
    from apps.machines.models import Host, Placement
    from apps.notebooks.models import NotebookSession, Status

    host = Host.objects.get(name="local")
    placement = Placement.objects.create(
        host=host, machine_type=machine, team=team, workload="-", vcpus=1, memory_gib=1
    )
    session = NotebookSession.objects.for_team(team).create(
        team=team,
        notebook=notebook,
        machine_type=machine,
        template="scipy",
        image=image,
        host=host,
        placement=placement,
        status=Status.RUNNING,
        jupyter_token=uuid.uuid4().hex,
    )
    Placement.objects.filter(pk=placement.pk).update(workload=session.workload)
    return session


def one_run(
    web: Any,
    people: tuple[Any, Any, Any],
    cookie: str,
    viewers: int,
    rate: int,
    seconds: float,
    image: str,
) -> dict[str, Any]:
    import psutil

    from apps.machines.logship import ship_logs
    from apps.notebooks.services import notebook_create
    from apps.runtimes.base import Spec
    from apps.runtimes.docker import DockerRuntime

    user, team, machine = people
    notebook = notebook_create(
        team=team,
        actor=user,
        name=f"Logs {viewers} {uuid.uuid4().hex[:4]}",
        template="scipy",
        machine_type=machine,
    )
    session = placed_session(team, machine, notebook, image)
    total = int(rate * seconds)
    url = f"ws://127.0.0.1:{web.port}/ws/teams/{team.slug}/notebooks/{notebook.pk}/"
    origin = f"http://127.0.0.1:{web.port}"
    processes = min(4, max(1, math.ceil(viewers / 125)))
    context = multiprocessing.get_context("spawn")
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    shares = [
        viewers // processes + (1 if i < viewers % processes else 0) for i in range(processes)
    ]
    workers = [
        context.Process(
            target=viewers_process,
            args=(url, cookie, origin, share, total, seconds + 180, ready, start, results),
            daemon=True,
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    connected = sum(ready.get(timeout=300) for _ in workers)

    web = psutil.Process(web.process.pid)
    runtime = DockerRuntime()
    spec = Spec(
        name=session.workload,
        image=image,
        command=["python3", "-c", PRODUCER, str(rate), str(seconds)],
        vcpus=1.0,
        memory_bytes=1024**3,
        labels={"kind": "bench", "stream": notebook.stream},
    )
    cpu_before, wall_before = web.cpu_times(), time.monotonic()
    peak_rss = web.memory_info().rss
    state = runtime.start(spec)
    shipper = ship_logs(runtime, state, "local")
    stop = threading.Event()
    samples: list[float] = []

    def sample() -> None:
        nonlocal peak_rss
        web.cpu_percent(None)
        while not stop.wait(0.5):
            with contextlib.suppress(psutil.Error):
                samples.append(web.cpu_percent(None))
                peak_rss = max(peak_rss, web.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outcome = [results.get(timeout=seconds + 240) for _ in workers]
    stop.set()
    sampler.join()
    cpu_after, wall_after = web.cpu_times(), time.monotonic()
    runtime.stop(state, timeout=2)
    shipper.done.wait(10)
    for worker in workers:
        worker.join(10)
    histogram: dict[int, int] = {}
    for part in outcome:
        for ms, count in part["histogram"].items():
            histogram[ms] = histogram.get(ms, 0) + count
    busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    summed = {
        k: sum(p[k] for p in outcome)
        for k in (
            "complete",
            "received",
            "missing",
            "duplicates",
            "out_of_range",
            "frames",
            "gap_messages",
            "error_count",
            "lost",
            "skipped_lines",
            "tail_viewers",
            "skipped_messages",
            "delivered_bytes",
            "client_cpu_s",
        )
    }
    window = wall_after - wall_before
    delivered_mb = summed["delivered_bytes"] / 1e6
    return {
        "viewers": viewers,
        "connected": connected,
        "lines_per_viewer": total,
        "published_lines": shipper.shipped,
        **summed,
        "errors": [e for p in outcome for e in p["errors"]][:5],
        "latency_ms": {
            "p50": histogram_percentile(histogram, 0.50),
            "p95": histogram_percentile(histogram, 0.95),
            "p99": histogram_percentile(histogram, 0.99),
            "max": float(max(histogram)) if histogram else math.nan,
            "samples": sum(histogram.values()),
        },
        "rate": rate,
        "web_cpu_percent_avg": round(100 * busy / window, 1),
        "web_cpu_s": round(busy, 2),
        "delivered_mb": round(delivered_mb, 1),
        "web_cpu_ms_per_delivered_mb": round(1000 * busy / delivered_mb, 1)
        if delivered_mb
        else math.nan,
        # The viewers' processes together (100 = one core busy): a saturated client shows.
        "client_cpu_percent_avg": round(100 * summed["client_cpu_s"] / window, 1),
        "client_processes": processes,
        "web_cpu_percent_peak": max(samples, default=0.0),
        "web_peak_rss_mib": round(peak_rss / 1024**2, 1),
        "window_s": round(wall_after - wall_before, 1),
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["2000:500", "20000:50", "20000:500"],
        metavar="RATE:VIEWERS",
        help="the runs: lines a second and viewers of each (default: the issue's three)",
    )
    parser.add_argument("--rate", type=int, help="with --viewers: runs at this rate")
    parser.add_argument("--viewers", type=int, nargs="+", help="with --rate")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database (flushed)")
    parser.add_argument("--database", default="lattice_bench_logs", help="throw-away database")
    args = parser.parse_args()
    if args.viewers:
        rate = args.rate or 20_000
        args.runs = [f"{rate}:{v}" for v in args.viewers]
    args.pairs = [tuple(int(x) for x in run.split(":")) for run in args.runs]
    return args


def main(args: argparse.Namespace) -> None:
    import start_latency as common

    from apps.machines.inventory import collect
    from apps.machines.services import host_ensure_local
    from apps.runtimes.images import docker_image_exists, notebook_image

    image = notebook_image()
    if not docker_image_exists(image):
        sys.exit(f"the notebook image {image} is missing: bash images/notebook/build-local.sh")
    database = common.bench_database(args.database)
    web = None
    runs = []
    try:
        host_ensure_local(name="local", inventory=collect(), runtime="docker")
        people = common.make_people()
        cookie = common.session_cookie(people[0])
        web = common.WebServer(database)
        with control_worker(database):
            runs = [
                one_run(web, people, cookie, viewers, rate, args.seconds, image)
                for rate, viewers in args.pairs
            ]
    finally:
        if web is not None:
            web.close()
        common.drop_database(database)
    print(
        f"numbered lines for {args.seconds:g} s from one container -> LogShipper -> the inbox "
        f"-> the control worker -> Redis -> the web server -> websocket viewers (latency: "
        f"every {SAMPLE_EVERY}th line; lost: lines missed with no word; skipped: lines of "
        f"viewers told they were switched to tail)"
    )
    print(
        f"{'lines/s':>7} {'viewers':>7} {'conn':>5} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'lost':>7} {'skipped':>8} {'tail':>5} {'dups':>5} {'web CPU%':>8} {'ms/MB':>6} "
        f"{'MB out':>7} {'client CPU%':>11} {'RSS MiB':>7}"
    )
    for r in runs:
        lat = r["latency_ms"]
        print(
            f"{r['rate']:>7} {r['viewers']:>7} {r['connected']:>5} {lat['p50']:>7.0f} "
            f"{lat['p95']:>7.0f} {lat['p99']:>7.0f} {r['lost']:>7} {r['skipped_lines']:>8} "
            f"{r['tail_viewers']:>5} {r['duplicates']:>5} {r['web_cpu_percent_avg']:>8} "
            f"{r['web_cpu_ms_per_delivered_mb']:>6} {r['delivered_mb']:>7} "
            f"{r['client_cpu_percent_avg']:>11} {r['web_peak_rss_mib']:>7}"
        )
        if r["errors"]:
            print(f"        errors ({r['error_count']}): {r['errors'][:2]}")
        print(
            f"        published {r['published_lines']} of {r['lines_per_viewer']} lines; "
            f"{r['complete']}/{r['viewers']} viewers got every line; window {r['window_s']} s; "
            f"{r['gap_messages']} gap notices; {r['client_processes']} client processes"
        )
    print(json.dumps({"seconds": args.seconds, "runs": runs}))


if __name__ == "__main__":
    import start_latency

    arguments_given = arguments()
    start_latency.configure(arguments_given.redis_db)
    main(arguments_given)
