"""bench/upload: a dataset through the upload API, against a plain copy of the same bytes.

The real upload path, end to end: a web server subprocess (uvicorn, as in
production: bench/start_latency.py WEB_COMMAND) serving
config.asgi:application (settings config.settings.local, PostgreSQL from
DATABASE_URL; a throw-away database ``lattice_bench_upload`` is made and
dropped; no Redis: the cache is in memory) with local storage in a fresh
MEDIA_ROOT, and its temporary files, under one work folder on the same disk as
the data (``--dir``, /var/tmp). The client is this process: it hashes each file
once (timed apart), then, timed from the POST that starts the upload to the
complete call returning: POST .../datasets/<slug>/uploads/ with the manifest,
PUT every missing chunk from WORKERS threads (one httpx.Client each; each chunk
read from disk and hashed for X-Chunk-SHA256), POST .../complete/.

Two baselines. The minimal server (bench/upload_minimal.py under uvicorn, the same
command line, its own process): the same client PUTs every chunk to it, at the same paths
and chunk size; it writes each body at its offset and hashes it, nothing else (no
database, authentication, framework or complete step): the goal's comparison (Lattice /
minimal >= 0.7). And shutil.copyfile of each file into MEDIA_ROOT/baseline/: the
same bytes into the same folder. Neither is fsynced; os.sync() runs, untimed,
before each. The page cache cannot be dropped here, so the data is read warm by
both; the copy, Lattice and the minimal server alternate (the order reversed each round)
and the medians are compared. Ratio = baseline time / Lattice time (throughput ratio).

Each size gets a fresh web server, warmed up by one API request. Its RSS is
sampled (psutil) every 50 ms during each upload: the value before the first
upload and the peak; its CPU time too; both also per phase (start, chunks,
complete). Storage is local, so the start's answer is not "direct" and every
chunk goes through Lattice. Then the resume check: another
upload of the same files to a fresh dataset by a client in a process of its
own, SIGKILLed once half of the chunks are acknowledged; once the server has
settled, the chunks it holds are read from the database, and a resuming client
GETs the upload, PUTs only what it lists as missing and completes. Chunks
re-sent = chunks the resumer PUT that the server already held (the goal's
figure); also shown: the chunks the killed client had begun that the server
did not keep, which the resumer sent again. Between runs the
stored blobs are deleted (they are content-addressed: the same bytes again
would not be sent).

Goals: Lattice / minimal server >= 0.7; peak RSS <= 150 MiB, flat as the size grows; re-sent <= 1.
The token's API rate limit is raised for the server (LATTICE_API_TOKEN_RATE):
at the default 1,200/hour a 5 GiB upload (640 chunks) twice plus a resume would
be refused part way.

    eval "$(bash scripts/services.sh 2>/dev/null)"
    .venv/bin/python bench/upload.py [--size-gib 5] [--files 5] [--workers 4] [--runs 2] [--keep]
        [--database lattice_bench_upload]

Prints a table, then one line of JSON (the figures) at the end of stdout. Needs
about 3.2 x the largest size free on --dir's disk. Exits non-zero only on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

# Its web server and database helpers (this folder is on sys.path when run as a script).
import start_latency as common

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 1024**2
GIB = 1024**3
PIECE = 8 * MIB
SEND_PIECE = MIB
DATABASE = "lattice_bench_upload"
SAMPLE_SECONDS = 0.05
RETRIES = 5


class BenchError(Exception):
    """Something the bench cannot go on from: a refused request, a server that died."""


# --- the client (no Django here: it also runs in the process that is killed) ---------------


@dataclass(frozen=True)
class Chunk:
    number: int  # its place in the whole upload, file by file, then by index
    sha256: str
    index: int
    path: Path
    offset: int
    length: int


@dataclass
class Sent:
    chunks: list[tuple[str, int]] = field(default_factory=list)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def api_client(url: str, token: str, timeout: float = 120.0) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def check(response: httpx.Response, expected: int) -> Any:
    if response.status_code != expected:
        raise BenchError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response.json() if response.content else None


def hash_files(paths: list[Path]) -> list[dict[str, Any]]:
    """The manifest: path, size and SHA-256 of each file."""
    manifest = []
    for path in paths:
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        manifest.append({"path": path.name, "size": path.stat().st_size, "sha256": digest})
    return manifest


def chunk_plan(
    manifest: list[dict[str, Any]], folder: Path, chunk_size: int
) -> dict[tuple[str, int], Chunk]:
    """Every chunk of every file, numbered file by file: what a whole upload sends."""
    plan: dict[tuple[str, int], Chunk] = {}
    for entry in manifest:
        count = max(1, -(-entry["size"] // chunk_size))
        for index in range(count):
            offset = index * chunk_size
            plan[entry["sha256"], index] = Chunk(
                number=len(plan),
                sha256=entry["sha256"],
                index=index,
                path=folder / entry["path"],
                offset=offset,
                length=min(chunk_size, entry["size"] - offset),
            )
    return plan


def missing_chunks(body: dict[str, Any], plan: dict[tuple[str, int], Chunk]) -> list[Chunk]:
    """The chunks an upload's answer (start or GET) lists as missing, in plan order."""
    wanted = [plan[blob["sha256"], index] for blob in body["blobs"] for index in blob["missing"]]
    return sorted(wanted, key=lambda c: c.number)


