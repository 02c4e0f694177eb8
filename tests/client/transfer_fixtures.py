"""What the transfer tests share: a real server (uvicorn, tests.asgi_server) with blobs in a
local folder, alice's real ``lat_`` token, an SDK client of hers in Acme whose state folder
(resumable uploads, the hash cache) is the test's own, and a count of the chunk PUTs the
server received (its chunk service wrapped in this process, where the server runs)."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

import lattice
from tests.helpers import make_token

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from apps.accounts.models import User
    from apps.teams.models import Team

MIB = 1024 * 1024


@dataclass
class ChunkPuts:
    """Every chunk PUT the server's chunk service was called with: (blob sha256, index)."""

    calls: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()


@pytest.fixture
def chunk_puts(monkeypatch: pytest.MonkeyPatch) -> ChunkPuts:
    from apps.datasets.api import views

    seen = ChunkPuts()
    receive = views.chunk_receive

    def counted(**kwargs: Any) -> Any:
        with seen.lock:
            seen.calls.append((kwargs["sha256"], kwargs["index"]))
        return receive(**kwargs)

    monkeypatch.setattr(views, "chunk_receive", counted)
    return seen


@dataclass
class Server:
    url: str
    token: str
    team: Team
    user: User
    state: Path


def lattice_server(
    url: str, team: Team, user: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Server:
    """``user``'s real token on the server at ``url``; the SDK's state in the test's folder."""
    _, token = make_token(user)
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    for name in ("LATTICE_URL", "LATTICE_TOKEN", "LATTICE_TEAM"):
        monkeypatch.delenv(name, raising=False)
    return Server(url=url, token=token, team=team, user=user, state=state)


@pytest.fixture
def server(
    asgi_live_server: str,
    acme: Team,
    alice: User,
    media: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Server:
    """Lattice with blobs in a local folder (chunks of the module's CHUNK bytes)."""
    return lattice_server(asgi_live_server, acme, alice, tmp_path, monkeypatch)


@pytest.fixture
def client(server: Server) -> Iterator[lattice.Client]:
    with lattice.Client(url=server.url, token=server.token, team="acme") as sdk:
        yield sdk


def write_random(path: Path, size: int, seed: int) -> bytes:
    """``size`` bytes that no other seed repeats, written to ``path`` (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    data = bytes(out[:size])
    path.write_bytes(data)
    return data


def write_big(path: Path, size: int, seed: int) -> None:
    """A large file of ``size`` bytes, written a MiB at a time (memory stays small)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        block = os.urandom(MIB)
        for n in range(-(-size // MIB)):
            piece = hashlib.sha256(f"{seed}:{n}".encode()).digest() + block[32:]
            out.write(piece[: min(MIB, size - n * MIB)])


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative POSIX path, with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
