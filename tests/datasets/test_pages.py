"""The dataset pages through Django's test client: the list and its create form, a dataset's
versions and files, and the upload page. The upload itself is the API's
(tests/datasets/test_versions.py) and the browser's (tests/browser/test_dataset_upload.py)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.urls import reverse

from apps.core.tenancy import team_scope
from apps.datasets import services
from apps.datasets.models import Dataset

pytestmark = pytest.mark.django_db

CHUNK = 4  # bytes: small files make several chunks


def url(name: str, team: Any, dataset: Dataset | None = None) -> str:
    kwargs: dict[str, Any] = {"team_slug": team.slug}
    if dataset is not None:
        kwargs["slug"] = dataset.slug
    return reverse(f"datasets:{name}", kwargs=kwargs)


def text(response: Any) -> str:
    return response.content.decode()


def version_of(team: Any, actor: Any, dataset: Dataset, files: dict[str, bytes], message: str):
    """Make a ready version through the services, as an upload would."""
    manifest = [
        {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for p, b in files.items()
    ]
    with team_scope(team):
        upload = services.upload_start(
            team=team, actor=actor, dataset=dataset, files=manifest, message=message
        )
        by_sha = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
        for sha, missing in services.upload_missing(upload).items():
            for index in missing:
                piece = by_sha[sha][index * CHUNK : (index + 1) * CHUNK]
                services.chunk_receive(
                    team=team,
                    actor=actor,
                    upload=upload,
                    sha256=sha,
                    index=index,
                    pieces=[piece],
                    checksum=hashlib.sha256(piece).hexdigest(),
                )
        return services.upload_complete(team=team, actor=actor, upload=upload)


@pytest.fixture
def cats(acme, alice, media) -> Dataset:
    dataset = services.dataset_create(
        team=acme,
        actor=alice,
        name="Cat photos",
        description="Cats, mostly asleep.",
        licence="CC-BY-4.0",
    )
    version_of(acme, alice, dataset, {"a.txt": b"first", "b/c.txt": b"second one"}, "first")
    version_of(
        acme,
        alice,
        dataset,
        {"a.txt": b"first", "b/c.txt": b"second one", "d e#?.txt": b"third"},
        "add d",
    )
    return dataset


def test_the_list_shows_the_teams_datasets_and_the_create_form(client, alice, cats):
    client.force_login(alice)

    response = client.get(url("list", cats.team))

    assert response.status_code == 200
    body = text(response)
    assert "Cat photos" in body
    assert "Private" in body
    assert "v2" in body  # the latest version
    assert "20\xa0bytes" in body  # its size: 5 + 10 + 5
    assert 'data-testid="create-form"' in body
    assert 'aria-current="page">Datasets' in body


def test_a_dataset_of_another_team_is_not_listed(client, alice, acme, charlie, globex, media):
    services.dataset_create(team=globex, actor=charlie, name="Globex secrets")
    client.force_login(alice)

    assert "Globex secrets" not in text(client.get(url("list", acme)))


def test_creating_a_dataset_opens_its_upload_page(client, acme, alice):
    client.force_login(alice)

    response = client.post(
        url("list", acme),
        {"name": "Dog photos", "description": "Dogs.", "licence": "CC0", "visibility": "public"},
    )

    with team_scope(acme):
        made = Dataset.objects.get(slug="dog-photos")
    assert (made.name, made.description, made.licence, made.visibility) == (
        "Dog photos",
        "Dogs.",
        "CC0",
        "public",
    )
    assert response.status_code == 302
    assert response.url == url("upload", acme, made)
    assert "Dog photos is ready" in text(client.get(response.url))


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("   ", 400, "Give the dataset a name."),
        ("x" * 81, 400, "A name is at most 80 characters."),
        ("!!!", 400, "A name needs a letter or a digit."),
        ("Cat photos", 409, "This team already has a dataset called Cat photos."),
    ],
)
def test_a_refused_name_is_shown_next_to_the_form(client, alice, cats, name, status, message):
    client.force_login(alice)

    response = client.post(url("list", cats.team), {"name": name, "visibility": "private"})

    assert response.status_code == status
    body = text(response)
    assert message in body
    assert "field-invalid" in body  # next to the name field
    with team_scope(cats.team):
        assert Dataset.objects.count() == 1


def test_a_bad_visibility_is_a_400_that_makes_nothing(client, acme, alice):
    client.force_login(alice)

    response = client.post(url("list", acme), {"name": "Dogs", "visibility": "everyone"})

    assert response.status_code == 400
    with team_scope(acme):
        assert not Dataset.objects.exists()


def test_a_viewer_sees_no_create_form_and_may_not_post(client, acme, erin, cats):
    client.force_login(erin)

    page = client.get(url("list", acme))
    refused = client.post(url("list", acme), {"name": "Dogs", "visibility": "private"})

    assert page.status_code == 200
    assert "Cat photos" in text(page)
    assert 'data-testid="create-form"' not in text(page)
    assert refused.status_code == 403
    with team_scope(acme):
        assert not Dataset.objects.filter(slug="dogs").exists()


def test_the_detail_page_shows_versions_and_the_latest_files(client, alice, cats):
    client.force_login(alice)

    response = client.get(url("detail", cats.team, cats))

    assert response.status_code == 200
    body = text(response)
    assert "Cats, mostly asleep." in body
    assert "CC-BY-4.0" in body
    assert "add d" in body  # both versions' messages
    assert "first" in body
    assert "Alice Smith" in body
    assert "Files of version 2" in body
    api = f"/api/v1/teams/acme/datasets/{cats.slug}/versions/2"
    assert f'href="{api}/files/b/c.txt"' in body
    assert f'href="{api}/files/d%20e%23%3F.txt"' in body  # quoted, so the link works
    assert f'href="{api}/archive/"' in body
    assert "Download version 2 (.tar)" in body
    assert f'href="{url("upload", cats.team, cats)}"' in body


def test_the_detail_page_shows_an_older_version_when_asked(client, alice, cats):
    client.force_login(alice)

    body = text(client.get(url("detail", cats.team, cats) + "?version=1"))

    assert "Files of version 1" in body
    assert "/versions/1/files/a.txt" in body
    assert "d e#?.txt" not in body  # a file of version 2 only
    assert "d%20e" not in body
    assert "d e#?.txt" in text(client.get(url("detail", cats.team, cats)))


@pytest.mark.parametrize("version", ["3", "0", "x", ""])
def test_a_missing_version_is_a_404(client, alice, cats, version):
    client.force_login(alice)

    response = client.get(url("detail", cats.team, cats) + f"?version={version}")
    assert response.status_code == 404
    assert "b/c.txt" not in text(response)  # no version's files


def test_a_new_dataset_has_no_versions_and_points_to_the_upload(client, acme, alice, media):
    dataset = services.dataset_create(team=acme, actor=alice, name="Empty")
    client.force_login(alice)

    body = text(client.get(url("detail", acme, dataset)))

    assert "No versions yet." in body
    assert "Upload the first one." in body


def test_a_dataset_of_another_team_is_a_404(client, alice, acme, charlie, globex, media):
    theirs = services.dataset_create(team=globex, actor=charlie, name="Theirs")
    client.force_login(alice)

    for path in (f"/t/acme/datasets/{theirs.slug}/", f"/t/acme/datasets/{theirs.slug}/upload/"):
        response = client.get(path)
        assert response.status_code == 404
        assert "Theirs" not in text(response)


def test_the_upload_page_is_configured_for_the_script(client, alice, cats):
    client.force_login(alice)

    response = client.get(url("upload", cats.team, cats))

    assert response.status_code == 200
    body = text(response)
    assert 'id="dataset-upload"' in body
    assert f'data-uploads-url="/api/v1/teams/acme/datasets/{cats.slug}/uploads/"' in body
    assert 'data-upload-base="/api/v1/teams/acme/uploads/"' in body
    assert f'data-version-url="/t/acme/datasets/{cats.slug}/?version={{number}}"' in body
    assert 'data-csrf="' in body
    assert "webkitdirectory" in body
    assert "/static/js/dataset-upload.js" in body
    assert "/static/vendor/js-sha256/sha256.min.js" in body
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)  # the CSP forbids inline script
    assert "the latest is version 2" in body


def test_a_viewer_may_read_but_not_open_the_upload_page(client, erin, cats):
    client.force_login(erin)

    detail = client.get(url("detail", cats.team, cats))

    assert detail.status_code == 200
    assert "Upload a new version" not in text(detail)
    assert client.get(url("upload", cats.team, cats)).status_code == 403


def test_the_sidebar_and_the_tabs_link_the_datasets(client, alice, acme):
    client.force_login(alice)

    body = text(client.get(reverse("teams:home", kwargs={"team_slug": acme.slug})))

    assert body.count('href="/t/acme/datasets/"') == 2
