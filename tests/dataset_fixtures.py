"""Fixtures for dataset tests: where blobs and a host's cache live, and datasets made without
an upload.

- ``media``: the default storage in a folder of the test's own. A test module that sets
  ``CHUNK`` gets uploads cut into chunks of that many bytes (small files then make several).
- ``served_media``: the same, with the read links the control plane signs leading to the web
  tier's blob view over HTTP (tests.blob_fixtures), so a host can fetch the blobs.
- ``cache``: a host's dataset cache (LATTICE_DATASET_CACHE).
- ``make_version``: a ready version with files, straight in the database, its blobs in the
  storage, as a completed upload leaves it; ``spec_dataset``: a dataset as the agent gets it
  in a start message.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import TYPE_CHECKING, Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.datasets.blob_urls import with_read_urls
from apps.datasets.models import Blob, Dataset, DatasetVersion, blob_key
from apps.notebooks.mounts import content_key
from tests.factories import BlobFactory, DatasetFactory, DatasetVersionFactory, VersionFileFactory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from apps.teams.models import Team


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def media(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Path:
    """Blobs in a local folder; chunks of the module's ``CHUNK`` bytes where it sets one."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = root
    chunk = getattr(request.module, "CHUNK", None)
    if chunk is not None:
        settings.LATTICE_UPLOAD_CHUNK_BYTES = chunk
    return root


@pytest.fixture
def served_media(media: Path, blob_links: str) -> Path:
    """Blobs in a local folder, which hosts read through the web tier's blob view."""
    return media


@pytest.fixture
def cache(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """A host's dataset cache, made writable again afterwards so pytest can remove it."""
    root = tmp_path / "cache"
    root.mkdir()
    settings.LATTICE_DATASET_CACHE = root
    yield root
    for top, folders, _ in os.walk(root):
        for folder in folders:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(top, folder), 0o700)  # noqa: PTH101, PTH118


def put_bytes(data: bytes, *, s3: Any = None) -> None:
    """Put ``data`` where its blob's key says, in the default storage (or in ``s3``'s
    bucket), once."""
    key = blob_key(sha(data))
    if s3 is not None:
        s3.put_object(Bucket=s3.bucket, Key=key, Body=data)
    elif not default_storage.exists(key):
        default_storage.save(key, ContentFile(data))


def store_blob(data: bytes, *, s3: Any = None) -> Blob:
    """``data``'s blob row, its bytes stored (see put_bytes)."""
    put_bytes(data, s3=s3)
    return BlobFactory.create(data=data)


def make_version(
    team: Team,
    name: str,
    files: dict[str, bytes],
    *,
    visibility: str = Dataset.Visibility.PRIVATE,
    ready: bool = True,
    number: int = 1,
    s3: Any = None,
    **dataset: Any,
) -> DatasetVersion:
    """A version of the dataset ``name`` (made, with ``dataset``'s other fields, if the team
    has none), as an upload would leave it, without the upload."""
    found = Dataset.objects.for_team(team).filter(name=name).first()
    found = found or DatasetFactory.create(team=team, name=name, visibility=visibility, **dataset)
    version = DatasetVersionFactory.create(
        dataset=found,
        number=number if ready else None,
        status=DatasetVersion.Status.READY if ready else DatasetVersion.Status.UPLOADING,
        ready_at=timezone.now() if ready else None,
        file_count=len(files),
        total_size=sum(len(data) for data in files.values()),
    )
    for path, data in files.items():
        VersionFileFactory.create(version=version, path=path, blob=store_blob(data, s3=s3))
    return version


def spec_dataset(name: str, files: dict[str, bytes]) -> dict[str, Any]:
    """A dataset as the agent gets it in a spec (with read links), its blobs in the storage."""
    listed = []
    for path, data in files.items():
        put_bytes(data)
        listed.append((path, sha(data), len(data)))
    mount = {
        "name": name,
        "version_id": 1,
        "key": content_key(listed),
        "files": [list(f) for f in listed],
    }
    return with_read_urls([mount], seconds=600)[0]
