"""The accounts API's routes: the signed-in user and their personal API tokens.

None of them is in a team; config.api_urls includes ``urlpatterns`` at /api/v1/.
"""

from __future__ import annotations

from django.urls import path

from apps.accounts.api import views

urlpatterns = [
    path("me", views.MeView.as_view(), name="me"),
    path("tokens/", views.TokenListView.as_view(), name="tokens"),
    path("tokens/<int:token_id>/", views.TokenDetailView.as_view(), name="token"),
    path("tokens/revoke-all/", views.TokenRevokeAllView.as_view(), name="tokens_revoke_all"),
]
