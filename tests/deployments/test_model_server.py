"""The built-in model server's HTTP contract (images/model-server/serve.py), run as a
subprocess on a model folder with a predict.py written here: the health states (STARTING,
READY, BUSY, SETUP_FAILED), predictions as JSON or server-sent events, its refusals, kept-alive
connections, and the drain on SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.deployment_fixtures import model_folder, serve, wait_status

if TYPE_CHECKING:
    from pathlib import Path

ECHO = """
    def predict(**inputs):
        return {"got": inputs}
"""


def post(url: str, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
    if content is None:
        content = json.dumps(body).encode()
    return httpx.post(f"{url}/predict", content=content, timeout=10)


def test_a_slow_setup_says_starting_and_takes_no_prediction_until_ready(tmp_path):
    # The "setup() sleeps 20 s" story, with a short sleep.
    folder = model_folder(
        tmp_path / "m",
        """
        import time

        loaded = []

        def setup():
            time.sleep(1.5)
            loaded.append("weights")

        def predict(**inputs):
            return {"loaded": loaded, **inputs}
        """,
    )
    with serve(folder) as served:
        starting = httpx.get(f"{served.url}/health-check", timeout=5)
        assert (starting.status_code, starting.json()) == (503, {"status": "STARTING"})
        assert starting.headers["Retry-After"] == "1"
        early = post(served.url, {"x": 1})
        assert early.status_code == 503
        assert early.json()["status"] == "STARTING"
        assert "not ready" in early.json()["error"]

        ready = wait_status(served.url, "READY")

        assert ready == {"status": "READY", "running": 0}
        answer = post(served.url, {"x": 1})
        assert (answer.status_code, answer.json()) == (
            200,
            {"output": {"loaded": ["weights"], "x": 1}},
        )
        assert "setup: ready in" in served.output()


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            """
            def setup():
                raise RuntimeError("no weights in the folder")

            def predict(**inputs):
                return 1
            """,
            "RuntimeError: no weights in the folder",
        ),
        ("import numpy_that_is_not_there\n", "ModuleNotFoundError: No module named"),
        (
            "def setup():\n    pass\n",
            "predict.py defines no predict",
        ),
        (None, "The model version has no predict.py at its top level"),
    ],
    ids=["setup-raises", "import-fails", "no-predict", "no-predict-py"],
)
def test_a_setup_that_fails_says_setup_failed_with_the_error(tmp_path, source, error):
    folder = tmp_path / "m"
    if source is None:
        folder.mkdir()
    else:
        model_folder(folder, source)
    with serve(folder) as served:
        failed = wait_status(served.url, "SETUP_FAILED")
        health = httpx.get(f"{served.url}/health-check", timeout=5)
        refused = post(served.url, {})

    assert health.status_code == 500
    assert error in failed["setup"]["error"]  # type: ignore[index]
    assert refused.status_code == 503
    assert refused.json()["status"] == "SETUP_FAILED"
    assert "setup: failed after" in served.output()


BLOCKING = """
    import time
    from pathlib import Path

    def predict(release):
        while not Path(release).exists():
            time.sleep(0.01)
        return "done"
"""


def test_every_slot_taken_answers_429_and_busy_until_one_frees(tmp_path):
    folder = model_folder(tmp_path / "m", BLOCKING)
    release = tmp_path / "release"
    with serve(folder, concurrency=2) as served:
        wait_status(served.url, "READY")
        answers: list[httpx.Response] = []
        threads = [
            threading.Thread(
                target=lambda: answers.append(post(served.url, {"release": str(release)}))
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        busy = wait_status(served.url, "BUSY")

        third = post(served.url, {"release": str(release)})

        assert busy == {"status": "BUSY", "running": 2}
        assert third.status_code == 429
        assert third.headers["Retry-After"] == "1"
        assert "busy" in third.json()["error"]
        release.touch()
        for thread in threads:
            thread.join(10)
        assert [a.status_code for a in answers] == [200, 200]
        assert wait_status(served.url, "READY")["running"] == 0
        assert post(served.url, {"release": str(release)}).json() == {"output": "done"}


def test_a_predict_that_yields_streams_server_sent_events(tmp_path):
    folder = model_folder(
        tmp_path / "m",
        """
        import time

        def predict(words, fail_at=None):
            for i, word in enumerate(words.split()):
                if i == fail_at:
                    raise RuntimeError("the stream broke")
                time.sleep(0.05)
                yield {"token": word}
        """,
    )
    with serve(folder) as served:
        wait_status(served.url, "READY")
        with httpx.stream(
            "POST", f"{served.url}/predict", json={"words": "a b c"}, timeout=10
        ) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"] == "text/event-stream"
            arrived = []
            began = time.monotonic()
            for line in streamed.iter_lines():
                if line:
                    arrived.append((line, time.monotonic() - began))
        broken = httpx.post(f"{served.url}/predict", json={"words": "a b c", "fail_at": 1})

    assert [line for line, _ in arrived] == [
        'data: {"token": "a"}',
        'data: {"token": "b"}',
        'data: {"token": "c"}',
        "event: done",
        "data: {}",
    ]
    # Sent as made, not gathered: the first token came well before the last.
    assert arrived[2][1] - arrived[0][1] >= 0.08
    assert broken.text.splitlines()[0] == 'data: {"token": "a"}'
    assert "event: error" in broken.text
    assert 'data: {"error": "RuntimeError: the stream broke"}' in broken.text


REFUSING = """
    import numpy as np

    def predict(x=None, kind="ok"):
        if kind == "value":
            raise ValueError("x must be positive")
        if kind == "crash":
            raise RuntimeError("the GPU caught fire")
        if kind == "object":
            return object()
        if kind == "numpy":
            return {"v": np.arange(3), "s": np.float32(0.5)}
        return x
