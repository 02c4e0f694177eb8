"""The host agent (`manage.py agent`): the broker, never the database or the storage.

A GPU host runs strangers' code, so the agent holds no database credentials:
its database is Django's dummy backend, which refuses every query. What it
learns travels to the control plane as tasks on the broker (REDIS_URL).

Nor does it hold object storage credentials or the web tier's secret key: it
reads the blobs a start mounts through the per-object, expiring links that start
brings (apps.datasets.blob_urls). It has no default storage at all, and refuses
to start with storage credentials in its environment, where anything that
escaped a workload would find them.
"""

from __future__ import annotations

import os
import secrets

from django.core.exceptions import ImproperlyConfigured

from .base import *
from .base import REDIS_URL, STORAGES

DEBUG = False
# The agent signs nothing. A key of its own keeps Django satisfied; the web tier's would let
# a host sign links to any blob, so DJANGO_SECRET_KEY is not read here.
SECRET_KEY = secrets.token_urlsafe(50)
DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if not REDIS_URL:
    raise ImproperlyConfigured("The agent needs REDIS_URL: it reaches the control plane there.")

STORAGES = {"staticfiles": STORAGES["staticfiles"]}
_STORAGE_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "LATTICE_AGENT_S3_ACCESS_KEY_ID",
    "LATTICE_AGENT_S3_SECRET_ACCESS_KEY",
)
if _held := [name for name in _STORAGE_CREDENTIALS if os.environ.get(name)]:
    raise ImproperlyConfigured(
        f"The agent must not hold object storage credentials ({', '.join(_held)}): it reads "
        "dataset blobs through the links each start brings. Remove them from its environment."
    )
