"""Editing a dataset: its name (the slug follows), description, licence and visibility,
through the API (PATCH) and the dataset's page. Making it private takes it away from
the other teams' notebooks that mounted it from the catalogue; the team's own mounts stay."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.core.models import AuditEntry
from apps.core.tenancy import team_scope
from apps.datasets.models import Dataset, DatasetVersion
from apps.datasets.services import dataset_create
from apps.notebooks.models import NotebookMount
from apps.notebooks.mounts import mount_add
from tests.factories import DatasetVersionFactory
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db


@pytest.fixture
def cats(acme, alice) -> Dataset:
    """Public: in the catalogue, where other teams find it."""
    return dataset_create(
        team=acme,
        actor=alice,
        name="Cats",
        description="Mostly asleep.",
        licence="CC-BY-4.0",
        visibility=Dataset.Visibility.PUBLIC,
    )


@pytest.fixture
def dogs(acme, alice) -> Dataset:
    return dataset_create(team=acme, actor=alice, name="Dogs")


def ready_version(dataset: Dataset) -> DatasetVersion:
    """Version 1, ready, as a completed upload leaves it (its files play no part here)."""
    return DatasetVersionFactory.create(dataset=dataset)


def mounted(team, actor, catalogue, version: DatasetVersion) -> NotebookMount:
    """``version`` mounted in a new notebook of ``team``."""
    with team_scope(team):
        notebook = make_notebook(team, actor, f"Uses {version.dataset.slug}")
        return mount_add(team=team, actor=actor, notebook=notebook, version=version)


def api_url(slug: str) -> str:
    return f"/api/v1/teams/acme/datasets/{slug}/"


def page_url(slug: str) -> str:
    return f"/t/acme/datasets/{slug}/"


def patch(client: Client, slug: str, body: dict[str, Any]) -> Any:
    return client.patch(api_url(slug), body, content_type="application/json")


def as_stored(dataset: Dataset) -> tuple[str, str, str, str, str]:
    row = Dataset.objects.for_team(dataset.team_id).get(pk=dataset.pk)
    return row.name, row.slug, row.description, row.licence, row.visibility


def edits(team) -> list[AuditEntry]:
    return list(AuditEntry.objects.for_team(team).filter(action="dataset.updated"))


# --- the API --------------------------------------------------------------------------


class TestAPI:
    def test_a_new_name_moves_the_dataset_to_its_new_slug(self, client, alice, acme, cats):
        client.force_login(alice)

        response = patch(client, "cats", {"name": "Sleepy  cats"})

        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["name"], body["slug"]) == ("Sleepy cats", "sleepy-cats")
        assert (body["description"], body["licence"]) == ("Mostly asleep.", "CC-BY-4.0")
        assert client.get(api_url("sleepy-cats")).json() == body  # as GET answers it
        assert client.get(api_url("cats")).status_code == 404
        [entry] = edits(acme)
        assert entry.target == "Sleepy cats"
        assert entry.data == {"fields": ["name"], "previous_name": "Cats"}

    def test_a_name_the_team_uses_is_a_409_and_changes_nothing(self, client, alice, cats, dogs):
        client.force_login(alice)
        before = as_stored(cats)

        response = patch(client, "cats", {"name": "dogs", "description": "Now dogs."})

        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "conflict"
        assert error["message"] == "This team already has a dataset called dogs."
        assert as_stored(cats) == before
        assert edits(cats.team) == []

    def test_a_member_changes_the_description_and_licence_alone(self, client, bob, acme, cats):
        client.force_login(bob)

        response = patch(client, "cats", {"description": "Awake, at last.", "licence": "CC0"})

        assert response.status_code == 200
        assert as_stored(cats) == ("Cats", "cats", "Awake, at last.", "CC0", "public")
        assert edits(acme)[0].data == {"fields": ["description", "licence"]}

    def test_a_description_can_be_emptied(self, client, alice, cats):
        client.force_login(alice)

        assert patch(client, "cats", {"description": "", "licence": ""}).status_code == 200

        assert as_stored(cats)[2:4] == ("", "")

    def test_what_is_not_sent_or_the_same_changes_nothing(self, client, alice, acme, cats):
        client.force_login(alice)

        assert patch(client, "cats", {}).status_code == 200
        assert patch(client, "cats", {"name": " Cats ", "visibility": "public"}).status_code == 200

        assert edits(acme) == []

    @pytest.mark.parametrize(
        ("body", "field", "message"),
        [
            ({"name": ""}, "name", "This field may not be blank."),
            ({"name": "!!!"}, "name", "A name needs a letter or a digit."),
            ({"name": "x" * 81}, "name", "Ensure this field has no more than 80 characters."),
            ({"licence": "x" * 81}, "licence", "Ensure this field has no more than 80"),
            ({"description": "x" * 5001}, "description", "no more than 5000 characters"),
            ({"visibility": "secret"}, "visibility", '"secret" is not a valid choice.'),
            ({"description": None}, "description", "This field may not be null."),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, client, alice, cats, body, field, message):
        client.force_login(alice)
        before = as_stored(cats)

        # A good licence comes along: it is not saved either.
        response = patch(client, "cats", {"licence": "MIT", **body})

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid"
        assert message in error["fields"][field][0]
        assert as_stored(cats) == before

    def test_a_viewer_gets_403(self, client, erin, cats):
        client.force_login(erin)
        before = as_stored(cats)

        response = patch(client, "cats", {"name": "Mine now"})

        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
        assert as_stored(cats) == before

    def test_another_team_gets_404(self, client, charlie, globex, cats):
        client.force_login(charlie)
        before = as_stored(cats)

        assert patch(client, "cats", {"name": "Mine now"}).status_code == 404
        assert as_stored(cats) == before

    def test_an_unknown_dataset_is_404(self, client, alice, cats):
        client.force_login(alice)

        assert patch(client, "birds", {"name": "Birds"}).status_code == 404
        assert not Dataset.objects.for_team(cats.team).filter(name="Birds").exists()
        assert edits(cats.team) == []


# --- visibility -----------------------------------------------------------------------


def test_going_private_removes_other_teams_mounts_and_keeps_the_teams_own(
    client, acme, alice, globex, charlie, catalogue, cats
):
    version = ready_version(cats)
    birds = dataset_create(team=acme, actor=alice, name="Birds", visibility="public")
    theirs = mounted(globex, charlie, catalogue, version)
    their_birds = mounted(globex, charlie, catalogue, ready_version(birds))
    ours = mounted(acme, alice, catalogue, version)
    outsider = Client()
    outsider.force_login(charlie)
    assert outsider.get("/api/v1/datasets/acme/cats/").status_code == 200
    client.force_login(alice)

    response = patch(client, "cats", {"visibility": "private"})

    assert response.status_code == 200
    assert response.json()["visibility"] == "private"
    left = set(NotebookMount.objects.unscoped().values_list("pk", flat=True))
    assert theirs.pk not in left
    assert {ours.pk, their_birds.pk} <= left  # its own, and other datasets' mounts
    assert edits(acme)[0].data == {
        "fields": ["visibility"],
        "visibility": "public -> private",
        "mounts_removed": 1,
    }
    assert outsider.get("/api/v1/datasets/acme/cats/").status_code == 404  # out of the catalogue


def test_going_public_again_removes_nothing(client, acme, alice, catalogue, dogs):
    ours = mounted(acme, alice, catalogue, ready_version(dogs))
    client.force_login(alice)

    assert patch(client, "dogs", {"visibility": "public"}).status_code == 200
    assert patch(client, "dogs", {"visibility": "private"}).status_code == 200

    assert NotebookMount.objects.for_team(acme).filter(pk=ours.pk).exists()


def test_a_free_team_cannot_make_a_dataset_private(
    client, alice, globex, charlie, catalogue, cats, stripe_double
):
    theirs = mounted(globex, charlie, catalogue, ready_version(cats))
    client.force_login(alice)

    response = patch(client, "cats", {"visibility": "private", "description": "Hidden."})

    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "plan_private_datasets"
    assert "On the Free plan datasets are public." in error["message"]
    assert as_stored(cats)[2:] == ("Mostly asleep.", "CC-BY-4.0", "public")
    assert NotebookMount.objects.for_team(globex).filter(pk=theirs.pk).exists()


# --- the dataset's page ---------------------------------------------------------------


def csrf_token(body: str) -> str:
    form = body[body.index('data-testid="edit-form"') :]
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert found is not None
    return found.group(1)


def form_data(**changes: str) -> dict[str, str]:
    return {
        "name": "Cats",
        "description": "Mostly asleep.",
        "licence": "CC-BY-4.0",
        "visibility": "public",
        **changes,
    }


class TestPage:
    def test_the_page_offers_the_form_filled_in_to_those_who_may_manage(self, client, bob, cats):
        client.force_login(bob)

        body = client.get(page_url("cats")).content.decode()

        assert 'data-testid="edit-form"' in body
        assert 'action="/t/acme/datasets/cats/edit/"' in body
        assert 'name="name" value="Cats"' in body
        assert 'value="CC-BY-4.0"' in body
        assert '<option value="public" selected>' in body

    def test_a_viewer_sees_no_form_and_may_not_post(self, client, erin, cats):
        client.force_login(erin)
        before = as_stored(cats)

        page = client.get(page_url("cats"))
        refused = client.post(page_url("cats") + "edit/", form_data(name="Mine now"))

        assert page.status_code == 200
        assert 'data-testid="edit-form"' not in page.content.decode()
        assert refused.status_code == 403
        assert as_stored(cats) == before

    def test_another_team_gets_404(self, client, charlie, globex, cats):
        client.force_login(charlie)
        before = as_stored(cats)

        assert client.get(page_url("cats")).status_code == 404
        assert client.post(page_url("cats") + "edit/", form_data(name="Mine")).status_code == 404
        assert as_stored(cats) == before

    def test_the_form_saves_and_opens_the_page_at_its_new_address(self, alice, cats):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(alice)
        token = csrf_token(browser.get(page_url("cats")).content.decode())
        changes = form_data(name="Sleepy cats", description="Awake.", licence="CC0")

        refused = browser.post(page_url("cats") + "edit/", changes)
        response = browser.post(
            page_url("cats") + "edit/", {**changes, "csrfmiddlewaretoken": token}
        )

        assert refused.status_code == 403  # no CSRF token
        assert response.status_code == 302
        assert response["Location"] == page_url("sleepy-cats")
        body = browser.get(page_url("sleepy-cats")).content.decode()
        assert "Sleepy cats is saved." in body
        assert "Awake." in body
        assert as_stored(cats) == ("Sleepy cats", "sleepy-cats", "Awake.", "CC0", "public")
        assert browser.get(page_url("cats")).status_code == 404

    @pytest.mark.parametrize(
        ("name", "status", "message"),
        [
            ("Dogs", 409, "This team already has a dataset called Dogs."),
            ("   ", 400, "Give the dataset a name."),
            ("!!!", 400, "A name needs a letter or a digit."),
        ],
    )
    def test_a_refused_edit_shows_the_page_again_with_the_message(
        self, client, alice, cats, dogs, name, status, message
    ):
        ready_version(cats)
        client.force_login(alice)
        before = as_stored(cats)

        response = client.post(page_url("cats") + "edit/", form_data(name=name, licence="MIT"))

        assert response.status_code == status
        body = response.content.decode()
        assert message in body
        assert "field-invalid" in body  # next to the name field
        assert 'value="MIT"' in body  # what was typed stays in the form
        # Shown at .../edit/: its links still lead to the dataset's own page.
        assert 'href="/t/acme/datasets/cats/?version=1"' in body
        assert as_stored(cats) == before

    def test_a_free_team_is_told_its_datasets_stay_public(self, client, alice, cats, stripe_double):
        client.force_login(alice)

        response = client.post(page_url("cats") + "edit/", form_data(visibility="private"))

        assert response.status_code == 402
        body = response.content.decode()
        assert "On the Free plan datasets are public." in body
        assert 'class="upgrade-link"' in body
        assert as_stored(cats)[4] == "public"

    def test_the_edit_address_only_takes_posts(self, client, alice, cats):
        client.force_login(alice)

        before = as_stored(cats)

        assert client.get(page_url("cats") + "edit/").status_code == 405
        assert as_stored(cats) == before
        assert edits(cats.team) == []


class TestDeleteOnThePage:
    def test_the_name_typed_deletes_it_and_its_mounts_and_opens_the_list(
        self, acme, alice, catalogue, cats
    ):
        mounted(acme, alice, catalogue, ready_version(cats))
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(alice)
        body = browser.get(page_url("cats")).content.decode()
        form = body[body.index('data-testid="delete-form"') :]
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert found is not None

        wrong = browser.post(
            page_url("cats") + "delete/",
            {"confirmation": "cats", "csrfmiddlewaretoken": found.group(1)},
        )
        assert wrong.status_code == 400
        assert "Type the dataset&#x27;s name, Cats, to delete it." in wrong.content.decode()
        assert Dataset.objects.for_team(acme).filter(pk=cats.pk).exists()

        done = browser.post(
            page_url("cats") + "delete/",
            {"confirmation": " Cats ", "csrfmiddlewaretoken": found.group(1)},
        )
        assert done.status_code == 302
        assert done["Location"] == "/t/acme/datasets/"
        assert "Cats is deleted." in browser.get(done["Location"]).content.decode()
        assert not Dataset.objects.for_team(acme).filter(pk=cats.pk).exists()
        assert not NotebookMount.objects.for_team(acme).exists()

    def test_a_viewer_sees_no_delete_form_and_may_not_post(self, client, erin, cats):
        client.force_login(erin)

        page = client.get(page_url("cats")).content.decode()
        refused = client.post(page_url("cats") + "delete/", {"confirmation": "Cats"})

        assert 'data-testid="delete-form"' not in page
        assert refused.status_code == 403
        assert Dataset.objects.for_team(cats.team_id).filter(pk=cats.pk).exists()

    def test_another_team_gets_404_and_deletes_nothing(self, client, charlie, globex, cats):
        client.force_login(charlie)

        refused = client.post(page_url("cats") + "delete/", {"confirmation": "Cats"})

        assert refused.status_code == 404
        assert Dataset.objects.for_team(cats.team_id).filter(pk=cats.pk).exists()
