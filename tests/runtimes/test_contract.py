"""The runtime contract: the fake (for unit tests) and local processes (the embedded default)."""

from __future__ import annotations

import ast
import inspect
import sys
import time
import urllib.request

import psutil
import pytest

from apps.runtimes.base import Runtime, Spec
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.fake import FakeRuntime
from apps.runtimes.process import LocalProcessRuntime
from tests.helpers import wait_for


class TestFake:
    @pytest.fixture(autouse=True)
    def _reset(self):
        FakeRuntime.reset()
        yield
        FakeRuntime.reset()

    def spec(self, name="nb-1"):
        return Spec(name=name, image="lattice/notebook", command=["jupyter", "server"])

    def test_ok_is_ready_at_once_and_start_is_idempotent(self):
        runtime = FakeRuntime("ok")
        state = runtime.start(self.spec())

        assert runtime.start(self.spec()) == state
        assert runtime.poll(state) is None
        assert runtime.endpoint(state) == f"http://127.0.0.1:{state['port']}"
        assert len(runtime.list_managed()) == 1

    def test_slow_becomes_ready_after_some_polls(self):
        runtime = FakeRuntime("slow", ready_after=3)
        state = runtime.start(self.spec())

        assert runtime.endpoint(state) is None
        runtime.poll(state)
        runtime.poll(state)
        runtime.poll(state)
        assert runtime.progress(state)[-1].phase == "ready"

    def test_never_ready_runs_but_never_answers(self):
        runtime = FakeRuntime("never-ready")
        state = runtime.start(self.spec())
        for _ in range(10):
            assert runtime.poll(state) is None

        assert runtime.endpoint(state) is None

    def test_a_line_printed_between_the_backfill_and_the_follow_is_shipped_once(self, monkeypatch):
        # The agent's shipper on the fake: the workload prints a line right after the
        # backfill's recent lines are read, before the shipper follows on.
        from apps.machines import logship

        class PrintsWhileRead(FakeRuntime):
            def _print(self, state):
                self._running[state["name"]]["log"].append("printed in between")

            def logs(self, state, *, since=None, follow=False, tail=None):
                printed = list(super().logs(state, since=since, follow=follow, tail=tail))
                if tail:  # the backfill's read (a follow reads with tail 0 or none)
                    self._print(state)
                return iter(printed)

            def logs_backfill(self, state, *, tail):
                recent, rest = super().logs_backfill(state, tail=tail)
                self._print(state)
                return recent, rest

        frames: list[dict] = []
        monkeypatch.setattr(logship, "send", lambda _host, _kind, body: frames.append(body))
        runtime = PrintsWhileRead("ok")
        state = runtime.start(self.spec())
        runtime._running[state["name"]]["log"].extend(f"old {n}" for n in range(5))

        shipper = logship.LogShipper(runtime, state, "local", backfill=3)
        shipper.start()
        assert shipper.done.wait(10)

        shipped = [line for frame in frames for line in frame["lines"]]
        assert frames[0]["backfill"] is True
        assert frames[0]["lines"] == ["old 2", "old 3", "old 4"]
        assert shipped.count("printed in between") == 1
        assert shipped == ["old 2", "old 3", "old 4", "printed in between"]

    def test_a_tail_longer_than_half_the_log_gives_all_of_it(self):
        runtime = FakeRuntime("ok")
        state = runtime.start(self.spec())
        runtime._running[state["name"]]["log"][:] = [f"line {n}" for n in range(5)]

        recent, _ = runtime.logs_backfill(state, tail=8)

        assert recent == [f"line {n}" for n in range(5)]
        assert list(runtime.logs(state, tail=8)) == recent
        assert list(runtime.logs(state, tail=2)) == ["line 3", "line 4"]

    def test_crashes_exits_with_status_1(self):
        runtime = FakeRuntime("crashes")
        state = runtime.start(self.spec())

        assert runtime.poll(state) == 1
        assert runtime.progress(state)[-1].phase == "failed"

    def test_stop_is_idempotent(self):
        runtime = FakeRuntime("ok")
        state = runtime.start(self.spec())

        runtime.stop(state)
        runtime.stop(state)

        assert runtime.poll(state) == 0

    def test_an_orphan_is_stopped_and_forgotten(self):
        runtime = FakeRuntime("ok")
        state = runtime.start(self.spec("orphan"))
        runtime.stop(state)

        runtime.remove_orphan(runtime.list_managed()[0])

        assert runtime.list_managed() == []
        assert runtime.poll(state) == 0

    def test_the_agent_removes_an_orphan_through_the_contract(self, settings):
        from apps.machines.agent import agent_remove_orphan

        settings.LATTICE_RUNTIME = "fake"
        runtime = FakeRuntime("ok")
        runtime.start(self.spec("orphan"))
        runtime.start(self.spec("kept"))

        agent_remove_orphan("gpu-1", "orphan")

        assert [m.name for m in runtime.list_managed()] == ["kept"]


