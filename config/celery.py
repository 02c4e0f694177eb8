"""The Celery application.

Settings are read from Django's settings under the ``CELERY_`` prefix. Queues: ``control``
and ``inbox`` (what agents send) for the control worker, ``host.<name>`` for each host's
agent. Every task's base class refuses to run from the inbox unless it is the inbox's own
(apps.core.broker).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("lattice", task_cls="apps.core.broker:GuardedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
