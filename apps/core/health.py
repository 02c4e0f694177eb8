"""Readiness checks: can this process reach everything a request may need?

Each check raises on failure. ``run_checks`` returns one line per part, so
/readyz can name the part that is down.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection

from config.celery import app as celery_app

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("a value written to the cache could not be read back")
    cache.delete(key)


def check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        # No retries: a readiness probe should answer now, not in half a minute.
        conn.ensure_connection(max_retries=0, timeout=3)


def check_storage() -> None:
    storage = default_storage
    if isinstance(storage, FileSystemStorage):
        location = Path(storage.location)
        location.mkdir(parents=True, exist_ok=True)
        if not os.access(location, os.W_OK):
            raise PermissionError(f"{location} is not writable")
        return
    bucket = getattr(storage, "bucket", None)
    if bucket is not None:
        # S3: HEAD the bucket itself. exists() on a key would call a missing
        # bucket "no such key" and pass.
        bucket.meta.client.head_bucket(Bucket=bucket.name)
        return
    storage.exists("lattice-readyz-probe")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "storage": check_storage,
}


def run_checks() -> dict[str, str]:
    """Run every check; map each part to "ok" or "failed".

    The full error goes to the log only: the probe is reachable from outside
    and its answer should not describe the internal network.
    """
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.warning("readiness check %s failed: %r", name, exc)
            results[name] = "failed"
        else:
            results[name] = "ok"
    return results
