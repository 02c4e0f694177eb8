"""The Celery application.

Settings are read from Django's settings under the ``CELERY_`` prefix. Queues:
``control`` for the control worker; later, ``host.<name>`` for each host agent.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("lattice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
