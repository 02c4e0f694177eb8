"""DELETE on an open upload (a dataset's or a model version's) abandons it: what it received
goes, it can no longer be completed, the team's audit says who; a complete one is refused
(409) and another team's is not found (404)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from rest_framework.test import APIClient

from apps.core.models import AuditEntry
from apps.core.tenancy import team_scope
from apps.datasets.models import Upload
from apps.datasets.services import dataset_create
from apps.models.models import ModelVersion
from tests.dataset_fixtures import sha

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db

CHUNK = 4  # bytes (tests.dataset_fixtures): DATA makes two chunks
DATA = b"abcdefgh"


@pytest.fixture
def api(alice: Any) -> APIClient:
    client = APIClient()
    client.force_login(alice)
    return client


@pytest.fixture
def cats(acme: Any, alice: Any, media: Path) -> Any:
    with team_scope(acme):
        return dataset_create(team=acme, actor=alice, name="Cats")


def base(team: Any) -> str:
    return f"/api/v1/teams/{team.slug}"


def dataset_upload(api: APIClient, team: Any) -> dict[str, Any]:
    files = [{"path": "f", "size": len(DATA), "sha256": sha(DATA)}]
    response = api.post(f"{base(team)}/datasets/cats/uploads/", {"files": files}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def put(api: APIClient, route: str, index: int) -> int:
    piece = DATA[index * 4 : (index + 1) * 4]
    response = api.put(
        f"{route}/blobs/{sha(DATA)}/chunks/{index}/",
        data=piece,
        content_type="application/octet-stream",
        HTTP_X_CHUNK_SHA256=sha(piece),
    )
    return response.status_code


def test_an_open_upload_is_abandoned_and_its_chunks_go(
    api: APIClient, acme: Any, cats: Any, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    upload = dataset_upload(api, acme)
    route = f"{base(acme)}/uploads/{upload['id']}"
    assert put(api, route, 0) == 204
    part = media / "datasets" / "uploads" / str(upload["id"]) / f"{sha(DATA)}.part"
    assert part.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"{route}/")

    assert response.status_code == 204, response.content
    assert not part.exists()
    assert Upload.objects.for_team(acme).get().status == Upload.Status.ABANDONED
    assert AuditEntry.objects.for_team(acme).filter(action="upload.abandoned").count() == 1
    assert api.get(f"{route}/").json()["status"] == "abandoned"
    assert api.post(f"{route}/complete/", format="json").status_code == 409
    assert api.delete(f"{route}/").status_code == 204  # once more: nothing changes
    assert AuditEntry.objects.for_team(acme).filter(action="upload.abandoned").count() == 1


def test_a_complete_upload_is_a_conflict(api: APIClient, acme: Any, cats: Any) -> None:
    upload = dataset_upload(api, acme)
    route = f"{base(acme)}/uploads/{upload['id']}"
    assert put(api, route, 0) == 204
    assert put(api, route, 1) == 204
    assert api.post(f"{route}/complete/", format="json").status_code == 201

    response = api.delete(f"{route}/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upload_complete"
    assert Upload.objects.for_team(acme).get().status == Upload.Status.COMPLETE


def test_another_teams_upload_is_not_found(
    api: APIClient, acme: Any, cats: Any, charlie: Any
) -> None:
    upload = dataset_upload(api, acme)
    outsider = APIClient()
    outsider.force_login(charlie)

    response = outsider.delete(f"{base(acme)}/uploads/{upload['id']}/")

    assert response.status_code == 404
    assert Upload.objects.for_team(acme).get().status == Upload.Status.OPEN


def test_a_model_versions_upload_is_abandoned_and_its_version_failed(
    api: APIClient, acme: Any, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    made = api.post(f"{base(acme)}/models/", {"name": "Iris", "licence": "MIT"}, format="json")
    assert made.status_code == 201, made.content
    files = [{"path": "model.pkl", "size": len(DATA), "sha256": sha(DATA)}]
    started = api.post(f"{base(acme)}/models/iris/versions/", {"files": files}, format="json")
    assert started.status_code == 201, started.content
    route = f"{base(acme)}/model-uploads/{started.json()['id']}"
    assert put(api, route, 0) == 204
    # A dataset's route does not reach a model's upload.
    assert api.delete(f"{base(acme)}/uploads/{started.json()['id']}/").status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"{route}/")

    assert response.status_code == 204, response.content
    assert Upload.objects.for_team(acme).get().status == Upload.Status.ABANDONED
    version = ModelVersion.objects.for_team(acme).get()
    assert version.status == ModelVersion.Status.FAILED
