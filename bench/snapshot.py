"""bench/snapshot: a notebook volume's snapshots and restore (issue 20), against tar and cp.

The real path, in real processes, as bench/model_save.py: the web tier is a uvicorn
subprocess (bench/start_latency.py WEB_COMMAND) serving config.asgi:application on a
throw-away PostgreSQL database ``lattice_bench_snapshot`` (config.settings.local, local
storage in a fresh MEDIA_ROOT, no Redis), and the host's agent is a process of its own
with the agent's settings (config.settings.agent: no database, no storage credentials)
running what ``agent.snapshot`` runs (apps.machines.snapshot.run_snapshot over
DockerRuntime().read_volume: the agent is root beside the engine, so the volume is read at
its Mountpoint) and what ``agent.start`` runs with the option ``restore``
(apps.machines.snapshot.restore_snapshot: per-object read links from the web tier, each
download checked against size and SHA-256 as it streams, DockerRuntime().restore_volume).
Celery's hop from the control plane to the host's queue is not measured: the bench hands
the queued task's arguments to the agent process.

The volume: a Docker volume (local driver) of ``--files`` files of random bytes,
``--size-gib`` in all, in nested folders (16 x 8 folders), owned by uid 1000 as a
notebook writes them.

Snapshot rounds (``--runs``), each: a full ``tar -cf`` of the volume's Mountpoint into a
file on the same disk (the baseline: its time and bytes); the first snapshot (the server
holds no blob: everything sent; the host's stamp cache empty); ``--changed`` (1%) of the
files rewritten with new bytes; the second snapshot with the stamp cache the first left
(pass 1 hashes only the changed files); another 1% rewritten; a snapshot with an empty
stamp cache (pass 1 reads and hashes every file; what is sent is again 1%). The tar runs
before the snapshots in even rounds and after them in odd ones. "agent": run_snapshot's
own time in the agent process (what a long-lived agent spends; the ratio to tar is of
this); "wall": from snapshot_take (the control plane) to the snapshot READY, with the agent
process's start (Python and Django, about 3 s on this loaded box) in it. Bytes sent: the
chunk bodies the agent PUT (counted in the agent process around SaveClient.put_chunk).
Between rounds the snapshots and every blob are deleted.

Restore rounds (``--restore-runs``), alternating: ``cp -a`` of the source volume's
Mountpoint into a fresh volume's Mountpoint (the baseline), and restore_snapshot of the
last snapshot into a fresh volume (the plan made by snapshot_restore_plan, as dispatch
makes it, timed with it). With ``--other-engine`` both targets are volumes of a second
Docker engine (tests/multihost.py's SecondEngine: its own dockerd, data root, socket and
bridge on this machine, the same disk; the agent process gets its DOCKER_HOST), else of
the same engine. Each restored volume is checked (every file's path and size; the SHA-256
was checked as it streamed). ``--restore-only``: one full snapshot, untimed, then the
restore rounds.

os.sync() runs, untimed, before each timed step; the page cache is warm for all of them.

    eval "$(bash scripts/services.sh 2>/dev/null)"
    .venv/bin/python bench/snapshot.py [--size-gib 2] [--files 2048] [--changed 0.01] \
        [--runs 3] [--restore-runs 3] [--other-engine] [--restore-only] [--dir /var/tmp] [--keep]

Root, Docker, PostgreSQL. Prints a table, then one line of JSON at the end of stdout.
Removes the volumes, folders and database it made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

# Its web server and database helpers (this folder is on sys.path as a script).
import start_latency as common
import upload

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 1024**2
GIB = 1024**3
DATABASE = "lattice_bench_snapshot"
LABEL = "lattice.bench"
LABEL_VALUE = "snapshot"
PIECE = 4 * MIB

# The host's agent, with the agent's settings, in a process of its own; the job on stdin.
AGENT = """
import json, os, sys, time
import django
django.setup()
from pathlib import Path
from apps.machines import savefolder
from apps.machines.snapshot import restore_snapshot, run_snapshot
from apps.runtimes.docker import DockerRuntime
job = json.loads(sys.stdin.read())
sent = {"bytes": 0, "chunks": 0}
put_chunk = savefolder.SaveClient.put_chunk
def counted(self, target, pieces):
    sent["bytes"] += sum(len(p) for p in pieces)
    sent["chunks"] += 1
    return put_chunk(self, target, pieces)
