"""Lattice's built-in model server: serves a model version's ``predict.py`` over HTTP.

Standard library only, so it runs in any image with Python 3.9 or later (the model's own
requirements are the image's business). It loads the version read-only from ``--model``
(``/model`` in a container), in a thread, so the health route answers from the first
instant:

- ``GET /health-check``: ``{"status": ...}`` (Cog's states): ``STARTING`` until ``setup()``
  has returned (503), then ``READY`` (200), or ``BUSY`` (200) while every slot is taken,
  or ``SETUP_FAILED`` (500) with ``setup.error`` when it raised;
- ``POST /predict`` (and Cog's ``/predictions``): the JSON object sent is passed to
  ``predict(**inputs)``; its return value comes back as ``{"output": ...}``, or, when
  ``predict`` yields, as server-sent events (``data: <json>`` per item, then
  ``event: done``). 429 when ``--concurrency`` requests already run, 503 before READY,
  400 for a body that is not a JSON object, 422 when ``predict`` raises ValueError or
  TypeError (inputs it refuses), 500 when it raises anything else or returns what JSON
  cannot hold (the message, no traceback; the traceback goes to the log). NumPy values
  (anything with ``tolist()``) are sent as lists and numbers.

Connections are kept alive between JSON answers (HTTP/1.1 with Content-Length; a body must
say its length). On SIGTERM or SIGINT it stops taking connections and lets the requests in
flight finish, for ``--drain`` seconds at most, before it exits.

    python3 serve.py --host 0.0.0.0 --port 8080 --model /model --concurrency 8
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 64 * 1024 * 1024
ERROR_CHARS = 2000
NOT_FOUND = "Not found: POST /predict, GET /health-check."
BAD_BODY = "The body must be a JSON object of the inputs."


class SetupError(Exception):
    """The model folder cannot be served as it is (no predict.py, no predict function)."""


def say(line: str) -> None:
    """One line of the server's log (its standard output, which the host ships)."""
    print(line, flush=True)  # noqa: T201 - a script: its printed lines are its log


