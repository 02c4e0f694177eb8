"""Writes to datasets, the app's front door for the layers above and its interfaces.

The services live in one module per concern; this package re-exports their public API so
that ``from apps.datasets import services`` and ``from apps.datasets.services import X``
work for every caller outside the app. Inside the app, import from the module itself.
"""

from __future__ import annotations

from apps.datasets.services.completion import (
    EMPTY_SHA256,
    MAX_CHUNKS,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_VERSION_BYTES,
    SHA256,
    DatasetConflictError,
    DatasetError,
    DatasetPermissionError,
    chunk_key,
    chunk_receive,
    chunk_size,
    chunk_target,
    dataset_create,
    dataset_delete,
    dataset_update,
    part_key,
    staging_key,
    upload_complete,
    upload_manifest,
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
    "upload_complete",
    "upload_manifest",
    "upload_missing",
    "upload_start",
]
