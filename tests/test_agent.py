"""The agent needs the broker, not the database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kombu import Connection

from apps.machines.agent import agent_report
from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[1]


def test_the_agent_settings_refuse_every_query():
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.agent",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
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


def test_the_agent_settings_need_the_broker():
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL"}}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.agent"

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "needs REDIS_URL" in result.stderr


@pytest.mark.django_db
def test_a_report_makes_no_query_and_goes_out_on_the_control_queue(
    monkeypatch, django_assert_num_queries
):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)

    with django_assert_num_queries(0):
        agent_report("gpu-1")

    with Connection(celery_app.conf.broker_url) as conn:
        message = conn.SimpleQueue("control").get(timeout=2)
        message.ack()
    assert message.headers["task"] == "control.host_reported"
    name, inventory, workloads, collected_at = message.decode()[0]
    assert name == "gpu-1"
    assert inventory["cpu_count"] >= 1
    assert isinstance(workloads, list)
    assert abs(collected_at - time.time()) < 60
