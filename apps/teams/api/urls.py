"""The teams API's routes.

``urlpatterns`` is the caller's team list (/api/v1/teams/); ``team_urlpatterns`` are one
team's own routes, relative to the team prefix that config.api_urls writes once
(/api/v1/teams/<team_slug>/).
"""

from __future__ import annotations

from django.urls import path

from apps.teams.api import views

urlpatterns = [
    path("teams/", views.TeamListView.as_view(), name="teams"),
]

team_urlpatterns = [
    path("", views.TeamDetailView.as_view(), name="team"),
    path("members/", views.MemberListView.as_view(), name="members"),
    path("members/<int:member_id>/", views.MemberDetailView.as_view(), name="member"),
    path("invitations/", views.InvitationListView.as_view(), name="invitations"),
    path(
        "invitations/<int:invitation_id>/",
        views.InvitationDetailView.as_view(),
        name="invitation",
    ),
    path(
        "invitations/<int:invitation_id>/resend/",
        views.InvitationResendView.as_view(),
        name="invitation_resend",
    ),
    path("audit/", views.AuditLogView.as_view(), name="audit"),
    path("secrets/", views.SecretListView.as_view(), name="secrets"),
    path("secrets/<str:name>/", views.SecretDetailView.as_view(), name="secret"),
]
