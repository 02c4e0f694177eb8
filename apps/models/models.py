"""Models: a registry of immutable model versions, with aliases and lineage.

A **model** is a team's named line of versions. A **version** is a manifest (path ->
blob) over the same content-addressed blob store datasets use, made by the same
resumable upload protocol (apps.datasets: an Upload of purpose "model", whose
completion makes the version ready here, apps.models.services.versions). It never
changes once ready; uploading the very same files again gives the existing version
back (``digest``), and a changed file stores only that file's new blob. An **alias**
(``production``, ``staging``, anything) names one version of its model; moving it is
one audited step. A version remembers where it came from: the notebook session (or
job run) that saved it, the dataset versions mounted then, the version it was
fine-tuned from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.db import models

from apps.core.tenancy import TeamManager, TeamScopedManager

if TYPE_CHECKING:
    from apps.datasets.models import DatasetVersion


class Model(models.Model):  # type: ignore[django-manager-missing]
    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private (the team only)"

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
            models.UniqueConstraint(fields=["team", "slug"], name="models_slug_per_team"),
        ]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):  # type: ignore[django-manager-missing]
    class Status(models.TextChoices):
        UPLOADING = "uploading", "Uploading"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        PYTHON = "python", "Python predictor (predict.py)"
        ONNX = "onnx", "ONNX"
        PYTORCH = "pytorch", "PyTorch / safetensors"
        SKLEARN = "sklearn", "scikit-learn / joblib"
        TRANSFORMERS = "transformers", "Hugging Face transformers"
        GGUF = "gguf", "GGUF"
        IMAGE = "image", "Container image"
        OTHER = "other", "Other"

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        NOTEBOOK = "notebook", "Saved from a notebook"
        JOB = "job", "Made by a job run"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="versions")
    # Given when it becomes ready: versions are numbered 1, 2, 3... with no gaps.
    number = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UPLOADING)
    # SHA-256 over the sorted manifest (path, size, sha256 of each file): the same files,
    # the same digest, whoever uploads them (apps.models.services.versions.manifest_digest).
    digest = models.CharField(max_length=64)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.OTHER)
    message = models.CharField(max_length=500, blank=True)
    # Free-form: metrics, parameters, base model, notes on the training data.
    metadata = models.JSONField(default=dict, blank=True)
    # An optional description of the inputs and outputs (JSON Schema or a free shape).
    io_schema = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    total_size = models.PositiveBigIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    # The upload that brings its files (None once it is gone, or for none needed).
    upload = models.OneToOneField(
        "datasets.Upload",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_version",
    )
    # While a host saves it from a notebook: {"phase", "done", "total"} as it reported.
    progress = models.JSONField(null=True, blank=True)
    # Why it failed, in words a person can act on.
    failure = models.CharField(max_length=1000, blank=True)
    # Lineage: where it came from. ``source_id`` is the notebook session's (or job run's)
    # pk, which the app above that made it reads back; ``source_label`` says it in words
    # even after that is gone.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.UPLOAD)
    source_id = models.PositiveBigIntegerField(null=True, blank=True)
    source_label = models.CharField(max_length=200, blank=True)
    # Through ModelVersionDataset: a link outlives its dataset version, as a label.
    dataset_versions: models.ManyToManyField[DatasetVersion, ModelVersionDataset] = (
        models.ManyToManyField(
            "datasets.DatasetVersion",
            through="ModelVersionDataset",
            through_fields=("version", "dataset_version"),
            blank=True,
            related_name="+",
        )
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-number", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "number"],
                condition=models.Q(number__isnull=False),
                name="models_version_number_once",
            ),
            # The same files never make two versions of one model.
            models.UniqueConstraint(
                fields=["model", "digest"],
                condition=models.Q(status="ready"),
                name="models_version_content_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} v{self.number or '?'}"


class ModelVersionDataset(models.Model):
    """A dataset version a model version was made with. Deleting that dataset keeps the
    link, its ``dataset_version`` emptied, and its ``label`` ("Flowers v1") says what it
    was. A link is made only to a dataset version the team could read then (its own or a
    public one), so the label tells the team nothing it could not read."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="dataset_links"
    )
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    label = models.CharField(max_length=200, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["label", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "dataset_version"], name="models_version_dataset_once"
            ),
        ]

    def __str__(self) -> str:
        return self.label


