"""The runtime contract, after JupyterHub's Spawner.

A runtime runs one workload (a notebook server, a model server) from a
``Spec`` and describes it with a JSON-able ``state`` that the caller stores
(on the session) and hands back, so the control plane survives restarts:

- ``start(spec) -> state``: idempotent: starting a workload that already
  runs returns its state and starts nothing new;
- ``stop(state)``: idempotent; the workload's persistent volumes stay;
- ``poll(state) -> None | int``: None while running, else the exit status
  (0 if unknown), as JupyterHub's ``Spawner.poll``;
- ``exit_status(state) -> ExitStatus``: running, exited with its real status, or vanished
  (gone without a word of how it ended): what a workload run to its end ("until exit",
  a job) is judged by, where ``poll``'s "0 if unknown" would read a lost one as a success;
- ``volume_exists(name) -> bool``: whether a persistent volume is there already;
- ``progress(state) -> list[Progress]``: phases for the start page;
- ``pulling(name) -> Progress | None``: the image download (or local build) in flight for
  workload ``name`` while its ``start`` runs, if any (cheap: the agent asks twice a second);
- ``logs(state, since, follow) -> Iterator[str]``: output lines;
- ``logs_backfill(state, tail) -> (recent, rest)``: the last ``tail`` lines printed so
  far, and what is printed after them (followed), with no line between the two lost
  or given twice;
- ``endpoint(state) -> str | None``: where the workload's HTTP server listens;
- ``list_managed() -> list[Managed]``: everything this runtime runs for
  Lattice on this host, found by its labels, for the reconciler (and, with the
  dataset folders each mounts, for the agent's dataset cache);
- ``remove_orphan(managed)``: forget a workload ``list_managed`` found that the
  control plane does not know, once the agent has stopped it: ``list_managed``
  no longer lists it; its persistent volumes stay;
- ``remove_volume(name)``: delete a persistent volume (idempotent);
- ``copy_volume(source, target, image)``: copy one volume's files into
  another (made if missing), with ``image`` where a helper container is needed;
- ``read_folder(state, folder, root=) -> Iterator[FolderEntry]``: the files of a folder
  under one of the workload's volumes (``FOLDER_ROOTS``), streamed (see ``FolderEntry``):
  a running notebook's /notebooks, or an exited job's /outputs or /workspace.

A spec's ``datasets`` are folders the agent has built on the host
(apps.machines.materialise): each is seen read-only at ``/datasets/<name>``, or at
``/model`` for the one that says ``"path": "/model"`` (a model version, for a model server).

In ``command``, ``{port}`` becomes the port the workload listens on,
``{ip}`` the address it should bind (all interfaces inside a container,
loopback for a local process) and ``{mount:/path}`` where the volume mounted
at /path is seen by the workload (/path itself in a container).
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from datetime import datetime

LABEL_PREFIX = "lattice."


_MOUNT = re.compile(r"\{mount:([^}]+)\}")


def expand_command(command: list[str], *, port: int, ip: str, mounts: dict[str, str]) -> list[str]:
    """``command`` with {port}, {ip} and {mount:/path} filled in (see the module docstring)."""
    out = []
    for part in command:
        part = part.replace("{port}", str(port)).replace("{ip}", ip)  # noqa: PLW2901
        out.append(_MOUNT.sub(lambda m: mounts.get(m.group(1), m.group(1)), part))
    return out


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class Spec:
    """What to run. ``name`` is stable for the workload (e.g. "nb-42-s7") and unique per host."""

    name: str
    image: str
    command: list[str]
    port: int = 8888
    env: dict[str, str] = field(default_factory=dict)
    vcpus: float = 1.0
    memory_bytes: int = 1024**3
    pids_limit: int = 1024
    gpu_uuids: list[str] = field(default_factory=list)
    # Named persistent volumes: volume name -> mount path inside the workload.
    volumes: dict[str, str] = field(default_factory=dict)
    # Which of ``volumes`` are shared by workloads on many hosts at once (a team's /storage):
    # with LATTICE_SHARED_STORAGE set, each is the folder <LATTICE_SHARED_STORAGE>/<name>,
    # a path every host mounts (NFS, say), never a volume of one host's own (shared_folder).
    shared_volumes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    user: str = "1000:1000"
    # Dataset versions mounted read-only at /datasets/<name>: as sent, {"name", "version_id",
    # "key", "files", "urls"} (apps.notebooks.mounts, apps.datasets.blob_urls); once the agent
    # has built their folders on this host, {"name", "version_id", "key", "source"} (see
    # dataset_mounts). One may say "path": "/model" (MODEL_PATH) to be mounted there instead:
    # a model version's files, built and cached the same way.
    datasets: list[dict[str, Any]] = field(default_factory=list)
    # Names in ``env`` whose values may differ between two sends of the same workload (a
    # credential made anew at each dispatch: a notebook's LATTICE_TOKEN): not part of its
    # identity, so a start sent again keeps the container the first one started.
    volatile_env: list[str] = field(default_factory=list)

    def all_labels(self) -> dict[str, str]:
        """Our labels, always under ``lattice.``: how list_managed finds what is ours."""
        labels = {f"{LABEL_PREFIX}{k}": v for k, v in self.labels.items()}
        labels[f"{LABEL_PREFIX}managed"] = "true"
        labels[f"{LABEL_PREFIX}name"] = self.name
        labels[f"{LABEL_PREFIX}spec"] = self.fingerprint()
        return labels

    def fingerprint(self) -> str:
        """A hash of the whole spec but the values of ``volatile_env``: a running workload
        from another spec is not this one."""
        whole = asdict(self)
        volatile = whole.pop("volatile_env")  # a spec without any hashes as it always did
        whole["env"] = {k: v for k, v in self.env.items() if k not in volatile}
        return hashlib.sha256(json.dumps(whole, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Progress:
    phase: str  # pulling, building (a local template image), starting, ready, failed
    message: str
    percent: int | None = None
    # A build's step in numbers (apps.runtimes.images.BuildStep): all a host reports of it.
    kind: str = ""
    step: int | None = None
    of: int | None = None


@dataclass(frozen=True)
class Managed:
    """One workload found on the host by its labels."""

    name: str
    running: bool
    labels: dict[str, str]
    state: dict[str, Any]
    started_at: datetime | None = None
    # The folders on this host it mounts as datasets (each a ``source`` of dataset_mounts):
    # the agent's dataset cache keeps them while it runs.
    datasets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitStatus:
    """How a workload stands: running (``code`` None, not ``vanished``), exited with
    ``code`` (at ``finished_at``, a Unix time, when the runtime knows it), or ``vanished``:
    its container or process is gone and nothing says how it ended."""

    code: int | None = None
    vanished: bool = False
    finished_at: float | None = None

    @property
    def running(self) -> bool:
        return self.code is None and not self.vanished


def shared_folder(spec: Spec, volume: str) -> Path | None:
    """Where ``spec``'s shared volume ``volume`` lives when this host serves shared volumes
    from LATTICE_SHARED_STORAGE: <LATTICE_SHARED_STORAGE>/<volume>, made (owned by the
    workload's user, ``uid:gid``) when missing. None for a volume of this host's own: not a
    shared one, or no LATTICE_SHARED_STORAGE here."""
    from django.conf import settings

    root = str(getattr(settings, "LATTICE_SHARED_STORAGE", "") or "")
    if not root or volume not in spec.shared_volumes:
        return None
    if not volume or "/" in volume or volume.startswith("."):
        raise WorkloadError(f"{volume!r} is not a volume name.")
    top = Path(root)
    if not top.is_dir():
        raise WorkloadError(
            f"LATTICE_SHARED_STORAGE is {root}, which is not a folder on this host: mount the "
            "shared storage there (the same on every host)."
        )
    folder = top / volume
    if not folder.is_dir():
        folder.mkdir(mode=0o755)
        uid, _, gid = spec.user.partition(":")
        if uid.isdigit() and (not gid or gid.isdigit()) and os.geteuid() == 0:
            os.chown(folder, int(uid), int(gid or uid))
    return folder


class WorkloadError(Exception):
    """A workload could not be started or reached; the message says why, in plain words."""


DATASETS_PATH = "/datasets"
# Where a model version is mounted (read-only, like a dataset: a spec's datasets entry with
# "path": MODEL_PATH), for the built-in model server (apps.runtimes.images).
MODEL_PATH = "/model"
# Where a notebook's persistent volume is mounted.
NOTEBOOKS_PATH = "/notebooks"
# The volumes read_folder reads in: a notebook's (only while it runs), a job's outputs and
# workspace (also once its container has exited: what the run left).
FOLDER_ROOTS = (NOTEBOOKS_PATH, "/outputs", "/workspace")


class FolderError(WorkloadError):
    """A folder that cannot be read: missing, not a folder, or outside its root.

    ``code`` says which, for a server that trusts no host's words (the save protocol sends
    the code, and the server says it in its own words): "not_running", "missing", "link",
    "not_folder", "outside", or "unreadable"."""

    def __init__(self, message: str, code: str = "unreadable") -> None:
        super().__init__(message)
        self.code = code


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class FolderEntry:
    """One thing found in a folder ``read_folder`` reads.

    A regular file has ``file``: its bytes, ``size`` of them at most, readable only until
    the next entry is taken (the folder is one stream: nothing is held in memory). A file
    a stream gives only as a hard link to one given before (Docker's archive) has
    ``same_as``, that file's path, instead. Anything else (a symbolic link, a device, a
    fifo, a socket) is not read: ``file`` is None and ``skipped`` says what it is. Folders
    are not entries (an empty one is not saved).
    """

    path: str  # relative to the folder read, "/"-separated
    size: int
    file: Readable | None = None
    skipped: str = ""
    same_as: str = ""
    # Its permission bits (0o644, 0o755: a snapshot keeps the executable bit).
    mode: int = 0o644
    # What changes whenever the file may have (size, mtime in ns, inode, ctime in ns), when
    # the reader can tell without reading it ("" when it cannot): a snapshot reuses the
    # SHA-256 of a file whose stamp is the one it hashed last time (read_volume).
    stamp: str = ""


@dataclass(frozen=True)
class RestoreFile:
    """One file ``restore_volume`` writes: ``path`` (relative, "/"-separated, checked by the
    runtime as folder_path checks a folder), exactly ``size`` bytes read from ``open()``'s
    stream (a download the caller checks against its SHA-256 as it goes: a read that raises
    fails the restore), with ``mode``'s permission bits."""

    path: str
    size: int
    mode: int
    open: Callable[[], Readable]


