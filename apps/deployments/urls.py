"""Deployment pages: /t/<team_slug>/deployments/..."""

from __future__ import annotations

from django.urls import path

from apps.deployments import views

app_name = "deployments"

_ONE = "t/<slug:team_slug>/deployments/<int:deployment_id>/"

urlpatterns = [
    path("t/<slug:team_slug>/deployments/", views.DeploymentListView.as_view(), name="list"),
    path(
        "t/<slug:team_slug>/deployments/new/", views.DeploymentCreateView.as_view(), name="create"
    ),
    path(_ONE, views.DeploymentDetailView.as_view(), name="detail"),
    path(f"{_ONE}change/", views.DeploymentChangeView.as_view(), name="change"),
    path(
        f"{_ONE}revisions/<int:revision_id>/rollback/",
        views.DeploymentRollbackView.as_view(),
        name="rollback",
    ),
    path(f"{_ONE}traffic/", views.DeploymentTrafficView.as_view(), name="traffic"),
    path(f"{_ONE}keys/", views.DeploymentKeysView.as_view(), name="keys"),
    path(f"{_ONE}keys/new/", views.DeploymentKeyCreateView.as_view(), name="key_create"),
    path(
        f"{_ONE}keys/<int:key_id>/revoke/",
        views.DeploymentKeyRevokeView.as_view(),
        name="key_revoke",
    ),
    path(f"{_ONE}settings/", views.DeploymentSettingsView.as_view(), name="settings"),
    path(f"{_ONE}delete/", views.DeploymentDeleteView.as_view(), name="delete"),
]
