"""A runtime that runs nothing, for unit tests only (JupyterHub's MockSpawner family).

Modes: ``ok`` (ready at once), ``slow`` (ready after ``ready_after`` polls),
``never-ready`` (runs, never answers), ``crashes`` (exits with status 1 at once),
``pulls`` (downloads its image first: start takes about 1.5 s, during which
progress reports "pulling" with a rising percent, as Docker's pull does),
``builds`` (builds its image first, as the Docker runtime builds a template's
image on a registry-free installation: "building", with its steps).
It keeps its workloads in memory, shared by every instance in the process.

A workload that is ready answers HTTP on its port like a Jupyter Server would
for the calls Lattice makes: ``.../api/status`` and ``.../api/kernels`` (JSON),
and anything else with a page naming the path, so readiness checks, the
proxy and idle shutdown can be tested without Docker.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

from apps.runtimes.base import (
    LABEL_PREFIX,
    NOTEBOOKS_PATH,
    ExitStatus,
    FolderEntry,
    FolderError,
    Managed,
    PoolMiss,
    PoolSpec,
    Progress,
    RestoreFile,
    Runtime,
    Spec,
    WorkloadError,
    dataset_mounts,
    folder_path,
)
from apps.runtimes.images import BuildStep, build_step_message
from apps.runtimes.volumefiles import restore_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

MODES = ("ok", "slow", "never-ready", "crashes", "pulls", "builds")
# The steps ``builds`` goes through, as apps.runtimes.images.build_template_image reads them.
BUILD_STEPS = (
    BuildStep("base", 1, 3),
    BuildStep("packages", 2, 3),
    BuildStep("packages", 2, 3, 50),
    BuildStep("check", 3, 3),
)


class _FakeJupyter(BaseHTTPRequestHandler):
    started = datetime.now(UTC).isoformat()

    def do_GET(self) -> None:
        if self.path.split("?")[0].endswith("/api/status"):
            body = json.dumps(
                {"started": self.started, "last_activity": self.started, "kernels": 0},
            ).encode()
        elif self.path.split("?")[0].endswith("/api/kernels"):
            body = b"[]"
        elif self.path.split("?")[0].endswith("/fake/cookies"):
            # What reached the server: the proxy's tests check which cookies it forwards.
            body = (self.headers.get("Cookie") or "").encode()
        else:
            auth = "yes" if self.headers.get("Authorization") else "no"
            body = f"fake jupyter: {self.path} token={auth}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        return


def _serve() -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJupyter)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server, int(server.server_address[1])


class FakeRuntime(Runtime):
    kind = "fake"
    _running: ClassVar[dict[str, dict[str, Any]]] = {}
    removed_volumes: ClassVar[list[str]] = []
    copied_volumes: ClassVar[list[tuple[str, str]]] = []
    # What a workload's /notebooks holds, by workload name: path -> bytes (None: a link).
    files: ClassVar[dict[str, dict[str, bytes | None]]] = {}
    # What another of its volumes holds (a job's /outputs), by (workload name, root).
    folders: ClassVar[dict[tuple[str, str], dict[str, bytes | None]]] = {}

    def __init__(self, mode: str = "ok", *, ready_after: int = 3) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.ready_after = ready_after

    @classmethod
    def reset(cls) -> None:
        for entry in cls._running.values():
            cls._shutdown(entry)
        cls._running.clear()
        cls.removed_volumes.clear()
        cls.copied_volumes.clear()
        cls.files.clear()
        cls.folders.clear()
        cls.volumes.clear()
        cls.volume_labels.clear()
        cls.restore_fails = ""
        for entry in cls._pool.values():
            cls._shutdown(entry)
        cls._pool.clear()
        cls.claims.clear()
        cls.pool_misses = False
        cls.pool_fails = False

    _pulls: ClassVar[dict[str, int]] = {}
    _builds: ClassVar[dict[str, Progress]] = {}

    def start(self, spec: Spec) -> dict[str, Any]:
        dataset_mounts(spec)  # as the real runtimes: each dataset's folder is on this host
        existing = self._running.get(spec.name)
        if existing is not None and existing["exit"] is None:
            return dict(existing["state"])
        if self.mode == "pulls":
            for percent in range(0, 100, 20):
                self._pulls[spec.name] = percent
                time.sleep(0.3)
            self._pulls.pop(spec.name, None)
        if self.mode == "builds":
            for step in BUILD_STEPS:
                self._builds[spec.name] = Progress(
                    "building",
                    build_step_message("Fake", step),
                    step.percent,
                    kind=step.kind,
                    step=step.step,
                    of=step.of,
                )
                time.sleep(0.6)
            self._builds.pop(spec.name, None)
        server, port = _serve()
        state = {"name": spec.name, "port": port, "mode": self.mode}
        self._running[spec.name] = {
            "server": server,
            "state": state,
            "labels": spec.all_labels(),
            # Its environment, for tests to check what a workload was given.
            "env": dict(spec.env),
            # What it was given to mount at /datasets/<name>, for tests to check.
            "datasets": [dict(d) for d in spec.datasets],
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
            self._shutdown(entry)

    @staticmethod
    def _shutdown(entry: dict[str, Any]) -> None:
        server = entry.pop("server", None)
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()

    def poll(self, state: dict[str, Any]) -> int | None:
        entry = self._running.get(state["name"])
        if entry is None:
            return 0
        entry["polls"] += 1
        return entry["exit"]

    def exit_status(self, state: dict[str, Any]) -> ExitStatus:
        entry = self._running.get(state["name"])
        if entry is None:
            return ExitStatus(vanished=True)
        return ExitStatus(code=entry["exit"])

    def volume_exists(self, name: str) -> bool:
        return name in self.volumes or any(target == name for _, target in self.copied_volumes)

    def _ready(self, entry: dict[str, Any]) -> bool:
        if entry["exit"] is not None or self.mode == "never-ready":
            return False
        return self.mode in ("ok", "pulls", "builds") or entry["polls"] >= self.ready_after

    def pulling(self, name: str) -> Progress | None:
        if name in self._builds:
            return self._builds[name]
        if name in self._pulls:
            return Progress("pulling", "Downloading the image", self._pulls[name])
        return None

    def progress(self, state: dict[str, Any]) -> list[Progress]:
        if state["name"] in self._pulls:
            return [Progress("pulling", "Downloading the image", self._pulls[state["name"]])]
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
        tail: int | None = None,
    ) -> Iterator[str]:
        entry = self._running.get(state["name"])
        printed = list(entry["log"]) if entry else []
        if tail is not None:
            printed = printed[-tail:] if tail else []
        yield from printed

    def logs_backfill(self, state: dict[str, Any], *, tail: int) -> tuple[list[str], Iterator[str]]:
        entry = self._running.get(state["name"])
        printed = list(entry["log"]) if entry else []
        seen = len(printed)

        def rest() -> Iterator[str]:
            # The fake does not follow (as its logs()): what was printed after, then the end.
            if entry is not None:
                yield from list(entry["log"])[seen:]

        return (printed[-tail:] if tail else []), rest()

    def endpoint(self, state: dict[str, Any]) -> str | None:
        entry = self._running.get(state["name"])
        if entry is None or not self._ready(entry):
            return None
        return f"http://127.0.0.1:{state['port']}"

    def copy_volume(self, source: str, target: str, *, image: str) -> None:
        self.copied_volumes.append((source, target))

    def remove_volume(self, name: str) -> None:
        self.removed_volumes.append(name)

    def remove_orphan(self, managed: Managed) -> None:
        entry = self._running.pop(managed.name, None)
        if entry is not None:
            self._shutdown(entry)

    # Issue 20 (snapshots): a volume's files in memory, by volume name: path -> (bytes,
    # mode), or None for a link. ``volume_labels``: the labels a restore made one with.
    volumes: ClassVar[dict[str, dict[str, tuple[bytes, int] | None]]] = {}
    volume_labels: ClassVar[dict[str, dict[str, str]]] = {}
    # Set by a test: every restore fails with this message after the first file (as a
    # full disk), leaving the volume half written.
    restore_fails: ClassVar[str] = ""

    def read_volume(self, name: str) -> Iterator[FolderEntry]:
        if name not in self.volumes:
            raise FolderError(f"The volume {name} is not on this host.", "missing")
        return self._read_volume(dict(self.volumes[name]))

    @staticmethod
    def _read_volume(held: dict[str, tuple[bytes, int] | None]) -> Iterator[FolderEntry]:
        for path, found in sorted(held.items()):
            if found is None:
                yield FolderEntry(path, 0, skipped="link")
                continue
            data, mode = found
            stamp = f"{len(data)}-{hashlib.sha256(data).hexdigest()[:16]}-{mode}"
            yield FolderEntry(path, len(data), io.BytesIO(data), mode=mode, stamp=stamp)

    def restore_volume(
        self,
        name: str,
        files: Iterable[RestoreFile],
        *,
        labels: dict[str, str],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if name not in self.volumes:
            self.volume_labels[name] = dict(labels)
        held: dict[str, tuple[bytes, int] | None] = {}
        self.volumes[name] = held
        for file in files:
            # Any POSIX names, as the real runtimes take them (volumefiles.restore_path).
            path = "/".join(restore_path(file.path))
            if self.restore_fails and held:
                raise WorkloadError(self.restore_fails)
            try:
                data = file.open().read(file.size + 1)
            except WorkloadError:
                raise
            except Exception as exc:
                raise WorkloadError(f"{path} could not be read: {exc}") from exc
            if len(data) != file.size:
                raise WorkloadError(f"{path} did not have the size it was listed with.")
            held[path] = (data, file.mode & 0o777)
            if progress is not None:
                progress(len(data))

    def read_folder(
        self, state: dict[str, Any], folder: str, *, root: str = NOTEBOOKS_PATH
    ) -> Iterator[FolderEntry]:
        relative = folder_path(folder, root=root)
        if root == NOTEBOOKS_PATH:
            if self.poll(state) is not None:
                raise FolderError("The notebook is not running.", "not_running")
            held = self.files.get(state["name"], {})
        else:
            if state["name"] not in self._running:
                raise FolderError("The workload's container is gone.", "not_running")
            held = self.folders.get((state["name"], root), {})
        prefix = f"{relative}/" if relative else ""
        found = sorted(
            (path[len(prefix) :], data) for path, data in held.items() if path.startswith(prefix)
        )
        if not found:
            raise FolderError(f"{root}/{relative} does not exist.", "missing")
        for path, data in found:
            if data is None:
                yield FolderEntry(path, 0, skipped="link")
            else:
                yield FolderEntry(path, len(data), io.BytesIO(data))

    # --- The warm pool: containers kept ready, by PoolSpec name. ----------------------------
    _pool: ClassVar[dict[str, dict[str, Any]]] = {}
    # (pool container, workload) for each claim, for tests to check.
    claims: ClassVar[list[tuple[str, str]]] = []
    # Set by a test: every claim misses (as a host whose mounts fail), so starts fall back.
    pool_misses: ClassVar[bool] = False
    # Set by a test: no warm container can be made (as a host without the mounts it needs).
    pool_fails: ClassVar[bool] = False

    def pool_supported(self) -> bool:
        return True

    def pool_fill(self, spec: PoolSpec) -> dict[str, Any]:
        if self.pool_fails:
            raise WorkloadError("This host cannot keep warm containers.")
        existing = self._pool.get(spec.name)
        if existing is not None:
            return dict(existing["state"])
        server, port = _serve()
        state = {"name": spec.name, "port": port, "mode": self.mode}
        labels = {f"{LABEL_PREFIX}{k}": v for k, v in spec.labels.items()}
        labels |= {f"{LABEL_PREFIX}managed": "true", f"{LABEL_PREFIX}name": spec.name}
        self._pool[spec.name] = {
            "server": server,
            "state": state,
            "labels": labels,
            "token": spec.token,
            "gpu_uuids": list(spec.gpu_uuids),
        }
        return dict(state)

    def pool_ready(self, state: dict[str, Any]) -> bool:
        return state.get("name") in self._pool and self.mode != "never-ready"

    def pool_claim(self, state: dict[str, Any], spec: Spec) -> dict[str, Any]:
        dataset_mounts(spec)
        entry = self._pool.get(str(state.get("name")))
        if entry is None or self.pool_misses:
            raise PoolMiss("The warm container is gone.")
        del self._pool[state["name"]]
        self.claims.append((state["name"], spec.name))
        claimed = {"name": spec.name, "port": entry["state"]["port"], "mode": self.mode}
        self._running[spec.name] = {
            "server": entry["server"],
            "state": claimed,
            "labels": spec.all_labels(),
            "env": dict(spec.env),
            "datasets": [dict(d) for d in spec.datasets],
            "gpu_uuids": entry["gpu_uuids"],
            "polls": 0,
            "exit": None,
            "log": [f"claimed {state['name']} for {spec.name}"],
        }
        return dict(claimed)

    def pool_list(self) -> list[Managed]:
        return [
            Managed(name=name, running=True, labels=entry["labels"], state=dict(entry["state"]))
            for name, entry in self._pool.items()
        ]

    def pool_remove(self, state: dict[str, Any]) -> None:
        entry = self._pool.pop(str(state.get("name")), None)
        if entry is not None:
            self._shutdown(entry)

    def list_managed(self) -> list[Managed]:
        return [
            Managed(
                name=name,
                running=entry["exit"] is None,
                labels=entry["labels"],
                state=dict(entry["state"]),
                datasets=tuple(d["source"] for d in entry["datasets"]),
            )
            for name, entry in self._running.items()
        ]
