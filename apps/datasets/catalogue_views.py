"""The public dataset catalogue pages: browse and search every team's public datasets.

Signed in only, and in no team: the pages show public datasets whatever team
holds them, and answer 404 for a private one exactly as for one that does not
exist. Files download through the catalogue API (``api:catalogue_file``); a
version is added to a notebook by that notebook's own form, which the detail page
posts to: the app that mounts versions lists them (apps.datasets.hooks.attach_targets).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render
from django.views import View

from apps.datasets import catalogue
from apps.datasets.hooks import attach_targets

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User

PAGE_SIZE = 25
# Files listed on the page; the archive holds them all.
FILES_SHOWN = 500


class CatalogueView(LoginRequiredMixin, View):
    """Search the catalogue by name or description."""

    def get(self, request: HttpRequest) -> HttpResponse:
        query = request.GET.get("q", "").strip()
        datasets = catalogue.public_datasets(query=query).order_by("name", "team__slug", "pk")
        page = Paginator(datasets, PAGE_SIZE).get_page(request.GET.get("page"))
        return render(
            request,
            "datasets/catalogue.html",
            {"nav_section": "catalogue", "query": query, "page": page},
        )


class CatalogueDetailView(LoginRequiredMixin, View):
    """A public dataset: its versions, the files of one, and adding it to a notebook."""

    def get(self, request: HttpRequest, team_slug: str, slug: str) -> HttpResponse:
        dataset = catalogue.public_dataset(team_slug=team_slug, slug=slug)
        if dataset is None:
            # Private and missing read the same: the catalogue hides private datasets.
            raise Http404("No such dataset in the catalogue.")
        versions = list(catalogue.ready_versions(dataset))
        # The latest unless asked; public_dataset() only finds datasets with a ready one.
        wanted = request.GET.get("version") or str(versions[0].number)
        version = next((v for v in versions if str(v.number) == wanted), None)
        if version is None:
            raise Http404("No such version of this dataset.")
        files = list(catalogue.version_files(version)[: FILES_SHOWN + 1])
        notebooks = attach_targets(cast("User", request.user))
        context: dict[str, Any] = {
            "nav_section": "catalogue",
            "dataset": dataset,
            "versions": versions,
            "version": version,
            "files": files[:FILES_SHOWN],
            "more_files": version.file_count - FILES_SHOWN if len(files) > FILES_SHOWN else 0,
            "notebooks": notebooks,
        }
        return render(request, "datasets/catalogue_detail.html", context)