savefolder.SaveClient.put_chunk = counted
runtime = DockerRuntime()
events = []
start = time.perf_counter()
if job["kind"] == "snapshot":
    result = run_snapshot(
        runtime, job["volume"], job["url"], job["ticket"], cache_dir=Path(job["cache"])
    )
else:
    result = None
    restore_snapshot(
        runtime, job["restore"], volumes={job["restore"]["volume"]: "/notebooks"},
        labels={}, send=lambda kind, **fields: events.append(fields),
    )
seconds = time.perf_counter() - start
times = os.times()
print(json.dumps({
    "result": result, "seconds": seconds, "sent": sent, "events": len(events),
    "cpu_s": times.user + times.system,
}))
"""


def agent(job: dict[str, Any], docker_host: str | None = None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TMPDIR"}}
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.agent",
            "LATTICE_AGENT_BROKER_URL": "redis://bench-host:unused@127.0.0.1:1/0",
            "PYTHONPATH": str(ROOT),
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", AGENT],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the agent failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Docker volumes -------------------------------------------------------------------------


def docker_client() -> Any:
    import docker

    return docker.from_env()


def new_volume(name: str, client: Any = None) -> Path:
    volume = (client or docker_client()).volumes.create(name, labels={LABEL: LABEL_VALUE})
    return Path(volume.attrs["Mountpoint"])


def remove_volumes(client: Any = None) -> None:
    for volume in (client or docker_client()).volumes.list(
        filters={"label": f"{LABEL}={LABEL_VALUE}"}
    ):
        volume.remove(force=True)


def other_engine() -> Any:
    """A second Docker engine of this run's own: tests/multihost.py's SecondEngine (own data
    root under /var/tmp, exec root, socket, bridge; no images needed: the agent writes the
    volume at its Mountpoint). Stopped and its folders removed by ``_tear_down``."""
    from tests.multihost import SecondEngine, _free_range

    tag = uuid.uuid4().hex[:8]
    engine = SecondEngine(
        root=Path(tempfile.mkdtemp(prefix=f"lattice-engine-{tag}-", dir="/var/tmp")),
        run=Path(f"/run/lat-{tag}"),
        bridge=f"latb{tag[:8]}",
        range_n=_free_range(),
    )
    engine.make_bridge()
    engine.start()
    return engine


def file_paths(files: int) -> list[str]:
    return [f"d{i % 16:02d}/e{(i // 16) % 8}/f{i:05d}.bin" for i in range(files)]


def write_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(PIECE, left))
            out.write(piece)
            left -= len(piece)
    os.chown(path, 1000, 1000)


def make_data(folder: Path, total: int, files: int) -> list[str]:
    paths = file_paths(files)
    for path in paths:
        write_file(folder / path, total // files)
    for dirpath, _, _ in os.walk(folder):
        os.chown(dirpath, 1000, 1000)
    return paths


def change(folder: Path, paths: list[str], share: float, round_: int, step: int) -> int:
    """Rewrite ``share`` of the files (a different stride each time) with new bytes."""
    count = max(1, round(len(paths) * share))
    stride = len(paths) // count
    offset = (round_ * 2 + step) % stride
    for path in paths[offset::stride][:count]:
        write_file(folder / path, (folder / path).stat().st_size)
    return count


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


# --- The control plane ----------------------------------------------------------------------


def make_notebook() -> dict[str, Any]:
    """A team, a stopped notebook whose volume is on host "bench-..." (Docker)."""
    from apps.accounts.models import User
    from apps.core.tenancy import team_scope
    from apps.machines.models import Host, MachineType
    from apps.notebooks.models import Notebook
    from apps.notebooks.services import notebook_create
    from apps.teams.services import team_create

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}@example.com", "x" * 16)
    team = team_create(actor=user, name=f"Bench {uuid.uuid4().hex[:6]}")
    host = Host.objects.create(
        name=f"bench-{uuid.uuid4().hex[:6]}", status=Host.Status.READY, runtime="docker"
    )
    with team_scope(team):
        notebook = notebook_create(
            team=team,
            actor=user,
            name="Bench snapshots",
            template="scipy",
            machine_type=MachineType.objects.get(slug="cpu-small"),
        )
        Notebook.objects.for_team(team).filter(pk=notebook.pk).update(volume_host=host)
        notebook.refresh_from_db()
    return {"user": user, "team": team, "notebook": notebook, "host": host}


def forget(setup: dict[str, Any], media: Path) -> None:
    """Every snapshot and stored blob gone: the next snapshot sends every byte."""
    from apps.core.tenancy import unscoped
    from apps.datasets.models import Blob
    from apps.notebooks.models import NotebookSnapshot

    with unscoped():
        NotebookSnapshot.objects.filter(team=setup["team"]).delete()
        Blob.objects.all().delete()
    shutil.rmtree(media / "datasets", ignore_errors=True)


def snapshot(setup: dict[str, Any], volume: str, cache: Path) -> dict[str, Any]:
    from apps.core.tenancy import team_scope
    from apps.notebooks import snapshots
    from apps.notebooks.models import NotebookSnapshot

    os.sync()
    queued: list[tuple[Any, ...]] = []
    snapshots.agent_snapshot.apply_async = lambda args, **_: queued.append(tuple(args))  # type: ignore[method-assign,assignment]
    start = time.perf_counter()
    with team_scope(setup["team"]):
        taken = snapshots.snapshot_take(
            notebook=setup["notebook"], reason=NotebookSnapshot.Reason.MANUAL
        )
    if taken is None or not queued:
        raise RuntimeError("no snapshot was queued")
    _, name, url, token = queued[-1]
    answer = agent(
        {"kind": "snapshot", "volume": name, "url": url, "ticket": token, "cache": str(cache)}
    )
    wall = time.perf_counter() - start
    with team_scope(setup["team"]):
        taken = NotebookSnapshot.objects.for_team(setup["team"]).get(pk=taken.pk)
    if taken.state != NotebookSnapshot.State.READY:
        raise RuntimeError(f"the snapshot ended {taken.state}: {taken.failure} ({answer})")
    return {
        "seconds": answer["seconds"],
        "wall_s": wall,
        "sent": answer["sent"]["bytes"],
        "chunks": answer["sent"]["chunks"],
        "agent_cpu_s": answer["cpu_s"],
        "snapshot": taken.pk,
    }


def restore(
    setup: dict[str, Any], snapshot_pk: int, target: str, docker_host: str | None
) -> dict[str, Any]:
    from apps.core.tenancy import team_scope
    from apps.notebooks.models import NotebookSnapshot
    from apps.notebooks.snapshots import snapshot_restore_plan

    os.sync()
    start = time.perf_counter()
    with team_scope(setup["team"]):
        taken = NotebookSnapshot.objects.for_team(setup["team"]).get(pk=snapshot_pk)
        plan = snapshot_restore_plan(taken, volume=target, lifetime=timedelta(hours=1))
    answer = agent({"kind": "restore", "restore": plan}, docker_host)
    wall = time.perf_counter() - start
    return {
        "seconds": answer["seconds"],
        "wall_s": wall,
        "bytes": plan["total"],
        "events": answer["events"],
        "agent_cpu_s": answer["cpu_s"],
    }


# --- Baselines ------------------------------------------------------------------------------


def tar(folder: Path, out: Path) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    subprocess.run(["tar", "-cf", str(out), "-C", str(folder), "."], check=True)
    seconds = time.perf_counter() - start
    size = out.stat().st_size
    out.unlink()
    return {"seconds": seconds, "bytes": size}


def copy(folder: Path, target: Path) -> float:
    os.sync()
    start = time.perf_counter()
    subprocess.run(["cp", "-a", f"{folder}/.", str(target)], check=True)
    return time.perf_counter() - start


# --- The run --------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The notebook-volume snapshot benchmark.")
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=2048)
    parser.add_argument("--changed", type=float, default=0.01, help="share of files rewritten")
    parser.add_argument("--runs", type=int, default=3, help="snapshot rounds")
    parser.add_argument("--restore-runs", type=int, default=3, help="of each, alternating")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="the work folder's")  # noqa: S108
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--other-engine",
        action="store_true",
        help="restore into volumes of a second Docker engine (tests/multihost.py's)",
    )
    parser.add_argument(
        "--restore-only",
        action="store_true",
        help="one full snapshot, untimed, then the restore rounds only",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()

    if os.geteuid() != 0:
        sys.exit("bench/snapshot runs as root (the agent reads volumes at their Mountpoint)")
    need = 4 * args.size_gib * GIB + GIB
    free = shutil.disk_usage(args.dir).free
    if free < need:
        sys.exit(f"{args.dir} has {free / GIB:.1f} GiB free; this needs {need / GIB:.1f} GiB")
    work = Path(tempfile.mkdtemp(prefix="lattice-bench-snapshot-", dir=args.dir))
    server_env = upload.configure(work, None)
    upload.bench_database(DATABASE)
    from django.conf import settings

    server = None
    engine = None
    load = [os.getloadavg()[0]]
    figures: dict[str, Any] = {}
    try:
        setup = make_notebook()
        volume = setup["notebook"].volume
        folder = new_volume(volume)
        started = time.perf_counter()
        paths = make_data(folder, round(args.size_gib * GIB), args.files)
        size = sum(listing(folder).values())
        print(
            f"volume {volume}: {len(paths)} files, {size} bytes, "
            f"written in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        server = common.WebServer(DATABASE, server_env)
        settings.LATTICE_INTERNAL_URL = server.url
        if args.restore_only:
            rows: dict[str, list[dict[str, Any]]] = {}
            changed, last = 0, snapshot(setup, volume, work / "stamps")["snapshot"]
        else:
            rows, changed, last = snapshot_rounds(args, setup, volume, folder, paths, work, load)
        if args.other_engine:
            engine = other_engine()
        restores = restore_rounds(args, setup, folder, last, load, engine)
        figures = report(args, size, changed, rows, restores, load)
    finally:
        if server is not None:
            server.close()
        remove_volumes()
        if engine is not None:
            from tests.multihost import _tear_down

            _tear_down(engine)
        common.drop_database(DATABASE)
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if figures:
        print(json.dumps(figures))


def snapshot_rounds(
    args: argparse.Namespace,
    setup: dict[str, Any],
    volume: str,
    folder: Path,
    paths: list[str],
    work: Path,
    load: list[float],
) -> tuple[dict[str, list[dict[str, Any]]], int, int]:
    """The tars and the three snapshots of each round; the rows, the files changed each
    time and the last snapshot's id."""
    media = work / "media"
    rows: dict[str, list[dict[str, Any]]] = {"tar": [], "full": [], "cached": [], "nocache": []}
    changed = 0
    for round_ in range(args.runs):
        print(f"snapshot round {round_ + 1}", file=sys.stderr)
        if round_ % 2 == 0:
            rows["tar"].append(tar(folder, work / "baseline.tar"))
        forget(setup, media)
        cache = work / "stamps"
        shutil.rmtree(cache, ignore_errors=True)
        rows["full"].append(snapshot(setup, volume, cache))
        changed = change(folder, paths, args.changed, round_, 0)
        rows["cached"].append(snapshot(setup, volume, cache))
        change(folder, paths, args.changed, round_, 1)
        rows["nocache"].append(snapshot(setup, volume, work / f"stamps-empty-{round_}"))
        if round_ % 2 == 1:
            rows["tar"].append(tar(folder, work / "baseline.tar"))
        load.append(os.getloadavg()[0])
    return rows, changed, rows["nocache"][-1]["snapshot"]


