from __future__ import annotations

from django.urls import path

from apps.teams import invitation_views, views

app_name = "teams"

urlpatterns = [
    path("teams/new/", views.TeamCreateView.as_view(), name="create"),
    path("t/<slug:team_slug>/", views.TeamHomeView.as_view(), name="home"),
    path("t/<slug:team_slug>/members/", views.MembersView.as_view(), name="members"),
    path(
        "t/<slug:team_slug>/members/<int:member_id>/role/",
        views.MemberRoleView.as_view(),
        name="member_role",
    ),
    path(
        "t/<slug:team_slug>/members/<int:member_id>/remove/",
        views.MemberRemoveView.as_view(),
        name="member_remove",
    ),
    path("t/<slug:team_slug>/settings/", views.TeamSettingsView.as_view(), name="settings"),
    path("t/<slug:team_slug>/leave/", views.TeamLeaveView.as_view(), name="leave"),
    path("t/<slug:team_slug>/transfer/", views.TeamTransferView.as_view(), name="transfer"),
    path("t/<slug:team_slug>/delete/", views.TeamDeleteView.as_view(), name="delete"),
    path("t/<slug:team_slug>/audit/", views.AuditLogView.as_view(), name="audit"),
    path("t/<slug:team_slug>/secrets/", views.SecretsView.as_view(), name="secrets"),
    path(
        "t/<slug:team_slug>/secrets/<str:name>/delete/",
        views.SecretDeleteView.as_view(),
        name="secret_delete",
    ),
    path(
        "t/<slug:team_slug>/invitations/",
        invitation_views.InvitationCreateView.as_view(),
        name="invitation_create",
    ),
    path(
        "t/<slug:team_slug>/invitations/<int:invitation_id>/revoke/",
        invitation_views.InvitationRevokeView.as_view(),
        name="invitation_revoke",
    ),
    path(
        "t/<slug:team_slug>/invitations/<int:invitation_id>/resend/",
        invitation_views.InvitationResendView.as_view(),
        name="invitation_resend",
    ),
]
