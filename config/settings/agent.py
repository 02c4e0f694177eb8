"""The host agent (`manage.py agent`): the broker, never the database.

A GPU host runs strangers' code, so the agent holds no database credentials:
its database is Django's dummy backend, which refuses every query. What it
learns travels to the control plane as tasks on the broker (REDIS_URL).
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ImproperlyConfigured

from .base import *
from .base import REDIS_URL, env

DEBUG = False
# The agent signs nothing; a per-process key keeps Django satisfied without a shared secret.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or secrets.token_urlsafe(50)
DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if not REDIS_URL:
    raise ImproperlyConfigured("The agent needs REDIS_URL: it reaches the control plane there.")
