"""bench/httpx_body: the memory and CPU a 32 MiB chunk PUT through httpx costs, sent as one
bytes object or as 1 MiB memoryview pieces (Content-Length set, so not chunked).

httpcore's synchronous socket write (1.0.9) sends a body with ``buffer = buffer[n:]`` after
every partial send, so one 32 MiB bytes object is copied over and over as it goes; that is
why the upload clients' RSS grows to hundreds of MiB (bench/README.md, client_upload.py).
Here: ``--threads`` (4) threads, one httpx.Client each, PUT ``--chunks`` (32) chunks (a
fresh copy of 32 MiB of random bytes each, as a read from disk makes) each way to a socket
server in this process that reads and discards them. Each way runs in a process of its
own, so the peak RSS (ru_maxrss) is its own.

    .venv/bin/python bench/httpx_body.py [--threads 4] [--chunks 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator

MIB = 1024**2
CHUNK = 32 * MIB
PIECE = MIB


def handle(conn: socket.socket) -> None:
    """Read requests with a Content-Length, discard their bodies, answer 204."""
    buffer = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = [line for line in head.split(b"\r\n") if b":" in line]
            length = next(
                int(line.split(b":", 1)[1])
                for line in lines
                if line.lower().startswith(b"content-length")
            )
            left, buffer = length - len(buffer), b""
            while left > 0:
                left -= len(conn.recv(min(left, PIECE)))
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")


def serve(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def pieces(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(data), PIECE):
        yield view[start : start + PIECE]


def one_way(way: str, threads: int, chunks: int) -> dict[str, float]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    threading.Thread(target=serve, args=(sock,), daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/chunk"
    each = max(1, chunks // threads)

    def worker() -> None:
        template = bytearray(os.urandom(CHUNK))
        with httpx.Client(timeout=120) as client:
            for _ in range(each):
                data = bytes(template)  # a fresh 32 MiB object, as each chunk read is
                if way == "bytes":
                    response = client.put(url, content=data)
                else:
                    length = {"Content-Length": str(len(data))}
                    response = client.put(url, content=pieces(data), headers=length)
                if response.status_code != 204:
                    raise RuntimeError(f"answered {response.status_code}")

    cpu, start = time.process_time(), time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return {
        "seconds": round(time.perf_counter() - start, 3),
        # The server's threads too, and making the data (the same both ways).
        "cpu_s": round(time.process_time() - cpu, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="httpx chunk bodies: bytes vs pieces.")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--way", choices=["bytes", "pieces"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:  # one way, in a process of its own
        print(json.dumps(one_way(args.way, args.threads, args.chunks)))
        return
    results: dict[str, list[dict[str, float]]] = {"bytes": [], "pieces": []}
    for _ in range(args.rounds):
        for way, runs in results.items():
            command = [sys.executable, __file__, "--way", way, "--threads", str(args.threads)]
            done = subprocess.run(
                [*command, "--chunks", str(args.chunks)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(done.stdout))
    print(f"{args.threads} threads, {args.chunks} PUTs of {CHUNK // MIB} MiB through httpx")
    for way, runs in results.items():
        print(
            f"{way:<7} seconds {', '.join(str(r['seconds']) for r in runs):<16} "
            f"CPU s {', '.join(str(r['cpu_s']) for r in runs):<12} "
            f"peak RSS MiB {', '.join(str(r['peak_rss_mib']) for r in runs)}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
