"""Datasets' housekeeping (Celery beat): uploads left open are abandoned after a week,
and blobs that nothing refers to any more are deleted, rows and bytes."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.datasets import s3, storage
from apps.datasets.hooks import upload_purposes
from apps.datasets.models import Blob, DatasetVersion, Upload, UploadBlob
from apps.datasets.selectors import blobs_in_use
from apps.datasets.services.manifest import upload_manifest
from apps.datasets.services.received import manifest_key, received_delete, staging_key

logger = logging.getLogger(__name__)


def uploads_abandon(*, now: datetime | None = None) -> int:
    """Close uploads with no chunk for LATTICE_UPLOAD_ABANDON_DAYS: their chunks and
    half-made version go; the files already stored stay. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.LATTICE_UPLOAD_ABANDON_DAYS)
    stale = (
        Upload.objects.unscoped()  # housekeeping across every team
        .filter(status=Upload.Status.OPEN, created_at__lt=cutoff)
        .annotate(last_chunk=Max("blobs__chunks__received_at"))
    )
    count = 0
    for upload in stale:
        if upload.last_chunk is not None and upload.last_chunk >= cutoff:
            continue
        with transaction.atomic():
            locked = Upload.objects.unscoped().select_for_update().get(pk=upload.pk)
            if locked.status != Upload.Status.OPEN:
                continue
            for blob in UploadBlob.objects.unscoped().filter(upload=locked):
                if blob.multipart_id:
                    try:
                        s3.multipart_abort(staging_key(locked.pk, blob.sha256), blob.multipart_id)
                    except Exception:  # already gone: nothing to abort
                        logger.info("multipart of upload %s already gone", locked.pk)
                else:
                    received_delete(locked.pk, blob)
            storage.delete(manifest_key(locked.pk))
            locked.status = Upload.Status.ABANDONED
            locked.save(update_fields=["status"])
            purpose = upload_purposes.get(locked.purpose)
            if purpose is not None:
                purpose.abandon(locked)
            else:
                DatasetVersion.objects.unscoped().filter(
                    pk=locked.version_id, status=DatasetVersion.Status.UPLOADING
                ).update(message="(abandoned upload)")
        count += 1
    return count


def blobs_collect(*, now: datetime | None = None) -> int:
    """Delete blobs no version holds and no open upload names. Returns how many."""
    now = now or timezone.now()
    # An open upload may rely on a blob it did not send (its team held it): keep those.
    wanted: set[str] = set(
        UploadBlob.objects.unscoped()
        .filter(upload__status=Upload.Status.OPEN)
        .values_list("sha256", flat=True)
    )
    for upload in Upload.objects.unscoped().filter(status=Upload.Status.OPEN):
        wanted |= {entry["sha256"] for entry in upload_manifest(upload)}
    orphans = (
        Blob.objects.exclude(blobs_in_use())
        .exclude(sha256__in=wanted)
        # A blob made by an upload completing right now gets its versions a moment later.
        .filter(created_at__lt=now - timedelta(hours=1))
    )
    count = 0
    for blob in orphans:
        with transaction.atomic():
            locked = Blob.objects.select_for_update().filter(pk=blob.pk).first()
            if locked is None or Blob.objects.filter(blobs_in_use(), pk=locked.pk).exists():
                continue
            storage.delete(locked.storage_key)
            locked.delete()
        count += 1
    return count