def _runtime_calls(module) -> set[str]:
    """The methods ``module`` calls on a runtime: ``runtime.x(...)``, ``self.runtime.x(...)``
    and ``host_runtime().x(...)``."""
    called = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if (
            (isinstance(owner, ast.Name) and owner.id == "runtime")
            or (isinstance(owner, ast.Attribute) and owner.attr == "runtime")
            or (isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "host_runtime")
        ):
            called.add(node.func.attr)
    return called


def test_every_method_the_agent_calls_is_in_the_contract():
    from apps.machines import agent, logship

    called = _runtime_calls(agent) | _runtime_calls(logship)

    assert {"start", "stop", "poll", "remove_orphan", "pulling", "logs"} <= called
    # The warm pool's methods have defaults (a runtime without a pool keeps them: it says
    # pool_supported() False and the agent starts as ever); every other one is abstract.
    pool = {"pool_supported", "pool_fill", "pool_ready", "pool_claim", "pool_list", "pool_remove"}
    assert pool <= set(vars(Runtime))
    assert called <= Runtime.__abstractmethods__ | pool
    # Called directly: a runtime without the method cannot even be made.
    assert "getattr(runtime" not in inspect.getsource(agent)
    for runtime in (FakeRuntime, LocalProcessRuntime, DockerRuntime):
        assert not runtime.__abstractmethods__


