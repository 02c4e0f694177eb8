"""The embedded default (`make dev`): one machine, SQLite under var/, local storage.

No PostgreSQL or Redis is needed; when DATABASE_URL or REDIS_URL are set they
are used. Background work runs in a Celery worker thread inside the web process
(`manage.py dev`), over Celery's in-memory transport when there is no Redis.
DEBUG stays off unless DJANGO_DEBUG=true: this is how the product runs on one
box, not a debugging mode, so users see Lattice's own error pages.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from config.files import private_dir, write_private

from .base import *
from .base import ALLOWED_HOSTS, INSTALLED_APPS, LOGGING, VAR_DIR, env

# var/ holds the database (sessions, TOTP secrets) and keys: this user's only.
private_dir(VAR_DIR)


def _local_secret_key() -> str:
    """A random key made once per checkout and kept in var/, never a shared default."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _local_secret_key()

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "localhost", "127.0.0.1", "[::1]"]

# `manage.py dev`, the demo data and the Stripe test double (production does not list it).
INSTALLED_APPS = [*INSTALLED_APPS, "apps.devtools"]

LATTICE_EMBEDDED_WORKER = True

# `make dev` prints every mail (the verification link, invitations) in the server's log:
# framed so it stands out there.
LATTICE_EMAIL_DELIVERY_BACKEND = env.str(
    "LATTICE_EMAIL_DELIVERY_BACKEND",
    default="apps.core.mail.FramedConsoleEmailBackend",
)

# The embedded beat and worker would log every tick and task at INFO (the beat's
# "Sending due task", each task's "received" and "succeeded": thousands of lines an hour),
# burying the mails and the warnings. Routine lines stay quiet; warnings and errors show.
# (tests/core/test_dev_log.py)
LOGGING = {
    **LOGGING,
    "loggers": {
        **cast("dict[str, Any]", LOGGING["loggers"]),
        **{
            name: {"level": "WARNING"}
            for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
        },
    },
}
