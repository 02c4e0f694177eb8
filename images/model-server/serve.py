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
  TypeError (inputs it refuses), 500 when it raises anything else (the message, no
  traceback; the traceback goes to the log).

    python3 serve.py --host 0.0.0.0 --port 8080 --model /model --concurrency 8
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger("lattice.serve")
MAX_BODY = 64 * 1024 * 1024


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
        began = time.monotonic()
        print(f"setup: loading {self.folder / 'predict.py'}", flush=True)  # noqa: T201
        try:
            path = self.folder / "predict.py"
            if not path.is_file():
                raise FileNotFoundError(
                    "The model version has no predict.py at its top level: a deployment of "
                    "the built-in server needs one (setup() and predict(**inputs))."
                )
            sys.path.insert(0, str(self.folder))
            spec = importlib.util.spec_from_file_location("predict", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["predict"] = module
            spec.loader.exec_module(module)
            predict = getattr(module, "predict", None)
            if not callable(predict):
                raise AttributeError("predict.py defines no predict(**inputs) function.")
            setup = getattr(module, "setup", None)
            if callable(setup):
                setup()
            self.predict = predict
        except BaseException as exc:  # noqa: BLE001 - whatever setup raises is the user's to see
            traceback.print_exc()
            self.error = f"{type(exc).__name__}: {exc}"[:2000]
            self.state = "SETUP_FAILED"
            print(f"setup: failed after {time.monotonic() - began:.2f} s: {self.error}", flush=True)
            return
        self.state = "READY"
        print(f"setup: ready in {time.monotonic() - began:.2f} s", flush=True)

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.state == "READY":
            busy = self.running >= self.concurrency
            return 200, {"status": "BUSY" if busy else "READY", "running": self.running}
        if self.state == "SETUP_FAILED":
            return 500, {"status": "SETUP_FAILED", "setup": {"error": self.error}}
        return 503, {"status": "STARTING"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lattice-model-server"
    model: Model

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return  # one line per request would flood the log; the gateway counts requests

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:  # noqa: PLR2004
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] in ("/health-check", "/health"):
            self._json(*self.model.health())
        elif self.path == "/":
            self._json(200, {"server": "lattice-model-server", "predict": "POST /predict"})
        else:
            self._json(404, {"error": "Not found: POST /predict, GET /health-check."})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] not in ("/predict", "/predictions"):
            self._json(404, {"error": "Not found: POST /predict, GET /health-check."})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(413, {"error": f"The body is over {MAX_BODY // 2**20} MiB."})
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b"{}"
        model = self.model
        if model.state != "READY":
            status, body = model.health()
            self._json(503, {"error": f"The model is not ready ({body['status']})."} | body)
            return
        try:
            inputs = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": "The body must be a JSON object of the inputs."})
            return
        if isinstance(inputs, dict) and isinstance(inputs.get("input"), dict):
            inputs = inputs["input"]  # Cog's {"input": {...}}
        if not isinstance(inputs, dict):
            self._json(400, {"error": "The body must be a JSON object of the inputs."})
            return
        if not model.slots.acquire(blocking=False):
            self._json(429, {"error": "Every slot of this replica is busy: try again."})
            return
        with model.lock:
            model.running += 1
        try:
            self._predict(inputs)
        finally:
            with model.lock:
                model.running -= 1
            model.slots.release()

    def _predict(self, inputs: dict[str, Any]) -> None:
        try:
            output = self.model.predict(**inputs)
            if inspect.isgenerator(output):
                self._stream(output)
                return
            body = json.dumps({"output": output}).encode()
        except (TypeError, ValueError) as exc:  # the inputs, as the predictor judged them
            self._json(422, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
            return
        except Exception as exc:  # noqa: BLE001 - the predictor's error is the answer
            traceback.print_exc()
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
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
                self.wfile.write(f"data: {json.dumps(item)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"event: done\ndata: {}\n\n")
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            error = json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000]})
            self.wfile.write(f"event: error\ndata: {error}\n\n".encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - inside its container
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model", default="/model")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    model = Model(Path(args.model), max(1, args.concurrency))
    handler = type("BoundHandler", (Handler,), {"model": model})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    threading.Thread(target=model.load, name="setup", daemon=True).start()
    print(f"serving on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