def folder_path(folder: str, *, root: str = NOTEBOOKS_PATH) -> str:
    """``folder`` (relative to ``root``, one of FOLDER_ROOTS) as plain "/"-separated names,
    "" for ``root`` itself. Raises FolderError for another root, an absolute path, "..", or
    a name no file system has."""
    if root not in FOLDER_ROOTS:
        raise FolderError(f"{root[:100]!r} is not a folder Lattice reads.", "outside")
    if "\x00" in folder or "\\" in folder:
        raise FolderError("A folder's name cannot hold a NUL or a backslash.", "outside")
    if folder.startswith("/"):
        raise FolderError(f"Give the folder relative to {root}, not {folder[:200]!r}.", "outside")
    names = [name for name in folder.split("/") if name not in ("", ".")]
    if ".." in names:
        raise FolderError(f"The folder must be inside {root}: no '..' in it.", "outside")
    return "/".join(names)


_DATASET_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


def mount_path(dataset: dict[str, Any]) -> str:
    """Where one of a spec's datasets is seen in the workload: ``/datasets/<name>``, or
    MODEL_PATH when it says so. Raises WorkloadError for a name that is not one folder name
    or any other path (a mount may not shadow the image's own folders)."""
    name = str(dataset.get("name", ""))
    if not _DATASET_NAME.fullmatch(name):
        raise WorkloadError(f"{name[:80]!r} is not a valid dataset folder name.")
    path = dataset.get("path")
    if path is None:
        return f"{DATASETS_PATH}/{name}"
    if path != MODEL_PATH:
        raise WorkloadError(f"A dataset is mounted at {DATASETS_PATH}/<name> or {MODEL_PATH} only.")
    return MODEL_PATH


