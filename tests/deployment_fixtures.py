"""Fixtures for deployment tests: model folders, the built-in model server run as a process,
and its image built on the real Docker engine.

- ``model_folder(folder, predict_source)``: a model version's folder holding ``predict.py``;
- ``serve(folder, concurrency=...)``: images/model-server/serve.py run as a subprocess on a
  free loopback port (a context manager giving its base URL and the process);
- ``model_server_image``: the model server's local image (images/model-server/build-local.sh,
  on the scipy template's image), built once per change of its inputs, found by its tag after.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
SERVE = REPO / "images" / "model-server" / "serve.py"


def model_folder(folder: Path, predict_source: str) -> Path:
    """``folder`` made, with ``predict_source`` (dedented) as its predict.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(textwrap.dedent(predict_source))
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(folder: Path, *, concurrency: int = 4, timeout: float = 10.0) -> Iterator[Served]:
    """serve.py on ``folder``, as a subprocess; yields once its port answers (its model may
    still be loading), and ends it after."""
    port = free_port()
    log = folder.parent / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                str(SERVE),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--model",
                str(folder),
                "--concurrency",
                str(concurrency),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve.py did not listen: {served.output()}")
            time.sleep(0.02)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_status(url: str, wanted: str, timeout: float = 15.0) -> dict[str, object]:
    """The health route's JSON once its status is ``wanted`` (AssertionError after timeout)."""
    deadline = time.monotonic() + timeout
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            body = httpx.get(f"{url}/health-check", timeout=2).json()
            if body.get("status") == wanted:
                return body
        time.sleep(0.05)
    raise AssertionError(f"still {body} after {timeout} s, not {wanted}")


@pytest.fixture(scope="session")
def model_server_image(scipy_image: str) -> str:
    """The built-in model server's local image (a minute the first time, on the scipy
    template's image; then found by the hash of its inputs)."""
    from tests.conftest import service_missing

    script = REPO / "images" / "model-server" / "build-local.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        service_missing(f"could not build the model server's image: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]
