"""Model pages under /t/<team_slug>/models/: the team's models and the form that makes one;
a model's versions, aliases, edit and delete forms; the page that uploads a new version;
a version's files, metadata and lineage; a diff of two versions; downloads.

Files go up from the browser with the datasets uploader (static/js/dataset-upload.js, given
the models API's start URL and upload routes) and come down through these pages' own file
and archive views (the session, ``models.view``), which stream them as the datasets API
does. A refusal of a service is shown next to its form in the service's words, with its
status (400, 403 or 409).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.core.pages import page_action, refusal_on_form
from apps.datasets.api.views import archive_response, file_response
from apps.models import hooks, selectors
from apps.models.models import Model, ModelAlias, ModelFile, ModelVersion
from apps.models.services.aliases import alias_delete, alias_set
from apps.models.services.registry import model_create, model_delete, model_update
from apps.teams.permissions import role_allows
from apps.teams.views import TeamPage

if TYPE_CHECKING:
    from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse

    from apps.accounts.models import User


def _user(request: HttpRequest) -> User:
    return cast("User", request.user)


class ModelForm(forms.Form):
    """Only parses what was sent: apps.models.services says what is wrong with a name."""

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
        help_text="Such as Apache-2.0, or the terms it may be used under.",
    )

    @classmethod
    def of(cls, model: Model) -> ModelForm:
        """The edit form, filled in with the model's: only what differs changes."""
        return cls(
            initial={
                "name": model.name,
                "description": model.description,
                "licence": model.licence,
            },
            auto_id="edit_%s",
        )


class ModelPage(TeamPage):
    permission = "models.view"

    def model(self, slug: str) -> Model:
        found = Model.objects.for_team(self.team).filter(slug=slug).first()
        if found is None:
            raise Http404("No such model in this team.")
        return found

    def ready(self, model: Model) -> Any:
        return (
            ModelVersion.objects.for_team(self.team)
            .filter(model=model, status=ModelVersion.Status.READY)
            .select_related("created_by")
            .order_by("-number")
        )

    def version(self, model: Model, number: int) -> ModelVersion:
        found = self.ready(model).filter(number=number).first()
        if found is None:
            raise Http404("No such version of this model.")
        return found


class ModelListView(ModelPage):
    """The team's models with their latest version and aliases; POST makes one
    (models.manage)."""

    template_name = "models/list.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self.render_list(request, ModelForm())

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        # The page is models.view; making a model needs more. The service checks too.
        if not role_allows(self.membership.role, "models.manage"):
            raise PermissionDenied
        form = ModelForm(request.POST)
        if not form.is_valid():
            return self.render_list(request, form, status=400)
        try:
            model = model_create(team=self.team, actor=_user(request), **form.cleaned_data)
        except ServiceError as exc:
            return self.render_list(request, form, status=refusal_on_form(request, form, exc))
        messages.success(request, f"{model.name} is ready: upload its first version.")
        return redirect("models:upload", team_slug=self.team.slug, model_slug=model.slug)

    def render_list(self, request: HttpRequest, form: ModelForm, status: int = 200) -> HttpResponse:
        response = self.page(
            request, models=selectors.models_listed(self.team), form=form, section="models"
        )
        response.status_code = status
        return response


class AliasForm(forms.Form):
    name = forms.CharField(label="Alias", max_length=40)
    version = forms.IntegerField(label="Version", min_value=1)


