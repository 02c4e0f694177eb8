"""``lattice datasets upload DIR`` of a few hundred MiB against a live server, stopped
mid-upload the two ways a person's upload stops: Ctrl-C (SIGINT) and the process killed
outright (SIGKILL, as when a laptop's lid shuts or a terminal dies). The same command run
again finishes the version without resending a single chunk the server already held: every
chunk PUT that reaches the server is noted (its view, wrapped), and the chunks it held when
the rerun began (its UploadChunk rows) are compared with the PUTs the rerun made. The
version's files are then the folder's, byte for byte.

Chunks of 4 MiB (the server's LATTICE_UPLOAD_CHUNK_BYTES, set for these tests) so three
files of 100 MiB make 75 chunks, and the interruption lands well inside them.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from apps.teams.models import Team
    from tests.client.conftest import Lattice

MIB = 1024 * 1024
CHUNK = 4 * MIB  # the media fixture sets LATTICE_UPLOAD_CHUNK_BYTES to this
FILES = {"part-a.bin": 100 * MIB, "part-b.bin": 100 * MIB, "nested/part-c.bin": 100 * MIB + 123}
CHUNKS = sum(-(-size // CHUNK) for size in FILES.values())
# Stop the client once the server holds this many chunks (of CHUNKS).
STOP_AFTER = 8

Chunk = tuple[str, int]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three files of random bytes (no two chunks alike), made once for the module."""
    root = tmp_path_factory.mktemp("upload") / "shards"
    for name, size in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            left = size
            while left:
                piece = min(left, 16 * MIB)
                handle.write(os.urandom(piece))
                left -= piece
    return root


@pytest.fixture
def chunk_puts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Chunk, int]]:
    """Every chunk PUT the server answers, as ((blob sha256, index), status code), in the
    order answered."""
    from apps.datasets.api import views

    seen: list[tuple[Chunk, int]] = []
    real = views.ChunkView.put

    def put(
        self: Any, request: Any, team_slug: str, upload_id: int, sha256: str, index: int
    ) -> Any:
        try:
            response = real(self, request, team_slug, upload_id, sha256, index)
        except Exception:
            seen.append(((sha256, int(index)), 0))
            raise
        seen.append(((sha256, int(index)), response.status_code))
        return response

    monkeypatch.setattr(views.ChunkView, "put", put)
    return seen


def held(team: Team) -> set[Chunk]:
    """The chunks the server holds for the team's uploads: (blob sha256, index)."""
    from apps.datasets.models import UploadChunk

    return set(UploadChunk.objects.for_team(team).values_list("blob__sha256", "index"))


def held_once_settled(team: Team) -> set[Chunk]:
    """What the server holds once a chunk whose bytes arrived before the client died has
    been written (no change for a second)."""
    last, since = held(team), time.monotonic()
    while time.monotonic() - since < 1.0:
        time.sleep(0.1)
        now = held(team)
        if now != last:
            last, since = now, time.monotonic()
    return last


def interrupt(process: subprocess.Popen[str], team: Team, how: signal.Signals) -> tuple[int, str]:
    """Send ``how`` to the upload once the server holds STOP_AFTER chunks; its exit code and
    stderr."""
    deadline = time.monotonic() + 180
    while len(held(team)) < STOP_AFTER:
        assert process.poll() is None, f"the upload ended first: {process.communicate()}"
        assert time.monotonic() < deadline, "the server got no chunks in 180 s"
        time.sleep(0.02)
    process.send_signal(how)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(8 * MIB):
            digest.update(piece)
    return digest.hexdigest()


def resume_sends_only_what_was_missing(
    lattice: Lattice,
    folder: Path,
    acme: Team,
    chunk_puts: list[tuple[Chunk, int]],
    how: signal.Signals,
) -> Any:
    """Start, interrupt with ``how``, rerun; assert no chunk the server held is resent; the
    dataset version made."""
    from apps.core.tenancy import team_scope
    from apps.datasets.models import DatasetVersion

    command = ("datasets", "upload", "shards", str(folder), "-m", "three shards")
    code, err = interrupt(lattice.start(*command), acme, how)
    if how == signal.SIGINT:  # as a shell reports Ctrl-C: 128 + SIGINT, one line, no trace
        assert code == 130, err
        assert "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("Interrupted"), err
    else:
        assert code == -how, err
    before = held_once_settled(acme)
    assert STOP_AFTER <= len(before) < CHUNKS, len(before)
    chunk_puts.clear()

    again = lattice(*command, timeout=600)

    assert again.code == 0, again
    sent = [chunk for chunk, status in chunk_puts if status == 204]
    resent = [chunk for chunk in sent if chunk in before]
    assert resent == [], f"{len(resent)} chunks the server held were sent again"
    # And only what was missing, each once: together, every chunk of the folder.
    assert len(sent) == len(set(sent)), "a chunk was sent twice in the rerun"
    assert len(before) + len(sent) == CHUNKS, (len(before), len(sent), CHUNKS)

    with team_scope(acme):
        [version] = DatasetVersion.objects.filter(dataset__slug="shards")
        files = {f.path: (f.size, f.blob.sha256) for f in version.files.select_related("blob")}
    assert version.status == DatasetVersion.Status.READY, version.status
    assert files == {name: (size, sha256_of(folder / name)) for name, size in FILES.items()}
    return version


@pytest.mark.usefixtures("media")
def test_an_upload_stopped_with_ctrl_c_resumes_without_resending_a_held_chunk(
    lattice: Lattice, folder: Path, acme: Team, chunk_puts: list[tuple[Chunk, int]], tmp_path: Path
) -> None:
    resume_sends_only_what_was_missing(lattice, folder, acme, chunk_puts, signal.SIGINT)

    # Downloaded back: the folder's bytes.
    got = lattice("datasets", "download", "shards", str(tmp_path / "back"), timeout=600)
    assert got.code == 0, got
    for name in FILES:
        assert filecmp.cmp(folder / name, tmp_path / "back" / name, shallow=False), name


@pytest.mark.usefixtures("media")
def test_an_upload_killed_outright_resumes_without_resending_a_held_chunk(
    lattice: Lattice, folder: Path, acme: Team, chunk_puts: list[tuple[Chunk, int]]
) -> None:
    resume_sends_only_what_was_missing(lattice, folder, acme, chunk_puts, signal.SIGKILL)