def pieces(data: bytes) -> Iterator[memoryview]:
    """``data`` as 1 MiB memoryviews (no copies), a request body httpx sends as it is."""
    view = memoryview(data)
    for start in range(0, len(data), SEND_PIECE):
        yield view[start : start + SEND_PIECE]


def put_chunks(
    url: str,
    token: str,
    team: str,
    upload_id: int,
    chunks: list[Chunk],
    workers: int,
    on_start: Callable[[Chunk], None] | None = None,
    on_done: Callable[[Chunk], None] | None = None,
) -> Sent:
    """PUT ``chunks`` from ``workers`` threads, one httpx.Client each; each chunk is read from
    disk and hashed by the thread that sends it. Retries 5xx, 429 and broken connections."""
    todo: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
    for chunk in chunks:
        todo.put(chunk)
    for _ in range(workers):
        todo.put(None)
    sent = Sent()
    failures: list[BaseException] = []

    def send(client: httpx.Client, chunk: Chunk, files: dict[Path, int]) -> None:
        if chunk.path not in files:
            files[chunk.path] = os.open(chunk.path, os.O_RDONLY)
        data = os.pread(files[chunk.path], chunk.length, chunk.offset)
        headers = {
            "X-Chunk-SHA256": hashlib.sha256(data).hexdigest(),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data)),
        }
        path = (
            f"/api/v1/teams/{team}/uploads/{upload_id}/blobs/{chunk.sha256}/chunks/{chunk.index}/"
        )
        if on_start:
            on_start(chunk)
        for attempt in range(RETRIES + 1):
            try:
                # 1 MiB views of the chunk, not the bytes object itself: httpcore copies a
                # bytes body at every partial send (bench/httpx_body.py).
                response = client.put(path, content=pieces(data), headers=headers)
            except httpx.TransportError:
                if attempt == RETRIES:
                    raise
            else:
                if response.status_code == 204:
                    break
                if response.status_code < 500 and response.status_code != 429:
                    check(response, 204)
                if attempt == RETRIES:
                    check(response, 204)
            with sent.lock:
                sent.retries += 1
            time.sleep(0.2 * (attempt + 1))
        with sent.lock:
            sent.chunks.append((chunk.sha256, chunk.index))
        if on_done:
            on_done(chunk)

    def worker() -> None:
        files: dict[Path, int] = {}
        try:
            with api_client(url, token) as client:
                while (chunk := todo.get()) is not None and not failures:
                    send(client, chunk, files)
        except BaseException as exc:  # handed to the caller below
            failures.append(exc)
        finally:
            for fd in files.values():
                os.close(fd)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sent


def upload_start(
    client: httpx.Client, team: str, dataset: str, manifest: list[dict[str, Any]]
) -> dict[str, Any]:
    body: dict[str, Any] = check(
        client.post(
            f"/api/v1/teams/{team}/datasets/{dataset}/uploads/",
            json={"message": "bench", "files": manifest},
        ),
        201,
    )
    return body