class ModelFile(models.Model):
    """One path of a version's manifest, and the blob (apps.datasets) that holds its bytes."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    blob = models.ForeignKey("datasets.Blob", on_delete=models.PROTECT, related_name="+")
    size = models.PositiveBigIntegerField()

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="models_path_once"),
        ]
        indexes = [models.Index(fields=["team", "blob"], name="models_file_team_blob")]

    def __str__(self) -> str:
        return self.path


class ModelAlias(models.Model):
    """A name for one ready version of its model; what a deployment follows."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="aliases")
    name = models.SlugField(max_length=40)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="models_alias_once"),
        ]

    def __str__(self) -> str:
        return f"{self.model}@{self.name}"


SAVE_SOURCES = [*ModelVersion.Source.choices, ("snapshot", "A notebook's snapshot")]


class SaveTicket(models.Model):
    """A host's single-use, short-lived right to save one folder as one version.

    The host agent (which holds no database credentials) gets the ticket itself once; only
    its SHA-256 is stored. It speaks for ``created_by`` in ``team`` (whose permission is
    checked again at each use), for ``version`` only, until ``expires_at`` (moved on at each
    use: a long save lives, an abandoned ticket dies) or until the save ends.
    """

    class Result(models.TextChoices):
        RUNNING = "", "Saving"
        READY = "ready", "Saved as a new version"
        EXISTING = "existing", "The same files as a version already there"
        FAILED = "failed", "Failed"

    class Target(models.TextChoices):
        MODEL = "model", "A model version"
        DATASET = "dataset", "A dataset version"
        FILES = "files", "A job run's files"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    # What the saved folder becomes: a version of ``model`` (with ``version``), a version of
    # ``dataset`` (with ``dataset_version``), or (target "files") a job run's kept files,
    # handed to the app that asked (apps.models.hooks.files_saved).
    target = models.CharField(max_length=8, choices=Target.choices, default=Target.MODEL)
    model = models.ForeignKey(Model, null=True, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(
        "datasets.Dataset", null=True, on_delete=models.CASCADE, related_name="+"
    )
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Where the folder is read from in the workload: /notebooks, or a job's /outputs.
    root = models.CharField(max_length=64, default="/notebooks")
    # The upload that brings its files, once the host sent the manifest (every target).
    upload = models.ForeignKey(
        "datasets.Upload", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Its lineage in words, for a dataset version made only when the manifest comes.
    source_label = models.CharField(max_length=200, blank=True)
    # The version it saves; the one it found instead when the files were a version already.
    version = models.ForeignKey(
        ModelVersion, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # None: a system save (a notebook's snapshot) with no person behind it: the ticket alone
    # is the right, bound to its upload, and no permission is checked again at each use.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    folder = models.CharField(max_length=1024)
    # What it saves from, as on the version: the notebook page lists its session's saves.
    # "snapshot": a notebook's snapshot (apps.notebooks.snapshots), source_id its pk.
    source = models.CharField(max_length=10, choices=SAVE_SOURCES)
    source_id = models.PositiveBigIntegerField(null=True, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    result = models.CharField(max_length=10, choices=Result.choices, default=Result.RUNNING)
    failure = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["source", "source_id"], name="models_save_source")]

    def __str__(self) -> str:
        return f"save of {self.folder} into {self.target_name}"

    @property
    def target_name(self) -> str:
        """What it saves into, in words: the model's or dataset's name."""
        if self.model is not None:
            return self.model.name
        if self.dataset is not None:
            return self.dataset.name
        if self.source == "snapshot":
            return "a notebook's snapshot"
        return "the run's files"

    @property
    def saved_model(self) -> Model:
        """The model a model save (every save of a notebook's folder) makes a version of."""
        if self.model is None:
            raise ValueError(f"save ticket {self.pk} is not a model's")
        return self.model
