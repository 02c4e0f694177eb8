"""The gateway's cached routes go stale when what they hold changes, and only then: the
controller's scaling bookkeeping on a revision (written about once a second under load)
leaves every process's routes cached."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from apps.deployments.models import Revision
from apps.deployments.routing import deployment_generation, generations

pytestmark = pytest.mark.django_db


def _generation(deployment: Any) -> int:
    key = deployment_generation(deployment.pk)
    return generations([key])[key]


def test_a_revisions_scaling_bookkeeping_leaves_the_routes_cached(
    deployment, django_capture_on_commit_callbacks
):
    revision = Revision.objects.for_team(deployment.team).get(deployment=deployment)
    before = _generation(deployment)

    with django_capture_on_commit_callbacks(execute=True):
        revision.scaled_at = timezone.now()
        revision.replicas_wanted = 3
        revision.save(update_fields=["scaled_at", "replicas_wanted"])

    assert _generation(deployment) == before


def test_a_revision_saved_whole_still_makes_the_routes_stale(
    deployment, django_capture_on_commit_callbacks
):
    """The route reads no revision field (the traffic is the deployment's, the replicas say
    their revision), so only a save that may have changed anything counts."""
    revision = Revision.objects.for_team(deployment.team).get(deployment=deployment)
    before = _generation(deployment)

    with django_capture_on_commit_callbacks(execute=True):
        revision.status_message = "r1 failed"
        revision.save(update_fields=["status_message"])
    assert _generation(deployment) == before
    with django_capture_on_commit_callbacks(execute=True):
        revision.save()  # every field

    assert _generation(deployment) != before