def dataset_mounts(spec: Spec) -> list[tuple[str, str]]:
    """(folder on this host, path in the workload) for each of ``spec``'s datasets.

    Raises WorkloadError for a dataset the agent has not built here (no ``source``), a
    name that is not one folder name, a path mount_path refuses, or two at one path.
    """
    mounts: list[tuple[str, str]] = []
    for dataset in spec.datasets:
        target = mount_path(dataset)
        source = dataset.get("source")
        if not source or not Path(source).is_absolute() or not Path(source).is_dir():
            what = "model version" if target == MODEL_PATH else "dataset"
            raise WorkloadError(f"The {what} for {target} is not on this host.")
        if target in (t for _, t in mounts):
            raise WorkloadError(f"Two datasets are mounted at {target}.")
        mounts.append((str(source), target))
    return mounts


@dataclass(frozen=True)
class PoolSpec:
    """One warm container to keep ready (issue 19's warm pool): what every claim of it shares.

    ``name`` is stable and unique per host (e.g. "pool-3-s12"); ``command`` is Jupyter's
    command with the pool's own token (``token``), replaced by the claiming session's at
    claim. Limits and GPUs are fixed when it is made: a pool is kept per (image, machine
    type), and holds GPUs only where the admin says so."""

    name: str
    image: str
    command: list[str]
    token: str
    port: int = 8888
    vcpus: float = 1.0
    memory_bytes: int = 1024**3
    pids_limit: int = 1024
    gpu_uuids: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    user: str = "1000:1000"