class ModelDetailView(ModelPage):
    """One model: its versions, aliases, the diff form, and for those who may manage
    models the alias, edit and delete forms."""

    template_name = "models/detail.html"

    def get(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        model = self.model(model_slug)
        return self.render_detail(request, model=model, form=ModelForm.of(model))

    def render_detail(
        self,
        request: HttpRequest,
        *,
        model: Model,
        form: ModelForm,
        status: int = 200,
        delete_error: str = "",
        alias_form: AliasForm | None = None,
    ) -> HttpResponse:
        versions = list(self.ready(model))
        aliases = list(
            ModelAlias.objects.for_team(self.team)
            .filter(model=model)
            .select_related("version", "updated_by")
        )
        named: dict[int, list[str]] = {}
        for alias in aliases:
            named.setdefault(alias.version_id, []).append(alias.name)
        for version in versions:
            version.alias_names = named.get(version.pk, [])
        uploading = (
            ModelVersion.objects.for_team(self.team)
            .filter(model=model)
            .exclude(status=ModelVersion.Status.READY)
            .order_by("-created_at")[:5]
        )
        response = self.page(
            request,
            model=model,
            versions=versions,
            aliases=aliases,
            unready=list(uploading),
            edit_form=form,
            alias_form=alias_form or AliasForm(auto_id="alias_%s"),
            delete_error=delete_error,
            section="models",
        )
        response.status_code = status
        return response


class _PostOnly:
    """A route a form POSTs to: a GET (a reload of the page a refusal showed there) goes
    to the model's page."""

    def get(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        return redirect("models:detail", team_slug=team_slug, model_slug=model_slug)


class ModelUpdateView(_PostOnly, ModelDetailView):
    """POST the edit form: the service changes what differs; then the page at its (maybe
    new) slug. A refusal shows the page again with the form and the service's words."""

    permission = "models.manage"

    def post(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        model = self.model(model_slug)
        form = ModelForm(request.POST, auto_id="edit_%s")
        if not form.is_valid():
            return self.render_detail(request, model=model, form=form, status=400)
        try:
            updated = model_update(
                team=self.team, actor=_user(request), model=model, **form.cleaned_data
            )
        except ServiceError as exc:
            status = refusal_on_form(request, form, exc)
            return self.render_detail(request, model=model, form=form, status=status)
        messages.success(request, f"{updated.name} is saved.")
        return redirect("models:detail", team_slug=self.team.slug, model_slug=updated.slug)


class ModelDeleteView(_PostOnly, ModelDetailView):
    """POST the delete form: the model goes once its name is typed; then the team's list."""

    permission = "models.manage"

    def post(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        model = self.model(model_slug)
        try:
            model_delete(
                team=self.team,
                actor=_user(request),
                model=model,
                confirmation=request.POST.get("confirmation", ""),
            )
        except ServiceError as exc:
            return self.render_detail(
                request,
                model=model,
                form=ModelForm.of(model),
                status=exc.status_code,
                delete_error=str(exc),
            )
        messages.success(request, f"{model.name} is deleted.")
        return redirect("models:list", team_slug=self.team.slug)


class AliasSetView(_PostOnly, ModelDetailView):
    """POST an alias's name and a version number: the alias (made if new) names it."""

    permission = "models.manage"

    def post(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        model = self.model(model_slug)
        form = AliasForm(request.POST, auto_id="alias_%s")

        def refused(status: int) -> HttpResponse:
            return self.render_detail(
                request, model=model, form=ModelForm.of(model), status=status, alias_form=form
            )

        if not form.is_valid():
            return refused(400)
        number = form.cleaned_data["version"]
        target = self.ready(model).filter(number=number).first()
        if target is None:
            form.add_error("version", f"{model.name} has no version {number}.")
            return refused(400)
        try:
            alias = alias_set(
                team=self.team,
                actor=_user(request),
                model=model,
                name=form.cleaned_data["name"],
                version=target,
            )
        except ServiceError as exc:
            return refused(refusal_on_form(request, form, exc))
        messages.success(request, f"{alias.name} now names version {number}.")
        return redirect("models:detail", team_slug=self.team.slug, model_slug=model.slug)


class AliasRemoveView(_PostOnly, ModelPage):
    """POST an alias's name: it goes (a refusal is shown on the model's page)."""

    permission = "models.manage"

    def post(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        model = self.model(model_slug)
        name = request.POST.get("name", "")
        back = reverse("models:detail", args=[self.team.slug, model.slug])

        def remove() -> str:
            alias_delete(team=self.team, actor=_user(request), model=model, name=name)
            return f"The alias {name} is removed."

        return page_action(request, remove, back=back)


class ModelUploadView(ModelPage):
    """The page that uploads a new version (static/js/dataset-upload.js does the work)."""

    template_name = "models/upload.html"
    permission = "models.manage"

    def get(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        model = self.model(model_slug)
        # The models API's routes (apps.models.api): a version starts at the model's
        # versions, and its upload is the datasets' protocol at model_upload (<base><id>/).
        team = {"team_slug": self.team.slug}
        return self.page(
            request,
            model=model,
            latest=self.ready(model).first(),
            formats=ModelVersion.Format.choices,
            start_url=reverse("api:model_versions", kwargs={**team, "slug": model.slug}),
            upload_base=_left_open("api:model_upload", "upload_id", "", **team),
            # The page a finished upload links to; the uploader puts the number in.
            version_url=_left_open(
                "models:version",
                "number",
                "{number}/",
                **team,
                model_slug=model.slug,
            ),
            section="models",
        )


def _left_open(name: str, last: str, slot: str, **kwargs: object) -> str:
    """The URL of route ``name`` up to its last argument ``last`` (an int, its final step),
    followed by ``slot``: where the uploader puts the number it learns."""
    url = reverse(name, kwargs={**kwargs, last: 0})
    if not url.endswith("/0/"):
        raise ValueError(f"{name}'s URL does not end with its {last}: {url}")
    return url[: -len("0/")] + slot


def _table(value: object) -> list[tuple[str, str]] | None:
    """A metadata entry as rows of a table when it is an object of plain values (metrics,
    parameters), else None (shown as JSON)."""
    if not isinstance(value, dict) or not value:
        return None
    if any(isinstance(v, dict | list) for v in value.values()):
        return None
    return [(str(k), "—" if v is None else str(v)) for k, v in value.items()]


# Files a page on the version page, as on a dataset's (a version may hold 100,000).
FILES_PER_PAGE = 200


def _use_it(
    request: HttpRequest,
    *,
    team_slug: str,
    model: Model,
    version: ModelVersion,
    aliases: list[ModelAlias],
    newest: ModelVersion | None,
) -> dict[str, Any]:
    """What the version page's "Use it" card shows: a curl line that downloads this
    version's archive through the API by its number, by each alias naming it and by
    "latest" when it is the newest; and, for a Python predictor, the lines that load it."""
    refs = [str(version.number), *(alias.name for alias in aliases)]
    if newest is not None and newest.pk == version.pk:
        refs.append("latest")
    folder = f"{model.slug}-v{version.number}"
    lines = []
    for ref in refs:
        url = request.build_absolute_uri(
            reverse("api:model_archive", args=[team_slug, model.slug, ref])
        )
        lines.append(
            {
                "ref": ref,
                "command": f'curl -fL -H "Authorization: Bearer $LATTICE_TOKEN" '
                f"-o {folder}.tar {url}",
            }
        )
    load = ""
    if version.format == ModelVersion.Format.PYTHON:
        load = (
            f'import sys; sys.path.insert(0, "{folder}")  # after: tar xf {folder}.tar\n'
            "import predict; predict.setup(); print(predict.predict(**inputs))"
            "  # inputs: a dict of its inputs"
        )
    return {"lines": lines, "folder": folder, "load": load}


class VersionView(ModelPage):
    """One version: files, format, metadata, schema, digest, lineage, aliases, servers."""

    template_name = "models/version.html"

    def get(
        self, request: HttpRequest, team_slug: str, model_slug: str, number: int
    ) -> HttpResponse:
        model = self.model(model_slug)
        version = self.version(model, number)
        metadata = version.metadata if isinstance(version.metadata, dict) else {}
        # Plain values in one table; each object of plain values (metrics, parameters) in
        # a table of its own; anything deeper as JSON.
        plain = [(str(k), str(v)) for k, v in metadata.items() if not isinstance(v, dict | list)]
        tables = [(str(k), rows) for k, v in metadata.items() if (rows := _table(v))]
        other = {
            k: v for k, v in metadata.items() if isinstance(v, dict | list) and _table(v) is None
        }
        source = hooks.source_link(self.team, version)
        newest = self.ready(model).first()
        aliases = list(ModelAlias.objects.for_team(self.team).filter(version=version))
        return self.page(
            request,
            model=model,
            version=version,
            newest=newest,
            use_it=_use_it(
                request,
                team_slug=self.team.slug,
                model=model,
                version=version,
                aliases=aliases,
                newest=newest,
            ),
            files=Paginator(
                ModelFile.objects.for_team(self.team)
                .filter(version=version)
                .select_related("blob")
                .order_by("path"),
                FILES_PER_PAGE,
            ).get_page(request.GET.get("page")),
            plain=plain,
            tables=tables,
            other=other,
            source=source,
            datasets=selectors.lineage_links(self.team, version),
            children=selectors.version_children(self.team, version),
            parent=version.parent
            if version.parent and version.parent.status == ModelVersion.Status.READY
            else None,
            aliases=aliases,
            servers=hooks.version_servers(self.team, version),
            actions=hooks.version_actions(self.team, self.membership.role, version),
            section="models",
        )


class VersionRefView(ModelPage):
    """/v/<alias or latest>/: the version it names now, at its number's address (the API's
    refs, apps.models.selectors.version_named)."""

    def get(self, request: HttpRequest, team_slug: str, model_slug: str, ref: str) -> HttpResponse:
        model = self.model(model_slug)
        found = selectors.version_named(self.team, model, ref)
        if found is None:
            raise Http404("No such version, alias or 'latest' of this model.")
        return redirect(
            "models:version", team_slug=self.team.slug, model_slug=model.slug, number=found.number
        )


class FileView(ModelPage):
    """One file of a version, streamed as a download."""

    def get(
        self, request: HttpRequest, team_slug: str, model_slug: str, number: int, path: str
    ) -> FileResponse:
        version = self.version(self.model(model_slug), number)
        row = (
            ModelFile.objects.for_team(self.team)
            .filter(version=version, path=path)
            .select_related("blob")
            .first()
        )
        if row is None:
            raise Http404("No such file in this version.")
        return file_response(row)


class ArchiveView(ModelPage):
    """A whole version as a tar stream, made as it is sent."""

    def get(
        self, request: HttpRequest, team_slug: str, model_slug: str, number: int
    ) -> StreamingHttpResponse:
        model = self.model(model_slug)
        version = self.version(model, number)
        files = ModelFile.objects.for_team(self.team).filter(version=version)
        return archive_response(f"{model.slug}-v{number}", files.select_related("blob"))


class DiffView(ModelPage):
    """What changed between two versions (``?from=N&to=M``): files added, removed,
    changed and unchanged, with sizes. Without both, the form to pick them."""

    template_name = "models/diff.html"

    def get(self, request: HttpRequest, team_slug: str, model_slug: str) -> HttpResponse:
        model = self.model(model_slug)
        versions = list(self.ready(model))
        old = new = None
        diff = None
        wanted = (request.GET.get("from", ""), request.GET.get("to", ""))
        if all(wanted):
            by_number = {str(v.number): v for v in versions}
            old, new = by_number.get(wanted[0]), by_number.get(wanted[1])
            if old is None or new is None:
                raise Http404("No such version of this model.")
            diff = selectors.manifest_diff(self.team, old, new)
        elif len(versions) > 1:  # the form starts at the newest two
            new, old = versions[0], versions[1]
        return self.page(
            request,
            model=model,
            versions=versions,
            old=old,
            new=new,
            diff=diff,
            section="models",
        )
