"""A dataset or model version a job's run made links back to that run, on its page and in
the API (apps.datasets.hooks.source_link and apps.models.hooks.source_links, registered by
apps.jobs); another team's version never links to this team's run."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.jobs.outputs import run_label
from tests.factories import DatasetVersionFactory
from tests.job_fixtures import make_job, make_run
from tests.model_fixtures import make_model_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def run(acme, alice, catalogue):
    return make_run(make_job(acme, alice, name="Train", slug="train"), alice)


def run_url(run) -> str:
    return f"/t/{run.team.slug}/jobs/{run.job_id}/runs/{run.number}/"


def test_a_dataset_version_made_by_a_run_links_to_it(run, acme, alice, globex):
    version: Any = DatasetVersionFactory(
        dataset__team=acme,
        dataset__name="Scores",
        source="job",
        source_id=run.pk,
        source_label=run_label(run),
    )
    page = Client()
    page.force_login(alice)
    html = page.get(f"/t/acme/datasets/{version.dataset.slug}/").content.decode()
    assert f'Made by <a href="{run_url(run)}">Train, run 1</a>' in html

    api = APIClient()
    api.force_login(alice)
    body = api.get(f"/api/v1/teams/acme/datasets/{version.dataset.slug}/").json()
    [shown] = body["versions"]
    assert shown["source"] == "job"
    assert shown["source_label"] == "job Train run 1"
    assert shown["source_link"] == {"text": "Train, run 1", "url": run_url(run)}

    # An upload says nothing more; the run gone, its label stays, with no link.
    upload: Any = DatasetVersionFactory(dataset__team=acme, dataset__name="Raw")
    body = api.get(f"/api/v1/teams/acme/datasets/{upload.dataset.slug}/").json()
    assert body["versions"][0]["source"] == "upload"
    assert body["versions"][0]["source_link"] is None
    run.delete()
    body = api.get(f"/api/v1/teams/acme/datasets/{version.dataset.slug}/").json()
    assert body["versions"][0]["source_link"] is None
    html = page.get(f"/t/acme/datasets/{version.dataset.slug}/").content.decode()
    assert "Made by job Train run 1" in html


def test_another_teams_version_never_links_to_this_teams_run(run, globex, charlie):
    # A version of globex claiming acme's run (a forged source_id): no link, no name.
    version: Any = DatasetVersionFactory(
        dataset__team=globex, dataset__name="Theirs", source="job", source_id=run.pk
    )
    api = APIClient()
    api.force_login(charlie)
    body = api.get(f"/api/v1/teams/globex/datasets/{version.dataset.slug}/").json()
    assert body["versions"][0]["source_link"] is None


def test_a_model_version_made_by_a_run_links_to_it(run, acme, alice, media):
    version = make_model_version(
        acme,
        alice,
        "Churn",
        {"model.pkl": b"weights"},
        source="job",
        source_id=run.pk,
        source_label=run_label(run),
    )
    page = Client()
    page.force_login(alice)
    html = page.get(f"/t/acme/models/{version.model.slug}/v/{version.number}/").content.decode()
    assert f'<a href="{run_url(run)}">Train, run 1</a>' in html

    api = APIClient()
    api.force_login(alice)
    body = api.get(f"/api/v1/teams/acme/models/{version.model.slug}/versions/1/").json()
    assert body["lineage"]["source"] == "job"
    assert body["lineage"]["source_label"] == "job Train run 1"
    assert body["lineage"]["link"] == {"text": "Train, run 1", "url": run_url(run)}


def test_the_schema_declares_a_dataset_versions_source(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    version = schema["components"]["schemas"]["Version"]["properties"]
    assert {"source", "source_label", "source_link"} <= set(version)