def import_predictor(folder: Path) -> tuple[Any, Any]:
    """(predict, setup or None) from ``folder``/predict.py, imported as module ``predict``."""
    path = folder / "predict.py"
    if not path.is_file():
        raise SetupError(
            "The model version has no predict.py at its top level: a deployment of the "
            "built-in server needs one (setup() and predict(**inputs))."
        )
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("predict", path)
    if spec is None or spec.loader is None:
        raise SetupError(f"{path} cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    sys.modules["predict"] = module
    spec.loader.exec_module(module)
    predict = getattr(module, "predict", None)
    if not callable(predict):
        raise SetupError("predict.py defines no predict(**inputs) function.")
    setup = getattr(module, "setup", None)
    return predict, setup if callable(setup) else None


def to_json(value: Any) -> Any:
    """``json.dumps``'s default: NumPy arrays and scalars as lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not something JSON can hold")


def dumps(value: Any) -> str:
    return json.dumps(value, default=to_json)


def cut(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


class Model:
    """The loaded predictor and its state."""

    def __init__(self, folder: Path, concurrency: int) -> None:
        self.folder = folder
        self.state = "STARTING"
        self.error = ""
        self.predict: Any = None
        self.slots = threading.BoundedSemaphore(concurrency)
        self.concurrency = concurrency
        self.running = 0
        self.lock = threading.Lock()

    def load(self) -> None:
        """Import predict.py and run its setup(): READY after, SETUP_FAILED if either raised."""
        began = time.monotonic()
        say(f"setup: loading {self.folder / 'predict.py'}")
        try:
            predict, setup = import_predictor(self.folder)
            if setup is not None:
                setup()
        except BaseException as exc:  # whatever setup raises is the user's to see
            traceback.print_exc()
            self.error = cut(exc)
            self.state = "SETUP_FAILED"
            say(f"setup: failed after {time.monotonic() - began:.2f} s: {self.error}")
            return
        self.predict = predict
        self.state = "READY"
        say(f"setup: ready in {time.monotonic() - began:.2f} s")

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.state == "READY":
            busy = self.running >= self.concurrency
            return 200, {"status": "BUSY" if busy else "READY", "running": self.running}
        if self.state == "SETUP_FAILED":
            return 500, {"status": "SETUP_FAILED", "setup": {"error": self.error}}
        return 503, {"status": "STARTING"}

    def take_slot(self) -> bool:
        if not self.slots.acquire(blocking=False):
            return False
        with self.lock:
            self.running += 1
        return True

    def give_slot(self) -> None:
        with self.lock:
            self.running -= 1
        self.slots.release()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lattice-model-server"
    # An idle kept-alive connection is closed after this many seconds (each holds a thread);
    # a client's pool (the gateway's) lets its own go sooner.
    timeout = 120
    # Answers go out at once: with Nagle's algorithm a head and body written apart wait for
    # the client's delayed ACK (about 40 ms on Linux) before the body leaves.
    disable_nagle_algorithm = True
    model: Model

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return  # one line per request would flood the log; the gateway counts requests

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status in (429, 503):
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self._body() is None:  # a GET may carry one: read, so the connection stays usable
            return
        path = self.path.split("?", 1)[0]
        if path in ("/health-check", "/health"):
            self._json(*self.model.health())
        elif path == "/":
            self._json(200, {"server": "lattice-model-server", "predict": "POST /predict"})
        else:
            self._json(404, {"error": NOT_FOUND})

    def _body(self) -> bytes | None:
        """The request's body, or None when it was refused (answered, connection closed):
        one without a length (chunked) or over MAX_BODY. Read whole before any answer, so
        the connection stays usable for the next request."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._json(411, {"error": "Send the body with a Content-Length."})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length > MAX_BODY:
            self.close_connection = True
            self._json(413, {"error": f"The body is over {MAX_BODY // 2**20} MiB."})
            return None
        if length < 0:
            self.close_connection = True
            self._json(400, {"error": "The Content-Length is not a number."})
            return None
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        raw = self._body()
        if raw is None:
            return
        if self.path.split("?", 1)[0] not in ("/predict", "/predictions"):
            self._json(404, {"error": NOT_FOUND})
            return
        model = self.model
        if model.state != "READY":
            body = model.health()[1]
            self._json(503, {"error": f"The model is not ready ({body['status']})."} | body)
            return
        try:
            inputs = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": BAD_BODY})
            return
        if isinstance(inputs, dict) and isinstance(inputs.get("input"), dict):
            inputs = inputs["input"]  # Cog's {"input": {...}}
        if not isinstance(inputs, dict):
            self._json(400, {"error": BAD_BODY})
            return
        if not model.take_slot():
            self._json(429, {"error": "Every slot of this replica is busy: try again."})
            return
        try:
            self._predict(inputs)
        finally:
            model.give_slot()

    def _predict(self, inputs: dict[str, Any]) -> None:
        try:
            output = self.model.predict(**inputs)
        except (TypeError, ValueError) as exc:  # the inputs, as the predictor judged them
            self._json(422, {"error": cut(exc)})
            return
        except Exception as exc:  # the predictor's error is the answer
            traceback.print_exc()
            self._json(500, {"error": cut(exc)})
            return
        if inspect.isgenerator(output):
            self._stream(output)
            return
        try:
            body = dumps({"output": output}).encode()
        except (TypeError, ValueError) as exc:
            self._json(500, {"error": f"predict() returned what JSON cannot hold: {cut(exc)}"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, output: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for item in output:
                self.wfile.write(f"data: {dumps(item)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"event: done\ndata: {}\n\n")
        except Exception as exc:  # the predictor's (or its output's) error, as the last event
            traceback.print_exc()
            self.wfile.write(f"event: error\ndata: {dumps({'error': cut(exc)})}\n\n".encode())


def drain(model: Model, seconds: float) -> None:
    """Wait for the requests in flight to finish, ``seconds`` at most."""
    deadline = time.monotonic() + seconds
    while model.running and time.monotonic() < deadline:
        time.sleep(0.05)
    say(f"stopped with {model.running} requests in flight")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog (read when the socket is bound, so set on the class): the default
    # 5 makes a burst of new connections (64 clients at once) wait for SYN retries.
    request_queue_size = 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - inside its container
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model", default="/model")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--drain", type=float, default=25.0, help="seconds, on SIGTERM")
    args = parser.parse_args(argv)
    model = Model(Path(args.model), max(1, args.concurrency))
    handler = type("BoundHandler", (Handler,), {"model": model})
    server = Server((args.host, args.port), handler)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=model.load, name="setup", daemon=True).start()
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve", daemon=True
    )
    serving.start()
    say(f"serving on {args.host}:{args.port}")
    stop.wait()
    say("stopping: no new connections; the requests in flight finish")
    server.shutdown()
    server.server_close()
    drain(model, args.drain)


if __name__ == "__main__":
    main()
