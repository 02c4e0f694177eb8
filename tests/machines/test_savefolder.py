"""The agent's side of saving a folder (apps.machines.savefolder), against a stand-in server.

The stand-in speaks the ticket protocol as the web tier does (manifest, chunk targets,
chunk PUTs checked against their SHA-256, complete, fail) and keeps what it received, so
each test asserts on what the server ended up with. The folder is a real one, read by the
local process runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.machines import savefolder
from apps.machines.savefolder import CHANGED, IN_FLIGHT, run_save
from apps.runtimes.base import Spec
from apps.runtimes.process import LocalProcessRuntime

TICKET = "t-secret"
CHUNK = 64 * 1024


class ProtocolServer:
    """What the web tier does, in memory: ``held`` are the blobs it already has."""

    def __init__(self, held=()):
        self.held = set(held)
        self.calls: list[tuple[str, dict]] = []
        self.chunks: dict[tuple[str, int], bytes] = {}
        self.manifest: list[dict] = []
        self.completed = False
        self.failed: dict | None = None
        self.refuse_targets = False
        self.flaky_puts = 0  # answer this many chunk PUTs with a 503 first
        self.on_manifest = None
        self.sending = 0
        self.most_sending = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                server.post(self)

            def do_PUT(self):
                server.put(self)

            def log_message(self, *args):
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hosts/saves/7"

    def answer(self, handler, status, body):
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def post(self, handler):  # noqa: PLR0911 - one answer per step, as the server's routes
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])) or b"{}")
        if handler.headers.get("Authorization") != f"Ticket {TICKET}":
            return self.answer(handler, 403, {"detail": "no ticket", "code": "ticket"})
        step = handler.path.removeprefix("/hosts/saves/7/")
        self.calls.append((step, body))
        if step == "manifest":
            self.manifest = body["files"]
            if self.on_manifest:
                self.on_manifest()
            sizes = {f["sha256"]: f["size"] for f in body["files"]}
            if all(sha in self.held for sha in sizes):
                return self.answer(handler, 200, {"state": "existing", "version": 3})
            missing = {
                sha: list(range(-(-size // CHUNK)))
                for sha, size in sizes.items()
                if sha not in self.held
            }
            return self.answer(
                handler, 200, {"state": "upload", "chunk_size": CHUNK, "missing": missing}
            )
        if step.endswith("/target"):
            if self.refuse_targets:
                return self.answer(handler, 403, {"detail": "removed", "code": "permission"})
            _, sha, _, index, _ = step.split("/")
            return self.answer(
                handler,
                200,
                {
                    "method": "PUT",
                    "url": f"/hosts/saves/7/blobs/{sha}/chunks/{index}",
                    "headers": {"X-Chunk-SHA256": body["sha256"]},
                },
            )
        if step == "complete":
            self.completed = True
            return self.answer(handler, 200, {"version": 4})
        if step == "fail":
            self.failed = body
            return self.answer(handler, 200, {})
        return self.answer(handler, 200, {})

    def put(self, handler):
        with self.lock:
            self.sending += 1
            self.most_sending = max(self.most_sending, self.sending)
            flaky = self.flaky_puts > 0
            self.flaky_puts -= 1
        try:
            data = handler.rfile.read(int(handler.headers["Content-Length"]))
            time.sleep(0.02)  # long enough for sends to overlap
            if flaky:
                return self.answer(handler, 503, {"detail": "busy"})
            if handler.headers.get("Authorization") != f"Ticket {TICKET}":
                return self.answer(handler, 403, {"detail": "no ticket"})
            if hashlib.sha256(data).hexdigest() != handler.headers["X-Chunk-SHA256"]:
                return self.answer(handler, 400, {"detail": "damaged"})
            parts = handler.path.split("/")
            self.chunks[(parts[-3], int(parts[-1]))] = data
            return self.answer(handler, 200, {})
        finally:
            with self.lock:
                self.sending -= 1

    def blob(self, sha):
        indexes = sorted(i for s, i in self.chunks if s == sha)
        return b"".join(self.chunks[(sha, i)] for i in indexes)

    def steps(self):
        return [step for step, _ in self.calls]


@pytest.fixture
def server():
    server = ProtocolServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture
def notebook(tmp_path):
    runtime = LocalProcessRuntime(tmp_path)
    state = runtime.start(
        Spec(
            name="nb-1",
            image="",
            command=[sys.executable, "-c", "import time; time.sleep(600)"],
            volumes={"vol-abc": "/notebooks"},
        )
    )
    root = tmp_path / "volumes" / "vol-abc" / "out"
    (root / "sub").mkdir(parents=True)
    (root / "model.bin").write_bytes(os.urandom(5 * CHUNK + 123))
    (root / "exact.bin").write_bytes(os.urandom(2 * CHUNK))
    (root / "sub" / "copy.bin").write_bytes((root / "model.bin").read_bytes())
    (root / "sub" / "empty.txt").write_bytes(b"")
    (root / "link").symlink_to("/etc/passwd")
    yield runtime, state, root
    runtime.stop(state, timeout=3)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_the_folder_is_listed_sent_and_completed(server, notebook, monkeypatch):
    monkeypatch.setattr(savefolder, "PROGRESS_EVERY", 0.0)
    runtime, state, root = notebook

    result = run_save(runtime, state, "out", server.url, TICKET)

    assert result == {"version": 4}
    assert server.completed
    assert server.failed is None
    on_disk = {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    assert {f["path"]: (f["size"], f["sha256"]) for f in server.manifest} == {
        path: (len(data), sha(data)) for path, data in on_disk.items()
    }
    assert dict(server.calls)["manifest"]["skipped"] == ["link"]
    for path, data in on_disk.items():
        if data:
            assert server.blob(sha(data)) == data, path
    # The content at two paths went once: 6 chunks, not 12.
    assert len([k for k in server.chunks if k[0] == sha(on_disk["model.bin"])]) == 6
    sending = [
        body for step, body in server.calls if step == "progress" and body["phase"] == "sending"
    ]
    total = sum(len(d) for d in on_disk.values())
    assert sending[-1] == {"phase": "sending", "done": total, "total": total}
    reading = [
        body for step, body in server.calls if step == "progress" and body["phase"] == "reading"
    ]
    assert reading[-1]["done"] == total
    assert server.steps()[-1] == "complete"
    assert 1 < server.most_sending <= IN_FLIGHT


def test_content_the_server_holds_is_not_sent(server, notebook):
    runtime, state, root = notebook
    server.held = {
        sha(p.read_bytes()) for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    }

    assert run_save(runtime, state, "out", server.url, TICKET) == {
        "state": "existing",
        "version": 3,
    }
    assert server.chunks == {}
    assert "complete" not in server.steps()


def test_a_file_changed_between_the_passes_fails_the_save_naming_it(server, notebook):
    runtime, state, root = notebook
    server.on_manifest = lambda: (root / "exact.bin").write_bytes(os.urandom(2 * CHUNK))

    result = run_save(runtime, state, "out", server.url, TICKET)

    assert result["failed"] == CHANGED
    assert server.failed == {"reason": CHANGED, "path": "exact.bin"}
    assert not server.completed


def test_a_file_removed_between_the_passes_fails_the_save(server, notebook):
    runtime, state, root = notebook
    server.on_manifest = (root / "sub" / "empty.txt").unlink

    run_save(runtime, state, "out", server.url, TICKET)

    assert server.failed == {"reason": CHANGED, "path": "sub/empty.txt"}
    assert not server.completed


def test_a_refusal_stops_the_save_at_once(server, notebook):
    runtime, state, _ = notebook
    server.refuse_targets = True

    result = run_save(runtime, state, "out", server.url, TICKET)

    assert result == {"refused": "removed"}
    assert not server.completed
    assert server.failed is None  # the server recorded why itself
    assert server.chunks == {}


def test_a_busy_server_is_tried_again(server, notebook, monkeypatch):
    monkeypatch.setattr(savefolder, "BACKOFF", 0.01)
    runtime, state, _ = notebook
    server.flaky_puts = 2

    assert run_save(runtime, state, "out", server.url, TICKET) == {"version": 4}
    assert server.completed


def test_a_folder_that_is_not_there_is_reported_as_the_failure(server, notebook):
    runtime, state, _ = notebook

    result = run_save(runtime, state, "../../etc", server.url, TICKET)

    assert "inside /notebooks" in result["failed"]
    assert server.steps() == ["fail"]
    assert "manifest" not in server.steps()


def test_the_ticket_goes_only_to_lattice(server):
    client = savefolder.SaveClient(server.url, TICKET)
    seen = {}

    class Recorder:
        def request(self, method, url, *, headers, json, content):
            seen[url] = headers
            return type("R", (), {"status_code": 200, "content": b""})()

        def close(self):
            return

    client.http = Recorder()  # type: ignore[assignment]
    client.put_chunk(
        {"method": "PUT", "url": "https://s3.example/part?sig=x", "headers": {}}, [b"x"]
    )
    client.put_chunk(
        {"method": "PUT", "url": "/hosts/saves/7/blobs/a/chunks/0", "headers": {}}, [b"x"]
    )

    assert "Authorization" not in seen["https://s3.example/part?sig=x"]
    assert (
        seen[server.url.rsplit("/hosts", 1)[0] + "/hosts/saves/7/blobs/a/chunks/0"]["Authorization"]
        == f"Ticket {TICKET}"
    )
