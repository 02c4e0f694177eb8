"""Background tasks of the core app."""

from __future__ import annotations

import smtplib
import time
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives, get_connection


@shared_task(
    autoretry_for=(OSError, smtplib.SMTPException),
    retry_backoff=True,
    max_retries=8,
    soft_time_limit=50,
    time_limit=60,
)
def deliver_email(payload: dict[str, Any]) -> None:
    """Hand one queued message (see apps.core.mail) to the configured delivery backend."""
    message = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["body"],
        from_email=payload["from_email"],
        to=payload["to"],
        cc=payload["cc"],
        bcc=payload["bcc"],
        reply_to=payload["reply_to"],
        headers=payload["headers"],
    )
    for content, mimetype in payload["alternatives"]:
        message.attach_alternative(content, mimetype)
    connection = get_connection(settings.LATTICE_EMAIL_DELIVERY_BACKEND, fail_silently=False)
    connection.send_messages([message])


BEAT_HEARTBEAT_KEY = "lattice:beat:heartbeat"


@shared_task(ignore_result=True, soft_time_limit=8, time_limit=10)
def beat_heartbeat() -> None:
    """Sent by beat every 30 s (CELERY_BEAT_SCHEDULE): proves beat ticks and a worker runs."""
    cache.set(BEAT_HEARTBEAT_KEY, time.time(), timeout=24 * 3600)
