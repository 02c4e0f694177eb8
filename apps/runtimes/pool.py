"""The host side of the Docker runtime's warm pool (issue 19): slot folders and mounts.

A warm container is started before any session is known, with /notebooks, /storage and
/datasets bound from empty folders of its *slot* (``LATTICE_POOL_DIR/<name>/mnt/...``) with
``rslave`` propagation, and ``/run/lattice`` bound from the slot's ``run`` folder. The pool
folder is a shared mount (``mount --bind D D; mount --make-rshared D``), so a bind mount
made later on the host under a slot's ``mnt`` (a session's Docker volume, by its
Mountpoint; a dataset folder) is seen at once by the running container. A claim then
writes ``run/claim.json`` (the session's token, base URL and environment), which the
image's Jupyter extension (images/notebook/jupyter_server_config.py) takes and acks.

Read-only mounts are made read-only *before* they reach the shared tree: bound in a
private staging mount, remounted read-only there, then moved into the slot (a remount of a
mount already propagated would not reach the container's copy).

Everything here runs as root on the host (``supported`` says whether it can). The
container is not trusted: the folders it can write (``run``) are only ever written by
replacing a file we made with O_EXCL|O_NOFOLLOW, and read with O_NOFOLLOW and a bound; the
mount points are root's (0755), so it cannot plant a link where a mount goes; the claim
record lives in the slot folder itself, which the container does not see.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

# Where the container reads its claim and writes its ack.
CLAIM_DIR = "/run/lattice"
# The warm container's mount points, each an empty root-owned folder of its slot until claimed.
SLOT_TARGETS = {"/notebooks": "notebooks", "/storage": "storage", "/datasets": "datasets"}
# The host's record of a claim, in the slot folder (not seen by the container).
RECORD = "claim.json"
# The most of an ack the host reads.
ACK_MAX = 64 * 1024

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}")


class SlotError(Exception):
    """A mount or folder operation of the pool failed; the message says which."""


def _mount(*args: str) -> None:
    mount = shutil.which("mount") or "/bin/mount"
    result = subprocess.run([mount, *args], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise SlotError(f"mount {' '.join(args)}: {result.stderr.strip()[:300]}")


def _umount(path: str) -> bool:
    umount = shutil.which("umount") or "/bin/umount"
    for flags in ([], ["-l"]):
        result = subprocess.run([umount, *flags, path], capture_output=True, check=False)  # noqa: S603
        if result.returncode == 0:
            return True
    return False


def _unescape(field: str) -> str:
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountinfo() -> list[tuple[str, list[str]]]:
    """(mount point, optional fields such as "shared:12") of each mount this process sees."""
    found = []
    with Path("/proc/self/mountinfo").open(encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) < 7:  # noqa: PLR2004
                continue
            optional = fields[6 : fields.index("-")] if "-" in fields else []
            found.append((_unescape(fields[4]), optional))
    return found


def mounts_under(path: Path) -> list[str]:
    """The mount points at or under ``path``, deepest (and latest) first."""
    prefix = str(path).rstrip("/") + "/"
    points = [point for point, _ in mountinfo() if point == str(path) or point.startswith(prefix)]
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def _rmdir_tree(path: Path, *, files: bool) -> None:
    """Remove ``path`` bottom-up without following links or crossing a mount point: with
    ``files`` False only empty folders (os.rmdir), else files too, but never below another
    file system or a mount point. Raises SlotError where something stays."""
    top = os.lstat(path)
    points = {point for point, _ in mountinfo()}
    if str(path) in points:
        raise SlotError(f"{path} is a mount point; it is left as it is.")
    for entry in os.scandir(path):
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            if info.st_dev != top.st_dev or entry.path in points:
                raise SlotError(f"{entry.path} is a mount point; it is left as it is.")
            _rmdir_tree(Path(entry.path), files=files)
        elif files:
            Path(entry.path).unlink()
        else:
            raise SlotError(f"{entry.path} is not an empty mount point; it is left as it is.")
    try:
        path.rmdir()
    except OSError as exc:
        raise SlotError(f"{path} could not be removed: {exc}") from exc


class Slots:
    """The pool folder of one host and its slots."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.staging = self.root.parent / f"{self.root.name}-staging"

    # --- the shared pool folder -----------------------------------------------------------

    def _is_mount(self, path: Path, *, tag: str) -> bool:
        return any(
            point == str(path) and any(o.startswith(tag) for o in optional)
            for point, optional in mountinfo()
        ) or (tag == "" and any(point == str(path) for point, _ in mountinfo()))

    def prepare(self) -> None:
        """Make the pool folder a shared mount and the staging folder a private one (once;
        idempotent). Raises SlotError where this host cannot."""
        for folder in (self.root, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o711)
        if not self._is_mount(self.root, tag="shared:"):
            if not self._is_mount(self.root, tag=""):
                _mount("--bind", str(self.root), str(self.root))
                # Its own peer group: what is mounted in a slot reaches the slot's container
                # (its rslave binds), not every namespace the host's root is shared with.
                _mount("--make-private", str(self.root))
            _mount("--make-rshared", str(self.root))
        staging_private = any(
            point == str(self.staging) and not any(o.startswith("shared:") for o in optional)
            for point, optional in mountinfo()
        )
        if not staging_private:
            if not self._is_mount(self.staging, tag=""):
                _mount("--bind", str(self.staging), str(self.staging))
            _mount("--make-private", str(self.staging))

    def release(self) -> None:
        """Undo ``prepare`` and every mount left below the pool and staging folders (a test
        run's end, ``make clean``): what a killed agent or test left mounted is unmounted,
        so the folders can be removed. Never touches a mount outside them."""
        for folder in (self.root, self.staging):
            for point in mounts_under(folder):
                _umount(point)

    # --- one slot -------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise SlotError(f"{name[:80]!r} is not a pool slot name.")
        return self.root / name

    def make(self, name: str, uid: int, gid: int) -> Path:
        """The slot's folders: root-owned empty mount points, and ``run`` (the claim folder)
        owned by the container's user. A slot left by an earlier fill is made afresh."""
        slot = self.path(name)
        if slot.exists():
            self.remove(name)
        slot.mkdir(mode=0o700)
        (slot / "mnt").mkdir(mode=0o755)
        for folder in SLOT_TARGETS.values():
            (slot / "mnt" / folder).mkdir(mode=0o755)
        run = slot / "run"
        run.mkdir(mode=0o700)
        os.chown(run, uid, gid)
        # The container's Docker daemon (root) reaches these through the slot: 0711 lets
        # it traverse; the container's user never sees the slot folder itself.
        slot.chmod(0o711)
        return slot

    def target(self, name: str, path: str) -> Path:
        """Where in the slot a workload path is mounted: /notebooks, /storage, or
        /datasets/<name> (a folder made for it). Raises SlotError for any other."""
        slot = self.path(name)
        if path in SLOT_TARGETS:
            return slot / "mnt" / SLOT_TARGETS[path]
        head, _, leaf = path.rpartition("/")
        if head == "/datasets" and _NAME.fullmatch(leaf):
            folder = slot / "mnt" / "datasets" / leaf
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o755)
            return folder
        raise SlotError(f"A warm container has no mount point for {path[:100]}.")

    def bind(self, source: str, target: Path, *, read_only: bool) -> None:
        """Bind ``source`` (a host folder) at ``target`` in a slot, where the container sees
        it at once; read-only ones are read-only before the container sees them."""
        info = os.lstat(target)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
            raise SlotError(f"{target} is not the slot's own mount point.")
        if not Path(source).is_absolute() or not Path(source).is_dir():
            raise SlotError(f"{source[:200]} is not a folder on this host.")
        if not read_only:
            _mount("--bind", source, str(target))
            return
        stage = self.staging / f"{target.parent.parent.parent.name}-{os.urandom(6).hex()}"
        stage.mkdir(mode=0o700)
        try:
            _mount("--bind", source, str(stage))
            try:
                _mount("-o", "remount,bind,ro", str(stage))
                _mount("--move", str(stage), str(target))
            except SlotError:
                _umount(str(stage))
                raise
        finally:
            with contextlib.suppress(OSError):
                stage.rmdir()

    def unmount(self, name: str) -> None:
        """Undo every mount in the slot (deepest first). Raises SlotError if one stays."""
        slot = self.path(name)
        for point in mounts_under(slot):
            _umount(point)
        left = mounts_under(slot)
        if left:
            raise SlotError(f"Could not unmount {left[0]}.")
        # Dataset mount points made at the claim go too (empty folders only).
        datasets = slot / "mnt" / "datasets"
        if datasets.is_dir() and not datasets.is_symlink():
            for folder in datasets.iterdir():
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def remove(self, name: str) -> None:
        """Unmount the slot and delete its folder (nothing is deleted while anything is
        still mounted under it: a volume's files are never touched)."""
        slot = self.path(name)
        if not slot.exists():
            return
        self.unmount(name)
        if mounts_under(slot):
            raise SlotError(f"{slot} still has mounts; it is left as it is.")
        # Never a recursive delete across the mount points: under ``mnt`` only empty folders
        # go (rmdir: a folder something is bound on, or with a file in it, stays and this
        # raises), so a volume bound there meanwhile is never walked into. Files are
        # deleted only in the slot's own folders (``run``, the record, the lock).
        for entry in os.scandir(slot):
            if entry.name == "mnt" and entry.is_dir(follow_symlinks=False):
                _rmdir_tree(Path(entry.path), files=False)
            elif entry.is_dir(follow_symlinks=False):
                _rmdir_tree(Path(entry.path), files=True)
            else:
                Path(entry.path).unlink()
        try:
            slot.rmdir()
        except OSError as exc:
            raise SlotError(f"{slot} could not be removed: {exc}") from exc

    # --- the claim files --------------------------------------------------------------------

    def write_claim(self, name: str, claim: dict[str, Any], uid: int, gid: int) -> None:
        """``run/claim.json``, 0600 and the container user's, appearing at once (a rename)."""
        run = self.path(name) / "run"
        data = json.dumps(claim).encode()
        temp = run / f".claim-{os.urandom(8).hex()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchown(fd, uid, gid)
            os.write(fd, data)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            (run / "ack.json").unlink()
        temp.rename(run / "claim.json")

    def read_ack(self, name: str) -> dict[str, Any] | None:
        """The container's ack, once it is there (None before), read without following a
        link and at most ACK_MAX bytes of it."""
        try:
            fd = os.open(self.path(name) / "run" / "ack.json", os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            raw = os.read(fd, ACK_MAX)
        finally:
            os.close(fd)
        try:
            ack = json.loads(raw)
        except ValueError:
            return {"ok": False, "error": "The container's ack is not JSON."}
        return ack if isinstance(ack, dict) else {"ok": False, "error": "A malformed ack."}

    def write_record(self, name: str, record: dict[str, Any]) -> None:
        path = self.path(name) / RECORD
        temp = path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(record).encode())
        finally:
            os.close(fd)
        temp.replace(path)

    def record(self, name: str) -> dict[str, Any] | None:
        """The claim record of slot ``name``, if it was claimed."""
        try:
            return dict(json.loads(self.path(name).joinpath(RECORD).read_text()))
        except (OSError, ValueError, SlotError):
            return None


def pool_command() -> list[str]:
    """JupyterLab's command for a warm container: the session's, but for its base URL (the
    runtime fills in {ip}, {port} and {mount:...}; the pool token is PoolSpec.token)."""
    return [
        "jupyter",
        "lab",
        "--ip={ip}",
        "--port={port}",
        "--no-browser",
        "--ServerApp.root_dir={mount:/notebooks}",
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.terminals_enabled=True",
        "--ServerApp.allow_root=True",
    ]


def numeric_user(user: str) -> tuple[int, int]:
    """``uid:gid`` (or ``uid``) as numbers; a warm container runs as a numeric user only (the
    claim folder is chowned to it on the host)."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise SlotError(f"A warm container runs as a numeric uid:gid, not {user!r}.")
    return int(uid), int(gid or uid)
