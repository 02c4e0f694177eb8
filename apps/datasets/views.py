"""Dataset pages under /t/<team_slug>/datasets/: the team's datasets and the form that makes
one, a dataset's versions and files with the form that edits it, and the page that uploads a
new version.

The pages read, make and edit datasets. Files go up from the browser
(static/js/dataset-upload.js) through the datasets API with the session, the same resumable
protocol a script uses (apps/datasets/api/views.py), and come down through the API's file and
archive URLs. A refusal of ``dataset_create`` or ``dataset_update`` (``DatasetError``) is
shown next to the form, in the service's words, with its status (400, 403 or 409).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.core.pages import refusal_on_form
from apps.datasets.hooks import source_link, version_users
from apps.datasets.models import Dataset, DatasetVersion, VersionFile
from apps.datasets.services.datasets import dataset_create, dataset_delete, dataset_update
from apps.teams.permissions import role_allows
from apps.teams.views import TeamPage

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User

FILES_PER_PAGE = 200


def _user(request: HttpRequest) -> User:
    return cast("User", request.user)


def _ready() -> Any:
    """The team's ready versions, newest first (the scope limits them to the team)."""
    return DatasetVersion.objects.filter(status=DatasetVersion.Status.READY).order_by("-number")


class DatasetCreateForm(forms.Form):
    """Only parses what was sent: apps.datasets.services says what is wrong with a name."""

    name = forms.CharField(label="Name", required=False, strip=False)
    description = forms.CharField(
        label="Description",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    licence = forms.CharField(
        label="Licence",
        required=False,
        max_length=80,
        help_text="Such as CC-BY-4.0, or the terms it may be used under.",
    )
    visibility = forms.ChoiceField(
        label="Visibility",
        choices=Dataset.Visibility.choices,
        initial=Dataset.Visibility.PRIVATE,
    )


class DatasetUpdateForm(DatasetCreateForm):
    """The same fields, filled in with the dataset's: only what differs changes."""

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetUpdateForm:
        return cls(
            initial={
                "name": dataset.name,
                "description": dataset.description,
                "licence": dataset.licence,
                "visibility": dataset.visibility,
            },
            auto_id="edit_%s",
        )


class DatasetPage(TeamPage):
    permission = "datasets.view"

    def dataset(self, slug: str) -> Dataset:
        return cast("Dataset", get_object_or_404(Dataset.objects.all(), slug=slug))


class DatasetListView(DatasetPage):
    """The team's datasets with their latest version; POST makes one (datasets.manage)."""

    template_name = "datasets/list.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self.render_list(request, DatasetCreateForm())

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        # The page is datasets.view; making a dataset needs more. The service checks too.
        if not role_allows(self.membership.role, "datasets.manage"):
            raise PermissionDenied
        form = DatasetCreateForm(request.POST)
        if not form.is_valid():
            return self.render_list(request, form, status=400)
        try:
            dataset = dataset_create(team=self.team, actor=_user(request), **form.cleaned_data)
        except ServiceError as exc:
            return self.render_list(request, form, status=refusal_on_form(request, form, exc))
        messages.success(request, f"{dataset.name} is ready: upload its first version.")
        return redirect("datasets:upload", team_slug=self.team.slug, slug=dataset.slug)

    def render_list(
        self, request: HttpRequest, form: DatasetCreateForm, status: int = 200
    ) -> HttpResponse:
        datasets = list(
            Dataset.objects.prefetch_related(
                Prefetch("versions", queryset=_ready(), to_attr="ready_versions")
            )
        )
        for dataset in datasets:
            ready = dataset.ready_versions
            dataset.latest = ready[0] if ready else None
        response = self.page(request, datasets=datasets, form=form, section="datasets")
        response.status_code = status
        return response


class DatasetDetailView(DatasetPage):
    """One dataset: its versions, the files of the latest (or ``?version=N``), and the edit
    form for those who may manage datasets."""

    template_name = "datasets/detail.html"

    def get(self, request: HttpRequest, team_slug: str, slug: str) -> HttpResponse:
        dataset = self.dataset(slug)
        return self.render_detail(request, dataset, DatasetUpdateForm.of(dataset))

    def render_detail(
        self,
        request: HttpRequest,
        dataset: Dataset,
        form: DatasetUpdateForm,
        status: int = 200,
        delete_error: str = "",
    ) -> HttpResponse:
        versions = list(_ready().filter(dataset=dataset).select_related("author"))
        shown = versions[0] if versions else None
        wanted = request.GET.get("version")
        if wanted is not None:
            shown = next((v for v in versions if str(v.number) == wanted), None)
            if shown is None:
                raise Http404("No such version of this dataset.")
        files = None
        made_from: list[tuple[str, str]] = []
        made_by = None
        if shown is not None:
            # What was made from it: the models trained on it (apps.models registers this).
            made_from = version_users(self.team, shown)
            # What made it, other than an upload: a job's run (apps.jobs registers this).
            made_by = source_link(self.team, shown)
            files = Paginator(
                VersionFile.objects.filter(version=shown).select_related("blob").order_by("path"),
                FILES_PER_PAGE,
            ).get_page(request.GET.get("page"))
        response = self.page(
            request,
            dataset=dataset,
            versions=versions,
            shown=shown,
            files=files,
            made_from=made_from,
            made_by=made_by,
            edit_form=form,
            delete_error=delete_error,
            section="datasets",
        )
        response.status_code = status
        return response


class DatasetUpdateView(DatasetDetailView):
    """POST the edit form: the service changes what differs; then the page at its (maybe new)
    slug. A refusal shows the page again with the form and the service's words."""

    http_method_names = ["post"]
    permission = "datasets.manage"

    def post(self, request: HttpRequest, team_slug: str, slug: str) -> HttpResponse:
        dataset = self.dataset(slug)
        form = DatasetUpdateForm(request.POST, auto_id="edit_%s")
        if not form.is_valid():
            return self.render_detail(request, dataset, form, status=400)
        try:
            updated = dataset_update(
                team=self.team, actor=_user(request), dataset=dataset, **form.cleaned_data
            )
        except ServiceError as exc:
            status = refusal_on_form(request, form, exc)
            return self.render_detail(request, dataset, form, status=status)
        messages.success(request, f"{updated.name} is saved.")
        return redirect("datasets:detail", team_slug=self.team.slug, slug=updated.slug)


class DatasetDeleteView(DatasetDetailView):
    """POST the delete form: the dataset goes once its name is typed; then the team's list.
    A wrong name shows the page again with what to type."""

    http_method_names = ["post"]
    permission = "datasets.manage"

    def post(self, request: HttpRequest, team_slug: str, slug: str) -> HttpResponse:
        dataset = self.dataset(slug)
        try:
            dataset_delete(
                team=self.team,
                actor=_user(request),
                dataset=dataset,
                confirmation=request.POST.get("confirmation", ""),
            )
        except ServiceError as exc:
            return self.render_detail(
                request,
                dataset,
                DatasetUpdateForm.of(dataset),
                status=exc.status_code,
                delete_error=str(exc),
            )
        messages.success(request, f"{dataset.name} is deleted.")
        return redirect("datasets:list", team_slug=self.team.slug)


class DatasetUploadView(DatasetPage):
    """The page that uploads a new version (static/js/dataset-upload.js does the work)."""

    template_name = "datasets/upload.html"
    permission = "datasets.manage"

    def get(self, request: HttpRequest, team_slug: str, slug: str) -> HttpResponse:
        dataset = self.dataset(slug)
        team = self.team.slug
        return self.page(
            request,
            dataset=dataset,
            latest=_ready().filter(dataset=dataset).first(),
            uploads_url=reverse("api:dataset_uploads", kwargs={"team_slug": team, "slug": slug}),
            api_team_url=reverse("api:team", kwargs={"team_slug": team}),
            section="datasets",
        )
