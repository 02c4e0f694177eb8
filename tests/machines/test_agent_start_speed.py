"""What the agent does to start workloads quickly: how many tasks it runs at once (from the
host's cores, unless set), and its readiness wait looking again as soon as the workload
prints, not at its next poll. The readiness test runs a real HTTP server as a workload of the
process runtime, and follows its output through the runtime, as the log shipper does."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from apps.machines import agent
from apps.machines.agent import _wait_ready, agent_concurrency
from apps.runtimes.base import Spec
from apps.runtimes.process import LocalProcessRuntime


def test_agent_concurrency_follows_the_cores_within_bounds(settings):
    settings.LATTICE_AGENT_CONCURRENCY = 0

    assert agent_concurrency(0) == agent.AGENT_MIN_CONCURRENCY
    assert agent_concurrency(2) == 2 * agent.AGENT_THREADS_PER_CORE
    assert agent_concurrency(8) == 8 * agent.AGENT_THREADS_PER_CORE
    assert agent_concurrency(1000) == agent.AGENT_MAX_CONCURRENCY
    assert agent_concurrency() >= agent.AGENT_MIN_CONCURRENCY  # this machine's own cores


def test_the_setting_overrides_the_cores(settings):
    settings.LATTICE_AGENT_CONCURRENCY = 3

    assert agent_concurrency(64) == 3


# Prints a few lines, waits, then listens and says so, as Jupyter does.
SERVER = """
import http.server, sys, time
print("starting", flush=True)
time.sleep(1.0)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("listening", flush=True)
server.serve_forever()
"""


@pytest.fixture
def workload(tmp_path):
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    spec = Spec(name="readiness-test", image="", command=[sys.executable, str(script), "{port}"])
    state = runtime.start(spec)
    yield runtime, spec, state
    runtime.stop(state, timeout=2)


def _follow(runtime: Any, state: dict[str, Any], printed: threading.Event) -> None:
    for _ in runtime.logs(state, follow=True):
        printed.set()


def test_the_readiness_wait_looks_again_when_the_workload_prints(workload, monkeypatch):
    runtime, spec, state = workload
    # Polls far apart: only the printed line can make the wait see the server in time.
    monkeypatch.setattr(agent, "_QUICK_POLL", 30.0)
    monkeypatch.setattr(agent, "_SLOW_POLL", 30.0)
    printed = threading.Event()
    threading.Thread(target=_follow, args=(runtime, state, printed), daemon=True).start()
    events: list[tuple[str, dict[str, Any]]] = []
    began = time.monotonic()

    _wait_ready(
        runtime,
        spec,
        state,
        {"ready_path": "/ready", "ready_timeout": 60},
        lambda event, **data: events.append((event, data)),
        printed=printed,
    )

    seconds = time.monotonic() - began
    assert [event for event, _ in events if event != "progress"] == ["ready"]
    assert 1.0 <= seconds < 5.0  # after the server's own second, long before a 30 s poll


def test_without_output_followed_the_wait_still_polls(workload, monkeypatch):
    runtime, spec, state = workload
    monkeypatch.setattr(agent, "_QUICK_POLL", 0.05)
    events: list[tuple[str, dict[str, Any]]] = []

    _wait_ready(
        runtime,
        spec,
        state,
        {"ready_path": "/ready", "ready_timeout": 60},
        lambda event, **data: events.append((event, data)),
    )

    assert [event for event, _ in events if event != "progress"] == ["ready"]
