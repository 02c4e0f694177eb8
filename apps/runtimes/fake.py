"""A runtime that runs nothing, for unit tests only (JupyterHub's MockSpawner family).

Modes: ``ok`` (ready at once), ``slow`` (ready after ``ready_after`` polls),
``never-ready`` (runs, never answers), ``crashes`` (exits with status 1 at once).
It keeps its workloads in memory, shared by every instance in the process.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, ClassVar

from apps.runtimes.base import Managed, Progress, Runtime, Spec

if TYPE_CHECKING:
    from collections.abc import Iterator

MODES = ("ok", "slow", "never-ready", "crashes")


class FakeRuntime(Runtime):
    kind = "fake"
    isolates_users = False
    _running: ClassVar[dict[str, dict[str, Any]]] = {}
    _ports = itertools.count(20000)

    def __init__(self, mode: str = "ok", *, ready_after: int = 3) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.ready_after = ready_after

    @classmethod
    def reset(cls) -> None:
        cls._running.clear()

    def start(self, spec: Spec) -> dict[str, Any]:
        existing = self._running.get(spec.name)
        if existing is not None and existing["exit"] is None:
            return dict(existing["state"])
        state = {"name": spec.name, "port": next(self._ports), "mode": self.mode}
        self._running[spec.name] = {
            "state": state,
            "labels": spec.all_labels(),
            "polls": 0,
            "exit": 1 if self.mode == "crashes" else None,
            "log": [f"starting {spec.image} {' '.join(spec.command)}"],
        }
        return dict(state)

    def stop(self, state: dict[str, Any], *, timeout: float = 10.0) -> None:
        entry = self._running.get(state["name"])
        if entry is not None and entry["exit"] is None:
            entry["exit"] = 0
            entry["log"].append("stopped")

    def poll(self, state: dict[str, Any]) -> int | None:
        entry = self._running.get(state["name"])
        if entry is None:
            return 0
        entry["polls"] += 1
        return entry["exit"]

    def _ready(self, entry: dict[str, Any]) -> bool:
        if entry["exit"] is not None or self.mode == "never-ready":
            return False
        return self.mode == "ok" or entry["polls"] >= self.ready_after

    def progress(self, state: dict[str, Any]) -> list[Progress]:
        entry = self._running.get(state["name"])
        if entry is None or entry["exit"] not in (None, 0):
            return [Progress("failed", "The workload exited during start.")]
        if self._ready(entry):
            return [Progress("ready", "Ready.", 100)]
        return [Progress("starting", "Starting.")]

    def logs(
        self,
        state: dict[str, Any],
        *,
        since: float | None = None,
        follow: bool = False,
    ) -> Iterator[str]:
        entry = self._running.get(state["name"])
        yield from (entry["log"] if entry else [])

    def endpoint(self, state: dict[str, Any]) -> str | None:
        entry = self._running.get(state["name"])
        if entry is None or not self._ready(entry):
            return None
        return f"http://127.0.0.1:{state['port']}"

    def list_managed(self) -> list[Managed]:
        return [
            Managed(
                name=name,
                running=entry["exit"] is None,
                labels=entry["labels"],
                state=dict(entry["state"]),
            )
            for name, entry in self._running.items()
        ]