"""


def test_its_refusals_say_which(tmp_path):
    folder = model_folder(tmp_path / "m", REFUSING)
    with serve(folder) as served:
        wait_status(served.url, "READY")
        not_json = post(served.url, content=b"{nope")
        a_list = post(served.url, [1, 2])
        refused = post(served.url, {"kind": "value"})
        unknown = post(served.url, {"y": 1})
        crashed = post(served.url, {"kind": "crash"})
        odd_output = post(served.url, {"kind": "object"})
        numpy = post(served.url, {"kind": "numpy"})
        cog = httpx.post(f"{served.url}/predictions", json={"input": {"x": 4}})
        empty = httpx.post(f"{served.url}/predict")
        missing = httpx.post(f"{served.url}/nowhere", json={})
        log = served.output()

    assert not_json.status_code == 400
    assert not_json.json() == {"error": "The body must be a JSON object of the inputs."}
    assert a_list.status_code == 400
    assert (refused.status_code, refused.json()) == (
        422,
        {"error": "ValueError: x must be positive"},
    )
    assert unknown.status_code == 422
    assert "unexpected keyword argument 'y'" in unknown.json()["error"]
    assert (crashed.status_code, crashed.json()) == (
        500,
        {"error": "RuntimeError: the GPU caught fire"},
    )
    assert "Traceback" not in crashed.text
    assert "Traceback" in log  # the traceback goes to the log, not to the caller
    assert odd_output.status_code == 500
    assert "JSON cannot hold" in odd_output.json()["error"]
    assert numpy.json() == {"output": {"v": [0, 1, 2], "s": 0.5}}
    assert cog.json() == {"output": 4}
    assert empty.json() == {"output": None}
    assert missing.status_code == 404


def test_a_connection_is_kept_alive_across_answers_and_refusals(tmp_path):
    folder = model_folder(tmp_path / "m", REFUSING)
    with serve(folder) as served:
        wait_status(served.url, "READY")
        conn = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=5)
        answers = []
        sock = None
        for method, path, body in [
            ("GET", "/health-check", None),
            ("POST", "/predict", {"x": 1}),
            ("POST", "/predict", {"kind": "value"}),
            ("POST", "/nowhere", {"x": 2}),  # its body is read, not left for the next request
            ("POST", "/predict", {"kind": "crash"}),
            ("POST", "/predict", {"x": 3}),
        ]:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            answers.append((response.status, json.loads(response.read())))
            sock = sock or conn.sock
            assert conn.sock is sock  # the same connection: never closed and made again
        conn.close()

    assert [status for status, _ in answers] == [200, 200, 422, 404, 500, 200]
    assert answers[-1][1] == {"output": 3}


def test_a_get_with_a_body_leaves_the_kept_alive_connection_usable(tmp_path):
    """A GET may carry a body (some clients and proxies send one): it is read, so its bytes
    are not taken for the next request's line on the same connection."""
    folder = model_folder(tmp_path / "m", ECHO)
    with serve(folder) as served:
        wait_status(served.url, "READY")
        conn = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=5)
        answers = []
        sock = None
        for method, path, body in [
            ("GET", "/health-check", {"probe": "x" * 100}),
            ("POST", "/predict", {"a": 1}),
            ("GET", "/nowhere", {"b": 2}),
            ("GET", "/health-check", None),
        ]:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            answers.append((response.status, json.loads(response.read())))
            sock = sock or conn.sock
            assert conn.sock is sock  # the same connection throughout
        conn.close()

    assert [status for status, _ in answers] == [200, 200, 404, 200]
    assert answers[0][1]["status"] == "READY"
    assert answers[1][1] == {"output": {"got": {"a": 1}}}


def test_a_body_without_a_length_or_too_long_is_refused(tmp_path):
    folder = model_folder(tmp_path / "m", ECHO)
    with serve(folder) as served:
        wait_status(served.url, "READY")
        chunked = httpx.post(f"{served.url}/predict", content=iter([b'{"a":', b" 1}"]))
        conn = http.client.HTTPConnection(served.url.removeprefix("http://"), timeout=5)
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Length", str(65 * 1024 * 1024))
        conn.endheaders()
        too_long = conn.getresponse()
        too_long_body = json.loads(too_long.read())
        conn.close()

    assert chunked.status_code == 411
    assert too_long.status == 413
    assert "64 MiB" in too_long_body["error"]


def test_sigterm_lets_the_requests_in_flight_finish_then_exits(tmp_path: Path):
    folder = model_folder(tmp_path / "m", BLOCKING)
    release = tmp_path / "release"
    with serve(folder) as served:
        wait_status(served.url, "READY")
        answers: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: answers.append(post(served.url, {"release": str(release)}))
        )
        thread.start()
        deadline = time.monotonic() + 5
        while httpx.get(f"{served.url}/health-check").json()["running"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)

        served.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert served.process.poll() is None  # still draining
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{served.url}/health-check", timeout=2)  # no new connections
        release.touch()
        thread.join(10)
        code = served.process.wait(10)

    assert [a.status_code for a in answers] == [200]
    assert code == 0
    assert "stopped with 0 requests in flight" in served.output()
