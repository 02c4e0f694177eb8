"""The model pages through Django's test client: the list and its create form, a model's
versions, aliases (moved and removed through the forms), edit and delete; a version's
files, metadata and lineage; downloads; the diff; what a viewer and an outsider get; and
a dataset version's page listing the models trained on it. Uploading from the browser is
tests/browser/test_model_pages.py."""

from __future__ import annotations

import io
import re
import tarfile
from typing import TYPE_CHECKING, Any

import pytest
from django.urls import reverse

from apps.core.models import AuditEntry
from apps.models import hooks
from apps.models.models import Model, ModelAlias, ModelVersion
from apps.models.services.aliases import alias_set
from tests.dataset_fixtures import make_version
from tests.model_fixtures import make_model_version

if TYPE_CHECKING:
    from apps.teams.models import Team

pytestmark = pytest.mark.django_db

FILES = {"model.joblib": b"weights-0123456789", "predict.py": b"def predict(x):\n    return x\n"}


def text(response: Any) -> str:
    return response.content.decode()


def page(name: str, *args: Any) -> str:
    return reverse(f"models:{name}", args=["acme", *args])


@pytest.fixture
def iris(acme, alice, media) -> tuple[ModelVersion, ModelVersion]:
    """Two versions of Iris: v2 changes model.joblib, adds notes.txt, and says where it
    came from (a dataset version, v1 as its parent); production names v1."""
    cats = make_version(acme, "Cats", {"a.csv": b"1,2\n"})
    first = make_model_version(acme, alice, "Iris", FILES, message="first", format="sklearn")
    second = make_model_version(
        acme,
        alice,
        first.model,
        {**FILES, "model.joblib": b"weights-9876543210!", "notes.txt": b"hello"},
        message="retrained",
        format="python",
        metadata={
            "metrics": {"accuracy": 0.97, "f1": 0.95},
            "parameters": {"max_iter": 200},
            "base_model": "none",
            "layers": [1, 2, 3],
        },
        io_schema={"inputs": {"sepal_length": "number"}},
        dataset_versions=[cats.pk],
        parent=first.pk,
        source_label="Notebook Trainer, session 7",
    )
    alias_set(team=acme, actor=alice, model=first.model, name="production", version=first)
    return first, second


def test_the_list_shows_each_model_with_its_latest_version_and_aliases(client, alice, iris):
    client.force_login(alice)

    response = client.get(page("list"))

    assert response.status_code == 200
    body = text(response)
    assert 'data-testid="model-list"' in body
    assert "Iris" in body
    assert page("version", "iris", 2) in body  # the latest
    assert "production → v1" in body
    assert 'data-testid="create-form"' in body
    # The sidebar and the team's tabs lead here.
    assert body.count(f'href="{page("list")}"') >= 2


def test_the_owner_makes_a_model_and_is_sent_to_upload_its_first_version(client, alice, acme):
    client.force_login(alice)

    response = client.post(
        page("list"), {"name": "Spam filter", "description": "Says no.", "licence": "MIT"}
    )

    assert response.status_code == 302
    assert response["Location"] == page("upload", "spam-filter")
    model = Model.objects.for_team(acme).get()
    assert (model.name, model.description, model.licence) == ("Spam filter", "Says no.", "MIT")
    assert AuditEntry.objects.for_team(acme).filter(action="model.created").count() == 1

    again = client.post(page("list"), {"name": "Spam  filter"})
    assert again.status_code == 409
    assert "already has a model called Spam filter" in text(again)


def test_the_model_page_shows_versions_aliases_and_the_owners_forms(client, alice, iris):
    client.force_login(alice)

    body = text(client.get(page("detail", "iris")))

    for shown in ("v1", "v2", "first", "retrained", "scikit-learn / joblib", "Alice"):
        assert shown in body, shown
    assert "Notebook Trainer, session 7" in body
    for form in ("alias-form", "edit-form", "delete-form", "diff-form", "upload-link"):
        assert f'data-testid="{form}"' in body, form
    assert 'data-testid="remove-production"' in body


def test_the_upload_page_is_the_datasets_uploader_on_the_models_api(client, alice, iris):
    client.force_login(alice)

    response = client.get(page("upload", "iris"))

    assert response.status_code == 200
    body = text(response)
    assert 'id="dataset-upload"' in body
    assert 'data-uploads-url="/api/v1/teams/acme/models/iris/versions/"' in body
    assert 'data-upload-base="/api/v1/teams/acme/model-uploads/"' in body
    assert 'data-version-url="/t/acme/models/iris/v/{number}/"' in body
    assert 'data-storage-key="lattice:model-upload:acme/iris"' in body
    assert 'data-start-field="format"' in body
    assert 'data-start-field="metadata" data-json' in body
    assert "webkitdirectory" in body
    assert "/static/js/dataset-upload.js" in body
    assert "allow-identical" not in body  # the same files are the same version
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)  # the CSP forbids inline script
    assert "the latest is version 2" in body


