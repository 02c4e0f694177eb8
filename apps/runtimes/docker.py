"""Workloads as Docker containers: the real backend.

Everything this creates carries ``lattice.*`` labels. Containers get the
machine type's CPU, memory and pids limits, run as a non-root user with
``no-new-privileges`` and every capability dropped, publish their port on
loopback only, and see exactly the GPUs allocated to them: a device request
for those UUIDs, and NVIDIA_VISIBLE_DEVICES set by us ("void" for none) over
whatever the image says. Persistent storage is named volumes, which outlive
containers; dataset versions (and a model server's model version, at /model)
are folders the agent built on the host, bind-mounted read-only. Workloads
share a bridge network on which they cannot reach each other, and
``isolate_workloads`` keeps them from private and link-local addresses (the
control plane, the broker, other hosts, cloud metadata) and from the host
itself (its Redis, PostgreSQL, Docker API, SSH), except for the addresses and ports
an administrator allows (``LATTICE_WORKLOAD_ALLOW``: an internal Git server, say).
"""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import io
import itertools
import os
import posixpath
import shutil
import socket
import stat
import subprocess
import tarfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import docker
import requests
from django.conf import settings
from docker.errors import (
    APIError,
    ImageNotFound,
    NotFound,
    create_api_error_from_http_exception,
)
from docker.types import DeviceRequest, Mount
from docker.utils import decode_json_header

