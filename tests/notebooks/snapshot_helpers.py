"""What the snapshot tests share: a notebook whose files are on a host, and the host's side
of a snapshot's save (what its agent holds: the save's address and its ticket)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.test import Client

from apps.notebooks import snapshots
from apps.notebooks.models import Notebook, Status
from tests.factories import HostFactory, NotebookSessionFactory
from tests.notebook_fixtures import make_notebook

if TYPE_CHECKING:
    import pytest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], str]]:
    """The agent.snapshot tasks queued from now on: (args, queue), none sent to a broker."""
    sent: list[tuple[tuple[Any, ...], str]] = []
    monkeypatch.setattr(
        snapshots.agent_snapshot,
        "apply_async",
        lambda args, queue: sent.append((tuple(args), queue)),
    )
    return sent


def hosted(team, actor, name: str = "Trainer", *, host=None) -> Notebook:
    """A stopped notebook whose files are in its volume on ``host`` (a new ready one)."""
    notebook = make_notebook(team, actor, name)
    notebook.volume_host = host or HostFactory.create()
    notebook.save(update_fields=["volume_host"])
    return notebook


def running(team, actor, name: str = "Trainer", **session: Any):
    """A notebook running on the host that holds its volume, and its session."""
    notebook = hosted(team, actor, name)
    notebook.status = Status.RUNNING
    notebook.save(update_fields=["status"])
    opened = NotebookSessionFactory.create(
        notebook=notebook,
        status=Status.RUNNING,
        host=notebook.volume_host,
        runtime_state={},
        **session,
    )
    return notebook, opened


class PlayedHost:
    """The host's agent: what it holds (the save's address and its ticket), speaking the
    save protocol of apps.machines.savefolder over HTTP."""

    def __init__(self, url: str, ticket: str, client: Client | None = None) -> None:
        self.base = "/" + url.split("/", 3)[3]  # the path under LATTICE_INTERNAL_URL
        self.ticket = ticket
        self.client = client or Client()

    @classmethod
    def of(cls, queued_task: tuple[tuple[Any, ...], str]) -> PlayedHost:
        (host_name, _volume, url, ticket), queue = queued_task
        assert queue == f"host.{host_name}"
        return cls(url, ticket)

    def post(self, step: str, body: Any = None, *, ticket: str | None = None) -> Any:
        return self.client.post(
            f"{self.base}/{step}",
            body or {},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Ticket {ticket or self.ticket}",
        )

    def put(self, url: str, data: bytes, checksum: str) -> Any:
        return self.client.put(
            url,
            data,
            content_type="application/octet-stream",
            HTTP_AUTHORIZATION=f"Ticket {self.ticket}",
            HTTP_X_CHUNK_SHA256=checksum,
        )

    def manifest(self, files: dict[str, bytes], modes: dict[str, int] | None = None) -> Any:
        modes = modes or {}
        listed = [
            {"path": path, "size": len(data), "sha256": sha(data), "mode": modes.get(path, 0o644)}
            for path, data in files.items()
        ]
        return self.post("manifest", {"files": listed, "skipped": []})

    def send_missing(self, answer: dict[str, Any], files: dict[str, bytes]) -> int:
        """Send every chunk the manifest's answer asks for; the bytes sent."""
        by_sha = {sha(data): data for data in files.values()}
        size = answer["chunk_size"]
        sent = 0
        for digest, indexes in answer["missing"].items():
            for index in indexes:
                piece = by_sha[digest][index * size : (index + 1) * size]
                target = self.post(
                    f"blobs/{digest}/chunks/{index}/target", {"sha256": sha(piece)}
                ).json()
                assert self.put(target["url"], piece, sha(piece)).status_code == 200
                sent += len(piece)
        return sent

    def save(self, files: dict[str, bytes], modes: dict[str, int] | None = None) -> int:
        """A whole snapshot: manifest, chunks, complete. The bytes sent."""
        answer = self.manifest(files, modes)
        assert answer.status_code == 200, answer.content
        body = answer.json()
        if body["state"] == "existing":
            return 0
        sent = self.send_missing(body, files)
        done = self.post("complete")
        assert done.status_code == 200, done.content
        return sent
