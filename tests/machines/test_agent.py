"""The agent needs its own broker user and key, not the database or the trusted tier's Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from apps.machines.agent import _watch_pull, agent_report
from apps.machines.identity import (
    IdentityError,
    identity_forget,
    identity_load,
    identity_set,
    new_key,
    signature,
)
from apps.runtimes.base import Spec
from apps.runtimes.fake import FakeRuntime
from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


def agent_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "config.settings.agent",
        "LATTICE_AGENT_BROKER_URL": "redis://lattice-host-gpu-1:pw@127.0.0.1:6379/0",
        **extra,
    }


def test_the_agent_settings_refuse_every_query():
    env = agent_env()
    script = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "try:\n"
        "    connection.cursor()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ImproperlyConfigured"


def setup_agent(env: dict[str, str], script: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_agent_settings_need_its_own_broker_url():
    env = agent_env()
    del env["LATTICE_AGENT_BROKER_URL"]

    result = setup_agent(env)

    assert result.returncode != 0
    assert "needs LATTICE_AGENT_BROKER_URL" in result.stderr


def test_the_agent_settings_refuse_the_trusted_tiers_redis():
    result = setup_agent(agent_env(REDIS_URL="redis://127.0.0.1:6379/0"))

    assert result.returncode != 0
    assert "must not have REDIS_URL" in result.stderr


def test_the_agent_settings_keep_cache_sessions_and_channels_off_redis():
    script = (
        "from django.conf import settings\n"
        "from channels.layers import get_channel_layer\n"
        "print(settings.CACHES['default']['BACKEND'])\n"
        "print(settings.SESSION_ENGINE)\n"
        "print(get_channel_layer())\n"
        "print(settings.CELERY_BROKER_URL)\n"
        "print(settings.SECRET_KEY != 'a-secret-of-the-web-tier-' * 3)\n"
    )

    result = setup_agent(agent_env(DJANGO_SECRET_KEY="a-secret-of-the-web-tier-" * 3), script)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.core.cache.backends.locmem.LocMemCache",
        "django.contrib.sessions.backends.signed_cookies",
        "None",
        "redis://lattice-host-gpu-1:pw@127.0.0.1:6379/0",
        "True",
    ]


@pytest.mark.django_db
def test_a_report_makes_no_query_and_goes_out_signed_on_the_inbox(
    monkeypatch, django_assert_num_queries
):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    key = new_key()
    identity_set("gpu-1", key)

    with Connection(celery_app.conf.broker_url) as conn:
        conn.SimpleQueue("inbox").clear()  # what other tests' agents sent before

    with django_assert_num_queries(0):
        agent_report("gpu-1")

    # The report, and maybe log frames of workloads the engine runs for other tests
    # (the report ships what it finds running): the report is the one asserted on.
    with Connection(celery_app.conf.broker_url) as conn:
        for _ in range(50):
            message = conn.SimpleQueue("inbox").get(timeout=2)
            message.ack()
            (envelope,) = message.decode()[0]
            if envelope["kind"] != "logs":
                break
    assert message.headers["task"] == "control.inbox"
    assert (envelope["host"], envelope["kind"]) == ("gpu-1", "report")
    assert envelope["sig"] == signature(key, envelope)
    body = envelope["body"]
    assert body["inventory"]["cpu_count"] >= 1
    assert isinstance(body["workloads"], list)
    assert abs(body["collected_at"] - time.time()) < 60


def test_an_agent_without_its_hosts_key_sends_nothing(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    identity_forget("gpu-404")

    with pytest.raises(IdentityError):
        agent_report("gpu-404")


def test_the_key_file_is_made_once_private_and_kept(tmp_path):
    path = tmp_path / "agent" / "host.key"

    key, new = identity_load("gpu-5", path)
    again, new_again = identity_load("gpu-5", path)

    assert new
    assert not new_again
    assert again == key
    assert path.stat().st_mode & 0o777 == 0o600


class _Printing:
    """A runtime whose workload printed ``lines`` and stopped."""

    def __init__(self, lines: list[str]) -> None:
        self.printed = lines

    def logs(self, state: object, since: object = None, follow: bool = False) -> object:
        return iter(self.printed)


def test_the_agent_keeps_its_log_frames_within_the_inbox_limit(settings, monkeypatch):
    from apps.machines import logship

    settings.LATTICE_LOG_LINE_MAX_CHARS = 1000
    settings.LATTICE_LOG_BATCH_BYTES = 10_000
    settings.LATTICE_LOG_BATCH_SECONDS = 1.0  # everything printed would fit one frame by time
    frames: list[list[str]] = []

    def send(_host: str, _kind: str, body: dict[str, Any]) -> None:
        # Only this shipper's: another test's shipper may still be following its workload.
        if body.get("workload") == "nb-1-s1":
            frames.append(body["lines"])

    monkeypatch.setattr(logship, "send", send)
    printed = ["x" * 5000, *[f"line {n} " + "y" * 400 for n in range(60)]]

    runtime = _Printing(printed)  # a stand-in with only what the shipper reads: logs()
    shipper = logship.LogShipper(runtime, {"name": "nb-1-s1"}, "local")  # type: ignore[arg-type]
    shipper.start()
    assert shipper.done.wait(10)

    shipped = [line for frame in frames for line in frame]
    assert shipped[0] == "x" * 1000 + " [line cut: 5,000 characters]"
    assert shipped[1:] == printed[1:]  # every other line, in order, whole
    assert len(frames) > 1
    assert all(sum(map(len, frame)) <= 10_000 + 1000 for frame in frames)


def test_the_agent_reports_a_build_in_numbers_only():
    # Whatever the runtime's words, a build goes out as its step's kind and numbers: the
    # control plane words it (a host's text never reaches a notebook's page).
    runtime = FakeRuntime("builds")
    spec = Spec(name=f"nb-agent-{os.getpid()}", image="lattice/fake", command=["jupyter"])
    sent: list[tuple[str, dict[str, Any]]] = []
    try:
        with _watch_pull(runtime, spec.name, lambda event, **data: sent.append((event, data))):
            runtime.start(spec)
    finally:
        runtime.stop({"name": spec.name})
    builds = [data for event, data in sent if data.get("phase") == "building"]
    assert builds, sent
    assert all(set(data) == {"phase", "kind", "step", "of", "percent"} for data in builds)
    assert {"kind": "packages", "step": 2, "of": 3} in [
        {k: data[k] for k in ("kind", "step", "of")} for data in builds
    ]