def test_the_version_page_shows_files_metadata_lineage_and_servers(client, alice, acme, iris):
    _, second = iris
    client.force_login(alice)

    body = text(client.get(page("version", "iris", 2)))

    assert page("file", "iris", 2, "notes.txt") in body
    assert page("archive", "iris", 2) in body
    assert second.digest in body
    assert "Python predictor (predict.py)" in body
    # Metrics and parameters as tables of their own; a plain value in the first table;
    # anything deeper as JSON.
    assert 'data-testid="metadata-metrics"' in body
    assert '<th scope="row">accuracy</th><td>0.97</td>' in body
    assert '<th scope="row">max_iter</th><td>200</td>' in body
    assert '<th scope="row">base_model</th><td>none</td>' in body
    assert "[1, 2, 3]" in body
    assert "sepal_length" in body  # the schema
    # Lineage: the label (no app links the source), the dataset version, the parent.
    assert "Notebook Trainer, session 7" in body
    assert "/t/acme/datasets/cats/?version=1" in body
    assert f'href="{page("version", "iris", 1)}"' in body
    assert "No deployment serves this version." in body

    parent = text(client.get(page("version", "iris", 1)))
    assert f'href="{page("version", "iris", 2)}"' in parent  # its child
    assert 'data-testid="alias-badge">production' in parent


def test_the_version_page_links_what_the_apps_above_say(client, alice, iris):
    """source_link and version_servers (apps.models.hooks) are how a notebook and a
    deployment show on the page."""
    client.force_login(alice)

    def source(team: Team, version: ModelVersion) -> tuple[str, str]:
        return "Trainer", f"/t/{team.slug}/notebooks/7/"

    def servers(team: Team, version: ModelVersion) -> list[tuple[str, str]]:
        return [(f"iris-prod v{version.number}", f"/t/{team.slug}/deploy/1/")]

    with hooks.source_link.override(source), hooks.version_servers.override(servers):
        body = text(client.get(page("version", "iris", 2)))

    assert '<a href="/t/acme/notebooks/7/">Trainer</a>' in body
    assert '<a href="/t/acme/deploy/1/">iris-prod v2</a>' in body
    assert "No deployment serves this version." not in body


def test_a_file_and_the_whole_version_download(client, alice, iris):
    client.force_login(alice)

    one = client.get(page("file", "iris", 1, "predict.py"))
    assert one.status_code == 200
    assert b"".join(one.streaming_content) == FILES["predict.py"]
    assert client.get(page("file", "iris", 1, "nothing.txt")).status_code == 404
    assert client.get(page("file", "iris", 9, "predict.py")).status_code == 404

    archive = client.get(page("archive", "iris", 1))
    assert archive["Content-Disposition"] == 'attachment; filename="iris-v1.tar"'
    with tarfile.open(fileobj=io.BytesIO(b"".join(archive.streaming_content))) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == {f"iris-v1/{p}": data for p, data in FILES.items()}


def test_the_diff_lists_files_added_removed_changed_and_unchanged(client, alice, iris):
    client.force_login(alice)

    picker = text(client.get(page("diff", "iris")))
    assert 'data-testid="diff-form"' in picker

    body = text(client.get(page("diff", "iris") + "?from=1&to=2"))
    assert "1 added, 0 removed, 1 changed, 1 unchanged." in body
    assert '<tr data-change="added"><td>notes.txt</td>' in body
    assert '<tr data-change="changed"><td>model.joblib</td>' in body
    assert "18\xa0bytes → 19\xa0bytes" in body  # filesizeformat keeps a number with its unit
    assert '<tr data-change="unchanged"><td>predict.py</td>' in body

    back = text(client.get(page("diff", "iris") + "?from=2&to=1"))
    assert '<tr data-change="removed"><td>notes.txt</td>' in back
    assert client.get(page("diff", "iris") + "?from=1&to=7").status_code == 404


def test_the_alias_form_moves_an_alias_and_removes_one(client, alice, acme, iris):
    _, second = iris
    client.force_login(alice)

    moved = client.post(page("alias_set", "iris"), {"name": "production", "version": "2"})

    assert moved.status_code == 302
    alias = ModelAlias.objects.for_team(acme).get(name="production")
    assert alias.version == second
    moves = AuditEntry.objects.for_team(acme).filter(action="model.alias_moved").order_by("pk")
    entry = moves.last()
    assert entry is not None
    assert (entry.target, entry.data.get("to"), entry.data.get("previous")) == (
        "Iris@production",
        "v2",
        "v1",
    )
    assert "production now names version 2" in text(client.get(page("detail", "iris")))

    wrong = client.post(page("alias_set", "iris"), {"name": "latest", "version": "1"})
    assert wrong.status_code == 400
    assert "always means the newest version" in text(wrong)
    missing = client.post(page("alias_set", "iris"), {"name": "staging", "version": "9"})
    assert missing.status_code == 400
    assert "Iris has no version 9." in text(missing)

    removed = client.post(page("alias_remove", "iris"), {"name": "production"})
    assert removed.status_code == 302
    assert not ModelAlias.objects.for_team(acme).exists()
    assert "The alias production is removed." in text(client.get(page("detail", "iris")))


