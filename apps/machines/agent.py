"""The host agent: tasks that run on a host, from its own queue ``host.<name>``.

The agent holds no database credentials: a GPU host runs strangers' code.
It touches only the local runtime (Docker or processes) and the broker, as its
host's own broker user (apps.machines.broker); what it learns goes back as
messages signed with its host's key (apps.machines.identity) on the inbox:
reports, and workload events with event "progress", "started", "ready",
"failed" or "stopped"; a workload run to its end (``"until": "exit"``, a job's attempt)
also "exited" (with its status) or "vanished" (its container gone without a word).
Its workloads' output goes the same way, in frames
(apps.machines.logship); the control plane checks each against what it placed
on this host (apps.machines.inbox) before it believes or publishes anything.
Dataset versions a workload mounts it downloads, before the workload starts,
through the per-object read links its start brings (it holds no storage
credentials), into a folder per content, and keeps that cache within its size
budget (apps.machines.materialise; see with_datasets). A notebook volume's snapshot
(agent.snapshot, or queued by a stop that asks for one) and its restore before a start
(the option ``restore``) are apps.machines.snapshot's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from celery import shared_task
from django.conf import settings
from django.db import connections

from apps.machines.inbox import send as send_signed
from apps.machines.inventory import collect
from apps.machines.logship import ship_logs
from apps.machines.materialise import MaterialiseError, evict, materialise
from apps.machines.models import host_queue
from apps.machines.savefolder import run_save
from apps.machines.snapshot import restore_snapshot, run_snapshot
from apps.runtimes.base import (
    LABEL_PREFIX,
    MODEL_PATH,
    NOTEBOOKS_PATH,
    PoolMiss,
    PoolSpec,
    Spec,
    WorkloadError,
)
from apps.runtimes.select import host_runtime

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from apps.runtimes.base import Managed, Progress, Runtime

logger = logging.getLogger(__name__)

AGENT_TIME_LIMIT = 600
# Agent threads per core, and the bounds (agent_concurrency).
AGENT_THREADS_PER_CORE = 16
AGENT_MIN_CONCURRENCY = 8
AGENT_MAX_CONCURRENCY = 128


def _cores() -> int:
    """The cores this process may run on (a cpuset, as a container's, counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def agent_concurrency(cores: int | None = None) -> int:
    """How many tasks the agent runs at once: LATTICE_AGENT_CONCURRENCY when set (> 0), else
    AGENT_THREADS_PER_CORE per core of this host (``cores``, default os.cpu_count()), within
    AGENT_MIN_CONCURRENCY..AGENT_MAX_CONCURRENCY.

    A start holds its thread until its server answers: seconds, minutes on a busy host, and
    nearly all of it waiting (Docker, readiness looks woken by the server's output), while
    the containers themselves use the cores. A start that finds no free thread waits for a
    whole other start before it begins: a fixed 4 made the fifth of twenty starts at once
    wait, and 4 per core made the ninth of ten on a 2-core host wait 90 s. 16 per core is
    more starts at once than a host has room for (a notebook takes at least a core), so
    placement, not the threads, decides; the bounds keep a tiny host from 2 threads and a
    huge one from a thousand."""
    chosen = int(getattr(settings, "LATTICE_AGENT_CONCURRENCY", 0) or 0)
    if chosen > 0:
        return chosen
    count = cores if cores is not None else _cores()
    return max(AGENT_MIN_CONCURRENCY, min(AGENT_MAX_CONCURRENCY, AGENT_THREADS_PER_CORE * count))


# Readiness polls (_wait_ready): every _QUICK_POLL seconds for the first _QUICK_POLL_SECONDS,
# then every _SLOW_POLL; a start whose output is shipped also looks at each line it prints.
_QUICK_POLL_SECONDS = 3.0
_QUICK_POLL = 0.05
_SLOW_POLL = 0.2
_PRINTED_GAP = 0.02
# Workloads this agent is starting right now: reported as running, so the
# reconciler does not judge a long image pull as a vanished workload.
_starting: set[str] = set()
_starting_lock = threading.Lock()


UNTIL_LABEL = f"{LABEL_PREFIX}until"


def managed_report(host_name: str) -> list[dict[str, Any]]:
    runtime = host_runtime()
    found = runtime.list_managed()
    with _starting_lock:
        starting = set(_starting)
    # A container that is up while its start still waits for the server to answer is
    # starting too: the control plane must not take the slow answer for a lost start.
    report = [
        {"name": m.name, "running": m.running, "labels": m.labels}
        | ({"starting": True} if m.name in starting else {})
        | _until_exit(runtime, host_name, m)
        for m in found
    ]
    # Warm containers not claimed yet (apps.machines.pool): their placements are judged
    # like any workload's.
    pooled = runtime.pool_list() if runtime.pool_supported() else []
    report += [
        {"name": m.name, "running": m.running, "labels": m.labels, "pool": True}
        | ({"starting": True} if m.name in starting else {})
        for m in pooled
    ]
    report += [
        {"name": name, "running": True, "starting": True, "labels": {}}
        for name in starting - {m.name for m in [*found, *pooled]}
    ]
    # Output of running workloads goes on being shipped after an agent restart: its
    # recent lines first (a restarted control plane may have lost its buffer; the
    # viewers replace what they show with them), then what it prints from now on.
    for managed in found:
        stream = managed.labels.get(f"{LABEL_PREFIX}stream")
        if managed.running and stream:
            ship_logs(
                runtime, managed.state, host_name, backfill=settings.LATTICE_LOG_BACKFILL_LINES
            )
    return report


def _until_exit(runtime: Runtime, host_name: str, managed: Managed) -> dict[str, Any]:
    """For one of this Lattice's workloads run to its end: an exited one is reported with
    its status (its container is kept until the control plane has its outputs: neither
    lost nor an orphan while its placement is active; agent_report then tells it as
    "exited", which the control plane takes once); a running one is watched again (an
    agent that restarted lost its watcher)."""
    installation = managed.labels.get(f"{LABEL_PREFIX}installation")
    if managed.labels.get(UNTIL_LABEL) != "exit" or installation not in (
        None,
        settings.LATTICE_INSTALLATION,
    ):
        return {}
    if managed.running:
        watch_exit(runtime, host_name, managed.name, managed.state)
        return {}
    status = runtime.exit_status(managed.state)
    if status.code is None:
        return {}
    return {"exited": True, "exit_code": status.code, "finished_at": status.finished_at}


def tell_exits(host_name: str, workloads: list[dict[str, Any]]) -> None:
    """Say "exited" again for each exited workload a report lists (see _until_exit)."""
    for workload in workloads:
        if workload.get("exited"):
            _send(
                host_name,
                workload["name"],
                "exited",
                exit_code=workload["exit_code"],
                finished_at=workload.get("finished_at"),
            )


@shared_task(name="agent.report", soft_time_limit=60, time_limit=90)
def agent_report(host_name: str) -> None:
    """Send inventory and the workloads running here to the control plane."""
    collected_at = time.time()
    workloads = managed_report(host_name)
    body = {"inventory": collect(), "workloads": workloads, "collected_at": collected_at}
    send_signed(host_name, "report", body)
    tell_exits(host_name, workloads)


def _send(host_name: str, name: str, event: str, **data: Any) -> None:
    send_signed(host_name, "event", {"workload": name, "event": event, "data": data})


@contextlib.contextmanager
def _starting_workload(name: str, *, alone: bool = False) -> Iterator[bool]:
    """``name`` is being started (``_starting``) while in the block. With ``alone``, a start
    of ``name`` already in flight makes this one yield False (and leaves the set as it is)."""
    with _starting_lock:
        if alone and name in _starting:
            first = False
        else:
            _starting.add(name)
            first = True
    try:
        yield first
    finally:
        if first:
            with _starting_lock:
                _starting.discard(name)


# A local image build's step can run for minutes (pip installing torch): said again this often.
BUILD_REPORT_EVERY = 20.0


@contextlib.contextmanager
def _watch_pull(runtime: Runtime, name: str, send: Callable[..., None]) -> Iterator[None]:
    """While ``start`` runs, pass image download (or local build) progress on: at most every
    half second, when it moved; a long build step is said again every BUILD_REPORT_EVERY
    seconds, so the control plane sees the start is alive."""
    stop = threading.Event()

    def watch() -> None:
        last: Progress | None = None
        said_at = 0.0
        while not stop.wait(0.5):
            progress = runtime.pulling(name)
            if progress is None:
                continue
            now = time.monotonic()
            building = progress.phase == "building"
            moved = (
                progress != last if building else last is None or progress.percent != last.percent
            )
            if moved or (building and now - said_at >= BUILD_REPORT_EVERY):
                last, said_at = progress, now
                if building:
                    # Numbers only: the control plane words a build's step itself (a host's
                    # text never reaches a notebook's page).
                    send(
                        "progress",
                        phase="building",
                        kind=progress.kind,
                        step=progress.step,
                        of=progress.of,
                        percent=progress.percent,
                    )
                else:
                    send(
                        "progress",
                        phase=progress.phase,
                        message=progress.message,
                        percent=progress.percent,
                    )

    watcher = threading.Thread(target=watch, name=f"pull-{name}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()


# One client for every readiness check: making one per request (as httpx.get does)
# builds a TLS context each time, which twenty starts polling at once cannot afford.
_http = httpx.Client(timeout=2.0)


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        return _http.get(url, headers=headers).status_code == 200  # noqa: PLR2004
    except httpx.HTTPError:
        return False


# Where the built-in model server (images/model-server/serve.py) says how its setup() goes.
MODEL_SERVER_HEALTH_PATH = "/health-check"
# The longest setup error a "failed" event carries (the server keeps up to 2000 characters).
SETUP_ERROR_CHARS = 1000


def _model_server_status(url: str) -> tuple[str, str]:
    """(status, setup error) from the model server's health route: its JSON ``status``
    (STARTING, READY, BUSY, SETUP_FAILED), "" while it does not answer in JSON."""
    try:
        body = _http.get(url).json()
    except (httpx.HTTPError, ValueError):
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    setup = body.get("setup")
    error = setup.get("error") if isinstance(setup, dict) else None
    return str(body.get("status") or ""), str(error or "")


@shared_task(name="agent.start", soft_time_limit=AGENT_TIME_LIMIT - 30, time_limit=AGENT_TIME_LIMIT)
def agent_start(
    host_name: str, spec: dict[str, Any], options: dict[str, Any] | None = None
) -> None:
    """Start a workload (idempotent), ship its output, wait until it answers; say how it went.

    ``options``: ``stream`` (its output is shipped when set), ``until`` ("exit": a process
    run to its end, a job's: "ready" as soon as it runs, then a watcher says "exited" with
    its status, or "vanished"; see watch_exit), ``copy_volume`` (a volume whose files are
    copied into the one the spec mounts at /workspace before the start, when that one
    does not exist yet: a snapshot, once), ``ready_path`` (an HTTP path that
    answers 200 once it is ready; without it, an open port is enough),
    ``ready_token_env`` (the spec's env variable holding a token for that request),
    ``ready_timeout`` (seconds), ``health`` ("model-server": the ready path, /health-check
    by default, is the built-in model server's, read as JSON; see _wait_ready),
    ``restore`` (a notebook snapshot's files, restored into the volume it names before
    anything else, a warm container's claim included, every time it is given: see
    _restore; apps.machines.snapshot).
    """
    options = options or {}
    workload = Spec(**spec)
    runtime = host_runtime()

    def send(event: str, **data: Any) -> None:
        _send(host_name, workload.name, event, **data)

    with _starting_workload(workload.name, alone=bool(options.get("restore"))) as first:
        if not first:
            # A second start of a workload this agent is starting now (its threads run
            # tasks side by side): restoring again would empty the volume under the first
            # one. The first one says how it went.
            logger.info("%s is being started already: not restored again", workload.name)
            return
        try:
            if options.get("restore"):
                _restore(runtime, workload, options["restore"], send)
            workload = with_datasets(workload, runtime=runtime, send=send)
            with _watch_pull(runtime, workload.name, send):
                if options.get("copy_volume"):
                    _copy_workspace(runtime, workload, str(options["copy_volume"]), send)
                state = _claim_or_start(runtime, workload, options.get("pool"))
        except WorkloadError as exc:
            send("failed", message=str(exc))
            return
        # When the process really started (Unix time, the runtime's own: Docker's
        # State.StartedAt), not when this message arrives: it may have printed already.
        send("started", state=state, started_at=state.get("started_at"))
        printed = None
        if options.get("stream"):
            printed = ship_logs(runtime, state, host_name).printed
        if options.get("until") == "exit":
            send("ready", state=state, phase="running")
            watch_exit(runtime, host_name, workload.name, state)
            return
        _wait_ready(runtime, workload, state, options, send, printed=printed)


def _restore(runtime: Runtime, spec: Spec, restore: Any, send: Callable[..., None]) -> None:
    """Restore a snapshot into the spec's volume before the workload starts. Not under a
    workload that runs already (a start repeated after it came up: what runs is this start,
    done): emptying its volume then would take its files away. Raises WorkloadError."""
    if not isinstance(restore, dict):
        raise WorkloadError("The notebook's files could not be restored: no snapshot came.")
    if any(m.name == spec.name and m.running for m in runtime.list_managed()):
        logger.info("%s runs already: its volume is not restored again", spec.name)
        return
    restore_snapshot(runtime, restore, volumes=spec.volumes, labels=spec.labels, send=send)


def _claim_or_start(runtime: Runtime, spec: Spec, pool: dict[str, Any] | None) -> dict[str, Any]:
    """Claim the warm container the control plane took for ``spec`` (``pool``: its pool
    state, apps.machines.pool.pool_take); on PoolMiss, or without one, start as ever."""
    if pool and runtime.pool_supported():
        name = str(pool.get("pool") or pool.get("name") or "")
        try:
            with _starting_workload(name):
                return runtime.pool_claim(pool, spec)
        except PoolMiss as exc:
            logger.info("warm container %s for %s missed (%s): starting", name, spec.name, exc)
            # Its room is the session's now: the container is not kept for another claim.
            with contextlib.suppress(WorkloadError):
                runtime.pool_remove(pool)
    return runtime.start(spec)


# How long a warm container may take to answer after it was made (seconds).
POOL_READY_TIMEOUT = 300.0


@shared_task(
    name="agent.pool_fill", soft_time_limit=AGENT_TIME_LIMIT - 30, time_limit=AGENT_TIME_LIMIT
)
def agent_pool_fill(host_name: str, spec: dict[str, Any]) -> None:
    """Make one warm container (apps.machines.pool), wait until it answers, say "ready" with
    its pool state (or "failed"): the control plane believes it only of a slot it asked for."""
    pool_spec = PoolSpec(**spec)
    runtime = host_runtime()

    def send(event: str, **data: Any) -> None:
        _send(host_name, pool_spec.name, event, **data)

    if not runtime.pool_supported():
        send("failed", message="This host keeps no warm containers.")
        return
    with _starting_workload(pool_spec.name):
        try:
            state = runtime.pool_fill(pool_spec)
            deadline = time.monotonic() + POOL_READY_TIMEOUT
            while not runtime.pool_ready(state):
                if time.monotonic() > deadline:
                    runtime.pool_remove(state)
                    send("failed", message="The warm container did not answer in time.")
                    return
                time.sleep(0.1)
        except WorkloadError as exc:
            send("failed", message=str(exc))
            return
    send("ready", state=state)


@shared_task(name="agent.pool_remove", soft_time_limit=60, time_limit=90)
def agent_pool_remove(host_name: str, state: dict[str, Any]) -> None:
    """Remove a warm container that was not claimed (missing ones are fine)."""
    runtime = host_runtime()
    if runtime.pool_supported():
        runtime.pool_remove(state)


# Where a copied volume goes: the volume the spec mounts here (a job's working folder).
WORKSPACE_PATH = "/workspace"


def _copy_workspace(runtime: Runtime, spec: Spec, source: str, send: Callable[..., None]) -> None:
    """Copy ``source`` into the spec's /workspace volume unless that one exists already (a
    retry on this host keeps the snapshot its first attempt took)."""
    target = next((v for v, path in spec.volumes.items() if path == WORKSPACE_PATH), None)
    if target is None or runtime.volume_exists(target):
        return
    send("progress", phase="copying", message="Copying the notebook's files.")
    try:
        runtime.copy_volume(source, target, image=spec.image)
    except WorkloadError:
        raise
    except Exception as exc:
        # Whatever the engine said, the start fails with a reason rather than the task
        # dying without a word (details in the host's log).
        logger.exception("copying %s into %s", source, target)
        raise WorkloadError(f"The notebook's files could not be copied: {exc}") from exc


# How often a watcher asks the runtime whether its workload still runs (seconds).
EXIT_POLL_SECONDS = 1.0
# The workloads watched to their end in this process, and what tells each watcher to stop.
_watchers: dict[str, threading.Event] = {}
_watchers_lock = threading.Lock()


def watch_exit(runtime: Runtime, host_name: str, name: str, state: dict[str, Any]) -> None:
    """Watch workload ``name`` (unless a watcher in this process does) until it exits, then
    say "exited" with its status and when it finished, or "vanished" when its container
    is gone without a status (removed behind our back: not a success). A stop asked of
    this agent (agent_stop) ends the watch without a word: "stopped" says it."""
    with _watchers_lock:
        if name in _watchers:
            return
        done = _watchers[name] = threading.Event()

    def watch() -> None:
        try:
            while not done.wait(EXIT_POLL_SECONDS):
                try:
                    status = runtime.exit_status(state)
                except Exception:
                    logger.exception("watching %s", name)
                    continue
                if status.running or done.is_set():
                    continue
                try:
                    if status.vanished:
                        _send(host_name, name, "vanished")
                    else:
                        _send(
                            host_name,
                            name,
                            "exited",
                            exit_code=status.code,
                            finished_at=status.finished_at,
                        )
                except Exception:
                    # Not lost for good: the next report tells an exited one again.
                    logger.exception("telling the end of %s", name)
                return
        finally:
            with _watchers_lock:
                if _watchers.get(name) is done:
                    del _watchers[name]
            # A thread's own database connection (the inbox runs in-process in a
            # single-machine install and in tests): not left open behind it.
            connections.close_all()

    threading.Thread(target=watch, name=f"exit-{name}", daemon=True).start()


def _unwatch(name: str) -> None:
    with _watchers_lock:
        done = _watchers.pop(name, None)
    if done is not None:
        done.set()


def with_datasets(
    spec: Spec,
    cache_root: Path | None = None,
    *,
    runtime: Runtime | None = None,
    send: Callable[..., None] | None = None,
) -> Spec:
    """``spec`` with each dataset's folder built on this host (once per content; then
    reused), from the read links the spec brings for its blobs, checked against its
    manifest, and named as its ``source``, as the runtimes want it (apps.runtimes.base).
    While it copies, ``send`` hears "progress" (phase "copying") with the percent copied of
    what this host did not hold yet, at most every COPY_REPORT_EVERY seconds.

    When it built a folder, it then evicts the least recently used folders the cache holds
    beyond LATTICE_DATASET_CACHE_MAX_GIB: right here, because only a build makes the cache
    grow, and the host's workloads are at hand to say what is in use. Kept: the folders
    ``spec`` and the workloads ``runtime`` (this host's by default) runs mount, and those used
    by a start still in flight (within AGENT_TIME_LIMIT) whose workload does not run yet.
    """
    if not spec.datasets:
        return spec
    root = Path(cache_root or settings.LATTICE_DATASET_CACHE)
    built = []
    grew = False
    missing = [d for d in spec.datasets if not (root / str(d.get("key", ""))).is_dir()]
    copied = _CopyProgress(sum(int(f[2]) for d in missing for f in d.get("files") or []), send)
    for dataset in spec.datasets:
        try:
            grew |= dataset in missing
            folder = materialise(dataset, root, copied)
        except Exception as exc:
            # Whatever it is (the file system's, say), the start fails with a reason rather
            # than the task dying without a word. Details go to the host's log.
            logger.exception("dataset %s for %s", dataset.get("name"), spec.name)
            why = str(exc) if isinstance(exc, MaterialiseError) else "its files could not be read."
            what = "model version" if dataset.get("path") == MODEL_PATH else "dataset"
            where = dataset.get("path") or f"/datasets/{dataset.get('name')}"
            raise WorkloadError(
                f"The {what} for {where} could not be copied to this host: {why}"
            ) from exc
        built.append(
            {
                "name": dataset.get("name"),
                "version_id": dataset.get("version_id"),
                "key": dataset.get("key"),
                "source": str(folder),
            }
            # Where it is mounted, when not /datasets/<name> (a model version's /model).
            | ({"path": dataset["path"]} if "path" in dataset else {})
        )
    if grew:
        _evict_datasets(root, {str(d["key"]) for d in built}, runtime or host_runtime())
    return replace(spec, datasets=built)


# How often, at most, a start says how far its datasets' copy has come (seconds).
COPY_REPORT_EVERY = 2.0


class _CopyProgress:
    """Counts the bytes copied of ``total`` and sends the whole percent when it moved, at
    most every COPY_REPORT_EVERY seconds (the control plane keeps each as an event)."""

    def __init__(self, total: int, send: Callable[..., None] | None) -> None:
        self.total, self.send = total, send
        self.done = 0
        self.said = -1
        self.said_at = 0.0

    def __call__(self, count: int) -> None:
        self.done += count
        if self.send is None or self.total <= 0:
            return
        percent = min(100, self.done * 100 // self.total)
        now = time.monotonic()
        if percent != self.said and now - self.said_at >= COPY_REPORT_EVERY:
            self.said, self.said_at = percent, now
            self.send("progress", phase="copying", percent=percent)


def _evict_datasets(root: Path, keys: set[str], runtime: Runtime) -> None:
    """Keep the dataset cache within its budget; a failure is logged, never fails a start."""
    try:
        in_use = keys | {
            Path(folder).name
            for managed in runtime.list_managed()
            if managed.running
            for folder in managed.datasets
        }
        evicted = evict(
            root,
            budget_bytes=int(settings.LATTICE_DATASET_CACHE_MAX_GIB * 1024**3),
            in_use=in_use,
            used_within=AGENT_TIME_LIMIT,
        )
    except Exception:
        logger.exception("evicting from the dataset cache %s", root)
        return
    if evicted:
        logger.info("evicted %d dataset folders from %s: %s", len(evicted), root, evicted)


_MODEL_SERVER_DONE = ("READY", "BUSY", "SETUP_FAILED")


def _model_server_step(
    endpoint: str,
    path: str,
    state: dict[str, Any],
    send: Callable[..., None],
    *,
    loading_said: bool,
) -> str:
    """One look at the model server's health route, said as _wait_ready says (READY or BUSY:
    "ready"; SETUP_FAILED: "failed" with the error; STARTING: "progress" loading, unless
    ``loading_said``). Its status ("" while it does not answer in JSON)."""
    status, error = _model_server_status(endpoint + path)
    if status in ("READY", "BUSY"):
        send("ready", state=state, endpoint=endpoint)
    elif status == "SETUP_FAILED":
        error = error[:SETUP_ERROR_CHARS]
        send(
            "failed", message=f"The model's setup() failed: {error}", setup_failed=True, error=error
        )
    elif status == "STARTING" and not loading_said:
        send("progress", phase="loading", message="Loading the model (setup()).")
    return status


def _pause(interval: float, printed: threading.Event | None, looked: float) -> None:
    """Wait ``interval`` seconds, or until ``printed`` is set (the last look was at
    ``looked``): a chatty server gets no more than 1 / _PRINTED_GAP looks a second."""
    if printed is None:
        time.sleep(interval)
    elif printed.wait(interval):
        time.sleep(max(0.0, looked + _PRINTED_GAP - time.monotonic()))
        printed.clear()


def _wait_ready(
    runtime: Runtime,
    workload: Spec,
    state: dict[str, Any],
    options: dict[str, Any],
    send: Callable[..., None],
    *,
    printed: threading.Event | None = None,
) -> None:
    """Wait until the workload answers on ``ready_path`` (or opens its port), then send
    "ready"; "failed" when it exits or the ready timeout passes first.

    Between looks it waits on ``printed`` (set by its log shipper at each line it reads)
    as well as the clock: a server says it listens as it starts to, so the look after that
    line finds it ready with no poll interval's delay, and the polls themselves can be
    gentle (_QUICK_POLL, _SLOW_POLL) on a host starting twenty at once.

    With ``health`` "model-server" the answer is the model server's own word (Cog's
    states), not any 200: READY (or BUSY) is ready; STARTING says "progress" (phase
    "loading") once, as its setup() loads the model; SETUP_FAILED fails the start at
    once with setup()'s error (it will not get better by waiting for the timeout).
    """
    model_server = options.get("health") == "model-server"
    path = options.get("ready_path", "") or (MODEL_SERVER_HEALTH_PATH if model_server else "")
    loading_said = False
    token = workload.env.get(options.get("ready_token_env", ""), "")
    headers = {"Authorization": f"token {token}"} if token else {}
    began = time.monotonic()
    deadline = began + float(options.get("ready_timeout", 300))
    endpoint: str | None = None
    checked = 0.0
    while time.monotonic() < deadline:
        # Quick at first (most servers answer within seconds, and every 50 ms of
        # polling is start latency), then gentler: twenty starts polling at 20 Hz
        # on a busy host cost their own servers the CPU they need to start.
        slow = time.monotonic() - began > _QUICK_POLL_SECONDS
        # Whether it still runs costs the runtime a call: once or twice a second.
        if time.monotonic() - checked >= (1.0 if slow else 0.5):
            checked = time.monotonic()
            exit_code = runtime.poll(state)
            if exit_code is not None:
                send(
                    "failed",
                    message=f"The server exited during start (status {exit_code}).",
                    exit_code=exit_code,
                )
                return
        looked = time.monotonic()
        told = endpoint is not None
        if endpoint is None:
            endpoint = runtime.endpoint(state)
        if endpoint is not None and model_server:
            status = _model_server_step(endpoint, path, state, send, loading_said=loading_said)
            if status in _MODEL_SERVER_DONE:
                return
            loading_said |= status == "STARTING"
        elif endpoint is not None:
            if not path or _answers(endpoint + path, headers):
                send("ready", state=state, endpoint=endpoint)
                return
            if not told:  # the port is open, the server not ready yet: say so once
                send("progress", phase="waiting", message="Waiting for Jupyter to answer.")
        _pause(_SLOW_POLL if slow else _QUICK_POLL, printed, looked)
    send(
        "failed",
        message=f"The server did not answer within {int(options.get('ready_timeout', 300))} s.",
        timeout=True,
    )


@shared_task(name="agent.stop", soft_time_limit=90, time_limit=120)
def agent_stop(  # noqa: PLR0917 - the message's arguments, positional as sent
    host_name: str,
    name: str,
    state: dict[str, Any] | None = None,
    remove_volumes: list[str] | None = None,
    grace: float | None = None,
    snapshot: dict[str, Any] | None = None,
) -> None:
    """Stop a workload (idempotent), say so; its volumes stay unless named to go. With
    ``grace``: SIGTERM, that many seconds to finish, then SIGKILL (a job's cancel or
    maximum run time; the caller gives this task time for it). With ``snapshot``
    ({"volume", "ticket_url", "ticket"}): once "stopped" is sent, the volume's snapshot is
    queued as an ``agent.snapshot`` task of its own on this host's queue (_queue_snapshot),
    with that task's time limit, not this one's."""
    runtime = host_runtime()
    _unwatch(name)
    if grace is None:
        runtime.stop(state or {"name": name})
    else:
        runtime.stop(state or {"name": name}, timeout=grace)
    for volume in remove_volumes or []:
        runtime.remove_volume(volume)
    _send(host_name, name, "stopped")
    if snapshot:
        _queue_snapshot(host_name, snapshot)


def _queue_snapshot(host_name: str, snapshot: dict[str, Any]) -> None:
    """Publish ``agent.snapshot`` on this host's own queue: what its broker user may do
    (apps.machines.broker: LPUSH on ``host.<name>``, the queue used undeclared as the agent
    configures it), so the snapshot runs as a task of its own, under its own time limit,
    on the next free thread. Should the broker refuse, it runs here instead."""
    args = (
        host_name,
        str(snapshot.get("volume") or ""),
        str(snapshot.get("ticket_url") or ""),
        str(snapshot.get("ticket") or ""),
    )
    try:
        agent_snapshot.apply_async(args=args, queue=host_queue(host_name))
    except Exception:
        logger.exception("queueing the snapshot of %s: taking it here", args[1])
        agent_snapshot(*args)


@shared_task(name="agent.remove_volumes", soft_time_limit=90, time_limit=120)
def agent_remove_volumes(host_name: str, volumes: list[str]) -> None:
    """Remove persistent volumes (a deleted notebook's storage); missing ones are fine."""
    runtime = host_runtime()
    for volume in volumes:
        runtime.remove_volume(volume)


@shared_task(
    name="agent.copy_volume", soft_time_limit=AGENT_TIME_LIMIT - 30, time_limit=AGENT_TIME_LIMIT
)
def agent_copy_volume(host_name: str, source: str, target: str, image: str) -> None:
    """Copy a volume's files into another (a duplicated notebook's folder)."""
    host_runtime().copy_volume(source, target, image=image)


@shared_task(name="agent.remove_orphan", soft_time_limit=60, time_limit=90)
def agent_remove_orphan(host_name: str, name: str) -> None:
    """Remove a workload the control plane does not know, found by its labels."""
    runtime = host_runtime()
    for managed in runtime.list_managed():
        # Only this Lattice's: a workload of the same name may be another installation's
        # on the same engine (a developer's `make dev` beside a test run).
        installation = managed.labels.get(f"{LABEL_PREFIX}installation")
        if managed.name == name and installation in (None, settings.LATTICE_INSTALLATION):
            runtime.stop(managed.state, timeout=10)
            runtime.remove_orphan(managed)
    if runtime.pool_supported():
        for managed in runtime.pool_list():
            installation = managed.labels.get(f"{LABEL_PREFIX}installation")
            if managed.name == name and installation in (None, settings.LATTICE_INSTALLATION):
                runtime.pool_remove(managed.state)


# A save reads a folder twice and sends what the server lacks: a large one takes a while.
SAVE_TIME_LIMIT = 6 * 3600


@shared_task(
    name="agent.save_folder", soft_time_limit=SAVE_TIME_LIMIT - 30, time_limit=SAVE_TIME_LIMIT
)
def agent_save_folder(
    host_name: str,
    state: dict[str, Any],
    folder: str,
    ticket_url: str,
    ticket: str,
    *,
    root: str = NOTEBOOKS_PATH,
) -> None:
    """Save ``folder`` under the workload's ``root`` (a running notebook's /notebooks, an
    exited job's /outputs or /workspace) as a version, through its single-use ticket at
    ``ticket_url`` (apps.machines.savefolder)."""
    run_save(host_runtime(), state, folder, ticket_url, ticket, root=root)


# A snapshot reads the whole volume (files unchanged since the last are not read again) and
# sends what the blob store lacks.
SNAPSHOT_TIME_LIMIT = 6 * 3600


@shared_task(
    name="agent.snapshot",
    soft_time_limit=SNAPSHOT_TIME_LIMIT - 30,
    time_limit=SNAPSHOT_TIME_LIMIT,
)
def agent_snapshot(host_name: str, volume: str, ticket_url: str, ticket: str) -> None:
    """Save the files of ``volume`` (a notebook's, running or not) through its single-use
    ticket at ``ticket_url``: the save protocol of apps.machines.savefolder over
    ``Runtime.read_volume``, a file unchanged since this host's last snapshot of the volume
    not hashed again (apps.machines.snapshot)."""
    run_snapshot(host_runtime(), volume, ticket_url, ticket)


def spec_to_task(spec: Spec) -> dict[str, Any]:
    return asdict(spec)
