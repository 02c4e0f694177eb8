"""A deployment's replica logs followed (``?follow=1``): its log frames as NDJSON, the
backlog after ``after`` then what comes, never its other messages, until the timeout."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from apps.core import stream
from tests.helpers import bearer, make_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_following_sends_the_log_frames_as_they_come_until_the_timeout(
    acme: Any, alice: Any, deployment: Any
) -> None:
    api = bearer(make_token(alice)[1])
    stream.stream_publish(deployment.stream, {"type": "logs", "lines": ["old"]})
    stream.stream_publish(deployment.stream, {"type": "logs", "lines": ["loading model"]})
    stream.stream_publish(deployment.stream, {"type": "replica", "status": "ready"})
    later = threading.Timer(
        0.3, stream.stream_publish, (deployment.stream, {"type": "logs", "lines": ["request"]})
    )
    later.start()

    logs = f"/api/v1/teams/acme/deployments/{deployment.slug}/logs/"
    response: Any = api.get(f"{logs}?follow=1&after=1&timeout=1")
    frames = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    later.join()

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert [(f["seq"], f["lines"]) for f in frames] == [(2, ["loading model"]), (4, ["request"])]


def test_an_outsider_cannot_follow(globex: Any, charlie: Any, deployment: Any) -> None:
    api = bearer(make_token(charlie)[1])

    response = api.get(f"/api/v1/teams/acme/deployments/{deployment.slug}/logs/?follow=1")

    assert response.status_code == 404
