"""bench/model_save: save a running notebook's folder as a model version, against a plain copy.

The real path, in real processes: the web tier is a uvicorn subprocess (as in production:
bench/start_latency.py WEB_COMMAND) serving config.asgi:application on a throw-away
PostgreSQL database ``lattice_bench_model_save`` (settings config.settings.local, local
storage in a fresh MEDIA_ROOT, no Redis), and the host's agent is a process of its own with
the agent's settings (config.settings.agent: no database, no Redis, no storage
credentials) running apps.machines.savefolder.run_save, what the ``agent.save_folder``
Celery task runs (Celery's hop from the control plane to the host's queue is not
measured: the bench hands the queued task's arguments to the agent process). The notebook
is a workload of the local process runtime whose /notebooks holds the folder: ``--files``
files of random bytes, ``--size-gib`` in all.

Timed: from the save's start (apps.notebooks.saves.notebook_save_model, what the page and
API call) to the agent's run_save returning with the version made: both passes (read and
hash; read again, hash again, send the chunks), the web tier's chunk checks and the
completion (every blob hashed whole again and moved into place). The baseline is
shutil.copytree of the same folder into MEDIA_ROOT/baseline: the same bytes into the same
disk. Neither is fsynced; os.sync() runs, untimed, before each. The page cache cannot be
dropped here, so both read warm. Baseline and save alternate (the order swapped each
round); medians are compared. Between saves the model and its blobs are deleted, so each
save sends every byte.

Memory: the agent's peak RSS is its own VmHWM (/proc/self/status) when run_save returns;
the web process's RSS is sampled every 50 ms during each save (its value before the first
save and the peak), and its VmHWM read at the end.

    eval "$(bash scripts/services.sh 2>/dev/null)"
    .venv/bin/python bench/model_save.py [--size-gib 1] [--files 8] [--runs 2] [--keep]

Prints a table, then one line of JSON at the end of stdout.
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
from pathlib import Path
from typing import Any

# Its web server, database and sampler helpers (this folder is on sys.path as a script).
import start_latency as common
import upload

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 1024**2
GIB = 1024**3
DATABASE = "lattice_bench_model_save"
VOLUME = "vol-bench"
FOLDER = "model"

# The host's agent: run_save with the agent's settings, in a process of its own; the
# ticket comes on stdin (not in the process list).
AGENT = """
import json, sys, time
import django
django.setup()
from apps.machines.savefolder import run_save
from apps.runtimes.process import LocalProcessRuntime
job = json.loads(sys.stdin.read())
start = time.perf_counter()
result = run_save(
    LocalProcessRuntime(job["root"]), job["state"], job["folder"], job["url"], job["ticket"]
)
seconds = time.perf_counter() - start
status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
times = __import__("os").times()
print(json.dumps({
    "result": result,
    "seconds": seconds,
    "vmhwm": int(status["VmHWM"].split()[0]) * 1024,
    "cpu_s": times.user + times.system,
}))
"""


def vmhwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_database() -> None:
    from django.conf import settings
    from django.db import connection

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = DATABASE
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)


def make_notebook(work: Path) -> dict[str, Any]:
    """A team, its running notebook on a host "bench" (the local process runtime), and the
    folder its /notebooks holds."""
    from apps.accounts.models import User
    from apps.core.tenancy import team_scope
    from apps.machines.models import Host, MachineType
    from apps.notebooks.models import NotebookSession, Status
    from apps.notebooks.services import notebook_create
    from apps.runtimes.base import Spec
    from apps.runtimes.process import LocalProcessRuntime
    from apps.teams.services import team_create

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}@example.com", "x" * 16)
    team = team_create(actor=user, name=f"Bench {uuid.uuid4().hex[:6]}")
    runtime = LocalProcessRuntime(work / "runtime")
    state = runtime.start(
        Spec(
            name="nb-bench",
            image="",
            command=[sys.executable, "-c", "import time; time.sleep(86400)"],
            volumes={VOLUME: "/notebooks"},
        )
    )
    host = Host.objects.create(
        name=f"bench-{uuid.uuid4().hex[:6]}", status=Host.Status.READY, runtime="process"
    )
    with team_scope(team):
        notebook = notebook_create(
            team=team,
            actor=user,
            name="Bench trainer",
            template="scipy",
            machine_type=MachineType.objects.get(slug="cpu-small"),
        )
        notebook.status = Status.RUNNING
        notebook.save(update_fields=["status"])
        NotebookSession.objects.for_team(team).create(
            team=team,
            notebook=notebook,
            machine_type=notebook.machine_type,
            template="scipy",
            image="lattice/notebook",
            status=Status.RUNNING,
            host=host,
            runtime_state=state,
            jupyter_token=uuid.uuid4().hex,
        )
    return {
        "user": user,
        "team": team,
        "notebook": notebook,
        "runtime": runtime,
        "state": state,
        "folder": work / "runtime" / "volumes" / VOLUME / FOLDER,
    }


def forget(setup: dict[str, Any], media: Path) -> None:
    """Delete the team's models and every stored blob, so the next save sends every byte."""
    from apps.core.tenancy import unscoped
    from apps.datasets.models import Blob
    from apps.models.models import Model

    with unscoped():
        Model.objects.filter(team=setup["team"]).delete()
        Blob.objects.all().delete()
    shutil.rmtree(media / "datasets", ignore_errors=True)