def test_the_owner_edits_and_deletes_a_model(client, alice, acme, iris):
    client.force_login(alice)

    edited = client.post(
        page("edit", "iris"), {"name": "Iris flowers", "description": "Three kinds", "licence": ""}
    )
    assert edited.status_code == 302
    assert edited["Location"] == page("detail", "iris-flowers")

    wrong = client.post(page("delete", "iris-flowers"), {"confirmation": "Iris"})
    assert wrong.status_code == 400
    assert "Type the model&#x27;s name, Iris flowers, to delete it." in text(wrong)
    assert Model.objects.for_team(acme).exists()

    gone = client.post(page("delete", "iris-flowers"), {"confirmation": "Iris flowers"})
    assert gone.status_code == 302
    assert gone["Location"] == page("list")
    assert not Model.objects.for_team(acme).exists()
    assert not ModelVersion.objects.for_team(acme).exists()


def test_a_viewer_reads_every_page_but_gets_no_write_form_and_no_write(client, erin, acme, iris):
    client.force_login(erin)

    listing = text(client.get(page("list")))
    detail = text(client.get(page("detail", "iris")))
    assert "Iris" in listing
    assert 'data-testid="create-form"' not in listing
    for form in ("alias-form", "edit-form", "delete-form", "upload-link", "remove-production"):
        assert f'data-testid="{form}"' not in detail, form
    assert 'data-testid="diff-form"' in detail  # reading, not writing
    assert client.get(page("version", "iris", 2)).status_code == 200
    assert client.get(page("archive", "iris", 2)).status_code == 200

    assert client.get(page("upload", "iris")).status_code == 403
    for name, data in (
        ("alias_set", {"name": "production", "version": "2"}),
        ("alias_remove", {"name": "production"}),
        ("edit", {"name": "Mine"}),
        ("delete", {"confirmation": "Iris"}),
    ):
        assert client.post(page(name, "iris"), data).status_code == 403, name
    assert client.post(page("list"), {"name": "Mine"}).status_code == 403
    assert ModelAlias.objects.for_team(acme).get().version.number == 1
    assert list(Model.objects.for_team(acme).values_list("name", flat=True)) == ["Iris"]


