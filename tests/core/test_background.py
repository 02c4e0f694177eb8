"""Background work really runs in the background: a request queues it and returns.

This is the embedded default's arrangement (apps.core.worker): Celery's
in-memory transport and a worker thread in the same process.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from apps.core.worker import embedded_worker
from config.celery import app as celery_app
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def real_queue(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)


def test_signup_returns_before_its_email_is_sent_and_the_worker_sends_it(client, real_queue):
    response = client.post(
        reverse("account_signup"),
        {"email": "dana@example.com", "password1": "a much longer passphrase 42"},
    )

    assert response.status_code == 302
    assert mail.outbox == [], "the request must not send mail itself"

    with embedded_worker(concurrency=2):
        assert wait_for(lambda: len(mail.outbox) == 1), "the worker never sent the email"

    assert mail.outbox[0].to == ["dana@example.com"]
    assert "/accounts/confirm-email/" in mail.outbox[0].body


def test_nothing_is_queued_when_the_transaction_rolls_back(real_queue, monkeypatch):
    from django.core.mail import send_mail
    from django.db import transaction

    queued: list[dict] = []
    monkeypatch.setattr("apps.core.tasks.deliver_email.delay", queued.append)

    def send_then_fail():
        with transaction.atomic():
            send_mail("Hello", "body", None, ["x@example.com"])
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        send_then_fail()

    assert queued == []
    send_mail("Hello", "body", None, ["x@example.com"])
    assert len(queued) == 1
    assert queued[0]["to"] == ["x@example.com"]


def test_a_running_worker_delivers_what_requests_queue_later(real_queue):
    from django.core.mail import send_mail

    with embedded_worker(concurrency=2):
        for n in range(3):
            send_mail(f"Message {n}", "body", None, ["x@example.com"])
        assert wait_for(lambda: len(mail.outbox) == 3)

    assert sorted(m.subject for m in mail.outbox) == ["Message 0", "Message 1", "Message 2"]


def test_the_embedded_beat_sends_periodic_tasks_to_the_worker(real_queue, monkeypatch):
    from django.core.cache import cache

    from apps.core.tasks import BEAT_HEARTBEAT_KEY
    from apps.core.worker import embedded_beat

    monkeypatch.setitem(
        celery_app.conf,
        "beat_schedule",
        {"beat-heartbeat": {"task": "apps.core.tasks.beat_heartbeat", "schedule": 1.0}},
    )
    cache.delete(BEAT_HEARTBEAT_KEY)

    with embedded_worker(concurrency=1), embedded_beat():
        assert wait_for(lambda: cache.get(BEAT_HEARTBEAT_KEY) is not None, timeout=20)


def test_the_embedded_beat_keeps_its_schedule_in_memory(real_queue, monkeypatch, tmp_path):
    """`make dev` runs from the repository: celery's default scheduler would leave a
    celerybeat-schedule shelve there, and claim the configured database scheduler in the log."""
    from django.core.cache import cache

    from apps.core.tasks import BEAT_HEARTBEAT_KEY
    from apps.core.worker import embedded_beat

    monkeypatch.setitem(
        celery_app.conf,
        "beat_schedule",
        {"beat-heartbeat": {"task": "apps.core.tasks.beat_heartbeat", "schedule": 1.0}},
    )
    monkeypatch.chdir(tmp_path)
    cache.delete(BEAT_HEARTBEAT_KEY)

    with embedded_worker(concurrency=1), embedded_beat():
        assert wait_for(lambda: cache.get(BEAT_HEARTBEAT_KEY) is not None, timeout=20)

    assert sorted(p.name for p in tmp_path.iterdir()) == []
