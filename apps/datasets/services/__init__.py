"""Writes to datasets: the app's front door for the apps above it and for its interfaces.

One module a concern: ``datasets`` (making, changing, deleting a dataset), ``uploads`` (the
resumable upload of a version: its start, where chunks go, receiving them), ``manifest``
(a version's list of files, checked and kept while it uploads), ``completion`` (checking
and storing the new blobs, making the version ready), ``received`` (where an upload keeps
what it received, and clearing it) and ``errors`` (the refusals). This package re-exports
their public API, so ``from apps.datasets import services`` serves callers outside the
app; inside it, import from the module itself.
"""

from __future__ import annotations

from apps.datasets.services.completion import upload_cancel, upload_complete
from apps.datasets.services.datasets import dataset_create, dataset_delete, dataset_update
from apps.datasets.services.errors import (
    DatasetConflictError,
    DatasetError,
    DatasetPermissionError,
)
from apps.datasets.services.manifest import (
    EMPTY_SHA256,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_VERSION_BYTES,
    SHA256,
    upload_manifest,
)
from apps.datasets.services.received import chunk_key, part_key, staging_key
from apps.datasets.services.uploads import (
    MAX_CHUNKS,
    chunk_receive,
    chunk_size,
    chunk_target,
    upload_missing,
    upload_start,
)

__all__ = [
    "EMPTY_SHA256",
    "MAX_CHUNKS",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_VERSION_BYTES",
    "SHA256",
    "DatasetConflictError",
    "DatasetError",
    "DatasetPermissionError",
    "chunk_key",
    "chunk_receive",
    "chunk_size",
    "chunk_target",
    "dataset_create",
    "dataset_delete",
    "dataset_update",
    "part_key",
    "staging_key",
    "upload_cancel",
    "upload_complete",
    "upload_manifest",
    "upload_missing",
    "upload_start",
]
