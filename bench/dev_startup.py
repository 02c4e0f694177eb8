"""How long `make dev` takes from a fresh clone to a served login page.

Clones this checkout's HEAD into a temporary folder and runs `make dev` there
twice: first from nothing (virtual environment created, packages installed,
database migrated), then again with the environment in place (a restart). Each
run is timed until GET /accounts/login/ answers 200, then stopped with Ctrl-C
(SIGINT), as a person would. As the raw baseline in the same run, it also times
`python -m venv` + `pip install -e .` alone in a third folder, so the figure
shows what Lattice adds on top of installing its dependencies.

pip's download cache is shared with the machine (as it is for a person who
has installed Python packages before); pass --no-cache to measure from nothing.

    python bench/dev_startup.py [--port 8765] [--no-cache]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clone(into: Path) -> Path:
    target = into / "lattice"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def wait_for_login_page(url: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"make dev exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def time_make_dev(checkout: Path, port: int, env: dict[str, str]) -> float:
    url = f"http://127.0.0.1:{port}/accounts/login/"
    start = time.monotonic()
    process = subprocess.Popen(
        ["make", "dev", f"ADDR=127.0.0.1:{port}"],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        served = wait_for_login_page(url, process, timeout=900)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return served - start


def time_plain_install(folder: Path, env: dict[str, str]) -> float:
    checkout = clone(folder)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=checkout, check=True, env=env)
    subprocess.run(
        [".venv/bin/python", "-m", "pip", "install", "--quiet", "-e", "."],
        cwd=checkout,
        check=True,
        env=env,
    )
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-cache", action="store_true", help="run pip without its cache")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.pop("VIRTUAL_ENV", None)
    if args.no_cache:
        env["PIP_NO_CACHE_DIR"] = "1"

    with tempfile.TemporaryDirectory(prefix="lattice-bench-") as tmp:
        baseline = time_plain_install(Path(tmp) / "baseline", env)
        checkout = clone(Path(tmp))
        first = time_make_dev(checkout, args.port, env)
        again = time_make_dev(checkout, args.port, env)

    print(f"baseline: python -m venv + pip install -e .        {baseline:6.1f} s")
    print(f"make dev, fresh clone -> login page served (200)   {first:6.1f} s")
    print(f"make dev, second start -> login page served (200)  {again:6.1f} s")
    # pip's cache is warm for both; the order of the runs makes a second or two of noise.
    print(f"difference, make dev minus the plain install        {first - baseline:+6.1f} s")


if __name__ == "__main__":
    main()
