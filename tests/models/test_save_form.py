"""The notebook page's "Save a folder as a model" form as a person posts it: a refusal
comes back on the page (400) next to its field with what was typed kept; a folder is
required ("." for all of /notebooks); an existing model and a new model's name are not
both taken (UI review 15, #2, #3, #10)."""

from __future__ import annotations

import re

import pytest

from apps.models.models import Model, ModelVersion, SaveTicket
from apps.notebooks import saves
from tests.models.test_save_tickets import running

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    sent: list[tuple] = []
    monkeypatch.setattr(
        saves.agent_save_folder, "apply_async", lambda args, queue: sent.append((*args, queue))
    )
    return sent


def post(client, notebook, **fields):
    return client.post(f"/t/acme/notebooks/{notebook.pk}/save-model/", fields)


def field_error(html: str, error_id: str) -> str:
    found = re.search(rf'id="{error_id}">([^<]*)<', html)
    return found.group(1) if found else ""


def test_a_folder_outside_notebooks_is_a_400_next_to_the_folder_with_the_typing_kept(
    acme, alice, catalogue, queued, client
):
    notebook = running(acme, alice)
    client.force_login(alice)

    response = post(
        client, notebook, folder="../etc", model_name="Churn", message="fit 2", format="onnx"
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "no &#x27;..&#x27; in it" in field_error(html, "save-folder-error")
    assert 'value="../etc"' in html
    assert 'value="Churn"' in html
    assert 'value="fit 2"' in html
    assert '<option value="onnx" selected>' in html
    assert queued == []
    assert not Model.objects.for_team(acme).exists()


def test_an_empty_folder_is_refused_saying_dot_saves_everything(
    acme, alice, catalogue, queued, client
):
    notebook = running(acme, alice)
    client.force_login(alice)

    response = post(client, notebook, folder="  ", model_name="Churn")

    assert response.status_code == 400
    assert "&#x27;.&#x27; saves all of /notebooks" in field_error(
        response.content.decode(), "save-folder-error"
    )
    assert queued == []
    # "." is all of /notebooks.
    assert post(client, notebook, folder=".", model_name="Churn").status_code == 302
    assert SaveTicket.objects.for_team(acme).get().folder == "/notebooks"


def test_a_model_chosen_and_a_new_name_typed_are_refused_on_the_name(
    acme, alice, catalogue, queued, client
):
    notebook = running(acme, alice)
    Model.objects.for_team(acme).create(team=acme, name="Iris", slug="iris")
    client.force_login(alice)

    response = post(client, notebook, folder="out", model="iris", model_name="Something")

    assert response.status_code == 400
    html = response.content.decode()
    assert "not both" in field_error(html, "save-model-name-error")
    assert '<option value="iris" selected>' in html
    assert queued == []
    assert not ModelVersion.objects.for_team(acme).exists()


def test_no_model_and_no_name_and_a_duplicate_name_are_refused_by_their_fields(
    acme, alice, catalogue, queued, client
):
    notebook = running(acme, alice)
    Model.objects.for_team(acme).create(team=acme, name="Iris", slug="iris")
    client.force_login(alice)

    empty = post(client, notebook, folder="out")
    duplicate = post(client, notebook, folder="out", model_name="Iris")

    assert empty.status_code == 400
    assert "name a new one" in field_error(empty.content.decode(), "save-model-error")
    assert duplicate.status_code == 409  # a conflict, as the models list's create form says
    assert "Iris" in field_error(duplicate.content.decode(), "save-model-name-error")
    assert 'value="out"' in duplicate.content.decode()
    assert queued == []


def test_the_api_refuses_an_empty_folder_and_both_model_and_name(
    acme, alice, catalogue, queued, client
):
    from tests.models.test_save_tickets import make_api

    notebook = running(acme, alice)
    Model.objects.for_team(acme).create(team=acme, name="Iris", slug="iris")
    url = f"/api/v1/teams/acme/notebooks/{notebook.pk}/save-model/"
    api = make_api(alice)

    empty = api.post(url, {"folder": "", "model": "iris"}, format="json")
    both = api.post(url, {"folder": "out", "model": "iris", "model_name": "X"}, format="json")

    assert empty.status_code == 400
    assert "folder" in empty.json()["error"]["fields"]
    assert both.status_code == 400
    assert "not both" in str(both.json()["error"])
    assert "model_name" in str(both.json()["error"])
    assert queued == []
