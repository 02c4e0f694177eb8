"""The changes that make the gateway's cached routes or credential decisions stale, as
signal receivers (connected by ``connect`` from DeploymentsConfig.ready()). Each bumps a
generation on commit (apps.deployments.routing), which every process checks per request.

Routes: a deployment changed or deleted (auth mode, rate limit, traffic, pause), a
revision changed, a replica's row changed (ready, gone, a new endpoint), a key made or
revoked, the team renamed. Credentials: a token saved or deleted (revoked), tokens revoked
in bulk (apps.accounts.signals.tokens_revoked: one UPDATE, no post_save), a membership
saved or deleted (removed, role changed), a user saved (deactivated, password), a session
begun or ended (not its tracking row's save on every signed-in request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allauth.usersessions.models import UserSession
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save

from apps.accounts.models import PersonalAccessToken
from apps.accounts.signals import tokens_revoked
from apps.deployments.models import Deployment, DeploymentKey, Replica, Revision
from apps.deployments.routing import credentials_changed, routes_changed
from apps.teams.models import Membership, Team

if TYPE_CHECKING:
    from django.db.models import Model


# What the route and the decisions read of each row (routing.route_load, gateway.access):
# a save whose update_fields name none of these (the controller's scaled_at, status,
# status_message, progressed_at, replicas_wanted ...) leaves every process's cache alone.
# A save without update_fields, and a delete, always counts. The route reads no revision
# field (the traffic is the deployment's; the replicas say their revision).
_READ_BY_THE_ROUTE: dict[type[Model], frozenset[str]] = {
    Deployment: frozenset(
        {
            "team",
            "team_id",
            "name",
            "slug",
            "auth_mode",
            "rate_limit_per_minute",
            "paused_reason",
            "traffic",
            "deleted_at",
        }
    ),
    Revision: frozenset(),
    Replica: frozenset(
        {"status", "endpoint", "revision", "revision_id", "deployment", "deployment_id"}
    ),
}


def _deployment_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    fields = kwargs.get("update_fields")
    read = _READ_BY_THE_ROUTE.get(sender)
    if fields is not None and read is not None and not read.intersection(fields):
        return
    deployment_id = instance.pk if sender is Deployment else instance.deployment_id
    if deployment_id is not None:
        routes_changed(deployment_id)


def _team_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A team's slug is in its deployments' addresses: a renamed team's routes are stale."""
    for deployment_id in Deployment.objects.for_team(instance).values_list("pk", flat=True):
        routes_changed(deployment_id)


def _credentials_changed(sender: Any, **kwargs: Any) -> None:
    fields = kwargs.get("update_fields")
    if fields is not None and set(fields) <= {"last_login", "last_used_at", "last_used_ip"}:
        return  # a sign-in or a token's use changes nobody's access
    credentials_changed()


def _session_saved(sender: Any, created: bool = False, **kwargs: Any) -> None:
    """A session's tracking row is saved on every signed-in request (allauth's
    USERSESSIONS_TRACK_ACTIVITY: last seen, address), which changes nobody's access. Only a
    new row is a change (a sign-in); an ended session is its row's delete, or a sign-out."""
    if created:
        credentials_changed()


def connect() -> None:
    routed: tuple[type[Model], ...] = (Deployment, Revision, Replica, DeploymentKey)
    for model in routed:
        uid = f"deployments.gateway.routes.{model.__name__}"
        post_save.connect(_deployment_changed, sender=model, dispatch_uid=f"{uid}.save")
        post_delete.connect(_deployment_changed, sender=model, dispatch_uid=f"{uid}.delete")
    credentials: tuple[type[Model], ...] = (
        PersonalAccessToken,
        Membership,
        get_user_model(),
        UserSession,
    )
    for model in credentials:
        uid = f"deployments.gateway.credentials.{model.__name__}"
        saved = _session_saved if model is UserSession else _credentials_changed
        post_save.connect(saved, sender=model, dispatch_uid=f"{uid}.save")
        post_delete.connect(_credentials_changed, sender=model, dispatch_uid=f"{uid}.delete")
    tokens_revoked.connect(_credentials_changed, dispatch_uid="deployments.gateway.tokens_revoked")
    post_save.connect(_team_changed, sender=Team, dispatch_uid="deployments.gateway.team")
    user_logged_out.connect(_credentials_changed, dispatch_uid="deployments.gateway.signed_out")
