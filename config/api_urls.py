"""API v1 routes, under /api/v1/.

Each app lists its own routes in its ``api/urls.py``: ``urlpatterns`` for those in no
team, ``team_urlpatterns`` for a team's, relative to the one team prefix written here.
"""

from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.accounts.api import urls as accounts
from apps.billing.api import urls as billing
from apps.datasets.api import urls as datasets
from apps.deployments.api import urls as deployments
from apps.jobs.api import urls as jobs
from apps.models.api import urls as models
from apps.notebooks.api import urls as notebooks
from apps.teams.api import urls as teams

app_name = "api"

urlpatterns = [
    *accounts.urlpatterns,
    *teams.urlpatterns,
    path(
        "teams/<slug:team_slug>/",
        include(
            [
                *teams.team_urlpatterns,
                *notebooks.team_urlpatterns,
                *datasets.team_urlpatterns,
                *models.team_urlpatterns,
                *deployments.team_urlpatterns,
                *jobs.team_urlpatterns,
                *billing.team_urlpatterns,
            ],
        ),
    ),
    *billing.urlpatterns,
    # The public dataset catalogue: every team's public datasets, to anyone signed in.
    *datasets.urlpatterns,
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