def restore_rounds(
    args: argparse.Namespace,
    setup: dict[str, Any],
    folder: Path,
    last: int,
    load: list[float],
    engine: Any,
) -> dict[str, list[dict[str, Any]]]:
    """The last snapshot (what the volume holds now) restored into fresh volumes,
    alternating with cp -a; each result checked against the source."""
    source = listing(folder)
    restores: dict[str, list[dict[str, Any]]] = {"cp": [], "restore": []}
    for round_ in range(args.restore_runs):
        order = ("cp", "restore") if round_ % 2 == 0 else ("restore", "cp")
        for kind in order:
            print(f"restore round {round_ + 1}: {kind}", file=sys.stderr)
            name = f"lattice-bench-restore-{uuid.uuid4().hex[:8]}"
            client = engine.client if engine is not None else docker_client()
            target = new_volume(name, client)
            if kind == "cp":
                restores["cp"].append({"seconds": copy(folder, target)})
            else:
                url = engine.url if engine is not None else None
                restores["restore"].append(restore(setup, last, name, url))
            if listing(target) != source:
                raise RuntimeError(f"{kind}: the restored volume differs from the source")
            client.volumes.get(name).remove(force=True)
        load.append(os.getloadavg()[0])
    return restores


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(
    args: argparse.Namespace,
    size: int,
    changed: int,
    rows: dict[str, list[dict[str, Any]]],
    restores: dict[str, list[dict[str, Any]]],
    load: list[float],
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "size_gib": args.size_gib,
        "bytes": size,
        "files": args.files,
        "changed_files": changed,
        "runs": args.runs,
        "restore_runs": args.restore_runs,
        "load": [round(x, 1) for x in load],
        "restore_engine": "second" if args.other_engine else "same",
    }
    if rows:
        report_snapshots(args, size, changed, rows, figures)
    report_restores(args, size, restores, figures)
    return figures


