from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from apps.datasets.models import DatasetVersion
    from apps.teams.models import Team

# The audit log's words for what models record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "model.created": "{actor} created the model {target}",
    "model.updated": "{actor} changed the model {target}",
    "model.deleted": "{actor} deleted the model {target}",
    "model.upload_started": "{actor} began uploading {files} files to the model {target}",
    "model.version_created": "{actor} made the model version {target}",
    "model.alias_moved": "{actor} pointed {target} at {to}",
    "model.alias_removed": "{actor} removed the alias {target}",
    "model.save_started": "{actor} began saving {folder} from {source} to the model {target}",
    "model.save_to_dataset_started": (
        "{actor} began saving {folder} from {source} to the dataset {target}"
    ),
    "model.save_failed": "Saving to {target} failed: {reason}",
}


class ModelsConfig(AppConfig):
    name = "apps.models"
    label = "models"
    verbose_name = "Models"

    def ready(self) -> None:
        from django.urls import reverse

        from apps.accounts.hooks import example_urls
        from apps.core.audit import audit_phrases
        from apps.datasets.hooks import upload_purposes, version_users
        from apps.models.selectors import models_from_dataset_version
        from apps.models.services.saves import (
            FILES_PURPOSE,
            SYSTEM_PURPOSE,
            files_purpose,
            system_purpose,
        )
        from apps.models.services.versions import PURPOSE, upload_purpose

        upload_purposes.register(PURPOSE, upload_purpose)
        upload_purposes.register(FILES_PURPOSE, files_purpose)
        upload_purposes.register(SYSTEM_PURPOSE, system_purpose)
        # A new token of the models area is shown a curl of its team's models.
        example_urls.register(
            "models", lambda team: reverse("api:models", args=[team.slug]) if team else None
        )

        def trained_on(team: Team, version: DatasetVersion) -> list[tuple[str, str]]:
            return [
                (
                    f"{made.model.name} v{made.number}",
                    reverse("models:version", args=[team.slug, made.model.slug, made.number]),
                )
                for made in models_from_dataset_version(team, version)
            ]

        version_users.register(trained_on)
        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
