"""The real services behind the production settings: Redis as cache, broker and
channel layer, and the Docker engine probe the embedded default uses."""

from __future__ import annotations

import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core import mail
from django.core.cache import cache

from apps.core.engine import docker_engine
from apps.core.tasks import deliver_email
from apps.core.worker import embedded_worker
from config.celery import app as celery_app


@pytest.fixture
def redis_settings(settings, redis_url, monkeypatch):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        },
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
        },
    }
    monkeypatch.setitem(celery_app.conf, "broker_url", redis_url)
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    # Each run gets its own queue, so a stale message from another run is never consumed.
    queue = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(celery_app.conf, "task_default_queue", queue)
    _reset_celery_connections()
    yield queue
    _reset_celery_connections()


def _reset_celery_connections():
    """Forget the app's pools so the next publish uses the broker_url now set.

    The pools themselves are kombu's, shared and keyed by URL: leave them open.
    """
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_readyz_is_ok_on_redis(client, redis_settings):
    response = client.get("/readyz")

    assert response.json()["checks"] == {
        "database": "ok",
        "cache": "ok",
        "broker": "ok",
        "storage": "ok",
    }


def test_the_redis_cache_stores_and_expires(redis_settings):
    cache.set("lattice-test-key", "v", timeout=1)
    assert cache.get("lattice-test-key") == "v"
    time.sleep(1.2)
    assert cache.get("lattice-test-key") is None


def test_a_task_travels_through_redis_to_a_worker(redis_settings):
    with embedded_worker(queues=[redis_settings], concurrency=1):
        deliver_email.delay(
            {
                "subject": "Through Redis",
                "body": "hello",
                "from_email": "noreply@example.com",
                "to": ["dana@example.com"],
                "cc": [],
                "bcc": [],
                "reply_to": [],
                "headers": {},
                "alternatives": [],
            },
        )
        deadline = time.monotonic() + 15
        while not mail.outbox and time.monotonic() < deadline:
            time.sleep(0.05)

    assert [m.subject for m in mail.outbox] == ["Through Redis"]


def test_the_channel_layer_carries_group_messages_through_redis(redis_settings):
    layer = get_channel_layer()

    async def roundtrip():
        channel = await layer.new_channel()
        await layer.group_add("lattice-test", channel)
        await layer.group_send("lattice-test", {"type": "status.changed", "seq": 1})
        message = await layer.receive(channel)
        await layer.group_discard("lattice-test", channel)
        return message

    assert async_to_sync(roundtrip)() == {"type": "status.changed", "seq": 1}


def test_the_docker_probe_reports_the_running_engine(docker_client):
    engine = docker_engine()

    assert engine is not None
    assert engine.version == docker_client.version()["Version"]


def test_the_docker_probe_says_none_when_no_daemon_answers(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")

    assert docker_engine(timeout=0.5) is None