def test_an_outsider_gets_404_for_every_model_page(client, charlie, globex, iris):
    client.force_login(charlie)

    for path in (
        page("list"),
        page("detail", "iris"),
        page("version", "iris", 1),
        page("file", "iris", 1, "predict.py"),
        page("archive", "iris", 1),
        page("diff", "iris") + "?from=1&to=2",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "retrained" not in text(response)
    assert client.post(page("alias_set", "iris"), {"name": "x", "version": "1"}).status_code == 404


def test_a_dataset_versions_page_lists_the_models_trained_on_it(client, alice, iris):
    client.force_login(alice)

    body = text(client.get("/t/acme/datasets/cats/?version=1"))

    assert f'<a href="{page("version", "iris", 2)}">Iris v2</a>' in body
    empty = make_version(iris[0].team, "Dogs", {"b.csv": b"3\n"})
    other = text(client.get(f"/t/acme/datasets/{empty.dataset.slug}/?version=1"))
    assert "No model version records this dataset version in its lineage." in other


# --- UI review 15 ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_alias_refused_keeps_the_version_posted_selected(client, alice, iris):
    client.force_login(alice)

    response = client.post(page("alias_set", "iris"), {"name": "Bad Alias!", "version": "1"})

    assert response.status_code == 400
    body = text(response)
    select = re.search(r'<select id="alias_version".*?</select>', body, re.S)
    assert select is not None
    assert '<option value="1" selected>' in select.group(0)
    assert '<option value="2" selected>' not in select.group(0)
    assert 'value="Bad Alias!"' in body
    # The top of the page points to the form that was not saved.
    assert 'data-testid="form-problem"' in body
    assert '<a href="#aliases">' in body


@pytest.mark.django_db
def test_an_edit_refused_is_pointed_to_from_the_top(client, alice, iris):
    client.force_login(alice)

    response = client.post(page("edit", "iris"), {"name": ""})

    assert response.status_code == 400
    assert '<a href="#edit">see Edit</a>' in text(response)


@pytest.mark.django_db
def test_a_get_on_a_post_only_route_goes_to_the_models_page(client, alice, iris):
    client.force_login(alice)

    for name in ("alias_set", "alias_remove", "edit", "delete"):
        response = client.get(page(name, "iris"))
        assert response.status_code == 302, name
        assert response["Location"] == page("detail", "iris"), name
    assert ModelAlias.objects.for_team(iris[0].team).filter(name="production").exists()
    assert Model.objects.for_team(iris[0].team).filter(slug="iris").exists()


@pytest.mark.django_db
def test_removing_an_alias_asks_first_saying_what_follows_it(client, alice, iris):
    client.force_login(alice)

    body = text(client.get(page("detail", "iris")))

    step = re.search(r'<details class="confirm-remove"[^>]*>(.*?)</details>', body, re.S)
    assert step is not None
    assert 'data-testid="remove-production"' in step.group(1)  # the summary that opens it
    assert "production names v1; deployments following it stop resolving." in step.group(1)
    assert 'aria-label="Yes, remove the alias production"' in step.group(1)


@pytest.mark.django_db
def test_the_newest_version_is_marked_latest_and_an_older_one_points_to_it(client, alice, iris):
    client.force_login(alice)

    detail = text(client.get(page("detail", "iris")))
    older = text(client.get(page("version", "iris", 1)))
    newest = text(client.get(page("version", "iris", 2)))

    assert detail.count('data-testid="latest-badge"') == 1
    row = re.search(r'v2</a>[^<]*<span class="badge" data-testid="latest-badge"', detail)
    assert row is not None
    assert 'data-testid="newer-version"' in older
    assert "A newer version exists:" in older
    assert f'href="{page("version", "iris", 2)}">v2</a>' in older
    assert 'data-testid="newer-version"' not in newest
    assert 'data-testid="latest-badge"' in newest


@pytest.mark.django_db
def test_a_version_page_address_takes_an_alias_or_latest(client, alice, iris):
    client.force_login(alice)

    by_alias = client.get("/t/acme/models/iris/v/production/")
    latest = client.get("/t/acme/models/iris/v/latest/")

    assert by_alias.status_code == 302
    assert by_alias["Location"] == page("version", "iris", 1)
    assert latest.status_code == 302
    assert latest["Location"] == page("version", "iris", 2)
    assert client.get("/t/acme/models/iris/v/nothing/").status_code == 404
    assert client.get("/t/acme/models/iris/v/%C2%B2/").status_code == 404


@pytest.mark.django_db
def test_the_use_it_card_gives_curl_lines_that_work_with_a_models_read_token(client, alice, iris):
    import html as html_module

    from tests.helpers import bearer, make_token

    first, second = iris
    alias_set(team=first.team, actor=alice, model=first.model, name="staging", version=second)
    client.force_login(alice)

    newest = text(client.get(page("version", "iris", 2)))
    older = text(client.get(page("version", "iris", 1)))

    assert "models:read" in newest
    commands = {
        ref: html_module.unescape(found)
        for ref, found in re.findall(
            r'data-testid="use-([^"]+)" tabindex="0"><code>([^<]*)</code>', newest
        )
    }
    assert set(commands) == {"2", "staging", "latest", "python"}
    api = bearer(make_token(alice, ["models:read"])[1])
    for ref in ("2", "staging", "latest"):
        command = commands[ref]
        assert command.startswith(
            'curl -fL -H "Authorization: Bearer $LATTICE_TOKEN" -o iris-v2.tar http://'
        )
        path = "/" + command.split("://", 1)[1].split("/", 1)[1]
        assert path == f"/api/v1/teams/acme/models/iris/versions/{ref}/archive/"
        answer = api.get(path)
        assert answer.status_code == 200, ref
        body = b"".join(answer.streaming_content)  # type: ignore[attr-defined]
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            assert "iris-v2/notes.txt" in tar.getnames()
    # v2 is a Python predictor: the lines that load it.
    assert 'sys.path.insert(0, "iris-v2")' in commands["python"]
    assert "predict.setup()" in commands["python"]
    assert "predict.predict(**inputs)" in commands["python"]
    # v1: by number and production, not latest; sklearn, so no Python lines.
    assert 'data-testid="use-1"' in older
    assert 'data-testid="use-production"' in older
    assert 'data-testid="use-latest"' not in older
    assert 'data-testid="use-python"' not in older


@pytest.mark.django_db
def test_the_pages_use_the_dataset_pages_words(client, alice, iris):
    client.force_login(alice)

    detail = text(client.get(page("detail", "iris")))
    version = text(client.get(page("version", "iris", 2)))

    assert '<th scope="col">Author</th>' in detail
    assert '<th scope="col">By</th>' not in detail
    assert '<h2 id="summary-title" class="section-title">Summary</h2>' in version
