"""Each template runs its own image: built locally (registry-free) from images/<template>/,
or marked "not built on this installation" and refused at start, never swapped for another."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.core.tenancy import team_scope
from apps.machines.models import MachineType
from apps.notebooks import lifecycle, services
from apps.notebooks.errors import NotebookError
from apps.notebooks.forms import NotebookCreateForm
from apps.notebooks.models import Notebook, NotebookEvent, NotebookSession, Status
from apps.notebooks.templates import (
    TemplateError,
    TemplateNotBuiltError,
    image_for,
    template_labels,
    validate_custom_image,
)
from apps.runtimes.images import local_notebook_image, local_template_image
from tests.helpers import bearer, make_token
from tests.notebook_fixtures import make_host
from tests.notebooks.test_api import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

FRAMEWORKS = ("scipy", "pytorch", "tensorflow", "r")


def make_notebook(team, actor, name, template):
    return services.notebook_create(
        team=team,
        actor=actor,
        name=name,
        template=template,
        machine_type=MachineType.objects.get(slug="cpu-small"),
    )


def test_each_template_runs_its_own_image_built_on_the_notebook_image(settings):
    settings.LATTICE_LOCAL_IMAGES = True
    images = {template: image_for(template) for template in FRAMEWORKS}

    assert len(set(images.values())) == len(FRAMEWORKS), images
    assert local_notebook_image() not in images.values()
    assert images["pytorch"].startswith("lattice/notebook-pytorch-local:")
    assert images["scipy"] == local_template_image("scipy")


def test_a_template_this_installation_does_not_build_is_marked_and_refused(
    settings, acme, alice, catalogue
):
    settings.LATTICE_LOCAL_IMAGES = True
    settings.LATTICE_LOCAL_TEMPLATES = ["scipy", "pytorch"]

    labels = dict(template_labels())
    assert labels["pytorch"] == "PyTorch"
    assert labels["r"] == "R (not built on this installation)"
    assert labels["tensorflow"] == "TensorFlow (not built on this installation)"
    assert labels["custom"] == "Custom image"
    field = NotebookCreateForm().fields["template"]
    assert ("r", "R (not built on this installation)") in list(field.choices)  # type: ignore[attr-defined]
    with pytest.raises(TemplateNotBuiltError, match="not built on this installation"):
        image_for("r")

    notebook = make_notebook(acme, alice, "Stats", "r")
    with pytest.raises(NotebookError, match="R template's image is not built") as refused:
        services.notebook_start(team=acme, actor=alice, notebook=notebook)
    assert (refused.value.status_code, refused.value.code) == (409, "template_not_built")
    assert not NotebookSession.objects.for_team(acme).filter(notebook=notebook).exists()

    api = bearer(make_token(alice)[1])
    body = assert_error(
        api.post(f"/api/v1/teams/acme/notebooks/{notebook.pk}/start/"), 409, "template_not_built"
    )
    assert "not built on this installation" in str(body)


def test_production_names_each_templates_image_in_settings(settings):
    settings.LATTICE_LOCAL_IMAGES = False
    settings.LATTICE_LOCAL_TEMPLATES = []

    assert image_for("pytorch") == settings.LATTICE_TEMPLATE_IMAGES["pytorch"]
    assert all("not built" not in label for _, label in template_labels())


def test_a_build_on_first_start_shows_its_steps_on_the_notebook(
    settings, acme, alice, fake_runtime, catalogue
):
    settings.LATTICE_RUNTIME = "fake:builds"
    make_host()
    notebook = make_notebook(acme, alice, "Torch", "pytorch")

    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)

    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    assert session.status == Status.RUNNING
    said = list(
        NotebookEvent.objects.for_team(acme)
        .filter(session=session, phase="pulling")
        .order_by("pk")
        .values_list("message", "percent")
    )
    messages = [message for message, _ in said]
    # The host reports numbers; the words are the control plane's, from the template's name.
    assert "Building the PyTorch image: step 2 of 3 (installing packages)..." in messages, said
    assert "Building the PyTorch image: step 3 of 3 (checking that it imports)..." in messages
    # A step said again (its percent moved, or the host's "still building" every 20 s)
    # updates its event in place: one row a step.
    assert len(messages) == len(set(messages)), said


@pytest.mark.parametrize(
    "reference",
    [
        "lattice/notebook-local:0123456789abcdef",
        "lattice/notebook-scipy-local:0123456789abcdef",
        "docker.io/lattice/notebook-pytorch-local:latest",
        "index.docker.io/lattice/notebook-r-local",
    ],
)
def test_a_custom_image_may_not_name_an_image_lattice_builds_itself(reference):
    # On Docker Hub lattice/notebook-*-local is anyone's name: never a custom image.
    with pytest.raises(TemplateError, match="an image Lattice builds itself"):
        validate_custom_image(reference)
    assert validate_custom_image("ghcr.io/lattice/notebook-scipy-local:1") == (
        "ghcr.io/lattice/notebook-scipy-local:1"
    )


def test_a_build_step_docker_does_not_count_shows_no_percent_on_the_page(
    client, acme, alice, host, notebook
):
    # A session back before its image (as it is while its host builds it).
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    with team_scope(acme):
        NotebookSession.objects.filter(pk=session.pk).update(status=Status.SCHEDULED)
        Notebook.objects.filter(pk=notebook.pk).update(status=Status.SCHEDULED)
    page = reverse("notebooks:detail", kwargs={"team_slug": acme.slug, "notebook_id": notebook.pk})
    client.force_login(alice)

    def bar() -> str:
        body = client.get(page).content.decode()
        found = re.search(r"<progress [^>]*id=\"nb-pull\"[^>]*>[^<]*</progress>", body)
        assert found is not None
        return found[0]

    lifecycle.on_workload_event(
        host.name,
        session.workload,
        "progress",
        {"phase": "building", "kind": "base", "step": 1, "of": 3},
    )
    # Preparing the base image: no count of its own, so a bar without a number (not "0%").
    assert "value=" not in bar()
    assert "%" not in bar()
    lifecycle.on_workload_event(
        host.name,
        session.workload,
        "progress",
        {"phase": "building", "kind": "packages", "step": 2, "of": 3, "percent": 37},
    )
    assert 'value="37"' in bar()
    assert ">37%<" in bar()
