"""``lattice datasets upload DIR`` through a connection that drops mid-upload: the client
talks to the live server through a small TCP relay in this test, which, once the server
holds some chunks, cuts every open connection and refuses new ones for a few seconds (a
Wi-Fi drop), then lets them through again. The upload rides it out (its chunks are tried
again with backoff; if it gives up, it says so in one line and the same command finishes
it) and makes the version, byte for byte the folder's, without resending a chunk the
server held when the connection dropped. (A chunk whose bytes were all on the wire as the
connection dropped may be stored by the server while its answer is lost: the client cannot
know it arrived, so sending it again is allowed; those are the chunks that became held only
after the cut.)"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.client.conftest import Lattice

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from apps.teams.models import Team

MIB = 1024 * 1024
CHUNK = 4 * MIB  # the media fixture sets LATTICE_UPLOAD_CHUNK_BYTES to this
FILES = {"one.bin": 60 * MIB, "two.bin": 60 * MIB + 7}
CHUNKS = sum(-(-size // CHUNK) for size in FILES.values())
CUT_AFTER = 14
DOWN_SECONDS = 3.0

Chunk = tuple[str, int]


class Relay:
    """Forwards TCP connections on a loopback port to ``upstream``; ``cut()`` drops every
    open one and turns new ones away until ``restore()``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.turned_away = 0
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.open.is_set():
                self.turned_away += 1
                near.close()
                continue
            try:
                far = socket.create_connection(self.upstream)
            except OSError:
                near.close()
                continue
            with self.lock:
                self.sockets += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(256 * 1024):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> int:
        """Drop every open connection (how many were open) and turn new ones away."""
        self.open.clear()
        with self.lock:
            dropped, self.sockets = self.sockets, []
        for end in dropped:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
        return len(dropped) // 2

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def relay(lattice_url: str) -> Iterator[Relay]:
    parts = urlsplit(lattice_url)
    relayed = Relay((parts.hostname or "127.0.0.1", parts.port or 80))
    yield relayed
    relayed.close()


@dataclass(frozen=True)
class Put:
    chunk: Chunk
    began: float  # time.monotonic() when the server's view began reading it


@dataclass
class ChunkPuts:
    """Every chunk PUT the server stored, in the order answered; and a gate in front of the
    chunk view that holds new PUTs while closed (``inside``: how many are past it)."""

    stored: list[Put] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    inside: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def chunk_puts(monkeypatch: pytest.MonkeyPatch) -> ChunkPuts:
    from apps.datasets.api import views

    puts = ChunkPuts()
    puts.gate.set()
    real = views.ChunkView.put

    def put(self: Any, request: Any, **route: Any) -> Any:
        puts.gate.wait(60)
        with puts.lock:
            puts.inside += 1
        began = time.monotonic()
        try:
            response = real(self, request, **route)
        finally:
            with puts.lock:
                puts.inside -= 1
        puts.stored.append(Put((route["sha256"], int(route["index"])), began))
        return response

    monkeypatch.setattr(views.ChunkView, "put", put)
    return puts


def held(team: Team) -> set[Chunk]:
    from apps.datasets.models import UploadChunk

    return set(UploadChunk.objects.for_team(team).values_list("blob__sha256", "index"))


@pytest.mark.usefixtures("media")
def test_an_upload_rides_out_a_dropped_connection_without_resending_a_held_chunk(
    lattice: Lattice, relay: Relay, acme: Team, chunk_puts: ChunkPuts, tmp_path: Path
) -> None:
    from apps.core.tenancy import team_scope
    from apps.datasets.models import DatasetVersion

    folder = tmp_path / "folder"
    folder.mkdir()
    for name, size in FILES.items():
        (folder / name).write_bytes(os.urandom(size))
    through_relay = Lattice(
        env=lattice.environment(LATTICE_URL=f"http://127.0.0.1:{relay.port}"), cwd=lattice.cwd
    )
    command = ("datasets", "upload", "wobbly", str(folder))

    process = through_relay.start(*command)
    deadline = time.monotonic() + 180
    while len(held(acme)) < CUT_AFTER:
        assert process.poll() is None, f"the upload ended first: {process.communicate()}"
        assert time.monotonic() < deadline, "the server got no chunks in 180 s"
        time.sleep(0.02)
    # Hold the PUTs still to come at the server's door, let those under way end, and give
    # their answers time to reach the client: then the client has been told of every chunk
    # the server holds, and the connection drops.
    chunk_puts.gate.clear()
    deadline = time.monotonic() + 30
    while chunk_puts.inside and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)
    known = held(acme)
    cut_at = time.monotonic()
    dropped = relay.cut()
    chunk_puts.gate.set()  # what was held at the door meets a dropped connection
    time.sleep(DOWN_SECONDS)
    relay.restore()
    _, err = process.communicate(timeout=300)

    assert "Traceback" not in err, err
    if process.returncode != 0:  # it gave up while the network was down: one line, resumable
        again = through_relay(*command, timeout=300)
        assert again.code == 0, again
    assert dropped > 0  # the client had connections open, and lost them
    assert CUT_AFTER <= len(known) < CHUNKS, len(known)
    resent = [p for p in chunk_puts.stored if p.began > cut_at and p.chunk in known]
    assert resent == [], f"{len(resent)} chunks the server held at the drop were sent again"
    with team_scope(acme):
        [version] = DatasetVersion.objects.filter(dataset__slug="wobbly")
        files = {f.path: (f.size, f.blob.sha256) for f in version.files.select_related("blob")}
    assert version.status == DatasetVersion.Status.READY, version.status
    assert files == {
        name: (size, hashlib.sha256((folder / name).read_bytes()).hexdigest())
        for name, size in FILES.items()
    }
