"""The agent's save client (apps.machines.savefolder) on its own: where its ticket goes.

The whole protocol, against the real web tier and real runtimes, is tests/models/
test_save_folder.py; here only what no server can show: the ticket is sent to Lattice and
never to a presigned storage URL the server hands out.
"""

from __future__ import annotations

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
