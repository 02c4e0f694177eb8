"""Fixes from the review of the models registry (REVIEW15): a failed version is never
completed, a deleted model's uploads are given up (409, not 500) and locked in one order,
version references are ASCII digits, chunk PUTs are streamed, and the rest below."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from apps.datasets.models import Dataset, Upload, UploadChunk
from apps.datasets.services.datasets import dataset_delete
from apps.datasets.services.errors import DatasetConflictError, DatasetError
from apps.datasets.services.naming import clean_team_name, named_changes_apply
from apps.datasets.services.uploads import _team_blobs
from apps.models.models import Model, ModelFile, ModelVersion, ModelVersionDataset, SaveTicket
from apps.models.services.errors import ModelConflictError, ModelError
from apps.models.services.registry import model_delete
from tests.dataset_fixtures import make_version
from tests.model_fixtures import make_model_version
from tests.models import test_save_tickets
from tests.models.test_api import base
from tests.models.test_api import start as api_start
from tests.models.test_save_tickets import DATA, MANIFEST, running, start, version_of

queued = test_save_tickets.queued  # the agent's tasks, as the save tests catch them


def _api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _host_sends_its_chunk(host):
    assert host.post("manifest", MANIFEST).status_code == 200
    sha = MANIFEST["files"][0]["sha256"]
    target = host.post(f"blobs/{sha}/chunks/0/target", {"sha256": sha}).json()
    assert host.put(target["url"], DATA, sha).status_code == 200
    return sha


# --- #1 a failed version is never completed -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failed_save_gives_up_its_upload_and_cannot_be_completed(
    acme, alice, catalogue, media, queued, client
):
    ticket, host = start(acme, alice, queued, client)
    sha = _host_sends_its_chunk(host)
    failed = host.post("fail", {"reason": "a file changed while it was read", "path": "model.bin"})
    assert failed.status_code == 200

    upload = Upload.objects.for_team(acme).get()
    assert upload.status == Upload.Status.ABANDONED
    assert not UploadChunk.objects.for_team(acme).exists() or sha not in _team_blobs(acme)
    assert sha not in _team_blobs(acme)  # no longer counted against the quota

    refused = _api(alice).post(f"{base(acme)}/model-uploads/{upload.pk}/complete/", format="json")

    assert refused.status_code == 409
    version = version_of(ticket)
    assert version.status == ModelVersion.Status.FAILED
    assert version.number is None
    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.FAILED


@pytest.mark.django_db(transaction=True)
def test_finishing_a_failed_version_whose_upload_is_open_is_refused(acme, alice, media):
    # Even an upload left open (by a path that forgot to give it up) makes nothing.
    api = _api(alice)
    assert api.post(f"{base(acme)}/models/", {"name": "Iris"}, format="json").status_code == 201
    files = {"w.bin": b"abcd"}
    up = api_start(api, acme, "iris", files).json()
    sha = hashlib.sha256(files["w.bin"]).hexdigest()
    assert (
        api.put(
            f"{base(acme)}/model-uploads/{up['id']}/blobs/{sha}/chunks/0/",
            data=files["w.bin"],
            content_type="application/octet-stream",
            HTTP_X_CHUNK_SHA256=sha,
        ).status_code
        == 204
    )
    ModelVersion.objects.for_team(acme).filter(upload_id=up["id"]).update(
        status=ModelVersion.Status.FAILED, failure="broken"
    )

    refused = api.post(f"{base(acme)}/model-uploads/{up['id']}/complete/", format="json")

    assert refused.status_code == 409
    assert "failed" in str(refused.json())
    assert not ModelVersion.objects.for_team(acme).filter(status="ready").exists()
    assert Upload.objects.for_team(acme).get().status == Upload.Status.OPEN


# --- #2 deleting a model with an open upload ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deleting_a_model_mid_upload_gives_the_upload_up_and_completing_it_is_409(
    acme, alice, media
):
    api = _api(alice)
    assert api.post(f"{base(acme)}/models/", {"name": "Iris"}, format="json").status_code == 201
    files = {"w.bin": b"abcd"}
    up = api_start(api, acme, "iris", files).json()
    sha = hashlib.sha256(files["w.bin"]).hexdigest()
    put = api.put(
        f"{base(acme)}/model-uploads/{up['id']}/blobs/{sha}/chunks/0/",
        data=files["w.bin"],
        content_type="application/octet-stream",
        HTTP_X_CHUNK_SHA256=sha,
    )
    assert put.status_code == 204
    assert api.delete(f"{base(acme)}/models/iris/?confirm=Iris").status_code == 204

    assert Upload.objects.for_team(acme).get().status == Upload.Status.ABANDONED
    assert sha not in _team_blobs(acme)
    answer = api.post(f"{base(acme)}/model-uploads/{up['id']}/complete/", format="json")
    assert answer.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_deleting_a_model_mid_save_ends_the_hosts_ticket(
    acme, alice, catalogue, media, queued, client
):
    _ticket, host = start(acme, alice, queued, client)
    _host_sends_its_chunk(host)
    model = Model.objects.for_team(acme).get()

    model_delete(team=acme, actor=alice, model=model, confirmation=model.name)

    assert Upload.objects.for_team(acme).get().status == Upload.Status.ABANDONED
    refused = host.post("complete")
    assert refused.status_code == 403
    assert refused.json()["code"] == "ticket_invalid"


@pytest.mark.django_db(transaction=True)
def test_deleting_a_model_while_its_upload_completes_takes_the_locks_in_one_order(
    postgres, acme, alice, media
):
    """A completion holds the upload, then the model, then the version (versions._finish);
    model_delete takes the upload, then the model: no deadlock either way round."""
    api = _api(alice)
    assert api.post(f"{base(acme)}/models/", {"name": "Iris"}, format="json").status_code == 201
    up = api_start(api, acme, "iris", {"w.bin": b"abcd"}).json()
    model = Model.objects.for_team(acme).get()
    version = ModelVersion.objects.for_team(acme).get()
    errors: list[tuple[str, str]] = []
    held = threading.Event()

    def finish_like() -> None:
        try:
            with transaction.atomic():
                Upload.objects.for_team(acme).select_for_update().get(pk=up["id"])
                held.set()
                time.sleep(0.5)
                Model.objects.for_team(acme).select_for_update().get(pk=model.pk)
                ModelVersion.objects.for_team(acme).select_for_update().get(pk=version.pk)
        except Exception as error:
            errors.append(("finish", repr(error)))
        finally:
            connection.close()

    def delete() -> None:
        held.wait()
        try:
            model_delete(team=acme, actor=alice, model=model, confirmation="Iris")
        except Exception as error:
            errors.append(("delete", repr(error)))
        finally:
            connection.close()

    threads = [threading.Thread(target=finish_like), threading.Thread(target=delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert not Model.objects.for_team(acme).exists()


# --- #5 a version reference is ASCII digits ---------------------------------------------------


@pytest.mark.django_db
def test_a_version_reference_with_a_digit_that_is_not_ascii_is_404_not_500(acme, alice, media):
    make_model_version(acme, alice, "Iris", {"a": b"1"})
    api = _api(alice)
    api.raise_request_exception = False

    for url in (
        f"{base(acme)}/models/iris/versions/\u00b2/",
        f"{base(acme)}/models/iris/versions/\u00b2/archive/",
        f"{base(acme)}/models/iris/diff/\u00b2/1/",
        f"{base(acme)}/models/iris/versions/\u0661/",  # an Arabic-Indic one
    ):
        assert api.get(url).status_code == 404, url
    assert api.get(f"{base(acme)}/models/iris/versions/1/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_notebook_pages_save_form_ignores_a_parent_it_does_not_have(
    acme, alice, catalogue, queued, client
):
    notebook = running(acme, alice)
    client.force_login(alice)
    client.raise_request_exception = False

    response = client.post(
        f"/t/{acme.slug}/notebooks/{notebook.pk}/save-model/",
        {"folder": "out", "model_name": "X", "parent": "\u00b2"},
    )

    assert response.status_code == 302
    assert ModelVersion.objects.for_team(acme).get().parent is None


# --- #13 the version page lists the same children as the API ---------------------------------


@pytest.mark.django_db
def test_the_version_page_lists_children_in_every_model_of_the_team_as_the_api_does(
    acme, alice, media, client
):
    base_version = make_model_version(acme, alice, "Iris", {"a": b"1"})
    same = make_model_version(acme, alice, "Iris", {"a": b"2"}, parent=base_version.pk)
    tuned = make_model_version(acme, alice, "Iris tuned", {"a": b"3"}, parent=base_version.pk)
    client.force_login(alice)

    page = client.get(f"/t/{acme.slug}/models/iris/v/1/").content.decode()
    children = page.split('data-testid="children">', 1)[1].split("</dd>", 1)[0]
    api = _api(alice).get(f"{base(acme)}/models/iris/versions/1/").json()

    assert api["lineage"]["children"] == [
        {"model": "iris", "number": same.number},
        {"model": "iris-tuned", "number": tuned.number},
    ]
    assert f"/t/{acme.slug}/models/iris/v/{same.number}/" in children
    assert f"/t/{acme.slug}/models/iris-tuned/v/{tuned.number}/" in children
    assert "Iris tuned v1" in children


# --- #8 lineage outlives a deleted dataset; #12 the schema says what the API returns ---------


@pytest.mark.django_db
def test_deleting_a_dataset_keeps_the_lineage_as_a_label_on_the_page_and_in_the_api(
    acme, alice, media, client
):
    flowers = make_version(acme, "Flowers", {"a.csv": b"1,2"})
    version = make_model_version(acme, alice, "Iris", {"m": b"w"}, dataset_versions=[flowers.pk])
    api = _api(alice)
    before = api.get(f"{base(acme)}/models/iris/versions/1/").json()["lineage"]
    assert before["dataset_versions"] == [
        {
            "id": flowers.pk,
            "team": acme.slug,
            "dataset": "flowers",
            "name": "Flowers",
            "number": flowers.number,
            "label": f"Flowers v{flowers.number}",
            "deleted": False,
        }
    ]

    dataset_delete(team=acme, actor=alice, dataset=flowers.dataset, confirmation="Flowers")

    link = ModelVersionDataset.objects.for_team(acme).get(version=version)
    assert link.dataset_version is None
    assert link.label == f"Flowers v{flowers.number}"
    after = api.get(f"{base(acme)}/models/iris/versions/1/").json()["lineage"]
    assert after["dataset_versions"] == [
        {
            "id": None,
            "team": None,
            "dataset": None,
            "name": None,
            "number": None,
            "label": f"Flowers v{flowers.number}",
            "deleted": True,
        }
    ]
    client.force_login(alice)
    page = client.get(f"/t/{acme.slug}/models/iris/v/1/").content.decode()
    shown = page.split('data-testid="lineage-datasets">', 1)[1].split("</dd>", 1)[0]
    assert f"Flowers v{flowers.number} (deleted)" in shown


@pytest.mark.django_db
def test_another_teams_dataset_made_private_then_deleted_is_never_named(
    acme, alice, globex, charlie, media, client
):
    secret = make_version(globex, "Secret plans", {"a.csv": b"1"})
    secret.dataset.visibility = Dataset.Visibility.PUBLIC
    secret.dataset.save(update_fields=["visibility"])
    version = make_model_version(acme, alice, "Iris", {"m": b"w"}, dataset_versions=[secret.pk])
    # Readable when linked: its label is kept. Made private: the lineage leaves it out.
    secret.dataset.visibility = Dataset.Visibility.PRIVATE
    secret.dataset.save(update_fields=["visibility"])
    api = _api(alice)
    assert (
        api.get(f"{base(acme)}/models/iris/versions/1/").json()["lineage"]["dataset_versions"] == []
    )
    client.force_login(alice)
    assert "Secret" not in client.get(f"/t/{acme.slug}/models/iris/v/1/").content.decode()
    assert ModelVersionDataset.objects.for_team(acme).get(version=version).label


@pytest.mark.django_db
def test_the_schema_declares_the_lineage_the_api_returns(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    ref = schema["components"]["schemas"]["DatasetVersionRef"]
    assert set(ref["properties"]) == {
        "id",
        "team",
        "dataset",
        "name",
        "number",
        "label",
        "deleted",
    }
    lineage = schema["components"]["schemas"]["ModelLineage"]["properties"]
    assert lineage["parent"]["allOf"][0]["$ref"].endswith("/VersionRef") or lineage["parent"].get(
        "$ref", ""
    ).endswith("/VersionRef")
    assert lineage["children"]["items"]["$ref"].endswith("/VersionRef")


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_existing_links_and_labels_only_what_the_team_could_read(
    acme, alice, globex, media
):
    from django.db.migrations.executor import MigrationExecutor

    mine = make_version(acme, "Flowers", {"a.csv": b"1"})
    public = make_version(globex, "Open data", {"b.csv": b"2"})
    public.dataset.visibility = Dataset.Visibility.PUBLIC
    public.dataset.save(update_fields=["visibility"])
    private = make_version(globex, "Secret plans", {"c.csv": b"3"})
    before = [("models", "0002_save_ticket")]
    after = [("models", "0003_modelversiondataset")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    version = old.get_model("models", "ModelVersion").objects.create(
        team_id=acme.pk,
        model=old.get_model("models", "Model").objects.create(
            team_id=acme.pk, name="Iris", slug="iris", created_by_id=alice.pk
        ),
        created_by_id=alice.pk,
    )
    # A link to another team's private version cannot be made now; an old row may hold one.
    version.dataset_versions.set([mine.pk, public.pk, private.pk])

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    # Back to every app's newest state: going back to models 0002 also unapplied the apps
    # that depend on models (deployments), which the later tests need.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    labels = dict(
        ModelVersionDataset.objects.for_team(acme)
        .filter(version_id=version.pk)
        .values_list("dataset_version_id", "label")
    )
    assert labels == {
        mine.pk: f"Flowers v{mine.number}",
        public.pk: f"Open data v{public.number}",
        private.pk: "",
    }


# --- #7 a version's files a page at a time -----------------------------------------------------


def _many_files(team, actor, count):
    version = make_model_version(team, actor, "Big", {"a": b"1"})
    blob = ModelFile.objects.for_team(team).get(version=version).blob
    ModelFile.objects.for_team(team).bulk_create(
        ModelFile(team=team, version=version, path=f"d/f{i:05d}", blob=blob, size=1)
        for i in range(count - 1)
    )
    return version


@pytest.mark.django_db
def test_the_version_page_shows_200_files_a_page(acme, alice, media, client):
    _many_files(acme, alice, 450)
    client.force_login(alice)

    first = client.get(f"/t/{acme.slug}/models/big/v/1/").content.decode()
    last = client.get(f"/t/{acme.slug}/models/big/v/1/?page=3").content.decode()

    def rows(page: str) -> int:
        table = page.split('data-testid="file-list">', 1)[1].split("</table>", 1)[0]
        return table.count("<tr>") - 1  # the head's row

    assert rows(first) == 200
    assert "Files 1\u2013200 of 450" in first
    assert 'href="/t/acme/models/big/v/1/?page=2">Next' in first
    assert rows(last) == 50
    assert "Files 401\u2013450 of 450" in last


@pytest.mark.django_db
def test_the_api_version_detail_lists_a_bounded_first_page_and_the_files_route_pages(
    acme, alice, media, monkeypatch
):
    from apps.models.api import views

    monkeypatch.setattr(views, "FILES_IN_DETAIL", 10)
    _many_files(acme, alice, 25)
    api = _api(alice)

    detail = api.get(f"{base(acme)}/models/big/versions/1/").json()
    assert [f["path"] for f in detail["files"]] == ["a"] + [f"d/f{i:05d}" for i in range(9)]
    assert detail["file_count"] == 1  # as the version was made; its files are the route's
    assert detail["files_next"].endswith(f"{base(acme)}/models/big/versions/1/files/")

    paths: list[str] = []
    url = f"{detail['files_next']}?page_size=10"
    while url:
        page = api.get(url).json()
        assert len(page["results"]) <= 10
        paths += [f["path"] for f in page["results"]]
        url = page["next"]
    assert paths == ["a"] + [f"d/f{i:05d}" for i in range(24)]
    assert set(page["results"][0]) == {"path", "size", "sha256"}

    small = make_model_version(acme, alice, "Small", {"a": b"2"})
    assert (
        api.get(f"{base(acme)}/models/small/versions/{small.number}/").json()["files_next"] is None
    )
    assert api.get(f"{base(acme)}/models/small/versions/9/files/").status_code == 404


# --- #10 one name check for datasets and models ----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("noun", "model_cls", "error", "conflict", "make"),
    [
        ("dataset", Dataset, DatasetError, DatasetConflictError, "dataset_create"),
        ("model", Model, ModelError, ModelConflictError, "model_create"),
    ],
)
def test_one_shared_name_check_serves_datasets_and_models(
    acme, alice, noun, model_cls, error, conflict, make
):
    from apps.datasets.services import datasets as dataset_services
    from apps.models.services import registry

    create = getattr(dataset_services if noun == "dataset" else registry, make)
    made = create(team=acme, actor=alice, name="  Iris   flowers ")
    assert (made.name, made.slug) == ("Iris flowers", "iris-flowers")

    def refused(name, **kwargs):
        with pytest.raises(error) as caught:
            clean_team_name(
                model_cls, acme, name, noun=noun, error=error, conflict=conflict, **kwargs
            )
        return caught.value

    assert str(refused("  ")) == f"Give the {noun} a name."
    assert str(refused("x" * 81)) == "A name is at most 80 characters."
    assert str(refused("!!!")) == "A name needs a letter or a digit."
    assert "text-direction" in str(refused("ab\u202ecd"))
    taken = refused("Iris Flowers")
    assert isinstance(taken, conflict)
    assert str(taken) == f"This team already has a {noun} called Iris Flowers."
    assert clean_team_name(
        model_cls,
        acme,
        "Iris Flowers",
        noun=noun,
        error=error,
        conflict=conflict,
        exclude=made.pk,
    ) == ("Iris Flowers", "iris-flowers")

    changed = named_changes_apply(
        acme,
        made,
        name="Iris 2",
        description="d",
        licence=None,
        noun=noun,
        error=error,
        conflict=conflict,
    )
    assert changed == ["name", "description"]
    assert (made.name, made.slug, made.description) == ("Iris 2", "iris-2", "d")


# --- #11 a save in progress on the model page says only what is known ------------------------


@pytest.mark.django_db(transaction=True)
def test_the_model_page_shows_a_save_in_progress_in_sizes_and_never_of_0(
    acme, alice, catalogue, media, queued, client
):
    ticket, host = start(acme, alice, queued, client)
    client.force_login(alice)

    def line() -> str:
        page = client.get(f"/t/{acme.slug}/models/churn/").content.decode()
        return page.split(f'data-testid="unready-{ticket.version_id}">', 1)[1].split("</li>")[0]

    waiting = line()
    assert "waiting for the notebook's host" in waiting
    assert "0 files" not in waiting
    assert "0\xa0bytes" not in waiting

    host.post("progress", {"phase": "reading", "done": 734003200, "total": 0})
    reading = line()
    assert "reading 700.0\xa0MB" in reading
    assert " of " not in reading
    assert "0 files" not in reading
    assert "734003200" not in reading

    assert host.post("manifest", MANIFEST).status_code == 200
    host.post("progress", {"phase": "sending", "done": 3, "total": len(DATA)})
    sending = line()
    assert f"1 file, {len(DATA)}\xa0bytes" in sending
    assert f"sending 3\xa0bytes of {len(DATA)}\xa0bytes" in sending
