"""Which address `manage.py dev` gives workloads (apps.devtools.workload_reach), no Docker
needed: local processes keep the server's own loopback address, an administrator's
LATTICE_WORKLOAD_API_URL wins, and the relay answers only peers on the workload network."""

from __future__ import annotations

import socket

from apps.accounts.workload import workload_api_url
from apps.devtools.management.commands import dev
from apps.devtools.management.commands.dev import Command
from apps.devtools.workload_reach import Forwarder
from apps.runtimes import select


def test_local_processes_keep_the_loopback_address(settings):
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_WORKLOAD_API_URL = ""
    settings.LATTICE_INTERNAL_URL = "http://127.0.0.1:8097"
    select._runtime.cache_clear()
    try:
        assert Command._workload_reach("127.0.0.1", 8097) is None
    finally:
        select._runtime.cache_clear()

    assert workload_api_url() == "http://127.0.0.1:8097"


def test_a_workload_api_url_of_the_administrators_is_left_alone(settings, monkeypatch):
    monkeypatch.setenv("LATTICE_WORKLOAD_API_URL", "http://lattice.lan:8000")
    settings.LATTICE_WORKLOAD_API_URL = "http://lattice.lan:8000"

    def relay(*args: object) -> None:
        raise AssertionError("no relay where the administrator says where workloads go")

    monkeypatch.setattr(dev, "workload_reach", relay)

    assert Command._workload_reach("127.0.0.1", 8000) is None
    assert workload_api_url() == "http://lattice.lan:8000"


def received(client: socket.socket) -> bytes:
    """What came back: nothing where the relay hung up (closed, or reset: it read nothing)."""
    try:
        return client.recv(4)
    except ConnectionResetError:
        return b""


def test_the_relay_carries_bytes_for_its_peers_and_closes_on_anyone_else():
    upstream = socket.create_server(("127.0.0.1", 0))
    target = upstream.getsockname()
    for peers, answered in ((["127.0.0.0/8"], True), (["172.18.0.0/16"], False)):
        relay = Forwarder("127.0.0.1", 0, target, peers=peers)
        try:
            with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
                client.sendall(b"ping")
                if answered:
                    server, _ = upstream.accept()
                    with server:
                        assert server.recv(4) == b"ping"
                        server.sendall(b"pong")
                assert received(client) == (b"pong" if answered else b"")
        finally:
            relay.close()
    upstream.close()
