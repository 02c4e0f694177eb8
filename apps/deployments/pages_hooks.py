"""What deployments tell the model version page (apps.models.hooks): the deployments
serving a version, and the "Deploy" button that opens the create form with it filled in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.urls import reverse

from apps.deployments.models import Revision
from apps.teams.permissions import role_allows

if TYPE_CHECKING:
    from apps.models.models import ModelVersion
    from apps.teams.models import Team


def version_servers(team: Team, version: ModelVersion) -> list[tuple[str, str]]:
    """Each live deployment with a serving revision of ``version``, as (text, URL)."""
    revisions = (
        Revision.objects.for_team(team)
        .filter(
            model_version=version,
            status=Revision.Status.SERVING,
            deployment__deleted_at__isnull=True,
        )
        .select_related("deployment")
        .order_by("deployment__name", "-number")
    )
    servers: dict[int, tuple[str, str]] = {}
    for revision in revisions:
        deployment = revision.deployment
        if deployment.pk in servers or str(revision.pk) not in (deployment.traffic or {}):
            continue
        url = reverse(
            "deployments:detail",
            kwargs={"team_slug": team.slug, "deployment_id": deployment.pk},
        )
        servers[deployment.pk] = (f"{deployment.name} (r{revision.number})", url)
    return list(servers.values())


def version_actions(team: Team, role: str, version: ModelVersion) -> list[tuple[str, str]]:
    """ "Deploy", for a member who may deploy."""
    if not role_allows(role, "deployments.manage"):
        return []
    url = reverse("deployments:create", kwargs={"team_slug": team.slug})
    return [("Deploy", f"{url}?version={version.pk}")]
