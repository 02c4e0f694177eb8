"""The deployments API's routes: ``team_urlpatterns``, relative to the team prefix that
config.api_urls writes once (/api/v1/teams/<team_slug>/). A deployment is named by its
slug, a revision by its number. (``deployments/<slug>/invoke/`` is the gateway's, served
before Django: apps.deployments.gateway.)"""

from __future__ import annotations

from django.urls import path

from apps.deployments.api import views

_ONE = "deployments/<slug:slug>/"
_REVISION = f"{_ONE}revisions/<int:number>/"

team_urlpatterns = [
    path("deployments/", views.DeploymentListView.as_view(), name="deployments"),
    path(_ONE, views.DeploymentDetailView.as_view(), name="deployment"),
    path(f"{_ONE}revisions/", views.RevisionListView.as_view(), name="deployment_revisions"),
    path(_REVISION, views.RevisionDetailView.as_view(), name="deployment_revision"),
    path(f"{_REVISION}rollback/", views.RollbackView.as_view(), name="deployment_rollback"),
    path(f"{_ONE}traffic/", views.TrafficView.as_view(), name="deployment_traffic"),
    path(f"{_ONE}keys/", views.KeyListView.as_view(), name="deployment_keys"),
    path(f"{_ONE}keys/<int:key_id>/", views.KeyDetailView.as_view(), name="deployment_key"),
    path(f"{_ONE}events/", views.EventListView.as_view(), name="deployment_events"),
    path(f"{_ONE}metrics/", views.MetricsView.as_view(), name="deployment_metrics"),
    path(f"{_ONE}requests/", views.RequestLogView.as_view(), name="deployment_requests"),
    path(f"{_ONE}logs/", views.ReplicaLogsView.as_view(), name="deployment_logs"),
]
