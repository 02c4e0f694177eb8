"""Datasets: immutable versions over content-addressed blobs, and resumable uploads.

A **blob** is a file's bytes, stored once under its SHA-256 whatever dataset,
version or team holds them. A **version** is a manifest (path -> blob) that never
changes once ready. An **upload** makes one version: it names every file of the
new version with its size and hash; the files whose blob the team already holds
(a version of its own lists it) are never sent again, and the rest arrive in
numbered chunks, in any order, retried as often as needed, until
``upload_complete`` checks every file and makes the version ready in one
transaction. A blob stored by other teams only is sent again and checked: a team
reads another's bytes only through a public dataset, never by naming a hash.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from apps.core.tenancy import TeamManager, TeamScopedManager


class Dataset(models.Model):  # type: ignore[django-manager-missing]
    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private (the team only)"
        PUBLIC = "public", "Public (the catalogue)"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True, max_length=5000)
    licence = models.CharField(max_length=80, blank=True)
    visibility = models.CharField(
        max_length=8, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="datasets_slug_per_team"),
        ]

    def __str__(self) -> str:
        return self.name


class Blob(models.Model):
    """Bytes stored once by their SHA-256. Shared by every team that holds them, so it
    is not tenant-owned: a team reaches one only through its own versions (or a public
    dataset's), and holds one only once it has sent its bytes (selectors.blobs_held)."""

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sha256"]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.size} bytes)"

    @property
    def storage_key(self) -> str:
        return blob_key(self.sha256)


def blob_key(sha256: str) -> str:
    return f"datasets/blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class DatasetVersion(models.Model):  # type: ignore[django-manager-missing]
    class Status(models.TextChoices):
        UPLOADING = "uploading", "Uploading"
        READY = "ready", "Ready"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    # Given when it becomes ready: versions are numbered 1, 2, 3... with no gaps.
    number = models.PositiveIntegerField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UPLOADING)
    total_size = models.PositiveBigIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    # Lineage: where it came from ("upload", or "job": ``source_id`` is the job run's pk,
    # which the app above reads back; ``source_label`` says it in words after that is gone).
    source = models.CharField(max_length=10, default="upload")
    source_id = models.PositiveBigIntegerField(null=True, blank=True)
    source_label = models.CharField(max_length=200, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-number", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "number"],
                condition=models.Q(number__isnull=False),
                name="datasets_version_number_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.number or '?'}"


class VersionFile(models.Model):
    """One path of a version's manifest, and the blob that holds its bytes."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="+")
    size = models.PositiveBigIntegerField()

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="datasets_path_once"),
        ]
        # Whether a team holds a blob (selectors.blobs_held): one index probe per blob, however
        # many other teams' files hold it.
        indexes = [models.Index(fields=["team", "blob"], name="datasets_file_team_blob")]

    def __str__(self) -> str:
        return self.path


class Upload(models.Model):  # type: ignore[django-manager-missing]
    """The making of one version: what is still to be sent, and when it was completed.

    ``purpose`` says what kind of version: a dataset's (``dataset`` and ``version`` are
    set), or another app's whose files live in the same blob store (a model version), which
    registers what completing one does (apps.datasets.hooks.upload_purposes).
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Complete"
        ABANDONED = "abandoned", "Abandoned"

    DATASET = "dataset"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=20, default=DATASET)
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="uploads"
    )
    version = models.OneToOneField(
        DatasetVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="upload"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    chunk_size = models.PositiveIntegerField()
    # The bytes this upload sends: the blobs the team did not hold when it started.
    new_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(purpose="dataset")
                | models.Q(dataset__isnull=False, version__isnull=False),
                name="datasets_upload_of_a_dataset_names_it",
            ),
        ]

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.purpose})"


class UploadBlob(models.Model):  # type: ignore[django-manager-missing]
    """A blob this upload must bring, and the chunks of it received so far."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="blobs")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    chunk_count = models.PositiveIntegerField()
    # On S3: the multipart upload its chunks go to, straight from the client.
    multipart_id = models.CharField(max_length=200, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["upload", "sha256"], name="datasets_upload_blob_once"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} for {self.upload}"

    def chunk_range(self, index: int, chunk_size: int) -> tuple[int, int]:
        """(offset, length) of chunk ``index``: all full-sized but the last."""
        offset = index * chunk_size
        return offset, min(chunk_size, self.size - offset)


class UploadChunk(models.Model):
    """A chunk received and checked; sending it again replaces nothing."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    blob = models.ForeignKey(UploadBlob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(fields=["blob", "index"], name="datasets_chunk_once"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of {self.blob}"
