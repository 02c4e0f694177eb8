"""A Git server for tests: ``git http-backend`` behind a small HTTP server in this process,
asking for a token (HTTP Basic, any user name) the way a hosted Git service does.

Workloads reach it on the workloads' bridge gateway (this host) once LATTICE_WORKLOAD_ALLOW
names that address and port (``workload_git_server``).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

GIT = shutil.which("git") or "git"


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),
    }
    done = subprocess.run(
        [GIT, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@dataclass
class GitServer:
    root: Path  # GIT_PROJECT_ROOT: bare repositories under it
    token: str
    address: str = ""
    port: int = 0
    users: list[str] = field(default_factory=list)  # the user names that authenticated
    refused: int = 0  # requests without the token

    def url(self, repo: str) -> str:
        return f"http://{self.address}:{self.port}/{repo}"


def _handler(server: GitServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._backend()

        def do_POST(self) -> None:
            self._backend()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def _backend(self) -> None:
            header = self.headers.get("Authorization", "")
            user = password = ""
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if not user or password != server.token:
                server.refused += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            server.users.append(user)
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": user,
                "REMOTE_ADDR": self.client_address[0],
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            done = subprocess.run(
                [GIT, "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            status, headers, content = _cgi_response(done.stdout)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    return Handler


def _cgi_response(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """A CGI program's output as (status, headers, body)."""
    head, _, content = output.partition(b"\r\n\r\n")
    status, headers = 200, []
    for line in head.decode(errors="replace").split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name, value.strip()))
    return status, headers, content


@contextlib.contextmanager
def git_server(root: Path, *, address: str, token: str) -> Iterator[GitServer]:
    """Serve the bare repositories under ``root`` on ``address`` (a free port)."""
    server = GitServer(root=root, token=token, address=address)
    httpd = http.server.ThreadingHTTPServer((address, 0), _handler(server))
    server.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