def report_snapshots(
    args: argparse.Namespace,
    size: int,
    changed: int,
    rows: dict[str, list[dict[str, Any]]],
    figures: dict[str, Any],
) -> None:
    print(
        f"snapshots of a {size / GIB:.2f} GiB Docker volume ({args.files} files), "
        f"{changed} files ({args.changed:.0%}) rewritten between snapshots; medians of "
        f"{args.runs} rounds; baseline tar -cf of the volume's Mountpoint into a file on "
        f"the same disk"
    )
    print(f"  {'what':<36} {'agent s':>8} {'wall s':>8} {'MiB sent':>9} {'/ tar':>6}")
    tar_s, tar_b = med(rows["tar"], "seconds"), med(rows["tar"], "bytes")
    print(f"  {'tar of the whole volume':<36} {'':>8} {tar_s:8.2f} {tar_b / MIB:9.1f}")
    figures["tar_s"] = [round(r["seconds"], 3) for r in rows["tar"]]
    figures["tar_bytes"] = tar_b
    words = {
        "full": "first snapshot (everything sent)",
        "cached": "second snapshot, stamp cache on",
        "nocache": "second snapshot, no stamp cache",
    }
    for kind, label in words.items():
        agent_s, wall_s, sent = (
            med(rows[kind], "seconds"),
            med(rows[kind], "wall_s"),
            med(rows[kind], "sent"),
        )
        print(
            f"  {label:<36} {agent_s:8.2f} {wall_s:8.2f} {sent / MIB:9.1f} {agent_s / tar_s:6.2f}"
        )
        figures[f"{kind}_s"] = [round(r["seconds"], 3) for r in rows[kind]]
        figures[f"{kind}_wall_s"] = [round(r["wall_s"], 3) for r in rows[kind]]
        figures[f"{kind}_sent"] = [r["sent"] for r in rows[kind]]
        figures[f"{kind}_agent_cpu_s"] = [round(r["agent_cpu_s"], 1) for r in rows[kind]]
        figures[f"{kind}_vs_tar"] = round(agent_s / tar_s, 3)


