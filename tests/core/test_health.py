"""/healthz says the process is alive; /readyz says whether its dependencies answer."""

from __future__ import annotations

import pytest

from config.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_ok_when_every_part_answers(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {
        "database": "ok",
        "cache": "ok",
        "broker": "ok",
        "storage": "ok",
    }


def test_readyz_names_storage_when_its_folder_cannot_be_made(client, settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "media")},
        },
    }

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["storage"]
    assert body["checks"]["storage"] == "failed"
    assert str(tmp_path) not in response.content.decode()


def test_readyz_names_the_broker_when_it_does_not_answer(client, monkeypatch):
    # Port 9 on loopback: nothing listens there, so the connection is refused.
    monkeypatch.setitem(celery_app.conf, "broker_url", "redis://127.0.0.1:9/0")

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]


def test_readyz_names_the_cache_when_it_does_not_answer(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        },
    }

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["cache"]


def test_probes_answer_on_an_internal_host_name_not_in_allowed_hosts(client, settings):
    settings.ALLOWED_HOSTS = ["lattice.example.com"]

    healthz = client.get("/healthz", HTTP_HOST="10.0.0.7:8000")
    assert healthz.status_code == 200
    assert healthz.json() == {"status": "ok"}
    assert client.get("/readyz", HTTP_HOST="10.0.0.7:8000").status_code == 200
    # Everything else still checks the host.
    assert client.get("/accounts/login/", HTTP_HOST="10.0.0.7:8000").status_code == 400


def test_beat_health_fails_until_a_heartbeat_arrives_and_when_it_is_stale(monkeypatch):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from apps.core.tasks import beat_heartbeat

    with pytest.raises(CommandError, match="no beat heartbeat"):
        call_command("beat_health")

    beat_heartbeat.delay()
    call_command("beat_health", max_age=60)

    later = __import__("time").time() + 300
    monkeypatch.setattr("time.time", lambda: later)
    with pytest.raises(CommandError, match="old"):
        call_command("beat_health", max_age=120)


def test_beat_sends_the_heartbeat():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["beat-heartbeat"]
    from config.celery import app

    assert entry["task"] in app.tasks