from apps.runtimes.base import (
    DATASETS_PATH,
    LABEL_PREFIX,
    MODEL_PATH,
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
    expand_command,
    folder_path,
    port_answers,
    shared_folder,
)
from apps.runtimes.images import (
    IMAGE_TITLES,
    BuildStep,
    ImageBuildError,
    build_step_message,
    build_template_image,
    is_local_image,
    local_template_of,
    notebook_image,
)
from apps.runtimes.pool import (
    CLAIM_DIR,
    SLOT_TARGETS,
    SlotError,
    Slots,
    numeric_user,
)
from apps.runtimes.volumefiles import (
    FOLDER_MODE,
    PERMISSION_BITS,
    PIECE,
    read_tree,
    restore_path,
    restore_tree,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from docker.models.containers import Container

# A warm container's label: its PoolSpec's name (and its slot's, apps.runtimes.pool).
POOL_LABEL = f"{LABEL_PREFIX}pool"
# Workloads join this bridge, where containers cannot reach each other (no ICC).
NETWORK = "lattice-workloads"
# How long a stop that finds another stop removing the container waits for it to go.
REMOVAL_WAIT = 30.0
# How long a removal waits for a claim of the same warm container to finish (a claim waits
# at most a few seconds for its ack).
SLOT_LOCK_WAIT = 15.0
# Where workloads may not go: other hosts on private networks (the broker, the
# control plane, other GPU hosts), link-local (cloud metadata).
BLOCKED_DESTINATIONS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
# Marks the INPUT rule in `iptables -S`, so a person can tell what it is for.
HOST_RULE_COMMENT = "lattice: workloads may not reach the host"
# Marks the rules that let workloads reach an address the administrator allows.
ALLOW_RULE_COMMENT = "lattice: workloads may reach this (LATTICE_WORKLOAD_ALLOW)"


class DockerRuntime(Runtime):
    kind = "docker"
    # Image pulls (or local template builds) in flight, by workload name: what progress()
    # reports meanwhile.
    _pulls: ClassVar[dict[str, Progress]] = {}

    def __init__(self, client: Any = None, *, address: str | None = None) -> None:
        self.client = client or docker.from_env()
        # Where workloads' ports are published, and so where the web tier reaches them.
        self.address = address or settings.LATTICE_WORKLOAD_ADDRESS

    @staticmethod
    def container_name(name: str) -> str:
        return f"lattice-{name}"

    def _container(self, state: dict[str, Any]) -> Container | None:
        """The workload's container: by its id, else by its name when it is this Lattice's
        (another installation on the same engine may run a workload of the same name:
        never stop, read or remove theirs)."""
        try:
            if state.get("container_id"):
                return self.client.containers.get(state["container_id"])
            container = self.client.containers.get(self.container_name(state["name"]))
        except NotFound:
            return None
        theirs = container.labels.get(f"{LABEL_PREFIX}installation")
        if theirs and theirs != settings.LATTICE_INSTALLATION:
            return None
        return container

    def _ensure_image(self, spec: Spec) -> None:
        with contextlib.suppress(ImageNotFound):
            self.client.images.get(spec.image)
            return
        template = local_template_of(spec.image)
        if template is not None:
            self._build(spec, template)
            return
        if is_local_image(spec.image):
            # Its name on Docker Hub is anyone's: a missing local image is never pulled.
            raise WorkloadError(
                f"The image {spec.image} is not built on this host, and a locally built image "
                "is never downloaded.",
            )
        layers: dict[str, tuple[int, int]] = {}
        try:
            for event in self.client.api.pull(spec.image, stream=True, decode=True):
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (detail.get("current", 0), detail["total"])
                done = sum(c for c, _ in layers.values())
                total = sum(t for _, t in layers.values()) or 1
                self._pulls[spec.name] = Progress(
                    "pulling",
                    f"Downloading {spec.image}",
                    min(99, done * 100 // total),
                )
        except APIError as exc:
            raise WorkloadError(
                f"The image {spec.image} is not on this host and could not be downloaded: "
                f"{exc.explanation or exc}",
            ) from exc
        finally:
            self._pulls.pop(spec.name, None)

    def _build(self, spec: Spec, template: str) -> None:
        """Build a template's image here (images/build-template.sh), its steps reported as
        the pull's progress; a start of the same image meanwhile waits for this build."""

        title = IMAGE_TITLES.get(template, template)

        def report(step: BuildStep) -> None:
            self._pulls[spec.name] = Progress(
                "building",
                build_step_message(title, step),
                step.percent,
                kind=step.kind,
                step=step.step,
                of=step.of,
            )

        try:
            built = build_template_image(template, report)
        except ImageBuildError as exc:
            raise WorkloadError(str(exc)) from exc
        finally:
            self._pulls.pop(spec.name, None)
        if built != spec.image:
            raise WorkloadError(
                f"This host built {built}, not {spec.image}: its Lattice is another version "
                "than the control plane's.",
            )

    def _volumes(self, spec: Spec) -> dict[str, dict[str, str]]:
        # A volume carries its workload's installation, as the container does: whoever
        # cleans up (a test run, a reinstall) can tell its own volumes from a neighbour's.
        labels = {f"{LABEL_PREFIX}managed": "true"}
        if spec.labels.get("installation"):
            labels[f"{LABEL_PREFIX}installation"] = spec.labels["installation"]
        mounts = {}
        for volume, path in spec.volumes.items():
            folder = shared_folder(spec, volume)
            if folder is not None:
                self._shared_volume(volume, folder, labels)
                mounts[volume] = {"bind": path, "mode": "rw"}
                continue
            try:
                self.client.volumes.get(volume)
            except NotFound:
                self.client.volumes.create(volume, labels=labels)
            mounts[volume] = {"bind": path, "mode": "rw"}
        return mounts

    def _shared_volume(self, volume: str, folder: Path, labels: dict[str, str]) -> None:
        """``volume`` as Docker's local driver binding ``folder`` (in LATTICE_SHARED_STORAGE):
        every host's container of it reads and writes the one folder. A volume of that name
        this engine made before (its files on this host only) is refused, not hidden."""
        try:
            found = self.client.volumes.get(volume)
        except NotFound:
            self.client.volumes.create(
                volume,
                driver="local",
                driver_opts={"type": "none", "o": "bind", "device": str(folder)},
                labels=labels,
            )
            return
        options = found.attrs.get("Options") or {}
        if options.get("device") != str(folder):
            raise WorkloadError(
                f"The volume {volume} on this host is not the shared folder {folder}: move its "
                "files there, then remove the volume (docker volume rm), and start again."
            )

    def network(self) -> Any:
        """The workloads' bridge network, made on first use."""
        try:
            return self.client.networks.get(NETWORK)
        except NotFound:
            return self.client.networks.create(
                NETWORK,
                driver="bridge",
                options={"com.docker.network.bridge.enable_icc": "false"},
                labels={f"{LABEL_PREFIX}managed": "true"},
            )

    def create(self, spec: Spec) -> Container:
        """Create (not start) the container for ``spec``, with every limit and label."""
        return self.client.containers.create(**self._create_kwargs(spec))

    def _create_kwargs(self, spec: Spec) -> dict[str, Any]:
        """What ``create`` hands Docker for ``spec``: a warm container (``pool_fill``) is made
        from the same, so its limits and isolation are start's."""
        visible = ",".join(spec.gpu_uuids) or "void"
        datasets = dataset_mounts(spec)
        paths = [*spec.volumes.values(), *(target for _, target in datasets)]
        return dict(  # noqa: C408 - Docker's keyword arguments
            image=spec.image,
            command=expand_command(
                spec.command,
                port=spec.port,
                ip="0.0.0.0",  # noqa: S104 - inside the container
                mounts={path: path for path in paths},
            ),
            name=self.container_name(spec.name),
            labels=spec.all_labels(),
            # TINI_SUBREAPER: images that start with their own tini (ours do) run under
            # Docker's init; this keeps tini from warning about it in every log.
            environment={**spec.env, "NVIDIA_VISIBLE_DEVICES": visible, "TINI_SUBREAPER": "1"},
            user=spec.user,
            nano_cpus=int(spec.vcpus * 1_000_000_000),
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,
            pids_limit=spec.pids_limit,
            security_opt=["no-new-privileges=true"],
            cap_drop=["ALL"],
            privileged=False,
            init=True,
            network=self.network().name,
            ports={f"{spec.port}/tcp": (self.address, None)},
            volumes=self._volumes(spec),
            # Dataset folders the agent built on this host, read-only (as bind mounts: two
            # names may share one folder, which a volumes dict keyed by source cannot say).
            mounts=[
                Mount(target, source, type="bind", read_only=True) for source, target in datasets
            ],
            device_requests=(
                [DeviceRequest(device_ids=list(spec.gpu_uuids), capabilities=[["gpu"]])]
                if spec.gpu_uuids
                else []
            ),
        )

    def start(self, spec: Spec) -> dict[str, Any]:
        dataset_mounts(spec)  # every dataset folder is here, before anything is replaced
        existing = self._container({"name": spec.name})
        fingerprint = existing.labels.get(f"{LABEL_PREFIX}spec") if existing is not None else None
        if (
            existing is not None
            and existing.status == "running"
            and fingerprint == spec.fingerprint()
        ):
            return self._state(existing, spec.name)
        # A warm container claimed for this very spec (pool_claim) is this workload.
        record = self._claim_record(existing) if existing is not None else None
        if (
            existing is not None
            and record is not None
            and existing.status == "running"
            and record.get("fingerprint") == spec.fingerprint()
        ):
            return dict(record["state"])
        if existing is not None:
            theirs = existing.labels.get(f"{LABEL_PREFIX}installation")
            ours = spec.labels.get("installation")
            if theirs and ours and theirs != ours:
                raise WorkloadError(
                    f"The container {existing.name} belongs to another Lattice on this Docker "
                    f"engine ({theirs}); give each Lattice its own engine.",
                )
        # Stopped, or made from another spec (other GPUs, other limits): replace it.
        if existing is not None:
            self._remove(existing)
        self._ensure_image(spec)
        container = self.create(spec)
        try:
            container.start()
        except APIError as exc:
            container.remove(force=True)
            raise WorkloadError(f"The container could not start: {exc.explanation or exc}") from exc
        container.reload()
        return self._state(container, spec.name)

    def _state(self, container: Container, name: str) -> dict[str, Any]:
        ports = container.attrs["NetworkSettings"]["Ports"] or {}
        binding: dict[str, str] = next((b for b in ports.values() if b), [{}])[0]
        return {
            "name": name,
            "container_id": container.id,
            "port": int(binding["HostPort"]) if binding.get("HostPort") else None,
            # When its process started (Unix time), as Docker says: billing counts from it.
            "started_at": _unix_time(container.attrs.get("State", {}).get("StartedAt") or ""),
        }

    def stop(self, state: dict[str, Any], *, timeout: float = 10.0) -> None:
        container = self._container(state)
        if container is None:
            # A claimed warm container removed behind our back: its slot's mounts go.
            self._remove_slot(state.get("pool"))
            return
        pool = container.labels.get(POOL_LABEL)
        # A warm container's claim (which binds volumes into its slot) is over before it goes.
        with self._slot_lock(pool, wait=SLOT_LOCK_WAIT) as held:
            if not held:
                raise WorkloadError(f"The warm container {pool} is being claimed; try again.")
            self._stop_locked(container, state, pool, timeout)

    def _stop_locked(
        self, container: Container, state: dict[str, Any], pool: str | None, timeout: float
    ) -> None:
        try:
            container.stop(timeout=int(timeout))
            container.remove()
        except NotFound:
            self._remove_slot(pool, locked=True)
            return
        except APIError as exc:
            if exc.status_code != 409:  # noqa: PLR2004 - "removal already in progress" is fine
                raise
            # Another stop is removing it: return once it is gone, as that stop will, so
            # what the caller does next (remove its volumes) finds them free.
            deadline = time.monotonic() + REMOVAL_WAIT
            while self._container(state) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        # A claimed warm container is never returned to the pool: its slot goes with it.
        self._remove_slot(pool, locked=True)

    def poll(self, state: dict[str, Any]) -> int | None:
        container = self._container(state)
        if container is None:
            return 0
        if container.status in ("created", "running", "restarting"):
            return None
        return int(container.attrs["State"].get("ExitCode", 0))

    def exit_status(self, state: dict[str, Any]) -> ExitStatus:
        container = self._container(state)
        if container is None:
            # Removed behind our back (``docker rm -f``): how it ended is not known.
            return ExitStatus(vanished=True)
        if container.status in ("created", "running", "restarting"):
            return ExitStatus()
        finished = container.attrs["State"].get("FinishedAt") or ""
        return ExitStatus(
            code=int(container.attrs["State"].get("ExitCode", 0)),
            finished_at=_unix_time(finished),
        )

    def volume_exists(self, name: str) -> bool:
        try:
            self.client.volumes.get(name)
        except NotFound:
            return False
        return True

    def pulling(self, name: str) -> Progress | None:
        return self._pulls.get(name)

    def progress(self, state: dict[str, Any]) -> list[Progress]:
        pulling = self._pulls.get(state["name"])
        if pulling is not None:
            return [pulling]
        exit_code = self.poll(state)
        if exit_code is not None:
            return [Progress("failed", f"The container exited with status {exit_code}.")]
        if state.get("port") and port_answers(state["port"], self.address):
            return [Progress("ready", "Ready.", 100)]
        return [Progress("starting", "The container is starting.")]

    def logs(
        self,
        state: dict[str, Any],
        *,
        since: float | None = None,
        follow: bool = False,
        tail: int | None = None,
    ) -> Iterator[str]:
        container = self._container(state)
        if container is None:
            return
        kwargs: dict[str, Any] = {"stream": True, "follow": follow}
        if tail is not None:
            kwargs["tail"] = tail
        if since is not None:
            kwargs["since"] = datetime.fromtimestamp(since)  # noqa: DTZ006 - docker wants local time
        yield from _lines(container.logs(**kwargs))

    def logs_backfill(self, state: dict[str, Any], *, tail: int) -> tuple[list[str], Iterator[str]]:
        # Docker stamps each line (to the nanosecond): the rest is followed from the last
        # recent line's second on, and what is not newer than that line is skipped.
        container = self._container(state)
        if container is None:
            return [], iter(())
        stamped = [
            _stamped(line) for line in _lines([container.logs(tail=max(tail, 1), timestamps=True)])
        ]
        recent = [line for _, line in stamped[-tail:]] if tail else []
        last = stamped[-1][0] if stamped else None

        def rest() -> Iterator[str]:
            kwargs: dict[str, Any] = {"stream": True, "follow": True, "timestamps": True}
            if last is not None:
                kwargs["since"] = max(last // 10**9, 1)
            for line in _lines(container.logs(**kwargs)):
                at, text = _stamped(line)
                if last is None or at > last:
                    yield text

        return recent, rest()

    def endpoint(self, state: dict[str, Any]) -> str | None:
        port = state.get("port")
        if self.poll(state) is None and port and port_answers(port, self.address):
            return f"http://{self.address}:{port}"
        return None

    def list_managed(self) -> list[Managed]:
        found = []
        for container in self.client.containers.list(
            all=True,
            filters={"label": f"{LABEL_PREFIX}managed=true"},
        ):
            if container.labels.get(HELPER_LABEL):
                continue  # a volume helper (one made before helpers lost lattice.managed)
            if container.labels.get(POOL_LABEL):
                # A warm container is the workload it was claimed for (its host-side
                # record), or, unclaimed, no workload at all (pool_list's).
                claimed = self._claimed_managed(container)
                if claimed is not None:
                    found.append(claimed)
                continue
            name = container.labels.get(f"{LABEL_PREFIX}name", container.name)
            found.append(
                Managed(
                    name=name,
                    running=container.status == "running",
                    labels=dict(container.labels),
                    state={"name": name, "container_id": container.id},
                    datasets=_dataset_sources(container),
                ),
            )
        return found

    def copy_volume(self, source: str, target: str, *, image: str) -> None:
        """Copy with a throwaway container of ``image`` (a notebook image: ``cp`` and a
        /notebooks folder), as uid 1000, without network."""
        try:
            source_labels = self.client.volumes.get(source).attrs.get("Labels") or {}
        except NotFound:
            return  # never started: nothing to copy
        # The copy belongs to the same installation as its source.
        installation = source_labels.get(f"{LABEL_PREFIX}installation", "")
        # A job's first start on a host copies before its image is there: fetched (or
        # built) here, as its start would.
        self._ensure_image(Spec(name=f"copy-{target}", image=image, command=[]))
        self._volumes(
            Spec(
                name="copy",
                image=image,
                command=[],
                volumes={target: "/notebooks"},
                labels={"installation": installation} if installation else {},
            )
        )
        # The target is mounted where the image has a folder owned by uid 1000, so a new
        # volume takes that owner (Docker copies it on first mount).
        helper = self.client.containers.create(
            image,
            ["cp", "-a", "/source/.", "/notebooks/"],
            entrypoint=[],
            user="1000:1000",
            volumes={
                source: {"bind": "/source", "mode": "ro"},
                target: {"bind": "/notebooks", "mode": "rw"},
            },
            network_disabled=True,
            security_opt=["no-new-privileges=true"],
            cap_drop=["ALL"],
            labels={f"{LABEL_PREFIX}helper": "copy-volume"},
        )
        try:
            helper.start()
            result = helper.wait(timeout=3600)
            if result.get("StatusCode", 1) != 0:
                output = helper.logs().decode(errors="replace")[-500:]
                raise WorkloadError(f"Copying the files failed: {output}")
        finally:
            helper.remove(force=True)

    def remove_volume(self, name: str) -> None:
        try:
            self.client.volumes.get(name).remove(force=True)
        except NotFound:
            return

    def remove_orphan(self, managed: Managed) -> None:
        """Remove a container the control plane does not know (the reconciler's cleanup)."""
        container = self._container(managed.state)
        if container is not None:
            self._remove(container)
        else:
            self._remove_slot(managed.state.get("pool"))

    def _remove(self, container: Container, *, locked: bool = False) -> None:
        """Remove ``container`` at once; a warm one's slot (mounts, folder) goes with it, once
        no claim of it is in progress (``locked``: the caller holds the slot's lock)."""
        pool = container.labels.get(POOL_LABEL)
        with self._slot_lock(None if locked else pool, wait=SLOT_LOCK_WAIT) as held:
            if not held:
                raise WorkloadError(f"The warm container {pool} is being claimed; try again.")
            with contextlib.suppress(NotFound):
                container.remove(force=True)
            self._remove_slot(pool, locked=True)

    # --- The warm pool (issue 19; apps.runtimes.pool) ------------------------------------

    @property
    def _slots(self) -> Slots:
        return Slots(settings.LATTICE_POOL_DIR)

    @contextlib.contextmanager
    def _slot_lock(self, pool: str | None, *, wait: float) -> Iterator[bool]:
        """The slot's claim lock (``.lock`` in its folder, held by ``pool_claim`` while it
        binds a session's volumes), waiting up to ``wait`` seconds: yields whether it is
        held (True also where there is nothing to lock: no slot, no pool support)."""
        if not pool or not self.pool_supported():
            yield True
            return
        try:
            lock = os.open(
                self._slots.path(pool) / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
            )
        except (OSError, SlotError):
            yield True  # no slot folder (any more): nothing is being claimed in it
            return
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(lock)

    def _remove_slot(self, pool: str | None, *, locked: bool = False) -> None:
        if not pool or not self.pool_supported():
            return
        with self._slot_lock(None if locked else pool, wait=SLOT_LOCK_WAIT) as held:
            if not held:
                raise WorkloadError(f"The warm container {pool} is being claimed; try again.")
            try:
                self._slots.remove(pool)
            except SlotError as exc:
                raise WorkloadError(
                    f"The warm container's mounts could not be undone: {exc}"
                ) from exc

    def _claim_record(self, container: Container) -> dict[str, Any] | None:
        pool = container.labels.get(POOL_LABEL)
        if not pool or not self.pool_supported():
            return None
        return self._slots.record(pool)

    def _claimed_managed(self, container: Container) -> Managed | None:
        record = self._claim_record(container)
        if record is None:
            return None
        state = {**record["state"], "container_id": container.id}
        return Managed(
            name=str(record["name"]),
            running=container.status == "running",
            labels=dict(record["labels"]),
            state=state,
            datasets=tuple(record.get("datasets") or ()),
        )

    _pool_support: ClassVar[dict[str, bool]] = {}

    def pool_supported(self) -> bool:
        """Root on Linux, Docker's volumes on this file system (the agent runs beside the
        engine, not in a container of its own), and a pool folder that can be made a
        shared mount. Asked once per pool folder per process."""
        key = str(settings.LATTICE_POOL_DIR)
        if key not in self._pool_support:
            self._pool_support[key] = self._pool_check()
        return self._pool_support[key]

    def _pool_check(self) -> bool:
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
            return False
        try:
            root = self.client.info().get("DockerRootDir") or ""
        except APIError:
            return False
        if not root or not (Path(root) / "volumes").is_dir():
            return False
        try:
            self._slots.prepare()
        except (SlotError, OSError):
            return False
        return True

    def pool_fill(self, spec: PoolSpec) -> dict[str, Any]:
        if not self.pool_supported():
            raise PoolMiss("This host cannot keep warm containers (see pool_supported).")
        existing = self._container({"name": spec.name})
        if existing is not None and existing.labels.get(POOL_LABEL) == spec.name:
            if existing.status == "running" and self._claim_record(existing) is None:
                return self._pool_state(existing, spec.name)
            self._remove(existing)
        elif existing is not None:
            raise WorkloadError(f"A container named {existing.name} is not a warm one.")
        self._free_claimed_slot(spec.name)
        try:
            uid, gid = numeric_user(spec.user)
        except SlotError as exc:
            raise WorkloadError(str(exc)) from exc
        base = Spec(
            name=spec.name,
            image=spec.image,
            command=spec.command,
            port=spec.port,
            # The pool's token until a claim gives the session's (the image's extension).
            env={"LATTICE_POOL": "1", "JUPYTER_TOKEN": spec.token},
            vcpus=spec.vcpus,
            memory_bytes=spec.memory_bytes,
            pids_limit=spec.pids_limit,
            gpu_uuids=list(spec.gpu_uuids),
            labels={**spec.labels, "pool": spec.name},
            user=spec.user,
        )
        self._ensure_image(base)
        try:
            slot = self._slots.make(spec.name, uid, gid)
        except (SlotError, OSError) as exc:
            raise WorkloadError(f"The warm container's folder could not be made: {exc}") from exc
        kwargs = self._create_kwargs(base)
        kwargs["mounts"] = [
            *(
                Mount(target, str(slot / "mnt" / folder), type="bind", propagation="rslave")
                for target, folder in SLOT_TARGETS.items()
            ),
            Mount(CLAIM_DIR, str(slot / "run"), type="bind"),
        ]
        try:
            container = self.client.containers.create(**kwargs)
        except APIError as exc:
            self._remove_slot(spec.name)
            raise WorkloadError(f"The warm container could not be made: {exc}") from exc
        try:
            container.start()
        except APIError as exc:
            self._remove(container)
            raise WorkloadError(f"The warm container could not start: {exc.explanation}") from exc
        container.reload()
        return self._pool_state(container, spec.name)

    def _free_claimed_slot(self, name: str) -> None:
        """A slot whose last container was claimed is filled again only once that session
        has gone (while it runs, its mounts stay): WorkloadError until then."""
        record = self._slots.record(name)
        if record is None:
            return
        if self._container(record.get("state") or {}) is not None:
            raise WorkloadError(f"The slot {name} still serves a claimed session.")
        self._remove_slot(name)

    def _pool_state(self, container: Container, name: str) -> dict[str, Any]:
        command = container.attrs.get("Config", {}).get("Cmd") or []
        return {
            **self._state(container, name),
            "pool": name,
            "base_url": _base_url(command) or "/",
        }

    def pool_ready(self, state: dict[str, Any]) -> bool:
        container = self._container(state)
        if container is None or container.status != "running" or not state.get("port"):
            return False
        url = f"http://{self.address}:{state['port']}{state.get('base_url') or '/'}api"
        try:
            return requests.get(url, timeout=1.0).status_code == 200  # noqa: PLR2004
        except requests.RequestException:
            return False

    def pool_list(self) -> list[Managed]:
        found = []
        for container in self.client.containers.list(
            all=True, filters={"label": f"{LABEL_PREFIX}pool"}
        ):
            theirs = container.labels.get(f"{LABEL_PREFIX}installation")
            if theirs and theirs != settings.LATTICE_INSTALLATION:
                continue
            name = container.labels[POOL_LABEL]
            if self._claim_record(container) is not None:
                continue
            found.append(
                Managed(
                    name=name,
                    running=container.status == "running",
                    labels=dict(container.labels),
                    state=self._pool_state(container, name),
                )
            )
        return found

    def pool_remove(self, state: dict[str, Any]) -> None:
        container = self._container(state)
        pool = container.labels.get(POOL_LABEL) if container is not None else state.get("pool")
        if container is not None and not pool:
            return  # not a warm container
        # Never under a claim in progress (it binds a session's volumes into the slot): a
        # slot being claimed is skipped (claimed, the session's stop removes it; missed,
        # the next pass asks again).
        with self._slot_lock(pool, wait=0) as held:
            if not held:
                return
            if pool and self._slots.record(pool) is not None:
                return  # claimed: the session's stop removes it
            if container is not None:
                self._remove(container, locked=True)
            else:
                self._remove_slot(pool, locked=True)

    def pool_claim(self, state: dict[str, Any], spec: Spec) -> dict[str, Any]:
        started = time.time()
        container = self._container(state)
        pool = container.labels.get(POOL_LABEL) if container is not None else None
        if container is None or not pool or not self.pool_supported():
            raise PoolMiss("The warm container is gone.")
        if container.status != "running" or self._claim_record(container) is not None:
            raise PoolMiss("The warm container is not running, or already claimed.")
        self._pool_fits(container, spec)
        slots = self._slots
        # One claim of a slot at a time on this host (the control plane hands a slot to one
        # start; this holds even if it were asked twice); removals take it too.
        try:
            lock = os.open(
                slots.path(pool) / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
            )
        except OSError as exc:
            raise PoolMiss("The warm container's slot is gone.") from exc
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise PoolMiss("The warm container is being claimed by another start.") from exc
            if slots.record(pool) is not None:
                raise PoolMiss("The warm container is already claimed.")
            return self._claim(container, pool, state, spec, started)
        finally:
            os.close(lock)

    def _claim(
        self, container: Container, pool: str, state: dict[str, Any], spec: Spec, started: float
    ) -> dict[str, Any]:
        token = spec.env.get("JUPYTER_TOKEN", "")
        uid, gid = numeric_user(spec.user)
        slots = self._slots
        claim_written = False
        try:
            sources: list[str] = []
            for volume, path in self._volumes(spec).items():
                # A shared volume is its folder (Docker mounts it at the volume's Mountpoint
                # only while a container uses it).
                shared = shared_folder(spec, volume)
                mountpoint = (
                    str(shared)
                    if shared is not None
                    else self.client.volumes.get(volume).attrs.get("Mountpoint") or ""
                )
                if not mountpoint or not Path(mountpoint).is_dir():
                    raise SlotError(f"The volume {volume} is not on this file system.")  # noqa: TRY301
                _own_new_volume(mountpoint, uid, gid)
                slots.bind(mountpoint, slots.target(pool, path["bind"]), read_only=False)
            for source, target in dataset_mounts(spec):
                slots.bind(source, slots.target(pool, target), read_only=True)
                sources.append(source)
            nonce = os.urandom(12).hex()
            slots.write_claim(
                pool,
                {
                    "id": nonce,
                    "token": token,
                    "base_url": _base_url(spec.command) or "/",
                    "env": dict(spec.env),
                },
                uid,
                gid,
            )
            claim_written = True
            ack = self._wait_ack(pool, nonce)
            if not ack.get("ok"):
                raise SlotError(f"Its Jupyter refused the claim: {str(ack.get('error'))[:300]}")  # noqa: TRY301
            container.rename(self.container_name(spec.name))
            claimed = {
                "name": spec.name,
                "container_id": container.id,
                "port": state.get("port") or self._state(container, spec.name)["port"],
                # Billing counts from the claim taken, not from when the warm container
                # started (the time ``started`` is kept for the record).
                "started_at": time.time(),
                "claim_started": started,
                "pool": pool,
            }
            slots.write_record(
                pool,
                {
                    "name": spec.name,
                    "labels": spec.all_labels(),
                    "fingerprint": spec.fingerprint(),
                    "datasets": sources,
                    "state": claimed,
                },
            )
        except (SlotError, OSError, APIError, NotFound, WorkloadError) as exc:
            if claim_written:
                # Its Jupyter may have taken part of the claim: it never serves anyone now.
                with contextlib.suppress(WorkloadError):
                    self._remove(container, locked=True)
            else:
                with contextlib.suppress(SlotError):
                    slots.unmount(pool)
            raise PoolMiss(f"The warm container could not be claimed: {exc}") from exc
        return claimed

    def _pool_fits(self, container: Container, spec: Spec) -> None:
        """PoolMiss unless the warm container runs ``spec``'s image with its limits, GPUs,
        user and port, and ``spec`` is a plain Jupyter start (a Git clone first is not)."""
        config = container.attrs.get("Config") or {}
        host = container.attrs.get("HostConfig") or {}
        requests_ = host.get("DeviceRequests") or []
        gpus = sorted(d for r in requests_ for d in (r.get("DeviceIDs") or []))
        ports = (config.get("ExposedPorts") or {}).keys()
        checks = {
            "image": config.get("Image") == spec.image,
            "vCPUs": host.get("NanoCpus") == int(spec.vcpus * 1_000_000_000),
            "memory": host.get("Memory") == spec.memory_bytes,
            "pids": host.get("PidsLimit") == spec.pids_limit,
            "GPUs": gpus == sorted(spec.gpu_uuids),
            "user": config.get("User") == spec.user,
            "port": f"{spec.port}/tcp" in ports,
            "command": bool(spec.command) and spec.command[0] == "jupyter",
            "token": bool(spec.env.get("JUPYTER_TOKEN")),
            "mounts": all(p in SLOT_TARGETS for p in spec.volumes.values()),
        }
        wrong = [what for what, ok in checks.items() if not ok]
        if wrong:
            raise PoolMiss(f"The warm container does not fit this workload: {', '.join(wrong)}.")

    def _wait_ack(self, pool: str, nonce: str) -> dict[str, Any]:
        deadline = time.monotonic() + settings.LATTICE_POOL_CLAIM_WAIT
        while time.monotonic() < deadline:
            ack = self._slots.read_ack(pool)
            if ack is not None:
                if ack.get("id") != nonce:
                    return {"ok": False, "error": "The ack is not for this claim."}
                return ack
            time.sleep(0.005)
        return {"ok": False, "error": "No answer in time."}

    # --- A notebook volume's files, for snapshots (issue 20) -----------------------------
    # Read and written at the volume's Mountpoint when the agent can reach it (root beside
    # the engine: ``_mountpoint``), else through a helper container's archive. A test sets
    # ``direct_volumes`` False to take the helper's way.
    direct_volumes: bool = True
    # What a helper container is made of: the notebook image by default, which every
    # notebook host has. A reading or writing helper is created, never started; the one
    # that empties a volume for a restore runs ``sh`` (or a static ``/bin/busybox``).
    helper_image: str | None = None

    def _managed_volume(self, name: str) -> Any:
        """This Lattice's volume ``name``, or FolderError("missing") (another installation's
        on the same engine is not ours to read or write)."""
        try:
            volume = self.client.volumes.get(name)
        except NotFound as exc:
            raise FolderError(f"The volume {name} is not on this host.", "missing") from exc
        theirs = (volume.attrs.get("Labels") or {}).get(f"{LABEL_PREFIX}installation")
        if theirs and theirs != settings.LATTICE_INSTALLATION:
            raise FolderError(f"The volume {name} belongs to another Lattice.", "missing")
        return volume

    def _mountpoint(self, volume: Any) -> Path | None:
        """The volume's folder on this file system, when the agent may use it directly: root
        (it writes as uid 1000 and reads every file), a plain local volume (one with driver
        options, NFS say, is mounted only while a container uses it), and its Mountpoint a
        real folder here (not when the agent runs in a container of its own). The test is
        pool_supported's: root beside the engine."""
        if not self.direct_volumes or not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        attrs = volume.attrs
        if attrs.get("Driver") != "local" or attrs.get("Options"):
            return None
        mountpoint = str(attrs.get("Mountpoint") or "")
        if not mountpoint.startswith("/"):
            return None
        try:
            info = Path(mountpoint).lstat()
        except OSError:
            return None
        return Path(mountpoint) if stat.S_ISDIR(info.st_mode) else None

    def read_volume(self, name: str) -> Iterator[FolderEntry]:
        """At its Mountpoint, walked without following links (apps.runtimes.volumefiles: each
        file's stamp from lstat's numbers); else as a helper container's archive streams it
        (no stamps: every file is read)."""
        volume = self._managed_volume(name)
        folder = self._mountpoint(volume)
        if folder is not None:
            return read_tree(folder)
        return self._read_volume_archive(name)

    def _read_volume_archive(self, name: str) -> Iterator[FolderEntry]:
        with self._volume_helper(name, read_only=True) as helper:
            chunks, _ = self.client.api.get_archive(helper.id, VOLUME_HELPER_PATH)
            reader = io.BufferedReader(_ChunkReader(chunks), buffer_size=1024 * 1024)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for member in tar:
                    _, _, path = member.name.partition("/")
                    if not path or member.isdir():
                        continue
                    if member.isreg():
                        yield FolderEntry(
                            path,
                            member.size,
                            tar.extractfile(member),
                            mode=member.mode & PERMISSION_BITS,
                        )
                    elif member.islnk():
                        yield FolderEntry(path, 0, same_as=member.linkname.partition("/")[2])
                    else:
                        yield FolderEntry(path, 0, skipped=_TAR_KINDS.get(member.type, "other"))

    @contextlib.contextmanager
    def _volume_helper(
        self, name: str, *, read_only: bool, command: list[str] | None = None
    ) -> Iterator[Container]:
        """A container made (not started: ``command`` is what it would run) of
        ``helper_image`` with the volume ``name`` at VOLUME_HELPER_PATH: no network, no
        capabilities, uid 1000; removed after. Labelled ``lattice.helper`` and the
        installation, never ``lattice.managed``: it is not a workload (list_managed does
        not report it, the reconciler never takes it for an orphan); one a crashed agent
        left is removed by ``remove_stale_helpers`` when an agent starts."""
        image = self.helper_image or notebook_image()
        try:
            self.client.images.get(image)
        except ImageNotFound as exc:
            raise WorkloadError(
                f"The image {image} is not on this host: the volume cannot be reached."
            ) from exc
        labels = {HELPER_LABEL: "volume"}
        labels[f"{LABEL_PREFIX}installation"] = settings.LATTICE_INSTALLATION
        helper = self.client.containers.create(
            image,
            command or ["true"],
            entrypoint=[],
            user="1000:1000",
            volumes={name: {"bind": VOLUME_HELPER_PATH, "mode": "ro" if read_only else "rw"}},
            network_disabled=True,
            security_opt=["no-new-privileges=true"],
            cap_drop=["ALL"],
            labels=labels,
        )
        try:
            yield helper
        finally:
            with contextlib.suppress(NotFound):
                helper.remove(force=True)

    def restore_volume(
        self,
        name: str,
        files: Iterable[RestoreFile],
        *,
        labels: dict[str, str],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """``labels``: a spec's (``installation`` among them), given to a volume made here as
        ``start`` gives them. Directly at its Mountpoint (emptied there, never through a
        link or a mount point); else the volume is emptied by a started helper container
        (``_empty_volume``: not removed, which Docker refuses while a stopped container
        names it), and a tar made here as the files stream in goes in through a helper
        container's archive (owner 1000:1000 in each header)."""
        volume = self._restore_target(name, labels)
        folder = self._mountpoint(volume)
        if folder is not None:
            restore_tree(folder, files, owner=(1000, 1000), progress=progress)
            return
        # Emptied through a started helper, not removed and made again: Docker refuses to
        # remove a volume any container names, a workload's stopped one too.
        self._empty_volume(name)
        failed: list[BaseException] = []
        with self._volume_helper(name, read_only=False) as helper:
            try:
                # Extracted at / with every name under the volume's folder: its own entry
                # first, so the volume's root takes uid 1000 as well.
                self.client.api.put_archive(helper.id, "/", _restore_tar(files, progress, failed))
            except Exception as exc:
                if failed and isinstance(failed[0], WorkloadError):
                    raise failed[0] from exc
                raise WorkloadError(f"The files could not be written: {exc}") from exc
        if failed:
            raise WorkloadError(str(failed[0]))

    def _empty_volume(self, name: str) -> None:
        """Remove everything in the volume ``name`` with a helper container started for it
        (uid 1000, no network, no capabilities): its folders made writable by their owner,
        then each thing in it removed (``rm -rf``; neither follows a link). The helper image's
        ``sh`` (the notebook image's), else a static busybox's. WorkloadError when it
        cannot (a file the helper's user may not remove)."""
        script = (
            f"chmod -R u+rwX {VOLUME_HELPER_PATH} 2>/dev/null; "
            f"find {VOLUME_HELPER_PATH} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} + && "
            f'[ -z "$(ls -A {VOLUME_HELPER_PATH})" ]'
        )
        for shell in (["sh", "-c"], ["/bin/busybox", "sh", "-c"]):
            with self._volume_helper(name, read_only=False, command=[*shell, script]) as helper:
                try:
                    helper.start()
                except APIError:
                    continue  # no such shell in the image: the next
                result = helper.wait(timeout=3600)
                if result.get("StatusCode") != 0:
                    output = helper.logs().decode(errors="replace")[-300:]
                    raise WorkloadError(
                        f"The volume {name} could not be emptied for the restore: {output}"
                    )
                return
        raise WorkloadError(f"The volume {name} could not be emptied: the image has no shell.")

    def remove_stale_helpers(self, *, older_than: float) -> int:
        """Remove this installation's helper containers (``lattice.helper``) made more than
        ``older_than`` seconds ago: left by an agent that died mid-snapshot or mid-restore
        (a helper in use is never that old: a snapshot's task is bounded). How many went."""
        removed = 0
        now = time.time()
        for container in self.client.containers.list(
            all=True, filters={"label": [HELPER_LABEL, f"{LABEL_PREFIX}installation"]}
        ):
            if container.labels.get(f"{LABEL_PREFIX}installation") != settings.LATTICE_INSTALLATION:
                continue
            made = _unix_time(str(container.attrs.get("Created") or ""))
            if made is None or now - made < older_than:
                continue
            with contextlib.suppress(NotFound):
                container.remove(force=True)
                removed += 1
        return removed

    def _restore_target(self, name: str, labels: dict[str, str]) -> Any:
        try:
            return self._managed_volume(name)
        except FolderError:
            try:
                self.client.volumes.get(name)
            except NotFound:
                return self.client.volumes.create(name, labels=_volume_labels(labels))
            raise WorkloadError(f"The volume {name} belongs to another Lattice.") from None

    def read_folder(
        self, state: dict[str, Any], folder: str, *, root: str = NOTEBOOKS_PATH
    ) -> Iterator[FolderEntry]:
        """The folder as Docker's archive of it streams it (a tar read as it arrives, a
        file at a time). Each step of the path is checked not to be a link first: Docker
        would follow one (within the container, yet outside ``root``). Docker archives an
        exited container's files as well: a job's /outputs is read after its process ends."""
        relative = folder_path(folder, root=root)
        container = self._container(state)
        if root == NOTEBOOKS_PATH and (container is None or container.status != "running"):
            raise FolderError("The notebook is not running.", "not_running")
        if container is None:
            raise FolderError("The workload's container is gone.", "not_running")
        chunks = self._folder_archive(container.id, relative, root)
        reader = io.BufferedReader(_ChunkReader(chunks), buffer_size=1024 * 1024)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                # Names start with the folder's own name ("run1/model.pt"): cut it off.
                _, _, name = member.name.partition("/")
                if not name or member.isdir():
                    continue
                if member.isreg():
                    yield FolderEntry(name, member.size, tar.extractfile(member))
                elif member.islnk():
                    # A file met before in this archive, under another name: the same bytes.
                    yield FolderEntry(name, 0, same_as=member.linkname.partition("/")[2])
                else:
                    yield FolderEntry(name, 0, skipped=_TAR_KINDS.get(member.type, "other"))

    def _folder_archive(self, container_id: str, relative: str, root: str) -> Iterator[bytes]:
        """The tar stream of ``root``/``relative`` in the container, once each step of the
        path is found not to be a link, and the last a folder; else FolderError."""
        steps = [root]
        for name in relative.split("/") if relative else []:
            steps.append(posixpath.join(steps[-1], name))
        stat: dict[str, Any] = {}
        for path in steps:
            stat = self._path_stat(container_id, path) or {}
            if not stat:
                raise FolderError(f"{path} does not exist.", "missing")
            if stat.get("linkTarget"):
                raise FolderError(f"{path} is a link: give the folder it points to.", "link")
        path = steps[-1]
        # Go's os.ModeDir: the top bit of the 32-bit file mode.
        if not int(stat.get("mode", 0)) & (1 << 31):
            raise FolderError(f"{path} is not a folder.", "not_folder")
        try:
            chunks, _ = self.client.api.get_archive(container_id, path)
        except NotFound as exc:
            raise FolderError(f"{path} does not exist.", "missing") from exc
        return cast("Iterator[bytes]", chunks)

    def _path_stat(self, container_id: str, path: str) -> dict[str, Any] | None:
        """What Docker says of ``path`` in the container (not following a last link), or
        None when it is missing: the Engine API's HEAD /containers/{id}/archive, which
        sends no files.

        Not docker-py's ``get_archive``, on purpose: it is a GET, so Docker starts making
        the tar of the whole path (/notebooks and all in it, for the first step), and the
        stream it returns cannot be closed through docker-py's public API; left open, the
        daemon blocks on it and the next call on that container times out (seen in
        tests/runtimes/test_read_folder.py when a refused path's stream was dropped).
        docker-py has no call for the HEAD, so this one is made on docker-py's public
        client (a requests Session: ``head``, ``base_url``, ``api_version``), with
        docker-py's public error mapping and header decoder."""
        api = self.client.api
        response = api.head(
            f"{api.base_url}/v{api.api_version}/containers/{container_id}/archive",
            params={"path": path},
        )
        if response.status_code == 404:  # noqa: PLR2004
            return None
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise create_api_error_from_http_exception(exc) from exc
        return dict(decode_json_header(response.headers["X-Docker-Container-Path-Stat"]))


# What a tar entry that is not a regular file is, in a skipped entry's words.
_TAR_KINDS = {
    tarfile.SYMTYPE: "link",
    tarfile.CHRTYPE: "device",
    tarfile.BLKTYPE: "device",
    tarfile.FIFOTYPE: "fifo",
}


# Where a helper container sees the volume it reads or writes.
VOLUME_HELPER_PATH = "/volume"
# What marks a helper container (volume or copy-volume): never a workload.
HELPER_LABEL = f"{LABEL_PREFIX}helper"
_TAR_BLOCK = 512


def _volume_labels(labels: dict[str, str]) -> dict[str, str]:
    """A volume's labels from a spec's, as _volumes makes them: managed, and the spec's
    installation (``installation``, or ``lattice.installation`` as given)."""
    made = {f"{LABEL_PREFIX}managed": "true"}
    installation = labels.get("installation") or labels.get(f"{LABEL_PREFIX}installation")
    if installation:
        made[f"{LABEL_PREFIX}installation"] = str(installation)
    return made


def _restore_tar(
    files: Iterable[RestoreFile],
    progress: Callable[[int], None] | None,
    failed: list[BaseException],
) -> Iterator[bytes]:
    """A tar of ``files`` (and the folders their paths need), made as the bytes stream in:
    memory holds one piece. Everything owned by 1000:1000. A stream that gives another size
    than listed, or raises, ends the tar early and is kept in ``failed``."""

    def header(path: str, kind: bytes, mode: int, size: int = 0) -> bytes:
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.size = kind, mode, size
        info.uid = info.gid = 1000
        info.mtime = int(time.time())
        return info.tobuf(format=tarfile.PAX_FORMAT)

    top = VOLUME_HELPER_PATH.strip("/")
    try:
        yield header(top, tarfile.DIRTYPE, FOLDER_MODE)
        folders: set[str] = set()
        for file in files:
            names = restore_path(file.path)
            for depth in range(1, len(names)):
                folder = "/".join(names[:depth])
                if folder not in folders:
                    folders.add(folder)
                    yield header(f"{top}/{folder}", tarfile.DIRTYPE, FOLDER_MODE)
            path = "/".join([top, *names])
            yield header(path, tarfile.REGTYPE, file.mode & PERMISSION_BITS, file.size)
            source = file.open()
            written = 0
            while piece := source.read(min(PIECE, file.size - written + 1)):
                written += len(piece)
                if written > file.size:
                    break
                yield piece
                if progress is not None:
                    progress(len(piece))
            if written != file.size:
                raise WorkloadError(f"{file.path[:200]} did not have the size it was listed with.")  # noqa: TRY301
            yield b"\0" * (-file.size % _TAR_BLOCK)
        yield b"\0" * (2 * _TAR_BLOCK)
    except Exception as exc:
        failed.append(exc)
        raise


class _ChunkReader(io.RawIOBase):
    """A stream of byte chunks (Docker's archive) as a file tarfile can read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, b"")
            if not chunk:
                return 0
            self._left = memoryview(chunk)
        count = min(len(buffer), len(self._left))
        buffer[:count] = self._left[:count]
        self._left = self._left[count:]
        return count


def _base_url(command: list[str]) -> str | None:
    """The ``--ServerApp.base_url=`` a Jupyter command line gives, if any."""
    for part in command:
        for flag in ("--ServerApp.base_url=", "--base-url=", "--NotebookApp.base_url="):
            if part.startswith(flag):
                return "/" + part[len(flag) :].strip("/") + "/" if part[len(flag) :] else "/"
    return None


def _own_new_volume(mountpoint: str, uid: int, gid: int) -> None:
    """A volume made empty just now takes the workload user as owner, as Docker's first mount
    of it would (the image's folder is that user's): bound directly, it would stay root's."""
    path = Path(mountpoint).resolve()
    if path.lstat().st_uid == 0 and not any(path.iterdir()):
        os.chown(path, uid, gid)
        path.chmod(0o755)


def _unix_time(moment: str) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, "Z") as a Unix time; None for its zero time."""
    if not moment or moment.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(moment[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return None


def _dataset_sources(container: Container) -> tuple[str, ...]:
    """The host folders bound at /datasets/<name> and /model: what Docker says it mounted,
    not labels (the agent's cache keeps them while the container runs)."""
    return tuple(
        str(mount["Source"])
        for mount in container.attrs.get("Mounts") or []
        if mount.get("Type") == "bind"
        and (
            str(mount.get("Destination", "")).startswith(f"{DATASETS_PATH}/")
            or mount.get("Destination") == MODEL_PATH
        )
        and mount.get("Source")
    )


def _bridge_interface(network: Any) -> str:
    """The host side of a Docker bridge network: its set name, or br-<first 12 of its id>."""
    options = network.attrs.get("Options") or {}
    return str(options.get("com.docker.network.bridge.name") or f"br-{network.id[:12]}")


def isolation_rules(runtime: DockerRuntime) -> list[list[str]]:
    """The iptables rules (chain first) that ``isolate_workloads`` keeps in place.

    Forwarded traffic (DOCKER-USER): from the workloads' subnet to each blocked
    destination, refused. Traffic to the host itself never passes DOCKER-USER: it
    goes through INPUT. There, packets arriving on the workloads' bridge (this
    network's interface only, no other bridge on the host) are refused unless they
    belong to a connection the host opened (the web tier reaching a notebook's
    published port) or are related to one. Names still resolve: Docker's resolver
    for the network (127.0.0.11) answers inside the container, not on the host.
    """
    network = runtime.network()
    network.reload()
    subnets = [c["Subnet"] for c in network.attrs["IPAM"]["Config"] if "Subnet" in c]
    rules = [
        ["DOCKER-USER", "-s", subnet, "-d", destination, "-j", "REJECT"]
        for subnet in subnets
        for destination in BLOCKED_DESTINATIONS
    ]
    if subnets:
        rules.append(
            [
                "INPUT",
                "-i",
                _bridge_interface(network),
                "-m",
                "conntrack",
                "!",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-m",
                "comment",
                "--comment",
                HOST_RULE_COMMENT,
                "-j",
                "REJECT",
            ]
        )
    return rules


def allowed_destinations() -> list[tuple[str, int]]:
    """``settings.LATTICE_WORKLOAD_ALLOW`` ("host:port" each) as (IPv4 address, TCP port)
    pairs: a name is resolved now, to each of its IPv4 addresses."""
    pairs: list[tuple[str, int]] = []
    for entry in filter(None, (e.strip() for e in settings.LATTICE_WORKLOAD_ALLOW)):
        host, separator, port = entry.rpartition(":")
        if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:  # noqa: PLR2004
            raise WorkloadError(f"LATTICE_WORKLOAD_ALLOW: {entry!r} is not host:port.")
        try:
            found = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            raise WorkloadError(f"LATTICE_WORKLOAD_ALLOW: {host} does not resolve.") from exc
        for address in dict.fromkeys(str(info[4][0]) for info in found):
            pairs.append((address, int(port)))
    return pairs


def allow_rules(
    runtime: DockerRuntime, *, allowed: list[tuple[str, int]] | None = None
) -> list[list[str]]:
    """The rules that let workloads open TCP connections to the allowed destinations
    (``allowed_destinations``, or the (address, port) pairs ``allowed`` names), placed
    before ``isolation_rules``' refusals: in DOCKER-USER a RETURN (Docker's own rules
    decide, as for the internet), in INPUT (the host itself: a server on the bridge's
    gateway) an ACCEPT on that network's bridge only."""
    allowed = allowed_destinations() if allowed is None else allowed
    if not allowed:
        return []
    network = runtime.network()
    network.reload()
    subnets = [c["Subnet"] for c in network.attrs["IPAM"]["Config"] if "Subnet" in c]
    comment = ["-m", "comment", "--comment", ALLOW_RULE_COMMENT]
    rules = []
    for address, port in allowed:
        match = ["-d", address, "-p", "tcp", "--dport", str(port), *comment]
        rules += [["DOCKER-USER", "-s", subnet, *match, "-j", "RETURN"] for subnet in subnets]
        if subnets:
            rules.append(["INPUT", "-i", _bridge_interface(network), *match, "-j", "ACCEPT"])
    return rules


def isolate_workloads(runtime: DockerRuntime) -> bool:
    """Refuse traffic from the workloads' network to private and link-local addresses,
    and new connections from it to the host itself (``isolation_rules``), but for the
    destinations the administrator allows (``allow_rules``, kept above the refusals).

    A notebook can reach the internet (pip, datasets), but not the control plane,
    the broker, other hosts, the cloud metadata service or the host's own
    services. Idempotent: a rule already there is not added again; each is an
    exact rule that ``iptables -D`` with the same arguments removes. Returns
    False when iptables is missing or not permitted, so the agent can say so.
    """
    iptables = shutil.which("iptables")
    if iptables is None:
        return False
    rules = isolation_rules(runtime)
    for rule in rules:
        present = subprocess.run([iptables, "-C", *rule], capture_output=True, check=False)  # noqa: S603
        if present.returncode != 0:
            added = subprocess.run([iptables, "-I", *rule], capture_output=True, check=False)  # noqa: S603
            if added.returncode != 0:
                return False
    # Allowed destinations go first, above a refusal inserted since: moved to the top.
    for rule in allow_rules(runtime):
        while _iptables(iptables, "-D", *rule):
            pass
        if not _iptables(iptables, "-I", *rule):
            return False
    return bool(rules)


def _iptables(iptables: str, *args: str) -> bool:
    return subprocess.run([iptables, *args], capture_output=True, check=False).returncode == 0  # noqa: S603


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Docker's log output, in chunks that may end mid-line, as lines."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode(errors="replace")
    if buffer:
        yield buffer.decode(errors="replace")


def _stamped(line: str) -> tuple[int, str]:
    """A line docker stamped (``2026-12-06T07:44:06.123456789Z text``): its time in
    nanoseconds since the epoch (UTC), and its text."""
    stamp, _, text = line.partition(" ")
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0, line
    digits = "".join(itertools.takewhile(str.isdigit, fraction))
    return seconds * 10**9 + int((digits + "0" * 9)[:9]), text
