"""Deployment pages: /t/<team_slug>/deployments/... (the list, deploying, one deployment's
live page, a change as a new revision, rollback, traffic, keys, settings, delete).

Views parse a form and call one service (apps.deployments.services); a refusal is shown
next to the field it names, or as a message on the page it returns to
(apps.core.pages). The live parts of the deployment page come over its websocket
(apps.deployments.consumers, static/js/deployment.js).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.core.pages import page_action, refusal_on_form
from apps.deployments import metrics, services
from apps.deployments.endpoints import Endpoints, curl_example, endpoints
from apps.deployments.forms import (
    DeleteForm,
    DeploymentChangeForm,
    DeploymentCreateForm,
    DeploymentSettingsForm,
    KeyForm,
    TrafficForm,
    spec_initial,
)
from apps.deployments.models import (
    ACTIVE_REPLICA_STATUSES,
    Deployment,
    DeploymentEvent,
    DeploymentKey,
    Replica,
    Revision,
)
from apps.models.models import ModelVersion
from apps.teams.views import TeamPage

if TYPE_CHECKING:
    from django.forms import Form
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User

# Ended replicas the page lists under the live ones.
ENDED_REPLICAS = 10
EVENTS = 30


def _live() -> Any:
    """The team's deployments that are not deleted (the scope limits them to the team)."""
    return Deployment.objects.filter(deleted_at__isnull=True)


