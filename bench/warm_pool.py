"""bench/warm_pool: a warm container's claim -> ready against plain `docker run` -> ready.

Runtime level (issue 19's warm pool, the Docker side), no database: the Docker runtime
(apps.runtimes.docker) on this host's engine, the local notebook image
(images/notebook/build-local.sh, built if missing) or --image.

Per round, alternating (the order flips each round):

- Pool: a warm container is filled (``pool_fill``) and waited for (``pool_ready``)
  *before* the clock starts, as the control plane keeps them ready; then t0, the
  ``pool_claim`` of a session spec (its notebook volume and storage volume, a base URL,
  a token, an environment), until Jupyter answers ``<base>/api/status`` with the
  session's token (polled every 5 ms): t1.
- Plain: t0, the docker SDK's ``containers.run`` of the same image, the same Jupyter
  command line (the session's base URL) and token, the same limits, a volume at
  /notebooks, until Jupyter answers ``<base>/api/status`` with the token: t1.

Prints each round, the p50 of each and their ratio (goal: pool <= 0.3x plain), then one
line of JSON. Everything made is removed (containers, volumes, the pool folder's mounts).
Needs root (the pool's mounts); the pool folder is a throw-away one under /tmp
(--pool-dir to choose), so two runs on one host do not meet.

    .venv/bin/python bench/warm_pool.py [--runs 7] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def configure(pool_dir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("LATTICE_LOG_LEVEL", "WARNING")
    os.environ["LATTICE_POOL_DIR"] = str(pool_dir)
    import django

    django.setup()


BASE = "/nb/4242/"
POLL = 0.005


def wait_answers(url: str, token: str, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            response = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=2)
            if response.status_code == 200:
                return time.perf_counter()
        time.sleep(POLL)
    raise SystemExit(f"{url} never answered")


def main() -> None:  # noqa: PLR0915 - one bench, step by step
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--image", default="")
    parser.add_argument("--pool-dir", default="")
    parser.add_argument("--vcpus", type=float, default=1.0)
    args = parser.parse_args()
    pool_dir = Path(args.pool_dir or tempfile.mkdtemp(prefix="lattice-bench-pool-")) / "pool"
    configure(pool_dir)
    from apps.runtimes.pool import pool_command

    jupyter = pool_command()  # what the control plane gives a warm container

    import docker
    from django.conf import settings

    from apps.runtimes.base import PoolSpec, Spec
    from apps.runtimes.docker import DockerRuntime
    from apps.runtimes.pool import mounts_under

    image = (
        args.image
        or subprocess.run(
            ["bash", str(ROOT / "images/notebook/build-local.sh")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    client = docker.from_env(timeout=120)
    runtime = DockerRuntime(client)
    if not runtime.pool_supported():
        raise SystemExit("this host cannot keep warm containers (root beside the engine)")
    run_id = uuid.uuid4().hex[:6]
    made_volumes: list[str] = []
    made_containers: list[str] = []
    limits = {"vcpus": args.vcpus, "memory_bytes": 2 * 1024**3, "pids_limit": 1024}
    rows: dict[str, list[float]] = {"pool": [], "plain": []}
    try:
        for i in range(args.runs):
            order = ["pool", "plain"] if i % 2 == 0 else ["plain", "pool"]
            for kind in order:
                token = secrets.token_hex(16)
                name = f"bench-{run_id}-{kind}-{i}"
                volume = f"lattice-bench-{run_id}-{kind}-{i}"
                made_volumes.append(volume)
                if kind == "pool":
                    pool_name = f"bench-{run_id}-warm-{i}"
                    made_containers += [pool_name, name]
                    state = runtime.pool_fill(
                        PoolSpec(
                            name=pool_name,
                            image=image,
                            command=jupyter,
                            token=secrets.token_hex(16),
                            labels={"installation": settings.LATTICE_INSTALLATION},
                            **limits,
                        )
                    )
                    deadline = time.monotonic() + 600
                    while not runtime.pool_ready(state) and time.monotonic() < deadline:
                        time.sleep(0.1)
                    storage = f"{volume}-storage"
                    made_volumes.append(storage)
                    spec = Spec(
                        name=name,
                        image=image,
                        command=[*jupyter, f"--ServerApp.base_url={BASE}"],
                        env={"JUPYTER_TOKEN": token, "LATTICE_BENCH": "1"},
                        volumes={volume: "/notebooks", storage: "/storage"},
                        labels={"installation": settings.LATTICE_INSTALLATION},
                        **limits,
                    )
                    t0 = time.perf_counter()
                    claimed = runtime.pool_claim(state, spec)
                    t1 = wait_answers(f"http://127.0.0.1:{claimed['port']}{BASE}api/status", token)
                    runtime.stop(claimed, timeout=5)
                else:
                    made_containers.append(name)
                    command = [
                        part.replace("{ip}", "0.0.0.0")  # noqa: S104 - in the container
                        .replace("{port}", "8888")
                        .replace("{mount:/notebooks}", "/notebooks")
                        for part in [*jupyter, f"--ServerApp.base_url={BASE}"]
                    ]
                    t0 = time.perf_counter()
                    container = client.containers.run(
                        image,
                        command,
                        name=f"lattice-{name}",
                        detach=True,
                        environment={"JUPYTER_TOKEN": token},
                        user="1000:1000",
                        nano_cpus=int(args.vcpus * 1e9),
                        mem_limit=limits["memory_bytes"],
                        pids_limit=limits["pids_limit"],
                        init=True,
                        ports={"8888/tcp": ("127.0.0.1", None)},
                        volumes={volume: {"bind": "/notebooks", "mode": "rw"}},
                        labels={"lattice.bench": "warm_pool"},
                    )
                    container.reload()
                    port = container.attrs["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
                    t1 = wait_answers(f"http://127.0.0.1:{port}{BASE}api/status", token)
                    container.remove(force=True)
                rows[kind].append(t1 - t0)
                print(f"round {i + 1} {kind:5}: {1000 * (t1 - t0):8.0f} ms", flush=True)
    finally:
        for name in made_containers:
            with contextlib.suppress(Exception):
                container = client.containers.get(DockerRuntime.container_name(name))
                runtime._remove(container)
        for volume in made_volumes:
            with contextlib.suppress(Exception):
                client.volumes.get(volume).remove(force=True)
        for point in mounts_under(pool_dir.parent):
            subprocess.run(["umount", "-l", point], check=False)
        if not args.pool_dir and not mounts_under(pool_dir.parent):
            shutil.rmtree(pool_dir.parent, ignore_errors=True)
    pool_p50 = statistics.median(rows["pool"])
    plain_p50 = statistics.median(rows["plain"])
    load = os.getloadavg()
    print(f"\nimage {image}, {args.runs} rounds, load {load[0]:.1f}")
    print(f"{'claim -> ready (pool)':32} p50 {1000 * pool_p50:8.0f} ms")
    print(f"{'docker run -> ready (plain)':32} p50 {1000 * plain_p50:8.0f} ms")
    print(f"{'ratio pool / plain':32} {pool_p50 / plain_p50:8.3f}   (goal <= 0.3)")
    print(
        json.dumps(
            {
                "image": image,
                "runs": args.runs,
                "pool_ms": [round(1000 * v, 1) for v in rows["pool"]],
                "plain_ms": [round(1000 * v, 1) for v in rows["plain"]],
                "pool_p50_ms": round(1000 * pool_p50, 1),
                "plain_p50_ms": round(1000 * plain_p50, 1),
                "ratio": round(pool_p50 / plain_p50, 4),
                "load": load[0],
            }
        )
    )


if __name__ == "__main__":
    main()
