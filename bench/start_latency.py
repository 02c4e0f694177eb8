"""bench/start_latency (first half): start-to-ready of a notebook container.

The Docker backend (apps.runtimes.docker: labels, limits, volume, security
options) against plain `docker run` of the same image and command, in the
same run, alternating, each timed from the call until Jupyter Server answers
/api/status with 200. Reports the medians and their ratio (goal: <= 1.15).
Needs root and Docker; builds the image with images/notebook/build-local.sh.

    python bench/start_latency.py [--runs 7]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

import docker  # noqa: E402

from apps.runtimes.base import Spec  # noqa: E402
from apps.runtimes.docker import DockerRuntime  # noqa: E402

COMMAND = ["jupyter", "server", "--ip=0.0.0.0", "--port=8888", "--no-browser"]


def wait_ready(port: int, token: str, timeout: float = 120.0) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/status",
        headers={"Authorization": f"token {token}"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    json.load(response)
                    return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("Jupyter Server did not answer in time")


def through_backend(client: docker.DockerClient, image: str) -> float:
    runtime = DockerRuntime(client)
    token = secrets.token_hex(16)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    spec = Spec(
        name=name,
        image=image,
        command=COMMAND,
        env={"JUPYTER_TOKEN": token},
        vcpus=2,
        memory_bytes=2 * 1024**3,
        volumes={f"lattice-bench-{name}": "/notebooks"},
    )
    started = time.perf_counter()
    state = runtime.start(spec)
    wait_ready(state["port"], token)
    elapsed = time.perf_counter() - started
    runtime.stop(state, timeout=5)
    with contextlib.suppress(docker.errors.NotFound):
        client.volumes.get(f"lattice-bench-{name}").remove(force=True)
    return elapsed


def plain_docker_run(client: docker.DockerClient, image: str) -> float:
    token = secrets.token_hex(16)
    name = f"lattice-bench-plain-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "-e",
            f"JUPYTER_TOKEN={token}",
            "-p",
            "127.0.0.1::8888",
            image,
            *COMMAND,
        ],
        check=True,
        capture_output=True,
    )
    port = int(client.containers.get(name).ports["8888/tcp"][0]["HostPort"])
    wait_ready(port, token)
    elapsed = time.perf_counter() - started
    subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    build = subprocess.run(
        ["bash", str(ROOT / "images" / "notebook" / "build-local.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    image = build.stdout.strip().splitlines()[-1]
    client = docker.from_env()
    # One of each first, unmeasured: page cache and Python's bytecode warm up.
    through_backend(client, image)
    plain_docker_run(client, image)
    backend, plain = [], []
    for _ in range(args.runs):
        backend.append(through_backend(client, image))
        plain.append(plain_docker_run(client, image))
    b, p = statistics.median(backend), statistics.median(plain)
    print(f"image: {image}, {args.runs} runs each, alternating")
    print(f"plain docker run + ready:   median {p:.2f} s  ({min(plain):.2f} to {max(plain):.2f})")
    print(
        f"Docker backend + ready:     median {b:.2f} s  ({min(backend):.2f} to {max(backend):.2f})"
    )
    print(f"ratio backend / plain: {b / p:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
