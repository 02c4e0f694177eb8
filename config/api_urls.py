"""API v1 routes, under /api/v1/."""

from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.accounts.api import views as accounts
from apps.billing.api import views as billing
from apps.datasets.api import catalogue as dataset_catalogue
from apps.datasets.api import views as datasets
from apps.notebooks.api import mounts as dataset_mounts
from apps.notebooks.api import views as notebooks
from apps.teams.api import views as teams

app_name = "api"

urlpatterns = [
    path("me", accounts.MeView.as_view(), name="me"),
    path("tokens/", accounts.TokenListView.as_view(), name="tokens"),
    path("tokens/<int:token_id>/", accounts.TokenDetailView.as_view(), name="token"),
    path("tokens/revoke-all/", accounts.TokenRevokeAllView.as_view(), name="tokens_revoke_all"),
    path("teams/", teams.TeamListView.as_view(), name="teams"),
    path("teams/<slug:team_slug>/", teams.TeamDetailView.as_view(), name="team"),
    path("teams/<slug:team_slug>/members/", teams.MemberListView.as_view(), name="members"),
    path(
        "teams/<slug:team_slug>/members/<int:member_id>/",
        teams.MemberDetailView.as_view(),
        name="member",
    ),
    path(
        "teams/<slug:team_slug>/invitations/",
        teams.InvitationListView.as_view(),
        name="invitations",
    ),
    path(
        "teams/<slug:team_slug>/invitations/<int:invitation_id>/",
        teams.InvitationDetailView.as_view(),
        name="invitation",
    ),
    path(
        "teams/<slug:team_slug>/invitations/<int:invitation_id>/resend/",
        teams.InvitationResendView.as_view(),
        name="invitation_resend",
    ),
    path("teams/<slug:team_slug>/audit/", teams.AuditLogView.as_view(), name="audit"),
    path(
        "teams/<slug:team_slug>/notebooks/",
        notebooks.NotebookListView.as_view(),
        name="notebooks",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/",
        notebooks.NotebookDetailView.as_view(),
        name="notebook",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/start/",
        notebooks.NotebookStartView.as_view(),
        name="notebook_start",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/stop/",
        notebooks.NotebookStopView.as_view(),
        name="notebook_stop",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/restart/",
        notebooks.NotebookRestartView.as_view(),
        name="notebook_restart",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/duplicate/",
        notebooks.NotebookDuplicateView.as_view(),
        name="notebook_duplicate",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/extend/",
        notebooks.NotebookExtendView.as_view(),
        name="notebook_extend",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/datasets/",
        dataset_mounts.MountListView.as_view(),
        name="notebook_datasets",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/datasets/<int:mount_id>/",
        dataset_mounts.MountDetailView.as_view(),
        name="notebook_dataset",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/events/",
        notebooks.NotebookEventListView.as_view(),
        name="notebook_events",
    ),
    path(
        "teams/<slug:team_slug>/notebooks/<int:notebook_id>/logs/",
        notebooks.NotebookLogsView.as_view(),
        name="notebook_logs",
    ),
    path("plans/", billing.PlanListView.as_view(), name="plans"),
    path("teams/<slug:team_slug>/billing/", billing.BillingView.as_view(), name="billing"),
    path(
        "teams/<slug:team_slug>/billing/usage/",
        billing.UsageView.as_view(),
        name="billing_usage",
    ),
    path(
        "teams/<slug:team_slug>/billing/invoices/",
        billing.InvoiceListView.as_view(),
        name="billing_invoices",
    ),
    path(
        "teams/<slug:team_slug>/billing/checkout/",
        billing.CheckoutView.as_view(),
        name="billing_checkout",
    ),
    path(
        "teams/<slug:team_slug>/billing/portal/",
        billing.PortalView.as_view(),
        name="billing_portal",
    ),
    path("teams/<slug:team_slug>/datasets/", datasets.DatasetListView.as_view(), name="datasets"),
    path(
        "teams/<slug:team_slug>/datasets/<slug:slug>/",
        datasets.DatasetDetailView.as_view(),
        name="dataset",
    ),
    path(
        "teams/<slug:team_slug>/datasets/<slug:slug>/versions/<int:number>/files/",
        datasets.VersionFilesView.as_view(),
        name="dataset_files",
    ),
    path(
        "teams/<slug:team_slug>/datasets/<slug:slug>/versions/<int:number>/files/<path:path>",
        datasets.FileDownloadView.as_view(),
        name="dataset_file",
    ),
    path(
        "teams/<slug:team_slug>/datasets/<slug:slug>/versions/<int:number>/archive/",
        datasets.ArchiveView.as_view(),
        name="dataset_archive",
    ),
    path(
        "teams/<slug:team_slug>/datasets/<slug:slug>/uploads/",
        datasets.UploadStartView.as_view(),
        name="dataset_uploads",
    ),
    path(
        "teams/<slug:team_slug>/uploads/<int:upload_id>/",
        datasets.UploadDetailView.as_view(),
        name="upload",
    ),
    path(
        "teams/<slug:team_slug>/uploads/<int:upload_id>/blobs/<str:sha256>/chunks/<int:index>/",
        datasets.ChunkView.as_view(),
        name="upload_chunk",
    ),
    path(
        "teams/<slug:team_slug>/uploads/<int:upload_id>/blobs/<str:sha256>/chunks/<int:index>/target/",
        datasets.ChunkTargetView.as_view(),
        name="upload_chunk_target",
    ),
    path(
        "teams/<slug:team_slug>/uploads/<int:upload_id>/complete/",
        datasets.UploadCompleteView.as_view(),
        name="upload_complete",
    ),
    # The public dataset catalogue: every team's public datasets, to anyone signed in.
    path("datasets/", dataset_catalogue.CatalogueListView.as_view(), name="catalogue"),
    path(
        "datasets/<slug:team_slug>/<slug:slug>/",
        dataset_catalogue.CatalogueDatasetView.as_view(),
        name="catalogue_dataset",
    ),
    path(
        "datasets/<slug:team_slug>/<slug:slug>/versions/<int:number>/files/",
        dataset_catalogue.CatalogueFilesView.as_view(),
        name="catalogue_files",
    ),
    path(
        "datasets/<slug:team_slug>/<slug:slug>/versions/<int:number>/files/<path:path>",
        dataset_catalogue.CatalogueFileView.as_view(),
        name="catalogue_file",
    ),
    path(
        "datasets/<slug:team_slug>/<slug:slug>/versions/<int:number>/archive/",
        dataset_catalogue.CatalogueArchiveView.as_view(),
        name="catalogue_archive",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "docs/",
        # Swagger UI sets a few style attributes from its script; allow those here only.
        csp_update({"style-src": [SELF, UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="api:schema"),
        ),
        name="docs",
    ),
]