def report_restores(
    args: argparse.Namespace,
    size: int,
    restores: dict[str, list[dict[str, Any]]],
    figures: dict[str, Any],
) -> None:
    where = "a second Docker engine" if args.other_engine else "the same engine"
    cp_s = med(restores["cp"], "seconds")
    rs_s, rs_wall = med(restores["restore"], "seconds"), med(restores["restore"], "wall_s")
    print(
        f"restore of that snapshot ({size / GIB:.2f} GiB) into a fresh volume on {where} "
        f"vs cp -a of the source Mountpoint into a fresh volume's; medians of "
        f"{args.restore_runs} alternating"
    )
    print(
        f"  cp -a {cp_s:.2f} s; restore {rs_s:.2f} s (agent), {rs_wall:.2f} s with the plan "
        f"and the agent's start; ratio (agent) {rs_s / cp_s:.2f}"
    )
    figures.update(
        {
            "cp_s": [round(r["seconds"], 3) for r in restores["cp"]],
            "restore_s": [round(r["seconds"], 3) for r in restores["restore"]],
            "restore_wall_s": [round(r["wall_s"], 3) for r in restores["restore"]],
            "restore_agent_cpu_s": [round(r["agent_cpu_s"], 1) for r in restores["restore"]],
            "restore_vs_cp": round(rs_s / cp_s, 3),
        }
    )


if __name__ == "__main__":
    main()