def baseline(folder: Path, media: Path) -> float:
    target = media / "baseline"
    shutil.rmtree(target, ignore_errors=True)
    os.sync()
    start = time.perf_counter()
    shutil.copytree(folder, target)
    elapsed = time.perf_counter() - start
    shutil.rmtree(target)
    return elapsed


def lattice(setup: dict[str, Any], server: common.WebServer, media: Path) -> dict[str, Any]:
    """One save from the notebook, end to end: its seconds, the agent's and web's memory."""
    from apps.core.tenancy import team_scope
    from apps.models.models import ModelVersion, SaveTicket
    from apps.notebooks import saves

    forget(setup, media)
    os.sync()
    queued: list[tuple[Any, ...]] = []
    saves.agent_save_folder.apply_async = lambda args, **_: queued.append(tuple(args))  # type: ignore[method-assign,assignment]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TMPDIR"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.agent",
            "LATTICE_AGENT_BROKER_URL": "redis://bench-host:unused@127.0.0.1:1/0",
            "PYTHONPATH": str(ROOT),
        }
    )
    with upload.Sampler(server.process.pid) as sampler:
        start = time.perf_counter()
        with team_scope(setup["team"]):
            ticket = saves.notebook_save_model(
                team=setup["team"],
                actor=setup["user"],
                notebook=setup["notebook"],
                folder=FOLDER,
                model_name=f"Bench {uuid.uuid4().hex[:6]}",
            )
        _, state, folder, url, token = queued[-1]
        job = {
            "root": str(setup["runtime"].root),
            "state": state,
            "folder": folder,
            "url": url,
            "ticket": token,
        }
        agent = subprocess.run(
            [sys.executable, "-c", AGENT],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            check=False,
        )
        wall = time.perf_counter() - start
    if agent.returncode != 0:
        raise RuntimeError(f"the agent failed: {agent.stderr[-3000:]}")
    answer = json.loads(agent.stdout.strip().splitlines()[-1])
    with team_scope(setup["team"]):
        ticket = SaveTicket.objects.get(pk=ticket.pk)
        version = ModelVersion.objects.get(pk=ticket.version_id)
    if ticket.result != SaveTicket.Result.READY or version.status != ModelVersion.Status.READY:
        raise RuntimeError(f"the save ended {ticket.result}: {ticket.failure} ({answer})")
    return {
        "seconds": answer["seconds"],
        "wall_s": wall,
        "agent_peak_rss": answer["vmhwm"],
        "agent_cpu_s": answer["cpu_s"],
        "web_rss_before": sampler.before,
        "web_rss_peak": sampler.peak,
        "web_cpu_s": sampler.cpu,
        "files": version.file_count,
        "bytes": version.total_size,
    }


