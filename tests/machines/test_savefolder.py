"""The agent's save client (apps.machines.savefolder) on its own: where its ticket goes.

The whole protocol, against the real web tier and real runtimes, is tests/models/
test_save_folder.py; here only what no server can show: the ticket is sent to Lattice and
never to a presigned storage URL the server hands out, and how often progress is told.
"""

from __future__ import annotations

import itertools

from apps.machines import savefolder
from apps.machines.savefolder import SaveClient

TICKET = "t-secret"
BASE = "http://lattice.internal:8000/hosts/saves/7"


class Recorder:
    """Stands in for the network: records each request's headers, answers 200."""

    def __init__(self):
        self.seen = {}

    def request(self, method, url, *, headers, json, content):
        self.seen[url] = headers
        return type("Response", (), {"status_code": 200, "content": b""})()

    def close(self):
        return


def test_the_ticket_goes_only_to_lattice():
    network = Recorder()
    client = SaveClient(BASE, TICKET, http=network)  # type: ignore[arg-type]

    client.put_chunk(
        {"method": "PUT", "url": "https://s3.example/part?sig=x", "headers": {}}, [b"x"]
    )
    client.put_chunk(
        {
            "method": "PUT",
            "url": "/hosts/saves/7/blobs/a/chunks/0",
            "headers": {"X-Chunk-SHA256": "c"},
        },
        [b"xy", b"z"],
    )

    assert "Authorization" not in network.seen["https://s3.example/part?sig=x"]
    ours = network.seen["http://lattice.internal:8000/hosts/saves/7/blobs/a/chunks/0"]
    assert ours["Authorization"] == f"Ticket {TICKET}"
    assert ours["X-Chunk-SHA256"] == "c"
    assert ours["Content-Length"] == "3"


def test_progress_is_told_at_most_twice_a_second_and_at_the_end(monkeypatch):
    told = []

    class Client:
        def post(self, step, body):
            told.append((now[0], body["done"]))

    now = [100.0]
    monkeypatch.setattr(savefolder.time, "monotonic", lambda: now[0])
    progress = savefolder._Progress(Client(), "sending", 1000)  # type: ignore[arg-type]
    for _ in range(100):  # a byte every 10 ms for a second
        now[0] += 0.01
        progress.add(1)
    progress.tell()

    # All but the last (the end's) are half a second apart at least.
    throttled = [at for at, _ in told[:-1]]
    assert all(later - earlier >= 0.5 - 1e-9 for earlier, later in itertools.pairwise(throttled))
    assert len(told) <= 3
    assert told[-1][1] == 100