class TestLocalProcess:
    def server_spec(self, name="nb-1", **kwargs):
        # A real HTTP server, as a notebook server would be, on the port we are given.
        return Spec(
            name=name,
            image="",
            command=[sys.executable, "-u", "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
            volumes={"vol-abc": "/notebooks"},
            **kwargs,
        )

    def test_start_ready_logs_stop(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        state = runtime.start(self.server_spec(gpu_uuids=["GPU-1", "GPU-2"]))

        assert wait_for(lambda: runtime.endpoint(state) is not None)
        assert runtime.start(self.server_spec(gpu_uuids=["GPU-1", "GPU-2"])) == state
        with urllib.request.urlopen(str(runtime.endpoint(state)), timeout=5) as response:  # noqa: S310
            assert response.status == 200
        assert wait_for(lambda: any('"GET / HTTP' in line for line in runtime.logs(state)))
        assert runtime.list_managed()[0].running

        runtime.stop(state, timeout=6)

        assert runtime.poll(state) is not None
        assert runtime.endpoint(state) is None
        assert not runtime.list_managed()[0].running
        assert (tmp_path / "volumes" / "vol-abc").is_dir()

    def test_only_the_allocated_gpus_are_visible(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        spec = Spec(
            name="env-1",
            image="",
            command=[
                sys.executable,
                "-c",
                (
                    "import os; e = os.environ; "
                    "print(e['CUDA_VISIBLE_DEVICES'], e['NVIDIA_VISIBLE_DEVICES'])"
                ),
            ],
            gpu_uuids=["GPU-aaa", "GPU-bbb"],
            env={"CUDA_VISIBLE_DEVICES": "all"},
        )

        state = runtime.start(spec)

        assert wait_for(lambda: runtime.poll(state) is not None)
        assert list(runtime.logs(state)) == ["GPU-aaa,GPU-bbb GPU-aaa,GPU-bbb"]

    def test_a_process_ignoring_sigint_and_sigterm_is_killed(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        stubborn = (
            "import signal, time\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n"
        )
        state = runtime.start(
            Spec(name="stubborn", image="", command=[sys.executable, "-c", stubborn])
        )
        assert wait_for(lambda: list(runtime.logs(state)) == ["up"])

        started = time.monotonic()
        runtime.stop(state, timeout=1.5)

        assert runtime.poll(state) is not None
        assert time.monotonic() - started < 5

    def test_tail_gives_the_last_lines_then_what_follows(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        printer = (
            "import time\n"
            "print('\\n'.join(f'old {n}' for n in range(5)), flush=True)\n"
            "time.sleep(1.5)\n"
            "print('new', flush=True)\n"
        )
        state = runtime.start(Spec(name="tail", image="", command=[sys.executable, "-c", printer]))
        assert wait_for(lambda: len(list(runtime.logs(state))) == 5)

        assert list(runtime.logs(state, tail=2)) == ["old 3", "old 4"]
        assert list(runtime.logs(state, tail=0)) == []
        # Following from the end: only what is printed from now on.
        assert list(runtime.logs(state, tail=0, follow=True)) == ["new"]

    def test_the_backfill_follows_on_from_its_last_line_missing_none(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        printer = (
            "import sys, time\n"
            "print('\\n'.join(f'old {n}' for n in range(5)), flush=True)\n"
            "while not __import__('os').path.exists(sys.argv[1]): time.sleep(0.05)\n"
            "print('printed in between', flush=True)\n"
            "time.sleep(0.5)\n"
            "print('after', flush=True)\n"
        )
        go = tmp_path / "go"
        state = runtime.start(
            Spec(name="between", image="", command=[sys.executable, "-c", printer, str(go)])
        )
        assert wait_for(lambda: len(list(runtime.logs(state))) == 5)

        recent, rest = runtime.logs_backfill(state, tail=2)
        # Printed after the recent lines were read, before anyone follows on.
        go.touch()
        assert wait_for(lambda: "printed in between" in list(runtime.logs(state)))

        assert recent == ["old 3", "old 4"]
        assert list(rest) == ["printed in between", "after"]  # followed to the end, once each

    def test_a_command_that_does_not_exist_says_so(self, tmp_path):
        from apps.runtimes.base import WorkloadError

        runtime = LocalProcessRuntime(tmp_path)

        with pytest.raises(WorkloadError, match="no-such-program"):
            runtime.start(Spec(name="bad", image="", command=["no-such-program"]))

    def test_a_workload_name_cannot_escape_its_folder(self, tmp_path):
        from apps.runtimes.base import WorkloadError

        with pytest.raises(WorkloadError):
            LocalProcessRuntime(tmp_path).start(Spec(name="../etc", image="", command=["true"]))


class TestLocalProcessStopping:
    def test_stop_takes_the_whole_process_group(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        # The leader leaves a background child that ignores SIGINT and SIGTERM.
        stubborn_child = (
            "import signal, time; "
            "signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('child', flush=True); time.sleep(60)"
        )
        script = (
            "import subprocess, sys, time\n"
            f"child = subprocess.Popen([sys.executable, '-c', {stubborn_child!r}])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n"
        )
        state = runtime.start(Spec(name="group", image="", command=[sys.executable, "-c", script]))
        assert wait_for(lambda: len(list(runtime.logs(state))) >= 2)
        child_pid = int(next(line for line in runtime.logs(state) if line.isdigit()))

        runtime.stop({"name": "group"}, timeout=1.5)  # by name only, as the agent may

        assert runtime.poll(state) is not None
        assert wait_for(
            lambda: (
                not psutil.pid_exists(child_pid)
                or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE
            ),
            timeout=5,
        )

    def test_a_changed_spec_replaces_the_running_workload(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        first = runtime.start(Spec(name="w", image="", command=sleeper, gpu_uuids=["GPU-a"]))

        second = runtime.start(Spec(name="w", image="", command=sleeper, gpu_uuids=["GPU-b"]))

        assert second["pid"] != first["pid"]
        assert runtime.poll(first) is not None
        runtime.stop(second, timeout=1.5)

    def test_an_orphan_is_stopped_and_forgotten(self, tmp_path):
        runtime = LocalProcessRuntime(tmp_path)
        runtime.start(
            Spec(name="o", image="", command=[sys.executable, "-c", "import time; time.sleep(60)"])
        )

        runtime.remove_orphan(runtime.list_managed()[0])

        assert runtime.list_managed() == []

    def test_a_volume_name_cannot_escape_its_folder(self, tmp_path):
        from apps.runtimes.base import WorkloadError

        with pytest.raises(WorkloadError):
            LocalProcessRuntime(tmp_path / "root").start(
                Spec(name="v", image="", command=["true"], volumes={"../../outside": "/notebooks"})
            )
        assert not (tmp_path / "outside").exists()
