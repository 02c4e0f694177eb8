"""What a run made, told to the pages of the apps below (their lineage hooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.urls import reverse

from apps.jobs.models import Run

if TYPE_CHECKING:
    from apps.datasets.models import DatasetVersion
    from apps.teams.models import Team


def dataset_version_source(team: Team, version: DatasetVersion) -> tuple[str, str] | None:
    """A dataset version a job's run made (apps.datasets.hooks.version_source): the run in
    words and its page; None when it was not a run's, or the run is gone."""
    if version.source != "job" or version.source_id is None:
        return None
    run = Run.objects.for_team(team).select_related("job").filter(pk=version.source_id).first()
    if run is None:
        return None
    page = reverse("jobs:run", args=[team.slug, run.job_id, run.number])
    return f"job {run.job.name} run {run.number}", page