def upload_complete(client: httpx.Client, team: str, upload_id: int) -> dict[str, Any]:
    body: dict[str, Any] = check(
        client.post(f"/api/v1/teams/{team}/uploads/{upload_id}/complete/", timeout=1800), 201
    )
    return body


def killable_upload(
    url: str,
    token: str,
    team: str,
    dataset: str,
    manifest: list[dict[str, Any]],
    folder: str,
    workers: int,
    upload_id: Any,
    states: Any,
) -> None:
    """The client that is killed half way (its own process). Notes in shared memory the
    upload's id and, per chunk number, 1 once its PUT began and 2 once it was answered."""
    with api_client(url, token) as client:
        body = upload_start(client, team, dataset, manifest)
    plan = chunk_plan(manifest, Path(folder), body["chunk_size"])
    upload_id.value = body["id"]

    def started(chunk: Chunk) -> None:
        states[chunk.number] = 1

    def done(chunk: Chunk) -> None:
        states[chunk.number] = 2

    put_chunks(url, token, team, body["id"], missing_chunks(body, plan), workers, started, done)
    time.sleep(3600)  # never completes: it is killed before this


# --- the server and its database --------------------------------------------------------------


def configure(work: Path, chunk_mib: int | None) -> dict[str, str]:
    """Environment for this process and the web server, before Django reads its settings."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit(
            "bench/upload needs PostgreSQL: set DATABASE_URL "
            '(eval "$(bash scripts/services.sh 2>/dev/null)")'
        )
    # No Redis: the throttle's counts and the cache stay in the server's memory, apart from
    # a dev server's. No Celery work is queued by uploads.
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LATTICE_LOG_LEVEL", "WARNING")
    os.environ["LATTICE_MEDIA_ROOT"] = str(work / "media")
    os.environ["LATTICE_STORAGE"] = "local"
    os.environ["LATTICE_API_TOKEN_RATE"] = "1000000/hour"  # noqa: S105 - a rate
    if chunk_mib:
        os.environ["LATTICE_UPLOAD_CHUNK_BYTES"] = str(chunk_mib * MIB)
    (work / "media").mkdir(parents=True, exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    import django

    django.setup()
    # The web server spools request bodies (Daphne, Django, storage) into TMPDIR: this disk.
    return {"TMPDIR": str(work / "tmp")}


def bench_database(name: str = DATABASE) -> None:
    """A fresh, migrated database on DATABASE_URL's server; this process now uses it."""
    from django.conf import settings
    from django.db import connection

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)


