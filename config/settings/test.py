"""Settings for the test suite (pytest-django).

The database follows DATABASE_URL (PostgreSQL in CI, SQLite otherwise). Cache,
broker and channel layer stay in-process so tests are isolated from each other;
the tests that exercise Redis itself build their own clients from REDIS_URL.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from .base import *
from .base import DATABASES, INSTALLED_APPS, env

SECRET_KEY = "test-only-secret-key-not-for-any-deployment-0123456789abcdefghij"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

# The Stripe test double and the demo data the tests use (production does not list it).
INSTALLED_APPS = [*INSTALLED_APPS, "apps.devtools"]

# Plain connections, not base's pool, unless DATABASE_POOL is set: the test process hosts
# many servers' threads at once (live servers, uvicorn threads, inline Celery's log
# shippers, embedded workers) and some end a test still holding a connection; a pool would
# count each against its size for the rest of the session and starve later tests. The
# pool's own behaviour is checked where it matters (tests/core/test_db_release.py, the
# benches, which run production-like processes with it).
if not env.bool("DATABASE_POOL", default=False):
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = "memory://localhost/"
CELERY_BROKER_TRANSPORT = None
# Unit tests run tasks inline; tests of background behaviour switch this off
# and start a real worker thread (tests/core/test_background.py).
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# Tasks run inline, so an agent's save or snapshot whose ticket URL no server answers (a
# notebook stopped on a fake-runtime host, with no web tier up) gives up at once rather than
# after its production backoff; tests of the retries set their own.
LATTICE_SAVE_RETRY_BACKOFF = 0.0

LATTICE_EMAIL_DELIVERY_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="lattice-test-media-"))
# The warm pool's shared mount folder (apps.runtimes.pool): the run's own, released at its
# end (tests/conftest.py), never the checkout's var/ (a developer's `make dev` uses that).
LATTICE_POOL_DIR = Path(tempfile.mkdtemp(prefix="lattice-test-pool-")) / "pool"
# The agent's state folder (its key, and its snapshot stamp cache beside it): the test run's
# own, never the checkout's var/agent, where a developer's `make dev` agent keeps its own.
LATTICE_AGENT_KEY_FILE = Path(tempfile.mkdtemp(prefix="lattice-test-agent-")) / "host.key"

# Each test run is its own Lattice: its reconciler never touches another run's containers.
LATTICE_INSTALLATION = f"test-{uuid.uuid4().hex[:12]}"
