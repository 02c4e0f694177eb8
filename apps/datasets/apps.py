from __future__ import annotations

from django.apps import AppConfig

# The audit log's words for what datasets record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "dataset.created": "{actor} created the dataset {target}",
    "dataset.updated": "{actor} changed the dataset {target}",
    "dataset.deleted": "{actor} deleted the dataset {target}",
    "dataset.upload_started": "{actor} began uploading {files} files to {target}",
    "dataset.version_created": "{actor} uploaded {target}",
    "upload.abandoned": "{actor} gave up an unfinished upload ({purpose} upload {target})",
}


class DatasetsConfig(AppConfig):
    name = "apps.datasets"
    label = "datasets"
    verbose_name = "Datasets"

    def ready(self) -> None:
        from django.urls import reverse

        from apps.accounts.hooks import example_urls
        from apps.core.audit import audit_phrases

        # A new token of the datasets area is shown a curl of its team's datasets.
        example_urls.register(
            "datasets",
            lambda team: reverse("api:datasets", args=[team.slug]) if team else None,
        )
        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