class Sampler:
    """The web process's RSS every 50 ms while a block runs, and its CPU time; both also per
    phase (``phase()`` starts the next one)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.name = ""
        self.peaks: dict[str, int] = {}
        self.cpus: dict[str, float] = {}

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def _note(self, rss: int) -> None:
        self.peak = max(self.peak, rss)
        self.peaks[self.name] = max(self.peaks.get(self.name, 0), rss)

    def sample(self) -> None:
        while not self.stop.wait(SAMPLE_SECONDS):
            with contextlib.suppress(Exception):
                self._note(self.process.memory_info().rss)

    def phase(self, name: str) -> None:
        now = self._cpu()
        if self.name:
            self._note(self.process.memory_info().rss)
            self.cpus[self.name] += now
        self.name = name
        self.cpus[name] = -now

    def __enter__(self) -> Sampler:
        import psutil

        self.phase("start")
        self.system = -self.process.cpu_times().system
        self.machine = psutil.cpu_times()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import psutil

        self.stop.set()
        self.thread.join()
        self.phase("")
        del self.cpus[""]
        self.system += self.process.cpu_times().system
        # How busy the machine's CPUs were meanwhile (client, server, database, kernel).
        before, after = self.machine, psutil.cpu_times()
        total = sum(after) - sum(before)
        idle = (after.idle + after.iowait) - (before.idle + before.iowait)
        self.machine_busy = 1 - idle / total if total else 0.0

    @property
    def cpu(self) -> float:
        return sum(self.cpus.values())


# --- the bench ----------------------------------------------------------------------------------


@dataclass
class Setup:
    team: Any
    user: Any
    token: str
    work: Path
    workers: int
    server_env: dict[str, str]
    server: common.WebServer = field(init=False)  # a fresh one for each size

    @property
    def media(self) -> Path:
        return self.work / "media"


def make_setup(work: Path, workers: int, server_env: dict[str, str]) -> Setup:
    from apps.accounts.models import TOKEN_SCOPES, User
    from apps.accounts.tokens import token_create
    from apps.teams.services import team_create

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}@example.com", "x" * 16)
    team = team_create(actor=user, name=f"Bench {uuid.uuid4().hex[:6]}")
    _, token = token_create(
        user=user, name="bench", scopes=list(TOKEN_SCOPES), expires_in_days=None
    )
    return Setup(team, user, token, work, workers, server_env)


def start_server(setup: Setup, database: str = DATABASE) -> None:
    """A fresh web server, warmed up by one API request (its lazy imports are not the
    upload's memory)."""
    setup.server = common.WebServer(database, setup.server_env)
    with api_client(setup.server.url, setup.token) as client:
        check(client.get(f"/api/v1/teams/{setup.team.slug}/datasets/"), 200)


def make_data(folder: Path, total: int, files: int) -> list[Path]:
    """``files`` files of random bytes, ``total`` bytes in all (equal sizes)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = folder / f"part-{i:03d}.bin"
        left = total // files
        with path.open("wb") as out:
            while left:
                piece = os.urandom(min(PIECE, left))
                out.write(piece)
                left -= len(piece)
        paths.append(path)
    return paths


def new_dataset(setup: Setup, label: str) -> str:
    from apps.datasets.services import dataset_create

    return dataset_create(
        team=setup.team, actor=setup.user, name=f"{label} {uuid.uuid4().hex[:6]}"
    ).slug


def forget_blobs(setup: Setup, manifest: list[dict[str, Any]]) -> None:
    """Delete the team's datasets and the stored blobs, so the next upload sends every byte."""
    from apps.core.tenancy import unscoped
    from apps.datasets.models import Blob, Dataset

    with unscoped():
        Dataset.objects.filter(team=setup.team).delete()
        Blob.objects.filter(sha256__in=[f["sha256"] for f in manifest]).delete()
    shutil.rmtree(setup.media / "datasets", ignore_errors=True)


def baseline(setup: Setup, paths: list[Path]) -> float:
    target = setup.media / "baseline"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    os.sync()
    start = time.perf_counter()
    for path in paths:
        shutil.copyfile(path, target / path.name)
    elapsed = time.perf_counter() - start
    shutil.rmtree(target)
    return elapsed


class MinimalServer:
    """bench/upload_minimal.py's app under uvicorn (the production command line, as the
    Lattice server's), in a subprocess, writing into ``folder``."""

    def __init__(self, folder: Path, chunk: int, extra_env: dict[str, str]) -> None:
        import subprocess

        self.port = common.free_port()
        self.folder = folder
        env = {
            **os.environ,
            **extra_env,
            "UPLOAD_MINIMAL_DIR": str(folder),
            "UPLOAD_MINIMAL_CHUNK_BYTES": str(chunk),
        }
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / common.WEB_COMMAND[0]),
                *common.WEB_COMMAND[1:],
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--app-dir",
                str(ROOT / "bench"),
                "upload_minimal:app",
            ],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError("the minimal server exited")
            with contextlib.suppress(httpx.TransportError), httpx.Client() as client:
                client.get(self.url)
                return
            time.sleep(0.1)
        raise BenchError("the minimal server did not listen within 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except Exception:
            self.process.kill()
            self.process.wait()


def minimal(
    setup: Setup, server: MinimalServer, folder: Path, manifest: list[dict[str, Any]], chunk: int
) -> dict[str, Any]:
    """The same chunks, by the same client (put_chunks: threads, chunk reads, hashes, 1 MiB
    views), to the minimal server: seconds, its RSS and CPU, client CPU."""
    shutil.rmtree(server.folder, ignore_errors=True)
    plan = chunk_plan(manifest, folder, chunk)
    os.sync()
    client_cpu = time.process_time()
    with Sampler(server.process.pid) as sampler:
        start = time.perf_counter()
        sent = put_chunks(server.url, "-", "minimal", 0, list(plan.values()), setup.workers)
        elapsed = time.perf_counter() - start
    if len(sent.chunks) != len(plan):
        raise BenchError(f"the minimal server took {len(sent.chunks)} of {len(plan)} chunks")
    for entry in manifest:  # every byte where it belongs (untimed)
        part = server.folder / f"{entry['sha256']}.part"
        if part.stat().st_size != entry["size"]:
            raise BenchError(f"the minimal server's {part.name} has the wrong size")
    shutil.rmtree(server.folder, ignore_errors=True)
    return {
        "seconds": elapsed,
        "retries": sent.retries,
        "rss_before": sampler.before,
        "rss_peak": sampler.peak,
        "server_cpu_s": sampler.cpu,
        "machine_busy": sampler.machine_busy,
        "client_cpu_s": time.process_time() - client_cpu,
    }


def lattice(
    setup: Setup, folder: Path, manifest: list[dict[str, Any]], label: str
) -> dict[str, Any]:
    """One whole upload through the API: seconds, web RSS and CPU, client CPU, retries."""
    forget_blobs(setup, manifest)
    dataset = new_dataset(setup, label)
    os.sync()
    url, token, team = setup.server.url, setup.token, setup.team.slug
    client_cpu = time.process_time()
    with Sampler(setup.server.process.pid) as sampler, api_client(url, token) as client:
        start = time.perf_counter()
        body = upload_start(client, team, dataset, manifest)
        plan = chunk_plan(manifest, folder, body["chunk_size"])
        if body.get("direct"):
            raise BenchError("the upload went direct to S3: this bench measures local storage")
        chunks = missing_chunks(body, plan)
        sampler.phase("chunks")
        put_start = time.perf_counter()
        sent = put_chunks(url, token, team, body["id"], chunks, setup.workers)
        sampler.phase("complete")
        complete_start = time.perf_counter()
        version = upload_complete(client, team, body["id"])
        elapsed = time.perf_counter() - start
    if version["file_count"] != len(manifest) or len(sent.chunks) != len(plan):
        raise BenchError(f"upload {body['id']} made {version} from {len(sent.chunks)} chunks")
    return {
        "seconds": elapsed,
        "start_s": put_start - start,
        "chunks_s": complete_start - put_start,
        "complete_s": elapsed - (complete_start - start),
        "chunks": len(sent.chunks),
        "chunk_size": body["chunk_size"],
        "retries": sent.retries,
        "rss_before": sampler.before,
        "rss_peak": sampler.peak,
        "rss_peak_phase": sampler.peaks,
        "server_cpu_s": sampler.cpu,
        "server_cpu_system_s": sampler.system,
        "server_cpu_phase_s": sampler.cpus,
        "machine_busy": sampler.machine_busy,
        "client_cpu_s": time.process_time() - client_cpu,
    }


def held_chunks(upload_id: int) -> set[tuple[str, int]]:
    """The chunks the server holds for an upload, from its database."""
    from apps.core.tenancy import unscoped
    from apps.datasets.models import UploadChunk

    with unscoped():
        rows = UploadChunk.objects.filter(blob__upload_id=upload_id)
        return set(rows.values_list("blob__sha256", "index"))


def resume(setup: Setup, folder: Path, manifest: list[dict[str, Any]]) -> dict[str, Any]:
    """Kill a client half way through its chunks; resume with another; count what was re-sent."""
    forget_blobs(setup, manifest)
    dataset = new_dataset(setup, "resume")
    url, token, team = setup.server.url, setup.token, setup.team.slug
    context = multiprocessing.get_context("spawn")
    upload_id = context.Value("q", 0)
    total = sum(max(1, -(-f["size"] // chunk_bytes())) for f in manifest)
    states = context.Array("b", total, lock=False)
    killed = context.Process(
        target=killable_upload,
        args=(url, token, team, dataset, manifest, str(folder), setup.workers, upload_id, states),
        daemon=True,
    )
    killed.start()
    deadline = time.monotonic() + 3600
    while sum(1 for s in states if s == 2) < total / 2:
        if not killed.is_alive() or time.monotonic() > deadline:
            raise BenchError(f"the client to kill stopped early (exit {killed.exitcode})")
        time.sleep(0.005)
    killed.kill()  # SIGKILL: no goodbye, connections cut mid-chunk
    killed.join()
    snapshot = list(states)
    acked = sum(1 for s in snapshot if s == 2)
    in_flight = sum(1 for s in snapshot if s == 1)
    # Requests whose bodies had fully arrived still finish on the server: wait until the
    # chunks it holds stop changing for a second.
    held, steady = held_chunks(upload_id.value), time.monotonic()
    while time.monotonic() - steady < 1.0:
        time.sleep(0.1)
        now = held_chunks(upload_id.value)
        if now != held:
            held, steady = now, time.monotonic()
    start = time.perf_counter()
    with api_client(url, token) as client:
        body = check(client.get(f"/api/v1/teams/{team}/uploads/{upload_id.value}/"), 200)
        plan = chunk_plan(manifest, folder, body["chunk_size"])
        sent = put_chunks(
            url, token, team, upload_id.value, missing_chunks(body, plan), setup.workers
        )
        version = upload_complete(client, team, upload_id.value)
    resent = held & set(sent.chunks)
    started_not_held = {(c.sha256, c.index) for c in plan.values() if snapshot[c.number]} - held
    return {
        "chunks": total,
        "acked_at_kill": acked,
        "in_flight_at_kill": in_flight,
        "held_before_resume": len(held),
        "resumer_sent": len(sent.chunks),
        "re_sent": len(resent),
        "sent_twice": len(started_not_held & set(sent.chunks)),
        "resume_s": round(time.perf_counter() - start, 3),
        "completed": version["file_count"] == len(manifest),
    }


def chunk_bytes() -> int:
    from django.conf import settings

    return int(settings.LATTICE_UPLOAD_CHUNK_BYTES)


def one_size(
    setup: Setup, gib: float, files: int, runs: int, keep: bool, database: str = DATABASE
) -> dict[str, Any]:
    total = round(gib * GIB)
    folder = setup.work / "data" / f"{gib:g}gib"
    print(f"{gib:g} GiB: writing {files} files of random bytes in {folder}", file=sys.stderr)
    paths = make_data(folder, total, files)
    size = sum(p.stat().st_size for p in paths)
    start = time.perf_counter()
    manifest = hash_files(paths)
    hashing = time.perf_counter() - start
    from apps.datasets.services.uploads import chunk_size

    chunk = chunk_size(max(f["size"] for f in manifest))
    start_server(setup, database)
    mini = MinimalServer(setup.work / "minimal", chunk, setup.server_env)
    try:
        ours, base, least, resumed = alternate(
            setup, mini, gib, folder, manifest, paths, runs, chunk
        )
    finally:
        setup.server.close()
        mini.close()
    forget_blobs(setup, manifest)
    if not keep:
        shutil.rmtree(folder)
    base_s = statistics.median(base)
    ours_s = statistics.median(r["seconds"] for r in ours)
    least_s = statistics.median(r["seconds"] for r in least)
    ours_chunks_s = statistics.median(r["chunks_s"] for r in ours)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in ours), 3)

    def phases(key: str) -> dict[str, float]:
        return {k: round(statistics.median(r[key][k] for r in ours), 3) for k in ours[0][key]}

    return {
        "size_gib": gib,
        "bytes": size,
        "files": files,
        "chunk_size": ours[0]["chunk_size"],
        "chunks": ours[0]["chunks"],
        "workers": setup.workers,
        "hashing_s": round(hashing, 3),
        "baseline_s": [round(s, 3) for s in base],
        "lattice_s": [round(r["seconds"], 3) for r in ours],
        "baseline_median_s": round(base_s, 3),
        "lattice_median_s": round(ours_s, 3),
        "baseline_mib_s": round(size / MIB / base_s, 1),
        "lattice_mib_s": round(size / MIB / ours_s, 1),
        "ratio": round(base_s / ours_s, 3),
        "minimal_s": [round(r["seconds"], 3) for r in least],
        "minimal_median_s": round(least_s, 3),
        "minimal_mib_s": round(size / MIB / least_s, 1),
        # The goal's figure: Lattice's throughput (start to complete) / the minimal server's.
        "ratio_minimal": round(least_s / ours_s, 3),
        # The chunk PUTs alone (what both servers do): Lattice's chunks phase.
        "ratio_minimal_chunks": round(least_s / ours_chunks_s, 3),
        "minimal_rss_before_mib": round(least[0]["rss_before"] / MIB, 1),
        "minimal_rss_peak_mib": round(max(r["rss_peak"] for r in least) / MIB, 1),
        "minimal_server_cpu_s": round(statistics.median(r["server_cpu_s"] for r in least), 3),
        "minimal_client_cpu_s": round(statistics.median(r["client_cpu_s"] for r in least), 3),
        "minimal_machine_cpu_busy": round(statistics.median(r["machine_busy"] for r in least), 2),
        "lattice_phases_median_s": {
            "start": median("start_s"),
            "chunks": median("chunks_s"),
            "complete": median("complete_s"),
        },
        # Before: the fresh server's, before its first upload; the peak: over every run; by
        # phase: in the first upload (RSS seldom shrinks, so later ones start at its peak).
        "server_rss_before_mib": round(ours[0]["rss_before"] / MIB, 1),
        "server_rss_peak_mib": round(max(r["rss_peak"] for r in ours) / MIB, 1),
        "server_rss_peak_phase_mib": {
            k: round(v / MIB, 1) for k, v in ours[0]["rss_peak_phase"].items()
        },
        "server_cpu_s": median("server_cpu_s"),
        "server_cpu_system_s": median("server_cpu_system_s"),
        "server_cpu_phase_s": phases("server_cpu_phase_s"),
        "machine_cpu_busy": round(median("machine_busy"), 2),
        "client_cpu_s": median("client_cpu_s"),
        "retries": sum(r["retries"] for r in ours),
        "minimal_retries": sum(r["retries"] for r in least),
        "resume": resumed,
    }


def alternate(
    setup: Setup,
    mini: MinimalServer,
    gib: float,
    folder: Path,
    manifest: list[dict[str, Any]],
    paths: list[Path],
    runs: int,
    chunk: int,
) -> tuple[list[dict[str, Any]], list[float], list[dict[str, Any]], dict[str, Any]]:
    """The copy, Lattice and the minimal server in turn, the order reversed each round; then
    the resume check."""
    base: list[float] = []
    ours: list[dict[str, Any]] = []
    least: list[dict[str, Any]] = []
    kinds = ("baseline", "lattice", "minimal")
    for round_ in range(runs):
        order = kinds if round_ % 2 == 0 else kinds[::-1]
        for kind in order:
            print(f"{gib:g} GiB: round {round_ + 1}, {kind}", file=sys.stderr)
            if kind == "baseline":
                base.append(baseline(setup, paths))
            elif kind == "minimal":
                least.append(minimal(setup, mini, folder, manifest, chunk))
            else:
                ours.append(lattice(setup, folder, manifest, f"bench {gib:g} {round_}"))
    print(f"{gib:g} GiB: resume after SIGKILL", file=sys.stderr)
    return ours, base, least, resume(setup, folder, manifest)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"upload through Lattice (uvicorn, local storage, {args.workers} workers) vs "
        f"shutil.copyfile into the same folder; medians of {args.runs} alternating runs; "
        "page cache warm for both (it cannot be dropped here)"
    )
    print(
        f"{'size':>6} {'chunks':>6} {'hash s':>7} {'copy s':>7} {'MiB/s':>6} "
        f"{'Lattice s':>9} {'MiB/s':>6} {'ratio':>6} {'RSS before':>10} {'peak MiB':>8} "
        f"{'re-sent':>7}"
    )
    for r in results:
        print(
            f"{r['size_gib']:>4g} G {r['chunks']:>6} {r['hashing_s']:>7.2f} "
            f"{r['baseline_median_s']:>7.2f} {r['baseline_mib_s']:>6.0f} "
            f"{r['lattice_median_s']:>9.2f} {r['lattice_mib_s']:>6.0f} {r['ratio']:>6.2f} "
            f"{r['server_rss_before_mib']:>10.0f} {r['server_rss_peak_mib']:>8.0f} "
            f"{r['resume']['re_sent']:>7}"
        )
        print(
            f"       minimal server: {r['minimal_median_s']:.2f} s {r['minimal_mib_s']:.0f} MiB/s;"
            f" Lattice / minimal {r['ratio_minimal']:.2f} (chunk PUTs alone "
            f"{r['ratio_minimal_chunks']:.2f}); its RSS {r['minimal_rss_before_mib']:.0f} -> "
            f"{r['minimal_rss_peak_mib']:.0f} MiB, CPU {r['minimal_server_cpu_s']:.1f} s; "
            f"client CPU {r['minimal_client_cpu_s']:.1f} s; all CPUs "
            f"{r['minimal_machine_cpu_busy']:.0%} busy; retries {r['minimal_retries']}"
        )
        res = r["resume"]
        phases, cpu, rss = (
            r["lattice_phases_median_s"],
            r["server_cpu_phase_s"],
            r["server_rss_peak_phase_mib"],
        )
        print(
            "       Lattice by phase (wall s / web CPU s / web peak RSS MiB in the first upload): "
            + ", ".join(f"{k} {phases[k]:.2f}/{cpu[k]:.1f}/{rss[k]:.0f}" for k in phases)
            + f"; web CPU in the kernel {r['server_cpu_system_s']:.1f} s; client CPU "
            f"{r['client_cpu_s']:.1f} s; all {os.cpu_count()} CPUs "
            f"{r['machine_cpu_busy']:.0%} busy; retries {r['retries']}"
        )
        print(
            f"       resume: killed at {res['acked_at_kill']}/{res['chunks']} chunks answered "
            f"({res['in_flight_at_kill']} in flight); server held {res['held_before_resume']}; "
            f"resumer sent {res['resumer_sent']}, {res['re_sent']} of them held already, "
            f"{res['sent_twice']} begun by the killed client; completed: {res['completed']}"
        )
    print(
        "goals: Lattice / minimal server >= 0.7; peak web RSS <= 150 MiB, flat as the size "
        "grows; chunks re-sent after the kill <= 1"
    )
    print(json.dumps({"workers": args.workers, "runs": args.runs, "sizes": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description="The datasets upload benchmark.")
    parser.add_argument("--size-gib", type=float, nargs="+", default=[5.0])
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="chunk PUTs in parallel")
    parser.add_argument("--runs", type=int, default=2, help="of each, alternating")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="the work folder's")  # noqa: S108
    parser.add_argument("--chunk-mib", type=int, help="the server's chunk size (its default)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and data")
    parser.add_argument(
        "--database", default=DATABASE, help="the throw-away database's name (one per bencher)"
    )
    args = parser.parse_args()

    need = 3.2 * max(args.size_gib) * GIB + GIB
    free = shutil.disk_usage(args.dir).free
    if free < need:
        sys.exit(f"{args.dir} has {free / GIB:.1f} GiB free; this needs {need / GIB:.1f} GiB")
    work = Path(tempfile.mkdtemp(prefix="lattice-bench-upload-", dir=args.dir))
    server_env = configure(work, args.chunk_mib)
    bench_database(args.database)
    results = []
    try:
        setup = make_setup(work, args.workers, server_env)
        results = [
            one_size(setup, gib, args.files, args.runs, args.keep, args.database)
            for gib in args.size_gib
        ]
    finally:
        common.drop_database(args.database)
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args)


if __name__ == "__main__":
    main()