def make_data(folder: Path, total: int, files: int) -> int:
    upload.make_data(folder, total, files)
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description="The save-from-notebook benchmark.")
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2, help="of each, alternating")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="the work folder's")  # noqa: S108
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    need = 3.5 * args.size_gib * GIB + GIB
    free = shutil.disk_usage(args.dir).free
    if free < need:
        sys.exit(f"{args.dir} has {free / GIB:.1f} GiB free; this needs {need / GIB:.1f} GiB")
    work = Path(tempfile.mkdtemp(prefix="lattice-bench-model-save-", dir=args.dir))
    server_env = upload.configure(work, None)
    bench_database()
    from django.conf import settings

    media = work / "media"
    setup: dict[str, Any] = {}
    server = None
    try:
        setup = make_notebook(work)
        size = make_data(setup["folder"], round(args.size_gib * GIB), args.files)
        server = common.WebServer(DATABASE, server_env)
        settings.LATTICE_INTERNAL_URL = server.url
        base: list[float] = []
        ours: list[dict[str, Any]] = []
        for round_ in range(args.runs):
            order = ("baseline", "lattice") if round_ % 2 == 0 else ("lattice", "baseline")
            for kind in order:
                print(f"round {round_ + 1}: {kind}", file=sys.stderr)
                if kind == "baseline":
                    base.append(baseline(setup["folder"], media))
                else:
                    ours.append(lattice(setup, server, media))
        web_hwm = vmhwm(server.process.pid)
    finally:
        if server is not None:
            server.close()
        if setup:
            setup["runtime"].stop(setup["state"], timeout=3)
        common.drop_database(DATABASE)
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(args, size, base, ours, web_hwm)


def report(
    args: argparse.Namespace,
    size: int,
    base: list[float],
    ours: list[dict[str, Any]],
    web_hwm: int,
) -> None:
    base_s = statistics.median(base)
    ours_s = statistics.median(r["seconds"] for r in ours)
    figures = {
        "size_gib": args.size_gib,
        "bytes": size,
        "files": args.files,
        "runs": args.runs,
        "baseline_s": [round(s, 3) for s in base],
        "save_s": [round(r["seconds"], 3) for r in ours],
        "save_wall_s": [round(r["wall_s"], 3) for r in ours],
        "baseline_mib_s": round(size / MIB / base_s, 1),
        "save_mib_s": round(size / MIB / ours_s, 1),
        "ratio": round(base_s / ours_s, 3),
        "agent_peak_rss_mib": round(max(r["agent_peak_rss"] for r in ours) / MIB, 1),
        "agent_cpu_s": [round(r["agent_cpu_s"], 1) for r in ours],
        "web_rss_before_mib": round(ours[0]["web_rss_before"] / MIB, 1),
        "web_rss_peak_mib": round(max(r["web_rss_peak"] for r in ours) / MIB, 1),
        "web_vmhwm_mib": round(web_hwm / MIB, 1),
        "web_cpu_s": [round(r["web_cpu_s"], 1) for r in ours],
        "load_before": os.getloadavg()[0],
    }
    print(
        f"save a {args.size_gib:g} GiB folder ({args.files} files) from a running notebook "
        f"(local process runtime, uvicorn, local storage) vs shutil.copytree into the same "
        f"storage folder; medians of {args.runs} alternating runs; page cache warm for both"
    )
    print(
        f"  copy {base_s:.2f} s ({figures['baseline_mib_s']:.0f} MiB/s); save {ours_s:.2f} s "
        f"({figures['save_mib_s']:.0f} MiB/s); ratio {figures['ratio']:.2f}"
    )
    print(
        f"  agent peak RSS {figures['agent_peak_rss_mib']:.0f} MiB; web RSS "
        f"{figures['web_rss_before_mib']:.0f} MiB before, {figures['web_rss_peak_mib']:.0f} MiB "
        f"peak during saves (VmHWM {figures['web_vmhwm_mib']:.0f} MiB)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
