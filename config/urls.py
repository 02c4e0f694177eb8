"""Top-level URL routes. Websocket routes live in config/routing.py."""

from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from apps.core import views as core_views
from apps.datasets.blob_urls import blob_read
from apps.teams.invitation_views import InvitationLinkView

# The admin signs in through allauth, so two-factor and rate limits apply there too.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("", include("apps.core.urls")),
    path("", include("apps.teams.urls")),
    path("", include("apps.notebooks.urls")),
    path("", include("apps.datasets.urls")),
    path("", include("apps.models.urls")),
    path("", include("apps.deployments.urls")),
    path("", include("apps.jobs.urls")),
    path("", include("apps.jobs.files_urls")),
    path("", include("apps.billing.urls")),
    path("", include("apps.datasets.catalogue_urls")),
    path("invitations/<str:token>/", InvitationLinkView.as_view(), name="invitation"),
    # Hosts read the blobs a start mounts here, with a signed link (local-folder storage).
    path("hosts/blobs/<str:sha256>", blob_read, name="blob_read"),
    # Hosts save a notebook folder as a model version here, with a single-use ticket.
    path("", include("apps.models.host_urls")),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("api/v1/", include("config.api_urls")),
    path("accounts/", include("allauth.urls")),
    path("settings/", include("apps.accounts.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
# Read by django-allauth when a rate limit is hit.
handler429 = "apps.core.views.too_many_requests"
