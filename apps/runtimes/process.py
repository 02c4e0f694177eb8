"""Workloads as local processes: for the embedded default and hosts without Docker.

NOT AN ISOLATION BOUNDARY. Every workload runs as the agent's own user, sees
the host's files and network, and can read other workloads' data. Use it on a
machine you trust everyone on, or for development; use Docker otherwise.

Each workload gets a folder under LATTICE_RUNTIME_DIR holding its state and
its log; "volumes" are folders under ``volumes/``; a mounted dataset is a link
``datasets/<name>`` in the working folder to the folder the agent built (the
process cannot see a path /datasets/<name>), and a model version mounted at
/model the link ``model`` there (``{mount:/model}`` in the command is that
link). The process runs in its own
process group; stopping sends SIGINT, then SIGTERM, then SIGKILL to the group.
``{port}`` in the command is replaced by a free loopback port and ``{ip}`` by
127.0.0.1. A bare program name is looked for beside this Python first (the
virtual environment's ``jupyter``), then on PATH.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from django.conf import settings

from apps.runtimes.base import (
    LABEL_PREFIX,
    MODEL_PATH,
    NOTEBOOKS_PATH,
    ExitStatus,
    FolderEntry,
    FolderError,
    Managed,
    Progress,
    RestoreFile,
    Runtime,
    Spec,
    WorkloadError,
    dataset_mounts,
    expand_command,
    folder_path,
    port_answers,
    shared_folder,
)
from apps.runtimes.volumefiles import Bounded, kind_of, read_tree, restore_tree

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import TextIO


# A dataset's folder on the host is named by its content key (apps.machines.materialise).
_CONTENT_KEY = re.compile(r"[0-9a-f]{64}")


# Where a workload's exit status is kept, in its folder.
_EXIT_FILE = "exit-status"
WORKSPACE_PATH = "/workspace"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalProcessRuntime(Runtime):
    kind = "process"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or settings.LATTICE_RUNTIME_DIR)

    @staticmethod
    def _safe(name: str) -> str:
        """A workload or volume name, which becomes one folder name: nothing else."""
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise WorkloadError(f"{name!r} is not a valid name (letters, digits, - and _ only)")
        return name

    def _dir(self, name: str) -> Path:
        return self.root / "workloads" / self._safe(name)

    def _process(self, state: dict[str, Any]) -> psutil.Process | None:
        """The workload's process if it still runs, and is ours (not a reused pid)."""
        try:
            process = psutil.Process(state["pid"])
            if abs(process.create_time() - state["created"]) > 1:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, KeyError):
            return None
        return process

    def start(self, spec: Spec) -> dict[str, Any]:
        folder = self._dir(spec.name)
        state_file = folder / "state.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if self._process(state) is not None:
                if state.get("labels", {}).get(f"{LABEL_PREFIX}spec") == spec.fingerprint():
                    return state
                self.stop(state)  # running from another spec: replace it
        folder.mkdir(parents=True, exist_ok=True)
        mounts = {}
        for volume, mount in spec.volumes.items():
            # A shared volume (a team's /storage) is its folder in LATTICE_SHARED_STORAGE.
            path = shared_folder(spec, volume) or self.root / "volumes" / self._safe(volume)
            path.mkdir(parents=True, exist_ok=True)
            mounts[mount] = str(path)
        # Where it runs: its notebook folder, a job's workspace, else its own folder.
        work = Path(mounts.get(NOTEBOOKS_PATH) or mounts.get(WORKSPACE_PATH) or str(folder))
        datasets = dataset_mounts(spec)
        mounts.update(self._link_datasets(work, [d for d in datasets if d[1] != MODEL_PATH]))
        mounts.update(self._link_model(work, [d for d in datasets if d[1] == MODEL_PATH]))
        port = _free_port()
        env = {
            # Lattice's own environment's tools first (JupyterLab, papermill for jobs):
            # `make dev` runs .venv/bin/python without activating the environment.
            "PATH": os.pathsep.join(
                [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
            ),
            "HOME": str(folder),
            "LANG": "C.UTF-8",
            **spec.env,
            "LATTICE_MOUNTS": json.dumps(mounts),
            # Only the allocated GPUs, by UUID, whatever the environment says.
            "CUDA_VISIBLE_DEVICES": ",".join(spec.gpu_uuids),
            "NVIDIA_VISIBLE_DEVICES": ",".join(spec.gpu_uuids) or "void",
        }
        command = expand_command(spec.command, port=port, ip="127.0.0.1", mounts=mounts)
        beside = Path(sys.executable).parent / command[0]
        if "/" not in command[0] and beside.exists():
            command[0] = str(beside)
        log_path = folder / "output.log"
        (folder / _EXIT_FILE).unlink(missing_ok=True)
        if spec.labels.get("until") == "exit":
            # Run to its end: a small shell waits and writes its status, so it is known
            # even to an agent that restarted meanwhile (it is not that one's child).
            exit_file = str(folder / _EXIT_FILE)
            command = [
                "/bin/sh",
                "-c",
                '"$@"; code=$?; echo $code > "$0.tmp" && mv "$0.tmp" "$0"; exit $code',
                exit_file,
                *command,
            ]
        with log_path.open("ab") as log:
            try:
                process = subprocess.Popen(  # noqa: S603 - the command comes from the template, not a person
                    command,
                    cwd=str(work),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise WorkloadError(f"Could not start {command[0]}: {exc.strerror}") from exc
        state = {
            "name": spec.name,
            "pid": process.pid,
            "created": psutil.Process(process.pid).create_time(),
            "port": port,
            "log": str(log_path),
            "labels": spec.all_labels(),
            "started_at": time.time(),
            "datasets": [source for source, _ in datasets],
            # The folder the workload sees as /notebooks, and every volume's (read_folder).
            "notebooks": mounts.get(NOTEBOOKS_PATH, ""),
            "volumes": {mount: mounts[mount] for mount in spec.volumes.values()},
        }
        state_file.write_text(json.dumps(state))
        return state

    @staticmethod
    def _link_datasets(work: Path, datasets: list[tuple[str, str]]) -> dict[str, str]:
        """Make ``datasets/<name>`` in the working folder a link to each dataset's folder
        (read-only: the agent built it so); links left by earlier starts go. Returns
        {"/datasets/<name>": link} for ``{mount:...}`` in the command."""
        links = work / "datasets"
        wanted = {target.rsplit("/", 1)[1]: source for source, target in datasets}
        if links.is_dir() and not links.is_symlink():
            for old in links.iterdir():
                # Only links to a dataset folder (named by its content key) are ours to remove.
                if (
                    old.is_symlink()
                    and old.name not in wanted
                    and _CONTENT_KEY.fullmatch(old.readlink().name)
                ):
                    old.unlink()
        if not wanted:
            return {}
        try:
            links.mkdir(exist_ok=True)
        except OSError as exc:
            raise WorkloadError(
                "The notebook's folder has a file called datasets: rename it so datasets "
                "can be mounted there."
            ) from exc
        found = {}
        for name, source in wanted.items():
            link = links / name
            if link.is_symlink():
                link.unlink()
            elif link.exists():
                raise WorkloadError(
                    f"datasets/{name} in the notebook's folder is not a dataset: rename it "
                    "so the dataset can be mounted there."
                )
            link.symlink_to(source, target_is_directory=True)
            found[f"/datasets/{name}"] = str(link)
        return found

    @staticmethod
    def _link_model(work: Path, models: list[tuple[str, str]]) -> dict[str, str]:
        """Make ``model`` in the working folder a link to the model version's folder (or
        remove the link an earlier start left, when there is none now). Returns
        {"/model": link} for ``{mount:/model}`` in the command."""
        link = work / "model"
        if link.is_symlink() and _CONTENT_KEY.fullmatch(link.readlink().name):
            link.unlink()  # ours: a link to a folder of the agent's cache
        if not models:
            return {}
        if link.is_symlink() or link.exists():
            raise WorkloadError(
                "The workload's folder has a file called model that is not a model version: "
                "rename it so the model can be mounted there."
            )
        link.symlink_to(models[0][0], target_is_directory=True)
        return {MODEL_PATH: str(link)}

    def _load(self, state: dict[str, Any]) -> dict[str, Any]:
        """The full state: callers that know only the name get it from the workload's folder."""
        if "pid" in state:
            return state
        state_file = self._dir(state["name"]) / "state.json"
        return json.loads(state_file.read_text()) if state_file.exists() else state

    def stop(self, state: dict[str, Any], *, timeout: float = 10.0) -> None:
        state = self._load(state)
        process = self._process(state) if "pid" in state else None
        if process is None:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=timeout / 3)
                break
            except psutil.TimeoutExpired:
                continue
            except psutil.NoSuchProcess:
                break
        # Whatever is left of the group (background jobs, children that ignored
        # the polite signals) goes too: its GPUs are about to be handed out again.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
            process.wait(timeout=2)

    def poll(self, state: dict[str, Any]) -> int | None:
        status = self.exit_status(state)
        return None if status.running else (status.code or 0)

    def exit_status(self, state: dict[str, Any]) -> ExitStatus:
        if self._process(state) is not None:
            return ExitStatus()
        exit_file = self._dir(state["name"]) / _EXIT_FILE
        try:
            reaped, status = os.waitpid(state["pid"], os.WNOHANG)
        except (ChildProcessError, KeyError):
            reaped, status = 0, 0
        if reaped and exit_file.parent.is_dir():
            # Our own child: its real status, kept for whoever asks next (it is reaped once).
            exit_file.write_text(f"{os.waitstatus_to_exitcode(status)}\n")
        try:
            code = int(exit_file.read_text().strip())
        except (OSError, ValueError):
            # Not our child, and it left no status: gone, nobody knows how.
            return ExitStatus(vanished=True)
        return ExitStatus(code=code, finished_at=exit_file.stat().st_mtime)

    def volume_exists(self, name: str) -> bool:
        return (self.root / "volumes" / self._safe(name)).is_dir()

    def pulling(self, name: str) -> Progress | None:
        # A local process has no image to download.
        return None

    def progress(self, state: dict[str, Any]) -> list[Progress]:
        if self.poll(state) is not None:
            return [Progress("failed", "The process exited. Its log says why.")]
        if port_answers(state["port"]):
            return [Progress("ready", "Ready.", 100)]
        return [Progress("starting", "Starting the server.")]

    def logs(
        self,
        state: dict[str, Any],
        *,
        since: float | None = None,
        follow: bool = False,
        tail: int | None = None,
    ) -> Iterator[str]:
        """The output, line by line. Process output carries no times: any ``since``
        means "from now on" (what is already in the log is skipped)."""
        state = self._load(state)
        if "log" not in state:
            return
        path = Path(state["log"])
        if not path.exists():
            return
        with path.open(errors="replace") as handle:
            if since is not None or tail == 0:
                handle.seek(0, os.SEEK_END)
            elif tail is not None:
                # Only the last ``tail`` of the lines printed so far, then on as usual.
                yield from (
                    line.rstrip("\n") for line in collections.deque(iter(handle.readline, ""), tail)
                )
            yield from self._read_on(handle, state, follow=follow)

    def _read_on(self, handle: TextIO, state: dict[str, Any], *, follow: bool) -> Iterator[str]:
        while True:
            line = handle.readline()
            if line:
                yield line.rstrip("\n")
                continue
            if not follow or self.poll(state) is not None:
                return
            time.sleep(0.2)

    def logs_backfill(self, state: dict[str, Any], *, tail: int) -> tuple[list[str], Iterator[str]]:
        # One open file: the rest is read on from exactly where the recent lines ended.
        state = self._load(state)
        path = Path(state["log"]) if "log" in state else None
        if path is None or not path.exists():
            return [], iter(())
        handle = path.open(errors="replace")
        printed = collections.deque(iter(handle.readline, ""), tail)

        def rest() -> Iterator[str]:
            with handle:
                yield from self._read_on(handle, state, follow=True)

        return [line.rstrip("\n") for line in printed], rest()

    def endpoint(self, state: dict[str, Any]) -> str | None:
        if self.poll(state) is None and port_answers(state["port"]):
            return f"http://127.0.0.1:{state['port']}"
        return None

    def list_managed(self) -> list[Managed]:
        found = []
        for state_file in sorted((self.root / "workloads").glob("*/state.json")):
            state = json.loads(state_file.read_text())
            found.append(
                Managed(
                    name=state["name"],
                    running=self._process(state) is not None,
                    labels=state.get("labels", {}),
                    state=state,
                    datasets=tuple(state.get("datasets", [])),
                ),
            )
        return found

    def copy_volume(self, source: str, target: str, *, image: str) -> None:
        origin = self.root / "volumes" / self._safe(source)
        if origin.is_dir():
            shutil.copytree(origin, self.root / "volumes" / self._safe(target), dirs_exist_ok=True)

    def remove_volume(self, name: str) -> None:
        shutil.rmtree(self.root / "volumes" / self._safe(name), ignore_errors=True)

    # Issue 20 (snapshots): a volume is its folder (apps.runtimes.volumefiles).
    def read_volume(self, name: str) -> Iterator[FolderEntry]:
        """The volume's folder, walked without following links (stamps from the files)."""
        folder = self.root / "volumes" / self._safe(name)
        if not folder.is_dir() or folder.is_symlink():
            raise FolderError(f"The volume {name} is not on this host.", "missing")
        return read_tree(folder)

    def restore_volume(
        self,
        name: str,
        files: Iterable[RestoreFile],
        *,
        labels: dict[str, str],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """The volume's folder emptied and written; owned by the agent's own user (the one
        every process workload runs as): nothing to label on a folder."""
        restore_tree(self.root / "volumes" / self._safe(name), files, owner=None, progress=progress)

    def read_folder(
        self, state: dict[str, Any], folder: str, *, root: str = NOTEBOOKS_PATH
    ) -> Iterator[FolderEntry]:
        """The folder on disk, walked by open folder handles and opened without following
        links: a link swapped in for a folder while it is read is skipped, not followed. A
        volume stays on disk when its process ends: a job's /outputs is read after that."""
        relative = folder_path(folder, root=root)
        state = self._load(state)
        if root == NOTEBOOKS_PATH and ("pid" not in state or self._process(state) is None):
            raise FolderError("The notebook is not running.", "not_running")
        volumes = state.get("volumes") or {NOTEBOOKS_PATH: state.get("notebooks", "")}
        if not volumes.get(root):
            raise FolderError(f"This workload has no {root} folder.", "missing")
        top_folder = Path(volumes[root])
        target = top_folder.joinpath(relative) if relative else top_folder
        shown = f"{root}/{relative}".rstrip("/")
        if not target.exists():
            raise FolderError(f"{shown} does not exist.", "missing")
        # No step of the way may be a link (to elsewhere on the host, or elsewhere inside).
        if target.resolve() != top_folder.resolve() / relative:
            raise FolderError(
                f"{shown} is reached through a link: give the folder it points to.", "link"
            )
        try:
            top = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise FolderError(f"{shown} is not a folder.", "not_folder") from exc
        try:
            yield from _walk(top, "")
        finally:
            os.close(top)

    def remove_orphan(self, managed: Managed) -> None:
        """Stop a workload the control plane does not know and forget it (its volumes stay)."""
        self.stop(managed.state, timeout=5)
        folder = self._dir(managed.name)
        for child in folder.glob("*"):
            child.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


def _walk(folder: int, prefix: str) -> Iterator[FolderEntry]:
    """The entries under the open folder ``folder``, by name; links are not followed."""
    with os.scandir(folder) as found:
        entries = sorted(found, key=lambda entry: entry.name)
    for entry in entries:
        path = prefix + entry.name
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            try:
                inner = os.open(
                    entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder
                )
            except OSError:
                yield FolderEntry(path, 0, skipped="link")  # swapped for a link meanwhile
                continue
            try:
                yield from _walk(inner, path + "/")
            finally:
                os.close(inner)
        elif stat.S_ISREG(mode):
            yield from _regular(folder, entry.name, path)
        else:
            yield FolderEntry(path, 0, skipped=kind_of(mode))


def _regular(folder: int, name: str, path: str) -> Iterator[FolderEntry]:
    """One regular file, opened without following a link or waiting on a fifo: at most the
    size it had when opened is read (what it grows by after is another version's)."""
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        yield FolderEntry(path, 0, skipped="link")
        return
    with os.fdopen(handle, "rb", buffering=0) as raw:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            yield FolderEntry(path, 0, skipped=kind_of(info.st_mode))
            return
        yield FolderEntry(path, info.st_size, Bounded(raw, info.st_size))