class DeploymentPage(TeamPage):
    permission = "deployments.view"

    @property
    def actor(self) -> User:
        return cast("User", self.request.user)

    def deployment(self, deployment_id: int) -> Deployment:
        return cast("Deployment", get_object_or_404(_live(), pk=deployment_id))

    def detail_url(self, deployment: Deployment) -> str:
        return reverse(
            "deployments:detail",
            kwargs={"team_slug": self.team.slug, "deployment_id": deployment.pk},
        )

    def form_page(self, request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
        response = self.page(request, section="deployments", **context)
        response.status_code = status
        return response


class DeploymentAction(DeploymentPage):
    """A POST on one deployment that calls one service, then back to its page."""

    http_method_names = ["post"]
    permission = "deployments.manage"

    def post(
        self, request: HttpRequest, team_slug: str, deployment_id: int, **route: Any
    ) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        return page_action(
            request,
            lambda: self.act(request, deployment, **route),
            back=self.detail_url(deployment),
        )

    def act(self, request: HttpRequest, deployment: Deployment, **route: Any) -> str:
        raise NotImplementedError


class DeploymentListView(DeploymentPage):
    """Every deployment of the team: its status, what it serves, its replicas."""

    template_name = "deployments/list.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        deployments = list(_live())
        revisions = {
            r.deployment_id: r
            for r in Revision.objects.filter(deployment__in=deployments)
            .select_related("model_version__model", "machine_type")
            .order_by("deployment_id", "number")
        }  # the newest of each, since later numbers overwrite
        counts = Counter(
            Replica.objects.filter(
                deployment__in=deployments, status=Replica.Status.READY
            ).values_list("deployment_id", flat=True)
        )
        rows = [
            {"deployment": d, "revision": revisions.get(d.pk), "ready": counts.get(d.pk, 0)}
            for d in deployments
        ]
        return self.page(request, rows=rows, section="deployments")


class DeploymentCreateView(DeploymentPage):
    """Deploying: the spec, a name and who may call it. ``?version=<id>`` (the model version
    page's Deploy button) fills in that version and its model's name."""

    permission = "deployments.manage"
    template_name = "deployments/create.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        initial: dict[str, Any] = {}
        version_id = request.GET.get("version", "")
        if version_id.isdigit():
            version = (
                ModelVersion.objects.for_team(self.team)
                .filter(pk=int(version_id), status=ModelVersion.Status.READY)
                .select_related("model")
                .first()
            )
            if version is not None:
                initial = {"model_version": version.pk, "name": version.model.name}
        return self.render_form(request, DeploymentCreateForm(team=self.team, initial=initial))

    def render_form(self, request: HttpRequest, form: Form, status: int = 200) -> HttpResponse:
        return self.form_page(request, status, form=form)

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = DeploymentCreateForm(request.POST, team=self.team)
        if not form.is_valid():
            return self.render_form(request, form, status=400)
        try:
            deployment = services.deployment_create(
                team=self.team,
                actor=self.actor,
                name=form.cleaned_data["name"],
                auth_mode=form.cleaned_data["auth_mode"],
                spec=form.spec(),
                description=form.cleaned_data["description"],
            )
        except ServiceError as refusal:
            return self.render_form(request, form, refusal_on_form(request, form, refusal))
        messages.success(request, f"{deployment.name} is deploying.")
        return redirect(self.detail_url(deployment))


def _traffic_rows(deployment: Deployment, revisions: list[Revision]) -> list[dict[str, Any]]:
    traffic = deployment.traffic or {}
    return [
        {"revision": r, "percent": traffic[str(r.pk)]} for r in revisions if str(r.pk) in traffic
    ]


class DeploymentDetailView(DeploymentPage):
    """One deployment: status, endpoints, curl, revisions, traffic, replicas, charts,
    requests and logs (the live parts through static/js/deployment.js)."""

    template_name = "deployments/detail.html"

    def get(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        revisions = list(
            Revision.objects.filter(deployment=deployment).select_related(
                "model_version__model", "machine_type"
            )
        )
        live = list(
            Replica.objects.filter(deployment=deployment, status__in=ACTIVE_REPLICA_STATUSES)
            .select_related("revision", "host")
            .order_by("pk")
        )
        ended = list(
            Replica.objects.filter(deployment=deployment)
            .exclude(status__in=ACTIVE_REPLICA_STATUSES)
            .select_related("revision")
            .order_by("-pk")[:ENDED_REPLICAS]
        )
        newest = revisions[0] if revisions else None
        serving = [r for r in revisions if r.status == Revision.Status.SERVING]
        urls = endpoints(deployment, lattice_host=request.get_host(), secure=request.is_secure())
        api_only = Endpoints(origin=urls.api, api=urls.api)
        return self.page(
            request,
            deployment=deployment,
            revisions=revisions,
            newest=newest,
            traffic=_traffic_rows(deployment, revisions),
            # Rolling back to what serves now would change nothing: no button there.
            serving_ids={int(pk) for pk in (deployment.traffic or {})},
            traffic_form=TrafficForm(revisions=serving, current=deployment.traffic or {}),
            replicas=live,
            ended_replicas=ended,
            urls=urls,
            curl=curl_example(deployment, newest, urls),
            curl_api=curl_example(deployment, newest, api_only),
            events=DeploymentEvent.objects.filter(deployment=deployment)[:EVENTS],
            requests=metrics.recent_requests(deployment),
            ws_path=f"/ws/teams/{self.team.slug}/deployments/{deployment.pk}/",
            section="deployments",
        )


class DeploymentChangeView(DeploymentPage):
    """A change of the spec: a new revision, rolled out like the first."""

    permission = "deployments.manage"
    template_name = "deployments/change.html"

    def get(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        newest = Revision.objects.filter(deployment=deployment).first()
        initial = spec_initial(newest) if newest else {}
        form = DeploymentChangeForm(team=self.team, initial=initial)
        return self.form_page(request, deployment=deployment, form=form, newest=newest)

    def post(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        newest = Revision.objects.filter(deployment=deployment).first()
        form = DeploymentChangeForm(request.POST, team=self.team)
        context = {"deployment": deployment, "form": form, "newest": newest}
        if not form.is_valid():
            return self.form_page(request, 400, **context)
        try:
            revision = services.deployment_change(
                team=self.team,
                actor=self.actor,
                deployment=deployment,
                spec=form.spec(keep_secrets=True),
                reason=form.cleaned_data["reason"].strip() or "changed",
            )
        except ServiceError as refusal:
            return self.form_page(request, refusal_on_form(request, form, refusal), **context)
        messages.success(request, f"Revision r{revision.number} is rolling out.")
        return redirect(self.detail_url(deployment))


class DeploymentRollbackView(DeploymentAction):
    def act(self, request: HttpRequest, deployment: Deployment, **route: Any) -> str:
        target = get_object_or_404(
            Revision.objects.filter(deployment=deployment), pk=route["revision_id"]
        )
        revision = services.deployment_rollback(
            team=self.team, actor=self.actor, deployment=deployment, revision=target
        )
        return f"Rolling back to r{target.number} as r{revision.number}."


class DeploymentTrafficView(DeploymentAction):
    def act(self, request: HttpRequest, deployment: Deployment, **route: Any) -> str:
        serving = list(
            Revision.objects.filter(deployment=deployment, status=Revision.Status.SERVING)
        )
        form = TrafficForm(request.POST, revisions=serving, current=deployment.traffic or {})
        if not form.is_valid():
            raise ServiceError("Give each revision a percent from 0 to 100.", field="traffic")
        services.deployment_set_traffic(
            team=self.team, actor=self.actor, deployment=deployment, split=form.split()
        )
        return "Traffic split saved."


class DeploymentKeysView(DeploymentPage):
    """A protected deployment's keys; a new key's secret is shown here once, never again."""

    template_name = "deployments/keys.html"

    def get(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        return self.keys_page(request, self.deployment(deployment_id), KeyForm())

    def keys_page(
        self,
        request: HttpRequest,
        deployment: Deployment,
        form: Form,
        status: int = 200,
        **extra: Any,
    ) -> HttpResponse:
        keys = DeploymentKey.objects.filter(deployment=deployment).select_related("created_by")
        return self.form_page(request, status, deployment=deployment, keys=keys, form=form, **extra)


class DeploymentKeyCreateView(DeploymentKeysView):
    permission = "deployments.manage"
    http_method_names = ["post"]

    def post(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        form = KeyForm(request.POST)
        if not form.is_valid():
            return self.keys_page(request, deployment, form, 400)
        try:
            key, plaintext = services.key_create(
                team=self.team,
                actor=self.actor,
                deployment=deployment,
                name=form.cleaned_data["name"],
            )
        except ServiceError as refusal:
            status = refusal_on_form(request, form, refusal)
            return self.keys_page(request, deployment, form, status)
        # Shown in this answer only: nothing keeps it (the key's hash is what is stored).
        response = self.keys_page(request, deployment, KeyForm(), new_key=key, plaintext=plaintext)
        response["Cache-Control"] = "no-store"
        return response


class DeploymentKeyRevokeView(DeploymentAction):
    def act(self, request: HttpRequest, deployment: Deployment, **route: Any) -> str:
        key = get_object_or_404(
            DeploymentKey.objects.filter(deployment=deployment, revoked_at__isnull=True),
            pk=route["key_id"],
        )
        services.key_revoke(team=self.team, actor=self.actor, deployment=deployment, key=key)
        return f"The key {key.name} is revoked."


def _settings_form(deployment: Deployment) -> DeploymentSettingsForm:
    return DeploymentSettingsForm(
        initial={
            "name": deployment.name,
            "description": deployment.description,
            "auth_mode": deployment.auth_mode,
            "rate_limit_per_minute": deployment.rate_limit_per_minute,
        }
    )


class DeploymentSettingsView(DeploymentPage):
    """Its name, description, who may call it and the per-caller rate limit."""

    permission = "deployments.manage"
    template_name = "deployments/settings.html"

    def get(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        form = _settings_form(deployment)
        return self.form_page(
            request, deployment=deployment, form=form, delete_form=DeleteForm(deployment=deployment)
        )

    def post(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        form = DeploymentSettingsForm(request.POST)
        context = {
            "deployment": deployment,
            "form": form,
            "delete_form": DeleteForm(deployment=deployment),
        }
        if not form.is_valid():
            return self.form_page(request, 400, **context)
        data = form.cleaned_data
        try:
            services.deployment_update(
                team=self.team,
                actor=self.actor,
                deployment=deployment,
                name=data["name"],
                description=data["description"],
                auth_mode=data["auth_mode"],
                rate_limit_per_minute=data["rate_limit_per_minute"],
            )
        except ServiceError as refusal:
            return self.form_page(request, refusal_on_form(request, form, refusal), **context)
        messages.success(request, "Settings saved.")
        return redirect(self.detail_url(deployment))


class DeploymentDeleteView(DeploymentPage):
    """Delete, after typing its name: its replicas stop and its endpoints stop answering."""

    permission = "deployments.manage"
    template_name = "deployments/settings.html"
    http_method_names = ["post"]

    def post(self, request: HttpRequest, team_slug: str, deployment_id: int) -> HttpResponse:
        deployment = self.deployment(deployment_id)
        form = DeleteForm(request.POST, deployment=deployment)
        if not form.is_valid():
            return self.form_page(
                request,
                400,
                deployment=deployment,
                form=_settings_form(deployment),
                delete_form=form,
            )
        return page_action(
            request,
            lambda: self._delete(deployment),
            back=self.detail_url(deployment),
            then=reverse("deployments:list", kwargs={"team_slug": self.team.slug}),
        )

    def _delete(self, deployment: Deployment) -> str:
        services.deployment_delete(team=self.team, actor=self.actor, deployment=deployment)
        return f"{deployment.name} is deleted."
