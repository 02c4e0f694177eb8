"""A dataset version a job's run made says so on its page: the run in words, linked to the
run's page (apps.jobs.lineage on apps.datasets.hooks.version_source); once the run is gone,
the words the version kept. An uploaded version says nothing of the kind."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.core.tenancy import team_scope
from apps.jobs.models import Run
from tests.dataset_fixtures import make_version
from tests.jobs.engine_fixtures import make_job

pytestmark = pytest.mark.django_db


def made_by(client, team, dataset_slug: str) -> str:
    page = client.get(reverse("datasets:detail", args=[team.slug, dataset_slug]))
    assert page.status_code == 200
    html = page.content.decode()
    start = html.find('data-testid="version-source"')
    return html[start : html.find("</p>", start)] if start >= 0 else ""


def test_a_version_a_run_made_links_to_the_run_then_keeps_its_words(client, acme, alice):
    with team_scope(acme):
        job = make_job(acme, alice, "true", name="Nightly", slug="nightly")
        run = Run.objects.create(
            team=acme, job=job, number=3, definition={}, trigger=Run.Trigger.MANUAL
        )
        version = make_version(acme, "Features", {"a.csv": b"a\n1\n"})
        version.source, version.source_id = "job", run.pk
        version.source_label = "job Nightly run 3"
        version.save(update_fields=["source", "source_id", "source_label"])
    client.force_login(alice)

    said = made_by(client, acme, version.dataset.slug)
    run_page = reverse("jobs:run", args=[acme.slug, job.pk, 3])
    assert f'<a href="{run_page}">job Nightly run 3</a>' in said

    with team_scope(acme):
        run.delete()
    said = made_by(client, acme, version.dataset.slug)
    assert "job Nightly run 3" in said
    assert "<a " not in said
    assert "(gone)" in said


def test_an_uploaded_version_names_no_maker(client, acme, alice):
    version = make_version(acme, "Plain", {"a.csv": b"a\n"})
    client.force_login(alice)
    assert made_by(client, acme, version.dataset.slug) == ""
