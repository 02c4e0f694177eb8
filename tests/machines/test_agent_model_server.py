"""The agent's readiness wait for the built-in model server (options["health"] ==
"model-server"): its health route's own word, not any 200. Each test runs the real serve.py as
a workload of the process runtime, on a model folder of its own."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from typing import Any

import pytest
from docker.errors import NotFound

from apps.machines.agent import SETUP_ERROR_CHARS, _wait_ready
from apps.runtimes.base import Spec
from apps.runtimes.process import LocalProcessRuntime
from tests.deployment_fixtures import SERVE, model_folder

HEALTH = {"health": "model-server", "ready_timeout": 60}


@pytest.fixture
def run(tmp_path):
    """run(predict_source, options) -> (events, seconds): serve.py started as a process
    workload on a folder with that predict.py, then the agent's wait on it."""
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    states: list[dict[str, Any]] = []

    def run(source: str, options: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], float]:
        folder = model_folder(tmp_path / f"model-{len(states)}", source)
        spec = Spec(
            name=f"dp-test-{len(states)}",
            image="",
            command=[
                *(sys.executable, str(SERVE), "--host", "{ip}", "--port", "{port}"),
                *("--model", str(folder), "--concurrency", "2"),
            ],
        )
        state = runtime.start(spec)
        states.append(state)
        events: list[tuple[str, dict[str, Any]]] = []
        began = time.monotonic()
        _wait_ready(
            runtime, spec, state, options, lambda event, **data: events.append((event, data))
        )
        return events, time.monotonic() - began

    yield run
    for state in states:
        runtime.stop(state, timeout=2)


SLOW = """
    import time

    def setup():
        time.sleep(1.5)

    def predict(**inputs):
        return inputs
"""


def test_a_loading_model_says_loading_once_and_is_ready_only_after_setup(run):
    events, seconds = run(SLOW, HEALTH)

    assert [event for event, _ in events] == ["progress", "ready"]
    assert events[0][1]["phase"] == "loading"
    assert events[1][1]["endpoint"].startswith("http://127.0.0.1:")
    assert seconds >= 1.5  # not on the first answer of its port: only once setup() returned


def test_without_the_model_server_option_an_open_port_is_ready_at_once(run):
    # The contrast: a plain start with no ready path takes the open port (the model server
    # answers 503 STARTING meanwhile), which is why replicas of the built-in server ask for it.
    events, seconds = run(SLOW, {"ready_timeout": 60})

    assert [event for event, _ in events] == ["ready"]
    assert seconds < 1.5


def test_a_setup_that_raises_fails_the_start_at_once_with_its_error(run):
    events, seconds = run(
        """
        def setup():
            raise RuntimeError("the weights are not in the folder")

        def predict(**inputs):
            return 1
        """,
        HEALTH,
    )

    assert [event for event, _ in events][-1] == "failed"
    data = events[-1][1]
    assert data["setup_failed"] is True
    assert data["error"] == "RuntimeError: the weights are not in the folder"
    assert "the weights are not in the folder" in data["message"]
    assert "timeout" not in data
    assert seconds < 15  # far from the 60 s ready timeout


def test_a_long_setup_error_is_cut(run):
    events, _ = run(
        """
        def setup():
            raise ValueError("x" * 5000)

        def predict(**inputs):
            return 1
        """,
        HEALTH,
    )

    data = events[-1][1]
    assert data["setup_failed"] is True
    assert len(data["error"]) == SETUP_ERROR_CHARS
    assert data["error"].startswith("ValueError: xxx")


def test_a_model_that_never_loads_fails_at_the_timeout(run):
    events, seconds = run(
        """
        import time

        def setup():
            time.sleep(60)

        def predict(**inputs):
            return 1
        """,
        {"health": "model-server", "ready_timeout": 2},
    )

    assert [event for event, _ in events] == ["progress", "failed"]
    assert events[-1][1]["timeout"] is True
    assert "setup_failed" not in events[-1][1]
    assert 2 <= seconds < 10


@pytest.mark.docker
def test_a_replica_container_is_ready_only_once_loaded_and_fails_at_once_on_setup_failed(
    model_server_image, docker_client, tmp_path
):
    from apps.runtimes.docker import DockerRuntime
    from apps.runtimes.images import model_server_command

    runtime = DockerRuntime(docker_client)
    names: list[str] = []

    def start(source: str) -> tuple[list[tuple[str, dict[str, Any]]], float]:
        folder = model_folder(tmp_path / f"model-{len(names)}", source)
        folder.chmod(0o755)
        (folder / "predict.py").chmod(0o644)
        spec = Spec(
            name=f"dp-{uuid.uuid4().hex[:8]}",
            image=model_server_image,
            command=model_server_command(runtime.kind),
            port=8080,
            memory_bytes=512 * 1024**2,
            datasets=[{"name": "model", "key": "k", "source": str(folder), "path": "/model"}],
        )
        names.append(spec.name)
        state = runtime.start(spec)
        events: list[tuple[str, dict[str, Any]]] = []
        began = time.monotonic()
        _wait_ready(
            runtime, spec, state, HEALTH, lambda event, **data: events.append((event, data))
        )
        return events, time.monotonic() - began

    try:
        loaded, seconds = start(SLOW)
        failed, _ = start(
            "def setup():\n    raise OSError('disk gone')\n\ndef predict():\n    pass\n"
        )
    finally:
        for name in names:
            with contextlib.suppress(NotFound):
                docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)

    assert [event for event, _ in loaded] == ["progress", "ready"]
    assert loaded[0][1]["phase"] == "loading"
    assert seconds >= 1.5
    assert failed[-1][0] == "failed"
    assert failed[-1][1]["error"] == "OSError: disk gone"