class PoolMiss(WorkloadError):  # noqa: N818 - a miss, not an error: the caller starts
    """This warm container cannot be claimed (gone, not ready, or the host cannot mount into
    it): the caller starts the workload the ordinary way instead."""


class Runtime(abc.ABC):
    """The contract above: every method the host agent calls is abstract here, so a runtime
    that lacks one cannot be made."""

    kind: str = ""

    @abc.abstractmethod
    def start(self, spec: Spec) -> dict[str, Any]: ...

    @abc.abstractmethod
    def stop(self, state: dict[str, Any], *, timeout: float = 10.0) -> None: ...

    @abc.abstractmethod
    def poll(self, state: dict[str, Any]) -> int | None: ...

    @abc.abstractmethod
    def exit_status(self, state: dict[str, Any]) -> ExitStatus:
        """Running, exited (with its status) or vanished: never "exit 0" for a workload
        nobody knows the end of (as ``poll`` says)."""

    @abc.abstractmethod
    def volume_exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def progress(self, state: dict[str, Any]) -> list[Progress]: ...

    @abc.abstractmethod
    def logs(
        self,
        state: dict[str, Any],
        *,
        since: float | None = None,
        follow: bool = False,
        tail: int | None = None,
    ) -> Iterator[str]:
        """The workload's output, line by line: from ``since`` (a time), or only the last
        ``tail`` lines printed so far (``tail=0``: none of them); then, with ``follow``,
        what it prints next, until it stops."""

    @abc.abstractmethod
    def logs_backfill(self, state: dict[str, Any], *, tail: int) -> tuple[list[str], Iterator[str]]:
        """The last ``tail`` lines printed so far, and an iterator over every line printed
        after them, followed until the workload stops: a line printed while the first are
        read is in exactly one of the two (not lost, as between ``logs(tail=n)`` and a
        later ``logs(tail=0, follow=True)``, nor given twice)."""

    @abc.abstractmethod
    def endpoint(self, state: dict[str, Any]) -> str | None: ...

    @abc.abstractmethod
    def list_managed(self) -> list[Managed]: ...

    @abc.abstractmethod
    def remove_volume(self, name: str) -> None: ...

    @abc.abstractmethod
    def pulling(self, name: str) -> Progress | None: ...

    @abc.abstractmethod
    def copy_volume(self, source: str, target: str, *, image: str) -> None: ...

    @abc.abstractmethod
    def remove_orphan(self, managed: Managed) -> None: ...

    @abc.abstractmethod
    def read_folder(
        self, state: dict[str, Any], folder: str, *, root: str = NOTEBOOKS_PATH
    ) -> Iterator[FolderEntry]:
        """Every file under ``root``/``folder`` of the workload, in a stable order, each read
        as a stream (memory stays flat whatever the folder's size). Reading the folder
        twice gives the files in the same order. Raises FolderError for a folder
        ``folder_path`` refuses, one that is missing or not a folder, one reached through a
        link, or a workload that is gone (for /notebooks: one that does not run; a job's
        exited container is read as it was left)."""

    # --- A notebook volume's files, for snapshots (issue 20) ----------------------------

    @abc.abstractmethod
    def read_volume(self, name: str) -> Iterator[FolderEntry]:
        """Every regular file of the volume ``name`` (paths relative to its root), in a
        stable order, streamed as ``read_folder`` streams them, with ``mode`` and, where
        the runtime can tell without reading the file, ``stamp``. Nothing needs to run: a
        stopped notebook's volume is read (read-only) as it was left; a running one's as
        it is (a file written meanwhile is the caller's to notice). Links, devices and
        fifos are ``skipped`` entries. Raises FolderError("missing") when the volume does
        not exist on this host."""

    @abc.abstractmethod
    def restore_volume(
        self,
        name: str,
        files: Iterable[RestoreFile],
        *,
        labels: dict[str, str],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Make the volume ``name`` hold exactly ``files`` and nothing else: made (with
        ``labels``, as ``start`` makes a spec's volumes) when missing, emptied first when not,
        folders made as the paths need them, everything owned by the workload user (uid and
        gid 1000 in a container) as a first start would leave it. ``progress(n)`` is told of
        each ``n`` bytes written. Nothing may run on the volume meanwhile (the caller
        restores before the workload starts). Raises WorkloadError when it cannot (a read
        from a file's stream raised, a path folder_path refuses, the disk is full): the
        volume is then in no particular state, and the caller restores again before using
        it."""

    # --- The warm pool (issue 19). Runtimes without one keep these defaults. ---------------

    def pool_supported(self) -> bool:
        """Whether this runtime on this host can keep warm containers and claim them."""
        return False

    def pool_fill(self, spec: PoolSpec) -> dict[str, Any]:
        """Start one warm container for ``spec`` (idempotent by ``spec.name``) and return its
        pool state (JSON). It is ready when ``pool_ready(state)`` says so."""
        raise PoolMiss("This runtime keeps no warm containers.")

    def pool_ready(self, state: dict[str, Any]) -> bool:
        """Whether the warm container of ``state`` runs and its Jupyter answers."""
        return False

    def pool_claim(self, state: dict[str, Any], spec: Spec) -> dict[str, Any]:
        """Make the warm container of ``state`` the workload ``spec`` describes: its volumes and
        dataset folders mounted where ``start`` would mount them, its environment (the
        session's token, team secrets, the workload token) given to everything that runs in
        it from now on, its Jupyter answering only the session's token, on the isolated
        workload network as ``start`` puts it. Returns a state that ``stop``, ``poll``,
        ``exit_status``, ``progress``, ``logs``, ``endpoint`` and ``read_folder`` take as they
        take ``start``'s; from then on ``list_managed`` reports it as ``spec.name`` with
        ``spec``'s labels. Raises PoolMiss when it cannot (the caller then calls ``start``);
        a PoolMiss leaves nothing of ``spec`` behind in the container."""
        raise PoolMiss("This runtime keeps no warm containers.")

    def pool_list(self) -> list[Managed]:
        """Warm containers not (yet) claimed, each ``Managed.name`` its PoolSpec's name and
        ``labels`` including ``lattice.pool``."""
        return []

    def pool_remove(self, state: dict[str, Any]) -> None:  # noqa: B027 - a no-op by default
        """Remove the warm container of ``state`` (never one that was claimed)."""
