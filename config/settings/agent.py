"""The host agent (`manage.py agent`): its own broker user and key, nothing of the trusted tier.

A GPU host runs strangers' code, so whatever the agent holds is assumed stolen (docs/hosts.md,
"Host threat model"). It holds:

- LATTICE_AGENT_BROKER_URL: its host's own Redis user (apps.machines.broker), which reaches
  its queue and the inbox and nothing else;
- its signing key, in LATTICE_AGENT_KEY_FILE (made at its first join, mode 0600; see
  config/settings/base.py).

It holds no database credentials (Django's dummy backend refuses every query), and none of
the trusted tier's Redis: REDIS_URL is refused here, and the cache, sessions and channel
layer are this process's own, never Redis (Django's cache pickles what it stores).

Nor does it hold object storage credentials or the web tier's secret key: it reads the
blobs a start mounts through the per-object, expiring links that start brings
(apps.datasets.blob_urls). It has no default storage at all, and refuses to start with
storage credentials in its environment, where anything that escaped a workload would find
them.
"""

from __future__ import annotations

import os
import secrets

from django.core.exceptions import ImproperlyConfigured

from .base import *
from .base import STORAGES, env

DEBUG = False
# Its messages are signed with its host's key (LATTICE_AGENT_KEY_FILE). A key of its own
# keeps Django satisfied; the web tier's would let a host sign links to any blob, so
# DJANGO_SECRET_KEY is not read here.
SECRET_KEY = secrets.token_urlsafe(50)
DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}

if env.str("REDIS_URL", default=""):
    raise ImproperlyConfigured(
        "The agent must not have REDIS_URL (the trusted tier's Redis): give it only its "
        "own broker URL, LATTICE_AGENT_BROKER_URL, from manage.py create_join_token.",
    )
REDIS_URL = ""
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CHANNEL_LAYERS = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

LATTICE_AGENT_BROKER_URL = env.str("LATTICE_AGENT_BROKER_URL", default="")
if not LATTICE_AGENT_BROKER_URL:
    raise ImproperlyConfigured(
        "The agent needs LATTICE_AGENT_BROKER_URL: its host's broker URL, which "
        "manage.py create_join_token --host NAME prints on the control plane.",
    )
CELERY_BROKER_URL = LATTICE_AGENT_BROKER_URL
CELERY_BROKER_TRANSPORT = "apps.core.broker:Transport"
# Its broker user has no pub/sub channels: no remote control, events, gossip or mingle.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False

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
